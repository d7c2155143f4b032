"""The small widgets every dashboard uses: a status line with progress, a result cache, an
HTML table, a log slider, the responsive row of figure panels; and `slug`, a control's or a
file's name from its text. Only ipywidgets: no plotly here."""

import html
import io
import re
import time

import ipywidgets as W
import numpy as np

# Widget label width shared by every dashboard's controls.
STYLE = {"description_width": "70px"}


def slug(text):
    """Lower-case ASCII words of `text` joined by '-' (file names, link names)."""
    return "-".join(re.findall(r"[a-z0-9]+", text.lower()))


class Status:
    """A one-line message area and a progress bar shown while something slow runs.

    Every change of a widget is one message to the page, which the page handles before it draws
    what comes after: a quick callback sends only the "working" line and its result, and the bar
    appears only for work counted in several steps."""

    def __init__(self):
        self.html = W.HTML(value="").add_class("curvlab-status")
        self.bar = W.IntProgress(min=0, max=1, value=0,
                                 layout=W.Layout(width="200px", visibility="hidden"))
        self.widget = W.HBox([self.bar, self.html])
        self.error = None
        self.seconds = 0.0

    def info(self, text):
        self.error = None
        self.html.value = f"<span style='color:#555'>{html.escape(text)}</span>"

    def fail(self, exc):
        """Show an exception: a ValueError (what a user's choice caused) in its own words, any
        other with its type's name."""
        self.warn(str(exc) if type(exc) is ValueError else f"{type(exc).__name__}: {exc}")

    def warn(self, text):
        """Show `text` as a warning (kept in `.error` until the next message)."""
        self.error = text
        self.html.value = f"<span style='color:#b00020'>&#9888; {html.escape(text)}</span>"

    def busy(self, what, total=1):
        """Context manager: show `what` (and, when total > 1, a progress bar); `step()`
        advances it."""
        return _Busy(self, what, total)


class _Busy:
    def __init__(self, status, what, total):
        self.status, self.what, self.total = status, what, total

    def __enter__(self):
        status = self.status
        if self.total > 1:
            with status.bar.hold_sync():                 # one message for the bar
                status.bar.max, status.bar.value = int(self.total), 0
            status.bar.layout.visibility = "visible"
        status.html.value = (f"<span style='color:#555'>&#8987; {html.escape(self.what)}"
                             "&hellip;</span>")
        self.t0 = time.perf_counter()
        return self

    def step(self, n=1):
        if self.total > 1:
            bar = self.status.bar
            bar.value = min(bar.value + n, bar.max)

    def __exit__(self, *exc):
        status = self.status
        if self.total > 1:
            status.bar.layout.visibility = "hidden"
        status.seconds = time.perf_counter() - self.t0
        if exc[0] is None:
            status.info(f"{self.what}: {status.seconds:.2f} s")
        return False


class Cache:
    """Results keyed by their inputs, so view-only changes never recompute the math."""

    def __init__(self, maxsize=256):
        self.data, self.maxsize, self.hits, self.misses = {}, maxsize, 0, 0

    def get(self, key, make):
        if key in self.data:
            self.hits += 1
            return self.data[key]
        self.misses += 1
        if len(self.data) >= self.maxsize:
            self.data.pop(next(iter(self.data)))
        value = self.data[key] = make()
        return value


def table_html(header, rows, fmt="{:.3g}"):
    """A small HTML table; floats formatted with `fmt`. In a box that scrolls sideways when the
    table is wider than its place (a panel in a notebook column beside JupyterLab's file
    browser is ~480 px; the spectra table is ~500)."""
    def cell(v):
        return fmt.format(v) if isinstance(v, (float, np.floating)) else html.escape(str(v))
    head = "".join(f"<th style='padding:2px 8px'>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td style='padding:2px 8px;text-align:right'>{cell(v)}</td>"
                                    for v in r) + "</tr>" for r in rows)
    return (f"<div class='curvlab-table'><table style='border-collapse:collapse;font-size:90%'>"
            f"<tr>{head}</tr>{body}</table></div>")


def read_array(name, content):
    """The array in a .npy / .npz file's bytes (an .npz's "M", else its first array), as a file
    upload gives them; a ValueError naming the file otherwise."""
    try:
        data = np.load(io.BytesIO(content), allow_pickle=False)
    except Exception as e:
        raise ValueError(f"{name}: not a .npy or .npz file numpy can read ({e})") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        keys = list(data.keys())
        if not keys:
            raise ValueError(f"{name}: the .npz file holds no array")
        data = data["M"] if "M" in keys else data[keys[0]]
    return data


def log_slider(description, value, lo, hi, step=0.1):
    return W.FloatLogSlider(value=value, base=10, min=lo, max=hi, step=step,
                            description=description, continuous_update=False,
                            readout_format=".1e", style=STYLE, layout=W.Layout(width="380px"))


# --- responsive panels ---------------------------------------------------------------------
# Figures have no fixed width: each sits in a panel of a wrapping row, half the row on a laptop
# (two columns), the whole row on a narrow window or column, and plotly fills its panel (the
# ResizeObserver patched into the widget: bundle.PATCHES["view"]). "Narrow" is the row's own
# width (a container query: a notebook column beside a sidebar) or the window's. The rules come
# with each dashboard (`finish`), so they hold in a notebook as in Voila. Each panel contains
# its own layout and paint: plotly measures text as it draws, and each measurement would
# otherwise lay out the whole page (~15 % of a redraw). In presentation mode (the dashboard's
# class curvlab-present) every figure takes the whole row, so its plot area grows with its
# fonts, and the controls, status lines and tables (class curvlab-scale) are zoomed. What is
# wider than its panel scrolls rather than being cut by the panel's paint containment: a table
# in its box (`table_html`), while text beside it wraps at the panel's width (min-width 0: a
# flex item would otherwise be as wide as the table; width auto: 100 % and its margins would
# reach past the panel). Figures' titles wrap: figure.fit_titles.
PANEL_CSS = """<style>
.curvlab-panels { display: flex; flex-flow: row wrap; gap: 6px; width: 100%;
                  align-items: flex-start; }
.curvlab-panels > .curvlab-panel { flex: 0 1 calc(50% - 3px); min-width: 0;
                                   box-sizing: border-box; contain: layout paint; }
.curvlab-panels > .curvlab-panel.curvlab-wide { flex-basis: 100%; }
.curvlab-panel > * { width: 100%; }
@media (max-width: 900px) { .curvlab-panels > .curvlab-panel { flex-basis: 100%; } }
.curvlab-panels { container-type: inline-size; }
@container (max-width: 860px) { .curvlab-panels > .curvlab-panel { flex-basis: 100%; } }
.curvlab-panel .widget-html, .curvlab-panel .widget-html-content { min-width: 0;
                                                                   max-width: 100%; }
.curvlab-panel > .widget-html { width: auto; }
.curvlab-table { overflow-x: auto; max-width: 100%; }
.curvlab-present .curvlab-scale { zoom: 1.35; }
.curvlab-present .curvlab-panels > .curvlab-panel { flex-basis: 100%; }
</style>"""


def panels(*items, wide=False):
    """A row of figure panels (figures, or boxes holding one), two to a row on a laptop and one
    on a narrow window; `wide=True` gives each item the whole row."""
    for item in items:
        item.add_class("curvlab-panel")
        if wide:
            item.add_class("curvlab-wide")
    return W.HBox(list(items)).add_class("curvlab-panels")


MULTI_HINT = "Ctrl-click (⌘-click on a Mac) to pick several; Shift-click for a range"


def with_hint(select):
    """A multi-select list with a line under it saying how to pick several items."""
    hint = W.HTML(f"<span style='color:#555;font-size:85%'>{html.escape(MULTI_HINT)}</span>",
                  layout=W.Layout(width=select.layout.width or "auto"))
    return W.VBox([select, hint.add_class("curvlab-hint")])
