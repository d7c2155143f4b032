"""curvlab's plotly FigureWidget: the one module that reaches into plotly's private parts.

It shares one copy of plotly.js per page (the patched bundle, `bundle`), lays curvlab's axis
template over plotly's default, sends 2-D plot data as binary float32, saves PNGs at slide
width, and (`sync`) copies a figure's current state into its synced widget state.
"""

import contextlib
import copy
import functools
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


@contextlib.contextmanager
def _unavailable(name):
    """Imports inside see module `name` as missing (ImportError), unless it is loaded already."""
    if name in sys.modules:
        yield
        return
    sys.modules[name] = None
    try:
        yield
    finally:
        if sys.modules.get(name, 0) is None:
            del sys.modules[name]


# Needed (checked in tests/dashboards: test_importing_the_dashboards_skips_jsonschemas_grammar_
# compiler): plotly's FigureWidget imports plotly.io's renderers -> nbformat -> jsonschema,
# whose format checkers import rfc3987_syntax, which compiles a grammar at import: 2.5 s of
# every app kernel's start (a pool of 30 fills that much slower), for IRI validation no kernel
# asks for. jsonschema skips that checker when the module is missing; later imports of
# rfc3987_syntax work as usual.
with _unavailable("rfc3987_syntax"):
    _PlotlyFigureWidget = go.FigureWidget


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
    _py2js_update = _binary()
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
        if bundle.FULL_ESM is None:                         # unadapted plotly: its own module
            return
        carrier = FigureWidget._carrier() if FigureWidget._carrier is not None else None
        if carrier is None or carrier.comm is None:         # none yet, or it was closed
            self._esm = bundle.FULL_ESM
            FigureWidget._carrier = weakref.ref(self)
        else:
            self._esm = bundle.SMALL_ESM


def sync(fig):
    """Copy a FigureWidget's current data and layout into its synced widget state.

    Since plotly 6 a FigureWidget sends later changes as one-off messages, which a view that
    does not exist yet never receives (plotly.py issue 4998): a draw done before the figure is
    displayed would be lost."""
    fig._widget_data = copy.deepcopy(fig._data)
    fig._widget_layout = copy.deepcopy(fig._layout_obj._props)
