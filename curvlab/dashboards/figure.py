"""curvlab's plotly FigureWidget: the one module that reaches into plotly's private parts.

It shares one copy of plotly.js per page (the patched bundle, `bundle`), lays curvlab's axis
template over plotly's default, sends 2-D plot data as binary float32, saves PNGs at slide
width, and (`sync`) copies a figure's current state into its synced widget state.
"""

import copy
import functools
import importlib
import importlib.util
import sys
import weakref

import numpy as np
import plotly.graph_objects as go
import traitlets

from . import bundle
from .widgets import slug

EXPORT_WIDTH = 1600       # pixels of a saved figure: wide enough for a slide
EXPORT_SCALE = 2          # drawn at half that width and scaled up: fonts twice as large
NOMINAL_WIDTH = 640       # a panel's width on a laptop: a saved figure keeps its aspect ratio
PRESENTATION_FONT = 24    # plotly's default is 12
# Where a figure has a second y axis on the right, its legend goes under the plot: on the right
# it covered that axis's labels.
LEGEND_BELOW = dict(orientation="h", x=0, y=-0.2, yanchor="top")


PINNED_PLOTLY = "7.1."    # the plotly release whose module imports `_plotly_widget_class` adapts


class _OnDemand:
    """Stands for module `name` until it is used: any attribute imports it (and is the module's);
    truthy when it is installed, as the module itself would be."""

    def __init__(self, name):
        self._name = name

    def __bool__(self):
        return importlib.util.find_spec(self._name) is not None

    def __getattr__(self, attr):
        return getattr(importlib.import_module(self._name), attr)


def _plotly_widget_class():
    """plotly's FigureWidget class, imported without nbformat.

    The class's module imports plotly.io._renderers, which imports nbformat at its own import
    (`optional_imports.get_module`) for `fig.show()` alone, which no curvlab figure calls; and
    nbformat imports jsonschema with its format checkers (~7 MB and ~0.5 s in every app kernel;
    with rfc3987_syntax, which compiles a grammar at import, +15 MB and +2.5 s). So, with the
    plotly curvlab pins and nbformat not loaded yet, that import sees nbformat as missing, and
    plotly's name for it then becomes `_OnDemand("nbformat")`: `fig.show()` imports it when it
    checks nbformat's version, as plotly would have at start. Another plotly: imported as is.
    Checked in tests/dashboards/test_kernel_imports.py."""
    import plotly
    if (not plotly.__version__.startswith(PINNED_PLOTLY) or "nbformat" in sys.modules
            or "plotly.io._renderers" in sys.modules):
        return go.FigureWidget
    from _plotly_utils import optional_imports
    sys.modules["nbformat"] = None          # import_module("nbformat") raises ImportError
    try:
        widget = go.FigureWidget
    finally:
        del sys.modules["nbformat"]
    from plotly.io import _renderers
    optional_imports._not_importable.discard("nbformat")     # plotly remembers the failure
    if _renderers.nbformat is None:
        _renderers.nbformat = _OnDemand("nbformat")
    return widget


_PlotlyFigureWidget = _plotly_widget_class()


# Plain or exponent numbers on every axis and colour bar (1e-06, not plotly's SI "1µ", which
# students read as a unit): a template on top of plotly's default, for every curvlab figure.
# And tick labels that would overflow the figure are drawn, not hidden: plotly's check measures
# every label on every redraw (~10 ms of a 20-50 ms redraw in the browser).
_AXIS = dict(exponentformat="e", ticklabeloverflow="allow")
TEMPLATE = go.layout.Template(
    layout=dict(xaxis=_AXIS, yaxis=_AXIS,
                scene={a: dict(exponentformat="e") for a in ("xaxis", "yaxis", "zaxis")}),
    data={kind: [dict(colorbar=dict(exponentformat="e"))]
          for kind in ("contour", "heatmap", "surface")})


@functools.lru_cache(maxsize=None)
def _merged_template(default):
    """plotly's default template (named `default`) with TEMPLATE laid over it; built once per
    name, since templates are slow to validate."""
    import plotly.io as pio
    merged = go.layout.Template(pio.templates[default] if default else None)
    merged.update(TEMPLATE)
    return merged


def _py_to_js(v, widget_manager):
    """plotly's serializer to the page, except that a 2-D float array (a heatmap's or contour's
    z) travels as binary float32 rows, which the widget turns into typed arrays plotly.js draws
    directly, instead of as a JSON list of lists: 4 bytes a number, not ~19 characters, and no
    text to write in the kernel or parse in the browser (3 heatmaps of 99 × 99: 155 KB → 119 KB
    binary, the encoding 6× faster). Plot data only: the figure in Python keeps float64, the
    page gets 7 significant digits (and inf beyond 3.4e38, drawn as a gap)."""
    from plotly.serializers import _py_to_js as plotly_py_to_js
    if isinstance(v, np.ndarray) and v.ndim == 2 and v.dtype.kind == "f":
        rows = np.ascontiguousarray(v, dtype=np.float32)
        return [{"buffer": memoryview(r), "dtype": "float32", "shape": r.shape} for r in rows]
    if isinstance(v, dict):
        return {k: _py_to_js(x, widget_manager) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_py_to_js(x, widget_manager) for x in v]
    return plotly_py_to_js(v, widget_manager)


def _tags(**extra):
    """Trait metadata for a plotly data trait: synced with plotly's serializers, `extra` laid
    over."""
    from plotly.serializers import custom_serializers
    return dict(sync=True, **{**custom_serializers, **extra})


def _binary():
    return traitlets.Dict(allow_none=True).tag(**_tags(to_json=_py_to_js))


# ---- titles that fit their panel ---------------------------------------------------------------
# plotly.js draws a title on one line, however narrow the figure: beside JupyterLab's file
# browser a panel is ~480 px and a 60-character title was cut. So what the page gets (never the
# figure in Python: its titles stay plain text for the CSV, the captions and the tests) has the
# title and the settings line (subtitle) broken into lines of about equal length that fit the
# figure's `title_room`, and a top margin grown by the lines added.
PANEL_ROOM = 400      # px for a title in the narrowest half-row panel (a row below 860 px is one
#                       column: widgets.PANEL_CSS), less plotly's 5 % indent; a whole row: twice
GLYPH = 0.45          # mean width of a title character over the font size (Open Sans; measured:
#                       61 characters at 16.8 px take 456 px)
LINE = 1.3            # a text line's height over the font size


def wrap(text, limit):
    """`text` broken at spaces into lines of about equal length, joined by '<br>': as few lines
    as lines of at most `limit` characters need (a longer word gets a line of its own). Breaks
    already in `text` count as spaces."""
    words = text.replace("<br>", " ").split()
    flat = " ".join(words)
    if len(flat) <= limit or len(words) < 2:
        return flat
    for n in range(-(-len(flat) // int(limit)), len(words) + 1):
        for width in range(-(-len(flat) // n), int(limit) + 1):    # the narrowest that fits
            lines = _greedy(words, width)
            if len(lines) <= n:
                return "<br>".join(lines)
    return "<br>".join(words)


def _greedy(words, width):
    lines = [words[0]]
    for w in words[1:]:
        if len(lines[-1]) + 1 + len(w) <= width:
            lines[-1] += " " + w
        else:
            lines.append(w)
    return lines


def fitted_title(fig):
    """(title, subtitle, top margin) as the page draws them for figure `fig`: its title and
    subtitle wrapped to `fig.title_room` pixels in their fonts' sizes, the top margin grown by
    twice the height of the lines added (plotly.js centres the first line in the margin and
    hangs the rest below it). A figure of fixed height grows by as much (`_grown_height`), so
    its plot area keeps its size."""
    lay = fig.layout
    size = lay.title.font.size or 1.4 * (lay.font.size or 12)     # plotly.js's defaults
    sub_size = lay.title.subtitle.font.size or (lay.font.size or 12)
    room = getattr(fig, "title_room", PANEL_ROOM)
    title = wrap(lay.title.text or "", room / (GLYPH * size))
    sub = wrap(lay.title.subtitle.text or "", room / (GLYPH * sub_size))
    added = LINE * (size * title.count("<br>") + sub_size * sub.count("<br>"))
    top = lay.margin.t
    if added:
        top = round((top if top is not None else 100) + 2 * added)   # plotly's default: 100
    return title, sub, top


def _grown_height(fig, top):
    """The figure's height grown by what the fitted top margin adds (None: no fixed height)."""
    lay = fig.layout
    if not lay.height or top is None:
        return None
    base = lay.margin.t if lay.margin.t is not None else 100
    return lay.height + max(0, top - base)


def _fit_layout(layout, fig):
    """A copy of layout properties `layout` (the figure's whole layout) with the fitted title,
    subtitle, top margin and height."""
    title, sub, top = fitted_title(fig)
    out = dict(layout)
    height = _grown_height(fig, top)
    if height is not None:
        out["height"] = height
    if title or "title" in out:
        out["title"] = {**(out.get("title") or {}), "text": title}
        if sub:
            out["title"]["subtitle"] = {**out["title"].get("subtitle", {}), "text": sub}
    if top is not None:
        out["margin"] = {**(out.get("margin") or {}), "t": top}
    return out


# Titles fitted to their panel (a switch for tests and for a front end that fits its own). Their
# taller margins change figures' heights from Python, which plotly.js's relayout turns into a
# pinned width; the view patch unpins it (curvlab_jupyter.plotly_widget, "view").
FIT_TITLES = True


def _fit_edit(edit, fig):
    """A copy of layout edit `edit` ({property path: value}, as plotly.js's relayout takes it)
    followed by the fitted title, subtitle, top margin and height when it touches any of what
    they depend on (title, margin, fonts, height)."""
    if not FIT_TITLES or not edit or not any(
            k.split(".")[0] in ("title", "margin", "font", "height") for k in edit):
        return edit
    title, sub, top = fitted_title(fig)
    out = {**edit, "title.text": title}
    height = _grown_height(fig, top)
    if height is not None:
        out["height"] = height
    if sub:
        out["title.subtitle.text"] = sub
    if top is not None:
        out["margin.t"] = top
    return out


def _layout_to_js(layout, fig):
    fit = FIT_TITLES and fig is not None and layout
    return _py_to_js(_fit_layout(layout, fig) if fit else layout, fig)


def _message_to_js(msg, fig):
    """A relayout or update message with its layout edit fitted (`_fit_edit`)."""
    if msg and fig is not None:
        msg = {k: _fit_edit(v, fig) if k in ("relayout_data", "layout_data") else v
               for k, v in msg.items()}
    return _py_to_js(msg, fig)


def _not_echoed():
    return traitlets.Dict(allow_none=True).tag(**_tags(echo_update=False))


class FigureWidget(_PlotlyFigureWidget):
    """plotly's FigureWidget, sharing one copy of plotly.js per page (`bundle`), with curvlab's
    axis template laid over plotly's default, and 2-D plot data sent as binary float32."""

    _carrier = None     # weak reference to the live figure that carries plotly.js
    # the traits that carry plot data to the page, with the binary 2-D serializer
    _widget_data = traitlets.List().tag(**_tags(to_json=_py_to_js))
    _py2js_addTraces = _binary()
    _py2js_restyle = _binary()
    # the traits that carry the layout, with titles fitted to the panel (`fitted_title`)
    _widget_layout = traitlets.Dict().tag(**_tags(to_json=_layout_to_js))
    _py2js_relayout = traitlets.Dict(allow_none=True).tag(**_tags(to_json=_message_to_js))
    _py2js_update = traitlets.Dict(allow_none=True).tag(**_tags(to_json=_message_to_js))
    title_room = PANEL_ROOM     # px the title may take (Dashboard.finish: twice on a whole row)
    # the traits the page sets (plotly's report of each redraw to Python, up to ~14 KB each),
    # not echoed back by ipywidgets: the page would have to take each in while it draws the
    # next figure
    _js2py_traceDeltas = _not_echoed()
    _js2py_layoutDelta = _not_echoed()
    _js2py_restyle = _not_echoed()
    _js2py_relayout = _not_echoed()
    _js2py_update = _not_echoed()
    _js2py_pointsCallback = _not_echoed()

    def __init__(self, *args, **kwargs):
        self._choose_module()
        super().__init__(*args, **kwargs)
        if self.layout.template.layout.xaxis.exponentformat is None:     # not set by the caller
            import plotly.io as pio
            self.layout.template = _merged_template(pio.templates.default)
        # the mode bar's camera saves a PNG at slide resolution, laid out at half that width and
        # scaled ×2, so its text is presentation-sized (plotly.js renders it in the page; the
        # title's second line holds the settings: Dashboard.label_figures); and no "share
        # chart" button: it would send the data to an outside service
        w, h = self.layout.width or NOMINAL_WIDTH, self.layout.height or 450
        title = (self.layout.title.text or "figure") if self.layout.title else "figure"
        name = "curvlab-" + ("-".join(slug(title).split("-")[:6]) or "figure")
        self._config = {**self._config, "displaylogo": False, "showSendToCloud": False,
                        "showEditInChartStudio": False,
                        "modeBarButtonsToRemove": ["sendDataToCloud"],
                        "toImageButtonOptions": dict(
                            format="png", width=EXPORT_WIDTH // EXPORT_SCALE,
                            height=round(EXPORT_WIDTH // EXPORT_SCALE * h / w),
                            scale=EXPORT_SCALE, filename=name)}

    def _choose_module(self):
        """This figure's front-end module (`bundle`), chosen before its widget opens: anywidget
        reads `_esm` from the instance for the comm's first message, and plotly's class sets it
        to its whole bundle (which JupyterLab then received once per figure, 5 MB each, before a
        later switch sent the module again). The kernel's first live figure gets FULL_ESM, every
        other one SMALL_ESM (in "server" mode both are the loader); unadapted plotly: its own."""
        if bundle.FULL_ESM is None:
            self._esm = _PlotlyFigureWidget._esm
            return
        carrier = FigureWidget._carrier() if FigureWidget._carrier is not None else None
        if carrier is None or carrier.comm is None:         # none yet, or it was closed
            self._esm = bundle.FULL_ESM
            FigureWidget._carrier = weakref.ref(self)
        else:
            self._esm = bundle.SMALL_ESM

    def get_state(self, key=None, drop_defaults=False):
        """The widget's state, with the figure's current data and layout as `_widget_data`
        and `_widget_layout`.

        plotly sets those two traits when the widget opens and when it is displayed, and sends
        every later change as a one-off message (`_py2js_restyle`, …) that only the views open
        at that moment apply. A page that builds its views from the kernel's state afterwards
        — JupyterLab reopening or reloading a notebook whose kernel runs asks every widget for
        `get_state()` — would draw the figure as first displayed beside controls that show the
        current settings; then setting a control back to that first value would draw what the
        page already shows. So the two traits are refreshed from the figure (a deep copy of
        its data and layout: O(size of the plot data)) whenever the state is read, without a
        message of their own."""
        wanted = _MIRRORED if key is None else {key} if isinstance(key, str) else set(key)
        if getattr(self, "_layout_obj", None) is not None and not _MIRRORED.isdisjoint(wanted):
            # straight into traitlets' storage: assigning would send both to the page again
            self._trait_values["_widget_data"] = copy.deepcopy(self._data)
            self._trait_values["_widget_layout"] = copy.deepcopy(self._layout_obj._props)
        return super().get_state(key, drop_defaults)


# the traits a view draws a figure from when it opens
_MIRRORED = frozenset({"_widget_data", "_widget_layout"})


def sync(fig):
    """Send a FigureWidget's current data and layout to the page as its widget state (one
    message).

    Since plotly 6 a FigureWidget sends later changes as one-off messages, which a view that
    does not exist yet never receives (plotly.py issue 4998): a draw done before the figure is
    displayed would be lost. (A page that asks for the state itself, as JupyterLab does when a
    notebook is reopened, gets the current figure anyway: `FigureWidget.get_state`.)"""
    fig.send_state(list(_MIRRORED))
