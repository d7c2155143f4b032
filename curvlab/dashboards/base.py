"""The Dashboard base every app builds on: a picker-driven problem, a status line, a cache, the
guard that turns exceptions into messages, and the row under each app — presentation mode, link
to this view, numbers as CSV — with the captions ("What you see") and the lessons ("Try this")."""

import functools
import html
import traceback

import ipywidgets as W
import plotly.graph_objects as go

from . import lessons, links
from .export import csv_button, numbers_csv
from .figure import PANEL_ROOM, sync
from .marks import STALE, clear_overlay, overlay, present
from .pagewidgets import ResizeNudge
from .problems import ProblemPicker
from .widgets import PANEL_CSS, Cache, Status, table_html

PRESENT_HEIGHT = 1.5      # figures' height in presentation mode, times their own
SUBTITLE_MARGIN = 64      # top margin (px) that holds a figure's title and its settings line


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


def guarded(method):
    """Run a dashboard callback; any exception becomes a message in the status line (with the
    traceback kept on `self.last_traceback` for debugging), never a traceback in the page, and
    every figure is marked as not current until a callback succeeds again. After a success, each
    figure's settings line (its subtitle: what a saved PNG carries) follows the view."""
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
        self.label_figures()
        return out
    return wrapper


class Dashboard:
    """Base: a status line, a picker-driven problem (`picker` takes ProblemPicker's keywords),
    a `widget` to display."""

    title = ""
    # What each panel shows (keyed by the figure's attribute name) and the lessons (`Lesson`s):
    # data beside each dashboard's code, so tests can check every figure has its caption and
    # every lesson's claim at its view.
    CAPTIONS = {}
    TRY_THIS = []
    # what a link may ask a dashboard to do besides setting controls: run=name -> method name
    ACTIONS = {}

    def __init__(self, **picker):
        self.picker = ProblemPicker(**picker)
        self.status = Status()
        self.cache = Cache()
        self.last_traceback = None
        self.tables = {}                 # id(widget) -> (title, header, rows) of each table shown
        self.view_defaults = None        # {control name: link text} of the first view

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

    def show_table(self, widget, title, header, rows, fmt="{:.3g}", note=""):
        """Show a table in HTML widget `widget` under the bold `title` (and `note` below it); its
        rows go into the CSV too."""
        self.tables[id(widget)] = (title, list(header), [list(r) for r in rows])
        widget.add_class("curvlab-scale")
        widget.value = (f"<b>{html.escape(title)}</b>" + table_html(header, rows, fmt) + note)

    # ---- the settings line of each figure (and of its PNG) ----------------------------------
    def settings_text(self):
        """The problem and every view control changed from the first view, in one line."""
        parts = [] if self.picker.own is not None else [str(c.value) for c in
                                                        self.picker.controls]
        if self.view_defaults is not None:
            picker = {links.key(c.description) for c in self.picker.controls}
            now = links.view_texts(self)
            parts += [f"{k} {v}" for k, v in now.items() if k not in picker
                      and k != "presentation" and self.view_defaults.get(k) != v]
        return " · ".join(parts) or "your problem"

    def label_figures(self):
        if self.view_defaults is None:              # not finished building
            return
        text = self.settings_text()
        for fig in self.figures():
            if fig.layout.title.subtitle.text != text:
                fig.layout.title.subtitle.text = text

    def finish(self):
        """Add the row (presentation, link to this view, numbers as CSV) and the explanations
        under the dashboard, mark what presentation mode enlarges, and sync the figures' first
        draw; each dashboard calls this at the end of __init__."""
        row = W.HBox([self.presentation_toggle()], layout=W.Layout(flex_flow="row wrap"))
        self.widget.children += (row, lessons.explanation(self), W.HTML(PANEL_CSS))
        self.widget.layout.width = "100%"
        for child in self.widget.children:        # all but the figures' rows scale as text does
            if "curvlab-panels" not in child._dom_classes:
                child.add_class("curvlab-scale")
        # after every control is on the page: the link's defaults include them all
        self.view_defaults = links.view_texts(self)
        self.csv = csv_button(self)
        row.children += (links.link_box(self), self.csv)
        self.wide_figures = {id(f) for w in _walk(self.widget) if "curvlab-wide" in w._dom_classes
                     for f in _walk(w)}          # the figures that take a whole row
        for fig in self.figures():
            fig.layout.margin.t = max(fig.layout.margin.t or 0, SUBTITLE_MARGIN)
            fig.layout.title.subtitle.font.size = 11
            fig.title_room = PANEL_ROOM * (2 if id(fig) in self.wide_figures else 1)
        self.label_figures()
        self.sync_figures()

    def presentation_toggle(self):
        """A 'presentation' toggle: every figure's fonts, lines and markers twice as large and
        its height ×1.5, one figure to a row (so each plot area grows), and the controls, status
        lines and tables enlarged (for a projector); and back."""
        toggle = W.ToggleButton(value=False, description="presentation",
                                tooltip="larger text, lines and plots",
                                layout=W.Layout(width="130px"))

        def scale(change):
            on = change["new"]
            # the page re-flows the panels first, then the figures redraw larger, and then
            # every plot fits its (now whole-row) panel
            (self.widget.add_class if on else self.widget.remove_class)("curvlab-present")
            for fig in self.figures():
                # every figure has the whole row: its title may be as wide (figure.fitted_title)
                fig.title_room = PANEL_ROOM * (2 if on or id(fig) in self.wide_figures else 1)
                present(fig, on)
                if fig.layout.height:
                    fig.layout.height = round(fig.layout.height * (PRESENT_HEIGHT if on
                                                                   else 1 / PRESENT_HEIGHT))
                fig.layout.title.subtitle.font.size = 22 if on else 11
            self.resize.nudge()
        toggle.observe(scale, names="value")
        self.presentation = toggle
        self.resize = ResizeNudge()
        return W.HBox([toggle, self.resize])

    def numbers_csv(self):
        """Every plotted number and table, as CSV text (`export`)."""
        return numbers_csv(self)

    def caption(self, fig):
        return lessons.caption(self, fig)

    def panel_label(self, fig):
        return lessons.panel_label(self, fig)
