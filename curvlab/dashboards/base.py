"""The Dashboard base every app builds on: a picker-driven problem, a status line, a cache, the
guard that turns exceptions into messages, and the row under each app — link to this view,
numbers as CSV, presentation mode — with the captions ("What you see", "Try this")."""

import base64
import csv
import functools
import html
import io
import traceback

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from . import links
from .figure import sync
from .marks import STALE, clear_overlay, is_mark, overlay, present
from .problems import ProblemPicker
from .widgets import PANEL_CSS, Cache, Status, slug


def guarded(method):
    """Run a dashboard callback; any exception becomes a message in the status line (with the
    traceback kept on `self.last_traceback` for debugging), never a traceback in the page, and
    every figure is marked as not current until a callback succeeds again."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            out = method(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 — the app must keep working whatever happened
            self.last_traceback = traceback.format_exc()
            self.status.fail(exc)
            for fig in self.figures():
                overlay(fig, "not current: see the message above", STALE)
            self.failed = True
            return None
        if getattr(self, "failed", False):
            for fig in self.figures():
                clear_overlay(fig, STALE)
            self.failed = False
        return out
    return wrapper


def _all_nan(values):
    """True when every value is NaN (False for text values)."""
    try:
        return bool(np.all(np.isnan(np.asarray(values, dtype=float))))
    except (TypeError, ValueError):          # text (category) values
        return False


def figure_rows(panel, fig):
    """[panel, trace, i, x, y, z] rows of every number figure `fig` plots (see numbers_csv)."""
    for t in fig.data:
        if t.visible is False:
            continue
        z = getattr(t, "z", None)
        if z is not None and np.ndim(z) == 2:
            Z = np.asarray(z, dtype=float)
            xs = np.arange(Z.shape[1]) if t.x is None else np.asarray(t.x)
            ys = np.arange(Z.shape[0]) if t.y is None else np.asarray(t.y)
            for i, (r, c) in enumerate(np.ndindex(*Z.shape)):
                yield [panel, t.name, i, xs[c], ys[r], repr(float(Z[r, c]))]
            continue
        x, y = getattr(t, "x", None), getattr(t, "y", None)
        if y is None or _all_nan(y):                                 # (NaN: a legend entry only)
            continue
        x = np.arange(len(y)) if x is None else x
        for i, (a, b) in enumerate(zip(x, y)):
            yield [panel, t.name, i, a, b, ""]
    count = {}                              # points per mark name, numbered on across its shapes
    for mark in filter(is_mark, fig.layout.shapes):
        if mark.xsizemode == "pixel":
            points = [(mark.xanchor, mark.yanchor)]
        else:
            points = [(mark.x0, mark.y0), (mark.x1, mark.y1)]
            points = points[:1] if points[0] == points[1] or mark.yref == "paper" else points
        for a, b in points:
            i = count[mark.name] = count.get(mark.name, -1) + 1
            yield [panel, mark.name, i, a, "" if mark.yref == "paper" else b, ""]


class Dashboard:
    """Base: a status line, a picker-driven problem (`picker` takes ProblemPicker's keywords),
    a `widget` to display."""

    title = ""

    def __init__(self, **picker):
        self.picker = ProblemPicker(**picker)
        self.status = Status()
        self.cache = Cache()
        self.last_traceback = None

    def sync_figures(self):
        """Copy every FigureWidget's current data and layout into its synced widget state
        (`figure.sync`: a view created later sees the first draw). Called by `finish()`, at the
        end of each dashboard's __init__, and after a link has set the view."""
        for fig in self.figures():
            sync(fig)

    def header(self):
        return W.HTML(f"<h3 style='margin:4px 0'>{html.escape(self.title)}</h3>")

    def named_figures(self):
        """{attribute name: FigureWidget} of this dashboard, in definition order."""
        return {k: f for k, f in vars(self).items() if isinstance(f, go.FigureWidget)}

    def figures(self):
        return list(self.named_figures().values())

    def apply_query(self, qs):
        """Set the view from a URL query string (`links` module); a list of problems, shown."""
        return links.apply_query(self, qs)

    def link(self):
        """The query string of the current view (every view control)."""
        return links.link(self)

    def finish(self):
        """Add the 'link to this view' and 'numbers as CSV' row and the explanations under the
        dashboard, and sync the figures' first draw; each dashboard calls this at the end of
        __init__."""
        row = W.HBox([self.presentation_toggle()], layout=W.Layout(flex_flow="row wrap"))
        self.widget.children += (row, self.explanation(), W.HTML(PANEL_CSS))
        self.widget.layout.width = "100%"
        # after every control is on the page: the link's defaults include them all
        row.children += (links.link_box(self), self.csv_box())
        self.sync_figures()

    def presentation_toggle(self):
        """A 'presentation' toggle: every figure's fonts, lines and markers twice as large (for
        a projector), and back."""
        toggle = W.ToggleButton(value=False, description="presentation",
                                tooltip="fonts and lines ×2", layout=W.Layout(width="130px"))

        def scale(change):
            for fig in self.figures():
                present(fig, change["new"])
        toggle.observe(scale, names="value")
        self.presentation = toggle
        return toggle

    def numbers_csv(self):
        """Every plotted number, as CSV text in long form: panel, trace, point index, x, y, z
        (a grid's z row by row, with its x and y); marks (`set_marks`) by their name, with their
        points (a line's two ends, a disc's centre; y empty for a line across the plot)."""
        out = io.StringIO()
        rows = csv.writer(out, lineterminator="\n")
        rows.writerow(["panel", "trace", "i", "x", "y", "z"])
        for name, fig in self.named_figures().items():
            rows.writerows(figure_rows(fig.layout.title.text or name, fig))
        return out.getvalue()

    def csv_box(self):
        """A 'numbers as CSV' button and the download link it makes from the current results."""
        button = W.Button(description="numbers as CSV", layout=W.Layout(width="150px"))
        out = W.HTML()

        def write(_=None):
            data = base64.b64encode(self.numbers_csv().encode()).decode()
            name = "curvlab-" + slug(type(self).__name__.lower().removesuffix("dashboard"))
            out.value = (f"<a download=\"{name}.csv\" href=\"data:text/csv;base64,{data}\">"
                         f"{name}.csv</a> <span style='color:#555'>"
                         f"({len(data) * 3 // 4:,} bytes)</span>")
        button.on_click(write)
        return W.HBox([button, out])

    # What each panel shows (keyed by the figure's attribute name) and a few guided
    # experiments: data beside each dashboard's code, so a test can check every figure has its
    # caption.
    CAPTIONS = {}
    TRY_THIS = []

    def caption(self, fig):
        """The caption of figure attribute `fig` (CAPTIONS holds text, or (label, text))."""
        c = self.CAPTIONS[fig]
        return c if isinstance(c, str) else c[1]

    def panel_label(self, fig):
        """The caption's heading: its own label, or the figure's title (for titles that change
        with the view, CAPTIONS gives a label)."""
        c = self.CAPTIONS[fig]
        return getattr(self, fig).layout.title.text or fig if isinstance(c, str) else c[0]

    def explanation(self):
        """'What you see' (one caption per figure, under its title) and 'Try this', as two
        collapsible sections of plain HTML (no MathJax: formulas are written in Unicode)."""
        figs = self.named_figures()
        missing = sorted(set(figs) - set(self.CAPTIONS))
        if missing:
            raise KeyError(f"{type(self).__name__}: no caption for {missing}")
        rows = "".join(f"<p style='margin:6px 0'><b>{html.escape(self.panel_label(k))}</b> — "
                       f"{html.escape(self.caption(k))}</p>" for k in figs)
        steps = "".join(f"<li style='margin:3px 0'>{html.escape(t)}</li>" for t in self.TRY_THIS)
        summary = "<summary style='cursor:pointer'><b>{}</b></summary>"
        return W.HTML("<div style='max-width:1100px;line-height:1.4'>"
                      f"<details open>{summary.format('What you see')}{rows}</details>"
                      f"<details>{summary.format('Try this')}<ol>{steps}</ol></details>"
                      "</div>")
