"""Reproduce (not a test) the plotly FigureWidget freeze in Voila that curvlab works around.

    .venv/bin/python bench/figurewidget_freeze.py [loads]

Serves two one-cell notebooks — five FigureWidgets and a slider — once with plain
`go.FigureWidget` and once with `curvlab.dashboards.figure.FigureWidget`, moves the slider in
headless Chromium after every figure has rendered, and counts, per page load, the figures whose
data followed the kernel.
"""

import pathlib
import sys
import tempfile
import time

import nbformat

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.browser.conftest import ARGS, CHROMIUM, serve_voila  # noqa: E402
from tests.browser.test_apps import RENDER_COUNTER, SETTLED, set_readout  # noqa: E402

CELL = """
import numpy as np, ipywidgets as W, plotly.graph_objects as go
{import_line}
figs = [FigureWidget(data=[go.Scatter(x=np.arange(5.0), y=np.zeros(5))],
                     layout=dict(title=f"fig{{i}}", height=250, width=300)) for i in range(5)]
s = W.IntSlider(value=0, min=0, max=10, description="k")
def upd(ch):
    for f in figs:
        with f.batch_update():
            f.data[0].y = np.full(5, float(ch["new"]))
s.observe(upd, names="value")
W.VBox([s] + figs)
"""
VARIANTS = {"plain": "from plotly.graph_objects import FigureWidget",
            "curvlab": "from curvlab.dashboards.figure import FigureWidget"}


def main(loads=5):
    from playwright.sync_api import sync_playwright
    folder = pathlib.Path(tempfile.mkdtemp())
    for name, line in VARIANTS.items():
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(CELL.format(import_line=line))]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nbformat.write(nb, folder / f"{name}.ipynb")
    with serve_voila(folder) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for name in VARIANTS:
            for t in range(loads):
                page = browser.new_page(viewport={"width": 1400, "height": 1600})
                page.set_default_timeout(120_000)
                page.add_init_script(RENDER_COUNTER)
                page.goto(f"{url}/voila/render/{name}.ipynb")
                page.wait_for_selector("#loading", state="detached")
                page.wait_for_function(SETTLED, arg=5, polling=100)
                set_readout(page, "k", 7)
                time.sleep(3)
                ys = page.evaluate("() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
                                   ".map(e => Array.from(e.data[0].y)[0])")
                print(f"{name:8s} load {t}: {sum(y == 7 for y in ys)} of 5 figures updated",
                      flush=True)
                page.close()
        browser.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
