"""Every tutorial notebook and every app notebook runs top to bottom without error (the
tutorials assert the claims they make, so a wrong number fails here)."""

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "apps").glob("*.ipynb"))


def test_there_are_notebooks_for_every_source_and_app():
    names = {p.stem for p in NOTEBOOKS}
    assert {"pearlmutter", "lin", "bulatov", "botev", "grosse", "beyond", "zoo", "check_your_tool",
            "dynamics", "laplace", "architectures"} <= names
    assert {"landscape", "spectra", "damping", "trajectories", "products", "beyond"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_runs(path):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.output_type == "error" or (o.output_type == "stream" and o.name == "stderr"
                                              and "Traceback" in o.text)]
    assert not errors, errors
