"""The dashboards in JupyterLab, as a notebook user meets them: JupyterLab from .venv on
loopback, a notebook with three dashboards, Run All. plotly's widget code reaches the page at
most once (its 5 MB bundle counted in the bytes the kernel's websocket brings); a control change;
a reload of the page while the kernel runs; the figures then show what their controls say, and
setting a control back to its first value redraws. At JupyterLab's default width with the file
browser open (a notebook column ~970 px, panels ~480 px), no panel cuts a table or a title.

JupyterLab runs with its own settings, workspace and runtime folders (no news, no update check),
the kernel imports the checkout's curvlab (PYTHONPATH), and curvlab's server extension is enabled
by the config file pip installs (jupyter-config/, copied in: the packaging is test_extension's)."""

import json
import os
import re
import shutil
import sys
import time

import pytest

from curvlab_jupyter.plotly_widget import patch

from .conftest import ROOT, _free_port, running
from .drive import RENDER_COUNTER, SETTLED, readout, type_readout

TOKEN = "curvlab-test"
DASHBOARDS = ["LandscapeDashboard", "SpectraDashboard", "DampingDashboard"]
FIGURES = 2 + 3 + 5           # the figures the three draw (drive.PLOTS)
BUNDLE = len(patch().encode())          # bytes of plotly's widget code (~5 MB)
LAB_WIDTH = 1400                        # the browser tests' laptop width
SPAN = "1-D slice"                      # the landscape figure the span control samples


def _notebook():
    cells = [f"from curvlab.dashboards import {name}\nd{i} = {name}()\nd{i}.widget"
             for i, name in enumerate(DASHBOARDS)]
    return {"cells": [{"cell_type": "code", "id": f"cell{i}", "metadata": {}, "outputs": [],
                       "execution_count": None, "source": src} for i, src in enumerate(cells)],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                        "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab from .venv on a free loopback port, serving a folder with `three.ipynb`;
    yields its URL, and stops it (kernel and all) at the end."""
    home = tmp_path_factory.mktemp("lab")
    (home / "three.ipynb").write_text(json.dumps(_notebook()))
    settings = home / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    conf = ROOT / "jupyter-config" / "jupyter_server_config.d" / "curvlab_jupyter.json"
    if conf.exists():
        (home / "config" / "jupyter_server_config.d").mkdir(parents=True)
        shutil.copy(conf, home / "config" / "jupyter_server_config.d")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "CURVLAB_PLOTLY"))}
    env.update(HOME=str(home), JUPYTER_CONFIG_DIR=str(home / "config"),
               JUPYTER_DATA_DIR=str(home / "data"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
               PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])]))
    port = _free_port()
    (ROOT / "test-output").mkdir(exist_ok=True)
    argv = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={home}",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    url = f"http://127.0.0.1:{port}"
    with open(ROOT / "test-output" / "lab.log", "w") as log:
        try:
            with running(argv, f"{url}/api/status?token={TOKEN}", "JupyterLab", log, cwd=home,
                         env=env):
                yield url
        except RuntimeError as e:
            pytest.fail(str(e))


class KernelBytes:
    """The frames the page receives over kernel websockets: their sizes since `reset()`."""

    def __init__(self, page):
        self.sizes = []
        page.on("websocket", self._socket)

    def _socket(self, ws):
        if "/api/kernels/" in ws.url:
            ws.on("framereceived", lambda f: self.sizes.append(
                len(f.encode() if isinstance(f, str) else f)))

    def reset(self):
        self.sizes = []

    def bundles(self):
        """(frames as large as plotly's bundle, bytes received in all)."""
        return sum(n >= 0.9 * BUNDLE for n in self.sizes), sum(self.sizes)


# JS: the element that scrolls the notebook; scroll it down by most of its height on screen, and
# say whether it is at the end
SCROLLER = ("const scroller = () => { let e = document.querySelector('.jp-Notebook .jp-Cell');"
            " while (e && !(['auto', 'scroll'].includes(getComputedStyle(e).overflowY)"
            " && e.scrollHeight > e.clientHeight + 2)) e = e.parentElement; return e; };")
SCROLL = (f"() => {{ {SCROLLER} const s = scroller(); if (!s) return true;"
          " s.scrollTop += 0.8 * s.clientHeight;"
          " return s.scrollTop + s.clientHeight >= s.scrollHeight - 2; }")
TOP = f"() => {{ {SCROLLER} const s = scroller(); if (s) s.scrollTop = 0; }}"


def wait_drawn(page):
    """Wait until the notebook's figures have all drawn (each view fires an event once). The
    notebook is scrolled through once, as a reader would: JupyterLab draws the outputs of cells
    out of sight only when they come near it (its notebook windowing)."""
    deadline = time.monotonic() + 120
    while not page.evaluate(SETTLED, FIGURES):
        assert time.monotonic() < deadline, (
            f"{page.evaluate('() => window.__curvlabRenders')} of {FIGURES} figures drawn")
        if page.evaluate(SCROLL):                  # at the end (the notebook may still grow)
            page.evaluate(TOP)
        page.wait_for_timeout(300)
    page.evaluate(TOP)


# JS: the plotted x of the figure whose title contains `t` (trace `i`), as a plain list
X_OF = ("([t, i]) => { const el = Array.from(document.querySelectorAll('.js-plotly-plot'))"
        ".find(e => e.layout && e.layout.title && (e.layout.title.text || '').includes(t));"
        " return el && el.data[i] && el.data[i].x ? Array.from(el.data[i].x) : null; }")


def span_control(page):
    """The landscape's span slider."""
    return page.locator(".widget-slider", has=page.locator("label:text-is('span')")).first


def shows_span(page, span, points):
    """Whether the 1-D slice and the 2-D slice plot what span and points say: the line sampled
    at `points` equally spaced a in [-span, span], the plane's a axis likewise. Asserts, showing
    (points, first a, last a) of each plot when they do not."""
    shown = [(len(x), x[0], x[-1]) if x else None
             for x in (page.evaluate(X_OF, [title, 0]) for title in (SPAN, "2-D slice: loss"))]
    assert all(s is not None and s[0] == points and abs(s[1] + span) < 1e-9
               and abs(s[2] - span) < 1e-9 for s in shown), (span, points, shown)
    return True


def wait_span(page, span, points):
    """Wait until both slices show span and points (the dashboard updates the two figures in
    separate batches, so one can arrive before the other)."""
    page.wait_for_function(
        f"([s, n]) => ['{SPAN}', '2-D slice: loss'].every(t => {{ const x = ({X_OF})([t, 0]);"
        " return x && x.length === n && Math.abs(x[0] + s) < 1e-9"
        " && Math.abs(x[x.length - 1] - s) < 1e-9; })", arg=[span, points], timeout=60_000)


# Everything in a panel that is cut: a figure title wider than its plot, and any text or table
# reaching beyond its panel's right edge (tables may only overflow inside their scrolling box).
CUT = """() => {
  const out = [];
  for (const panel of document.querySelectorAll('.curvlab-panel')) {
    if (panel.offsetParent === null) continue;
    const right = panel.getBoundingClientRect().right + 1;
    for (const svg of panel.querySelectorAll('.main-svg')) {
      const box = svg.getBoundingClientRect();
      for (const t of svg.querySelectorAll('.gtitle, .gtitle-subtitle')) {
        const r = t.getBoundingClientRect();
        if (r.width && (r.right > box.right + 1 || r.left < box.left - 1))
          out.push('title: ' + t.textContent);
      }
    }
    for (const e of panel.querySelectorAll('.widget-html-content, .curvlab-table')) {
      if (e.getBoundingClientRect().right > right) out.push('box: ' + e.textContent.slice(0, 60));
    }
    for (const t of panel.querySelectorAll('table')) {
      const box = t.closest('.curvlab-table');
      if (!box) { if (t.getBoundingClientRect().right > right) out.push('table'); continue; }
      if (box.scrollWidth > box.clientWidth + 1 && getComputedStyle(box).overflowX !== 'auto')
        out.push('table box does not scroll');
    }
  }
  return out;
}"""


def test_three_dashboards_in_jupyterlab_one_bundle_and_figures_match_their_controls(
        lab, browser):
    ctx = browser.new_context(viewport={"width": LAB_WIDTH, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(120_000)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error"
            and ("curvlab" in m.text or "Could not create a view" in m.text) else None)
    page.add_init_script(RENDER_COUNTER)           # on every load: the reload counts anew
    frames = KernelBytes(page)
    try:
        page.goto(f"{lab}/lab/tree/three.ipynb?token={TOKEN}")
        page.wait_for_selector(".jp-Notebook .jp-Cell")
        page.wait_for_selector(".jp-DirListing-item")             # the file browser is open
        # the notebook's kernel up (Run All before it asks which kernel to start)
        page.get_by_text(re.compile(r"Python 3 \(ipykernel\) \| Idle")).wait_for()
        page.click(".lm-MenuBar-itemLabel:text-is('Run')")
        page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
        wait_drawn(page)
        big, received = frames.bundles()
        # plotly's widget code at most once: 13 figures once brought 13 bundles (67 MB)
        assert big <= 1 and received < 2 * BUNDLE, (big, received, BUNDLE)

        # at Lab's width beside the file browser, two panels a row, and nothing cut
        widths = page.evaluate("() => Array.from(document.querySelectorAll('.curvlab-panel'))"
                               ".map(e => e.getBoundingClientRect().width)")
        assert min(widths) < 500, widths
        assert page.evaluate(CUT) == []

        # a control change, drawn
        points = int(readout(page, "points"))
        first = float(readout(page, "span"))
        assert shows_span(page, first, points)
        type_readout(page, span_control(page), "2.5")
        wait_span(page, 2.5, points)

        # the notebook saved (as autosave would), then the page reloaded with the kernel running
        page.click(".jp-NotebookPanel-toolbar [data-command='docmanager:save']")
        page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')", timeout=30_000)
        frames.reset()
        page.reload()
        wait_drawn(page)
        big, received = frames.bundles()
        assert big <= 1 and received < 2 * BUNDLE, (big, received, BUNDLE)
        # the figures show what the controls show
        assert float(readout(page, "span")) == 2.5 and int(readout(page, "points")) == points
        assert shows_span(page, 2.5, points)
        # and the control's first value draws the first view again
        type_readout(page, span_control(page), str(first))
        wait_span(page, first, points)
        assert shows_span(page, first, points)
        # and no error on the page, in either load (checked last: the rest says more)
        assert errors == [], errors
    except Exception:
        print("renders", page.evaluate("() => window.__curvlabRenders"), "plots",
              page.evaluate("() => document.querySelectorAll('.js-plotly-plot').length"),
              "errors", errors, "frames", frames.bundles())
        (ROOT / "test-output" / "failures").mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ROOT / "test-output" / "failures" / "lab.png"))
        raise
    finally:
        ctx.close()
