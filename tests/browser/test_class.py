"""A class at once, small: five students arriving at the same instant at one app served as
`POOLS=landscape=5 ./run apps` would (bench/class_load.py with 5 students; the 30-student run
is bench/results_class.md). And a page never comes back silently without its app."""

import pathlib
import sys

import nbformat

from .conftest import ROOT, serve_voila

sys.path.insert(0, str(ROOT / "bench"))
import class_load  # noqa: E402


def test_five_students_at_once_each_get_their_app_without_errors():
    r = class_load.run(students=5, app="landscape", quiet=True, fill_delay=60.0, browser=True)
    assert len(r["times"]) == 4 and r["ok"] == 4, r   # every light client's page holds the app
    assert r["errors"] == 0, r                         # no error output, no timeout
    assert all(n > 10 for _, n in r["widgets"]), r["widgets"]      # its widgets' states arrived
    # the browser drew, and followed a control
    assert r["first_plot"] is not None and len(r["latency"]) == 6
    print(f"5 students: pages max {max(r['times']):.3f} s, widget states max "
          f"{max(t for t, _ in r['widgets']):.2f} s, first plot {r['first_plot']:.2f} s")


def _notebook(path, source):
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    # curvlab's template (with its banner) is chosen per notebook, as the apps choose it
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": kernel, "voila": {"template": "curvlab"}})
    nb.cells = [nbformat.v4.new_markdown_cell("# An app"), nbformat.v4.new_code_cell(source)]
    nbformat.write(nb, path)


def test_a_page_without_its_app_says_so_and_offers_a_reload(browser, tmp_path):
    _notebook(tmp_path / "raises.ipynb", "raise RuntimeError('the app could not start')")
    _notebook(tmp_path / "noapp.ipynb", "print('no widget here')")
    log = open(ROOT / "test-output" / "voila_noapp.log", "w")
    with log, serve_voila(pathlib.Path(tmp_path), log) as url:
        page = browser.new_page()
        try:
            for name in ("raises", "noapp"):
                page.goto(f"{url}/voila/render/{name}.ipynb")
                banner = page.wait_for_selector("#curvlab-kernel-lost", timeout=120_000)
                assert "did not bring the app up" in banner.inner_text()
                assert banner.query_selector("button").inner_text() == "Reload"
        finally:
            page.close()
