"""What every dashboard shares: the problem picker, the training-state cache, a status line
with progress, a result cache, and the guard that turns exceptions into messages."""

import contextlib
import functools
import html
import os
import re
import sys
import time
import traceback

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import traitlets

import curvlab as cl

# --- figures ----------------------------------------------------------------------------------
#
# plotly's FigureWidget is an anywidget whose front-end module (~5 MB: all of plotly.js) is sent
# and evaluated once per figure. With several figures on a Voila page the later ones often never
# receive an update: their plots freeze while the app keeps computing (reproduced with plain
# go.FigureWidget and five scatter plots: the 4th and 5th stayed frozen in most page loads).
# Here only one figure per kernel carries plotly.js; it publishes the widget definition on the
# page, and every other figure's module is a few lines that wait for it. The bundle is also
# patched so that each view listens through its own model handle.

_GLOBAL = "globalThis.__curvlabPlotlyWidget"
_SLOT = f"({_GLOBAL} ??= (() => {{ let r; const p = new Promise(x => r = x); return {{p, r}}; }})())"


def _plotly_bundle(src=None):
    """plotly's widget bundle, patched; None, with a warning, when this plotly's bundle is not
    the one curvlab adapts (then FigureWidget is plotly's own, with its several-figure freeze)."""
    import pathlib
    import warnings

    import plotly
    if src is None:
        src = (pathlib.Path(plotly.__file__).parent / "package_data" / "widgetbundle.js").read_text()
    render = "render({el:ne}){let ge=new MD(Q,ne);return ge.perform_render(),()=>ge.remove()}"
    exports = "export{TD as FigureModel,MD as FigureView,j4t as default};"
    relayout = "ge._doNotReportToPy=!0,Md.default.relayout(this.el,ne.relayout_data)"
    reported = 'handle_plotly_relayout(ne){if(ne!=null&&!ne.hasOwnProperty("_doNotReportToPy")'
    if src.count(render) != 1 or src.count(exports) != 1:
        warnings.warn(f"curvlab.dashboards: the widget bundle of plotly {plotly.__version__} is not the one "
                      "curvlab adapts (plotly 7.1); using plotly's own FigureWidget, whose later figures "
                      "may stop updating on a Voila page with several of them. Install curvlab's "
                      "pinned plotly (pip install 'plotly>=7.1,<7.2').", RuntimeWarning, stacklevel=2)
        return None
    # Each view listens through its own model handle; and it follows its element's size (plotly's
    # widget only listens to the window, and not at all when rendered as an anywidget): a figure
    # without a fixed width fills its panel, whatever the page's width (see `panels`).
    # (Only a drawn, displayed plot whose width changed: plotly refuses to resize a hidden one, and
    # the observer also fires on first sight and on height changes.)
    src = src.replace(render, "render({model:mm,el:ne}){let sh=Object.create(Q);sh.on=(...a)=>mm.on(...a);"
                              "sh.off=(...a)=>mm.off(...a);let ge=new MD(sh,ne);ge.perform_render();"
                              "let tm,ro=new ResizeObserver(()=>{clearTimeout(tm);tm=setTimeout(()=>"
                              "{if(ne._fullLayout&&ne.offsetParent!==null&&ne.clientWidth>0&&"
                              "Math.abs(ne.clientWidth-ne._fullLayout.width)>1)ge.autosizeFigure()},50)});"
                              "ro.observe(ne);return ()=>{ro.disconnect();clearTimeout(tm);ge.remove()}}")
    # A layout change from Python (our marks are shapes) reaches plotly.js with a flag, so that the
    # view does not report it back; but plotly takes the unknown key as a reason to redraw the
    # whole plot (~50 ms with contours) instead of the shapes alone (~2 ms). Count Python's
    # relayouts in flight instead, and report none while one is. (A speed-up only: a bundle without
    # these two places keeps plotly's own way.)
    if src.count(relayout) == 1 and src.count(reported) == 1:
        src = src.replace(relayout, "this.__fromPy=(this.__fromPy||0)+1;try{Md.default.relayout(this.el,"
                                    "ne.relayout_data).finally(()=>{this.__fromPy--})}catch(e){this.__fromPy--;throw e}")
        src = src.replace(reported, reported + "&&!(this.__fromPy>0)")
    return src.replace(exports, exports + f"\n{_SLOT}.r(j4t);\n")


_PATCHED = _plotly_bundle()       # the patched bundle's text, or None (plotly's own widget then)
_FULL_ESM = _PATCHED
_SMALL_ESM = f"const factory = await {_SLOT}.p;\nexport default factory;\n"
STATIC_BUNDLE = "_static/plotly-widget.js"
if _FULL_ESM is not None and os.environ.get("CURVLAB_STATIC_PLOTLY") == "1":
    # ./run apps writes the bundle beside the apps (write_static_bundle) and lets Voila serve it:
    # the browser fetches (and caches) it from /voila/files/ next to the page, instead of the
    # kernel sending 5 MB through the widget channel on every visit (~0.5 s of a first render).
    _FULL_ESM = ("const here = new URL(location.href).pathname.replace('/voila/render/', '/voila/files/');\n"
                 f"const m = await import(new URL(here.replace(/[^/]*$/, '') + {STATIC_BUNDLE!r}, location.origin).href);\n"
                 "export default m.default;\n")


def write_static_bundle(folder):
    """Write the patched plotly widget bundle to folder/_static (for CURVLAB_STATIC_PLOTLY=1)."""
    import pathlib
    import tempfile
    src = _PATCHED
    if src is None:
        return False
    target = pathlib.Path(folder) / STATIC_BUNDLE
    target.parent.mkdir(exist_ok=True)
    if not target.exists() or target.read_text() != src:
        with tempfile.NamedTemporaryFile("w", dir=target.parent, delete=False, suffix=".tmp") as f:
            f.write(src)
        pathlib.Path(f.name).replace(target)                  # atomic: servers may be reading it
    return True


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


# plotly's FigureWidget imports plotly.io's renderers -> nbformat -> jsonschema, whose format
# checkers import rfc3987_syntax, which compiles a grammar at import: 2.5 s of every app kernel's
# start (a pool of 30 fills that much slower), for IRI validation no kernel asks for. jsonschema
# skips that checker when the module is missing; later imports of rfc3987_syntax work as usual.
with _unavailable("rfc3987_syntax"):
    _PlotlyFigureWidget = go.FigureWidget


# Plain or exponent numbers on every axis and colour bar (1e-06, not plotly's SI "1µ", which
# students read as a unit): a template on top of plotly's default, for every curvlab figure.
# And tick labels that would overflow the figure are drawn, not hidden: plotly's check measures
# every label on every redraw (~10 ms of a 20-50 ms redraw in the browser).
_AXIS = dict(exponentformat="e", ticklabeloverflow="allow")
TEMPLATE = go.layout.Template(
    layout=dict(xaxis=_AXIS, yaxis=_AXIS, scene={a: dict(exponentformat="e") for a in ("xaxis", "yaxis", "zaxis")}),
    data=dict(**{kind: [dict(colorbar=dict(exponentformat="e"))] for kind in ("contour", "heatmap", "surface")}))


@functools.lru_cache(maxsize=None)
def _merged_template(default):
    """plotly's default template (named `default`) with TEMPLATE laid over it; built once per
    name, since templates are slow to validate."""
    import plotly.io as pio
    merged = go.layout.Template(pio.templates[default] if default else None)
    merged.update(TEMPLATE)
    return merged


def _all_nan(values):
    """True when every value is NaN (False for text values)."""
    try:
        return bool(np.all(np.isnan(np.asarray(values, dtype=float))))
    except (TypeError, ValueError):          # text (category) values
        return False


def slug(text):
    """Lower-case ASCII words of `text` joined by '-' (file names, link names)."""
    return "-".join(re.findall(r"[a-z0-9]+", text.lower()))


EXPORT_WIDTH = 1600       # pixels of a saved figure: wide enough for a slide
NOMINAL_WIDTH = 640       # a panel's width on a laptop: a saved figure keeps its aspect ratio
PRESENTATION_FONT = 24    # plotly's default is 12


def _py_to_js(v, widget_manager):
    """plotly's serializer to the page, except that a 2-D float array (a heatmap's or contour's z)
    travels as binary float32 rows, which the widget turns into typed arrays plotly.js draws
    directly, instead of as a JSON list of lists: 4 bytes a number, not ~19 characters, and no
    text to write in the kernel or parse in the browser (3 heatmaps of 99 × 99: 155 KB → 119 KB
    binary, the encoding 6× faster). Plot data only: the figure in Python keeps float64, the page
    gets 7 significant digits (and inf beyond 3.4e38, drawn as a gap)."""
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
    """Trait metadata for a plotly data trait: synced with plotly's serializers, `extra` laid over."""
    from plotly.serializers import custom_serializers
    return dict(sync=True, **{**custom_serializers, **extra})


class FigureWidget(_PlotlyFigureWidget):
    """plotly's FigureWidget, sharing one copy of plotly.js per page (see above), with curvlab's
    axis template laid over plotly's default, and 2-D plot data sent as binary float32."""

    _carrier = None     # weak reference to the live figure that carries plotly.js
    # the traits that carry plot data to the page, with the binary 2-D serializer
    _widget_data = traitlets.List().tag(**_tags(to_json=_py_to_js))
    _py2js_addTraces = traitlets.Dict(allow_none=True).tag(**_tags(to_json=_py_to_js))
    _py2js_restyle = traitlets.Dict(allow_none=True).tag(**_tags(to_json=_py_to_js))
    _py2js_update = traitlets.Dict(allow_none=True).tag(**_tags(to_json=_py_to_js))
    # the traits the page sets (plotly's report of each redraw to Python, up to ~14 KB each), not
    # echoed back by ipywidgets: the page would have to take each in while it draws the next figure
    _js2py_traceDeltas = traitlets.Dict(allow_none=True).tag(**_tags(echo_update=False))
    _js2py_layoutDelta = traitlets.Dict(allow_none=True).tag(**_tags(echo_update=False))
    _js2py_restyle = traitlets.Dict(allow_none=True).tag(**_tags(echo_update=False))
    _js2py_relayout = traitlets.Dict(allow_none=True).tag(**_tags(echo_update=False))
    _js2py_update = traitlets.Dict(allow_none=True).tag(**_tags(echo_update=False))
    _js2py_pointsCallback = traitlets.Dict(allow_none=True).tag(**_tags(echo_update=False))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.layout.template.layout.xaxis.exponentformat is None:     # not set by the caller
            import plotly.io as pio
            self.layout.template = _merged_template(pio.templates.default)
        # the mode bar's camera saves a PNG at slide resolution (plotly.js renders it in the page)
        w, h = self.layout.width or NOMINAL_WIDTH, self.layout.height or 450
        title = (self.layout.title.text or "figure") if self.layout.title else "figure"
        # (and no "share chart" button: it would send the data to an outside service)
        self._config = {**self._config, "displaylogo": False, "showSendToCloud": False,
                        "showEditInChartStudio": False, "modeBarButtonsToRemove": ["sendDataToCloud"],
                        "toImageButtonOptions": dict(
            format="png", width=EXPORT_WIDTH, height=round(EXPORT_WIDTH * h / w), scale=1,
            filename="curvlab-" + ("-".join(slug(title).split("-")[:6]) or "figure"))}
        if _FULL_ESM is None:                              # unadapted plotly: its own module
            return
        carrier = FigureWidget._carrier() if FigureWidget._carrier is not None else None
        if carrier is None or carrier.comm is None:       # none yet, or it was closed
            self._esm = _FULL_ESM
            FigureWidget._carrier = __import__("weakref").ref(self)
        else:
            self._esm = _SMALL_ESM


# --- responsive panels ---------------------------------------------------------------------------
# Figures have no fixed width: each sits in a panel of a wrapping row, half the row on a laptop
# (two columns), the whole row on a narrow window or column, and plotly fills its panel (the
# ResizeObserver patched into the widget above). "Narrow" is the row's own width (a container
# query: a notebook column beside a sidebar) or the window's. The rules come with each dashboard
# (`finish`), so they hold in a notebook as in Voila. Each panel contains its own layout and
# paint: plotly measures text as it draws, and each measurement would otherwise lay out the whole
# page (~15 % of a redraw).
PANEL_CSS = """<style>
.curvlab-panels { display: flex; flex-flow: row wrap; gap: 6px; width: 100%; align-items: flex-start; }
.curvlab-panels > .curvlab-panel { flex: 0 1 calc(50% - 3px); min-width: 0; box-sizing: border-box;
                                   contain: layout paint; }
.curvlab-panels > .curvlab-panel.curvlab-wide { flex-basis: 100%; }
.curvlab-panel > * { width: 100%; }
@media (max-width: 900px) { .curvlab-panels > .curvlab-panel { flex-basis: 100%; } }
.curvlab-panels { container-type: inline-size; }
@container (max-width: 860px) { .curvlab-panels > .curvlab-panel { flex-basis: 100%; } }
</style>"""


def panels(*items, wide=False):
    """A row of figure panels (figures, or boxes holding one), two to a row on a laptop and one
    on a narrow window; `wide=True` gives each item the whole row."""
    for item in items:
        item.add_class("curvlab-panel")
        if wide:
            item.add_class("curvlab-wide")
    return W.HBox(list(items)).add_class("curvlab-panels")


# --- one colour per curvature kind, the same in every app ----------------------------------------
# Okabe & Ito's colour-blind-safe set first, then Paul Tol's muted set for the rest.
KIND_COLORS = {
    "hessian": "#D55E00", "ggn": "#0072B2", "fisher": "#56B4E9", "kfac": "#E69F00", "kflr": "#009E73",
    "kfra": "#CC79A7", "empirical_fisher": "#999999", "diagonal": "#882255", "ekfac": "#117733",
    "kfoc": "#332288", "tnt": "#44AA99", "shampoo": "#AA4499", "unitwise": "#DDCC77",
    "diag_hessian": "#661100", "diag_ggn_mc": "#6699CC", "mc_fisher": "#88CCEE", "yours": "#000000",
}


# Where a figure has a second y axis on the right, its legend goes under the plot: on the right
# it covered that axis's labels.
LEGEND_BELOW = dict(orientation="h", x=0, y=-0.2, yanchor="top")


def kind_menu(exclude=("mc_fisher",)):
    """The registered curvature kinds for a menu, in KIND_COLORS' order (new kinds last)."""
    names = [k for k in KIND_COLORS if k in cl.KINDS] + [k for k in cl.KINDS if k not in KIND_COLORS]
    return [k for k in names if k not in exclude]


def kind_color(kind):
    return KIND_COLORS.get(kind, "#444444")


# --- problems --------------------------------------------------------------------------------

DATASETS = {
    # name: (loader, kind) — kind 'class' (integer labels), 'regression', 'image' (autoencoder)
    "spirals": (lambda: cl.datasets.spirals(n=150, classes=3, seed=0), "class"),
    "moons": (lambda: cl.datasets.moons(n=150, seed=0), "class"),
    "xor": (lambda: cl.datasets.xor(n=120, seed=0), "class"),
    "regression1d": (lambda: cl.datasets.regression1d(n=80, seed=0), "regression"),
    "digits": (lambda: cl.datasets.digits(n=200, seed=0), "class"),          # 8×8 images, flattened
    "curves": (lambda: cl.datasets.curves(n=120, size=8, seed=0), "image"),
}
# hidden layers of an MLP, or "conv": Conv(1→4, 3×3, pad 1) → MaxPool 2 → Flatten → Dense (8×8 images)
ARCHITECTURES = {"8": [8], "16": [16], "8-8": [8, 8], "4-4-4": [4, 4, 4], "conv": "conv"}
ACTIVATIONS = ["tanh", "sigmoid", "relu", "softplus", "identity"]
LOSSES = ["cross_entropy", "bce", "mse"]
STATES = {"initialisation": 0, "part-trained": 40, "trained": 400}


def _targets(dataset, loss, X, y):
    """Targets for the chosen loss, or a ValueError that says which combination to pick."""
    kind = DATASETS[dataset][1]
    if kind == "regression":
        if loss != "mse":
            raise ValueError(f"{dataset} has real-valued targets: pick the mse loss, not {loss}")
        return y, y.shape[1]
    if kind == "image":
        if loss == "cross_entropy":
            raise ValueError(f"{dataset} is an autoencoder task (targets are pixels): pick mse or bce")
        return X, X.shape[1]
    classes = int(y.max()) + 1
    if loss == "cross_entropy":
        return y, classes
    if loss == "bce" and classes == 2:
        return y[:, None].astype(float), 1
    return np.eye(classes)[y], classes          # one-hot targets for mse / multi-output bce


def make_model(dataset, arch, n_in, K, activation):
    """The picker's model: an MLP with the chosen hidden layers, or the small conv net on 8×8
    images (the digits' and curves' pixels, as one-channel images)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {list(ARCHITECTURES)}")
    if ARCHITECTURES[arch] != "conv":
        return cl.MLP([n_in] + ARCHITECTURES[arch] + [K], activation=activation)
    if n_in != 64:
        raise ValueError(f"the conv architecture takes 8×8 images; {dataset} has {n_in} features "
                         "per sample: pick digits or curves")
    return cl.Sequential([cl.Conv2d(1, 4, 3, padding=1, activation=activation), cl.MaxPool2d(2),
                          cl.Flatten(), cl.Dense(64, K)], input_shape=(1, 8, 8))


@functools.lru_cache(maxsize=64)
def problem_and_point(dataset, arch, activation, loss, state):
    """(Problem, w) for a picker setting; training (Adam, full batch) is done once and cached."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown data set {dataset!r}")
    X, y = DATASETS[dataset][0]()
    T, K = _targets(dataset, loss, X, y)
    model = make_model(dataset, arch, X.shape[1], K, activation)
    problem = cl.Problem(model, loss, X.reshape((len(X),) + model.input_shape), T)
    w = model.init(seed=0)
    steps = STATES[state]
    if steps:
        w = cl.optim.minimize(problem, w, "adam", steps=steps, lr=0.02).ws[-1]
    return problem, w


# Widget label width shared by every dashboard's controls.
STYLE = {"description_width": "70px"}


class ProblemPicker:
    """Data set, architecture, activation, loss and training state; `.value` is the key.

    Or your own problem instead of the built-in ones: `problem=` a `cl.Problem` (or `model=`,
    `X=`, `y=` and `loss=`, from which one is built) and optionally `w=` (default: the model's
    `init(seed=0)`); the picker then shows what it holds and offers no choices."""

    def __init__(self, dataset="spirals", arch="8", activation="tanh", loss="cross_entropy",
                 state="part-trained", problem=None, w=None, model=None, X=None, y=None):
        self.own = _own_problem(problem, w, model, X, y, loss)
        if self.own is not None:
            p, w = self.own
            self.controls = []
            self.widget = W.HTML(f"<b>your problem</b>: {html.escape(_describe(p))}, P = {w.size:,} parameters")
            return
        lay = W.Layout(width="170px")
        style = STYLE
        self.dataset = W.Dropdown(options=list(DATASETS), value=dataset, description="data", layout=lay, style=style)
        self.arch = W.Dropdown(options=list(ARCHITECTURES), value=arch, description="hidden", layout=lay, style=style)
        self.activation = W.Dropdown(options=ACTIVATIONS, value=activation, description="activation", layout=lay, style=style)
        self.loss = W.Dropdown(options=LOSSES, value=loss, description="loss", layout=W.Layout(width="200px"),
                               style=style)                 # wide enough for 'cross_entropy
        self.state = W.Dropdown(options=list(STATES), value=state, description="state", layout=W.Layout(width="220px"), style=style)
        self.controls = [self.dataset, self.arch, self.activation, self.loss, self.state]
        self.widget = W.HBox(self.controls, layout=W.Layout(flex_flow="row wrap"))

    @property
    def value(self):
        if self.own is not None:            # one fixed problem: its identity is the cache key
            return ("your problem", id(self.own[0]))
        return tuple(c.value for c in self.controls)

    def observe(self, fn):
        for c in self.controls:
            c.observe(fn, names="value")

    def get(self):
        return self.own if self.own is not None else problem_and_point(*self.value)


def _own_problem(problem, w, model, X, y, loss):
    """(Problem, w) from a user's problem or (model, X, y, loss); None when none is given."""
    from .._checks import flat_vector
    from ..problem import Problem
    if problem is None and model is None:
        if w is not None or X is not None or y is not None:
            raise ValueError("w, X and y go with your own problem: pass problem=cl.Problem(...) "
                             "(or model=, X=, y= and loss=)")
        return None
    if problem is not None and (model is not None or X is not None or y is not None):
        raise ValueError("pass either problem= or model= with X=, y= and loss=, not both: a Problem "
                         "holds its own model and data")
    if model is not None:
        if X is None or y is None:
            raise ValueError("model= needs X= and y= (and loss=, default cross_entropy)")
        problem = Problem(model, loss, X, y)
    if not isinstance(problem, Problem):
        raise TypeError(f"problem= takes a cl.Problem, not {type(problem).__name__}; build one with "
                        "cl.Problem(model, loss, X, y)")
    if w is None:
        return problem, problem.model.init(seed=0)
    w = flat_vector("w", w, problem.n_params)
    if w.ndim != 1:
        raise ValueError(f"w must be one flat vector of {problem.n_params} weights, got shape {w.shape}")
    return problem, w


def _describe(problem):
    model = problem.model
    layers = getattr(model, "layers", None)           # a layered net; else (units) the model says
    net = " → ".join(type(layer).__name__ for layer in layers) if layers is not None else repr(model)
    return f"{net}, {problem.lossfn.name} loss, {problem.N} samples"


# --- status, progress and errors ---------------------------------------------------------------

class Status:
    """A one-line message area and a progress bar shown while something slow runs.

    Every change of a widget is one message to the page, which the page handles before it draws
    what comes after: a quick callback sends only the "working" line and its result, and the bar
    appears only for work counted in several steps."""

    def __init__(self):
        self.html = W.HTML(value="").add_class("curvlab-status")
        self.bar = W.IntProgress(min=0, max=1, value=0, layout=W.Layout(width="200px", visibility="hidden"))
        self.widget = W.HBox([self.bar, self.html])
        self.error = None
        self.seconds = 0.0

    def info(self, text):
        self.error = None
        self.html.value = f"<span style='color:#555'>{html.escape(text)}</span>"

    def fail(self, exc):
        self.error = f"{type(exc).__name__}: {exc}"
        self.html.value = f"<span style='color:#b00020'>&#9888; {html.escape(self.error)}</span>"

    def busy(self, what, total=1):
        """Context manager: show `what` (and, when total > 1, a progress bar); `step()` advances it."""
        status = self

        class _Busy:
            def __enter__(self):
                if total > 1:
                    with status.bar.hold_sync():                 # one message for the bar
                        status.bar.max, status.bar.value = int(total), 0
                    status.bar.layout.visibility = "visible"
                status.html.value = f"<span style='color:#555'>&#8987; {html.escape(what)}&hellip;</span>"
                self.t0 = time.perf_counter()
                return self

            def step(self, n=1):
                if total > 1:
                    status.bar.value = min(status.bar.value + n, status.bar.max)

            def __exit__(self, *exc):
                if total > 1:
                    status.bar.layout.visibility = "hidden"
                status.seconds = time.perf_counter() - self.t0
                if exc[0] is None:
                    status.info(f"{what}: {status.seconds:.2f} s")
                return False
        return _Busy()


PLACEHOLDER, STALE = "curvlab-placeholder", "curvlab-stale"


def overlay(fig, text, name):
    """Veil figure `fig` with a translucent sheet and a centred note (a placeholder saying what to
    press, or a mark that the plot is not current); `name` tags them for `clear_overlay`."""
    clear_overlay(fig, name)
    with fig.batch_update():
        fig.add_shape(type="rect", xref="paper", yref="paper", x0=0, x1=1, y0=0, y1=1, layer="above",
                      fillcolor="rgba(255,255,255,0.8)", line=dict(width=0), name=name)
        fig.add_annotation(text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                           font=dict(size=14, color="#5c4400"), bgcolor="#fff3cd", name=name)


def clear_overlay(fig, name):
    if any(s.name == name for s in fig.layout.shapes) or any(a.name == name for a in fig.layout.annotations):
        with fig.batch_update():
            fig.layout.shapes = [s for s in fig.layout.shapes if s.name != name]
            fig.layout.annotations = [a for a in fig.layout.annotations if a.name != name]


def set_marks(fig, name, shapes, labels=None):
    """Draw `shapes` as figure `fig`'s marks called `name` (a step, a value on an axis), replacing
    the previous ones and keeping every other shape (the overlays' veils, drawn above them); with
    `labels`, shape i is called "name: labels[i]" (a method's, a curve's mark). Marks are layout
    shapes because plotly redraws shapes alone, in a few ms, where a changed trace redraws the
    whole plot, contours included (~60 ms in the browser). In presentation mode (the figure's
    font at PRESENTATION_FONT) they are drawn twice as large, as the traces are."""
    labels = [None] * len(shapes) if labels is None else list(labels)
    factor = 2.0 if fig.layout.font.size == PRESENTATION_FONT else 1.0
    new = [_scaled(dict(s, name=name if label is None else f"{name}: {label}"), factor)
           for s, label in zip(shapes, labels)]
    fig.layout.shapes = new + [s for s in fig.layout.shapes if not _is_mark(s, name)]


def _is_mark(shape, name=None):
    """Whether `shape` is a mark called `name` (or "name: label"); with no name, any mark (a named
    shape that is not an overlay's veil)."""
    if name is None:
        return shape.name not in (None, PLACEHOLDER, STALE)
    return shape.name == name or (shape.name or "").startswith(name + ": ")


def marks(fig, name):
    """The shapes of `fig`'s marks called `name` (and "name: label")."""
    return [s for s in fig.layout.shapes if _is_mark(s, name)]


def mark_points(fig, name):
    """{label (or name): (x, y)} of `fig`'s marks called `name`: a disc's or cross's centre, a
    line's far end."""
    out = {}
    for s in marks(fig, name):
        key = s.name.split(": ", 1)[1] if ": " in s.name else s.name
        out.setdefault(key, (s.xanchor, s.yanchor) if s.xsizemode == "pixel" else (s.x1, s.y1))
    return out


def _scaled(shape, factor):
    """A mark's dict with its pixel sizes (a pixel-sized shape's extent or path) and its line
    width multiplied by `factor`."""
    import copy
    shape = copy.deepcopy(shape)
    if factor == 1.0:
        return shape
    for axis in "xy":
        if shape.get(f"{axis}sizemode") == "pixel":
            for end in (f"{axis}0", f"{axis}1"):
                if shape.get(end) is not None:
                    shape[end] *= factor
    if shape.get("path") and shape.get("xsizemode") == "pixel":
        shape["path"] = re.sub(r"-?\d+(?:\.\d+)?", lambda m: f"{float(m.group()) * factor:g}", shape["path"])
    line = shape.setdefault("line", {})
    line["width"] = (line.get("width") or 2) * factor
    return shape


def disc(x, y, color, radius=6):
    """A disc of `radius` pixels, outlined in black, centred at the data point (x, y)."""
    return dict(type="circle", xref="x", yref="y", xsizemode="pixel", ysizemode="pixel", xanchor=float(x),
                yanchor=float(y), x0=-radius, x1=radius, y0=-radius, y1=radius, fillcolor=color,
                line=dict(color="black", width=1.5))


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
    """A small HTML table; floats formatted with `fmt`."""
    def cell(v):
        return fmt.format(v) if isinstance(v, (float, np.floating)) else html.escape(str(v))
    head = "".join(f"<th style='padding:2px 8px'>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td style='padding:2px 8px;text-align:right'>{cell(v)}</td>" for v in r)
                   + "</tr>" for r in rows)
    return f"<table style='border-collapse:collapse;font-size:90%'><tr>{head}</tr>{body}</table>"


def log_slider(description, value, lo, hi, step=0.1):
    return W.FloatLogSlider(value=value, base=10, min=lo, max=hi, step=step, description=description,
                            continuous_update=False, readout_format=".1e",
                            style=STYLE, layout=W.Layout(width="380px"))


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
        """Copy every FigureWidget's current data and layout into its synced widget state.

        Since plotly 6 a FigureWidget sends later changes as one-off messages, which a view that
        does not exist yet never receives (plotly.py issue 4998): the first draw, done before the
        dashboard is displayed, would be lost. Called by `finish()`, at the end of each
        dashboard's __init__, and after a link has set the view.
        """
        import copy
        for fig in self.figures():
            fig._widget_data = copy.deepcopy(fig._data)
            fig._widget_layout = copy.deepcopy(fig._layout_obj._props)

    def header(self):
        return W.HTML(f"<h3 style='margin:4px 0'>{html.escape(self.title)}</h3>")

    def named_figures(self):
        """{attribute name: FigureWidget} of this dashboard, in definition order."""
        return {k: f for k, f in vars(self).items() if isinstance(f, go.FigureWidget)}

    def figures(self):
        return list(self.named_figures().values())

    def apply_query(self, qs):
        """Set the view from a URL query string (`links` module); a list of problems, shown."""
        from .links import apply_query
        return apply_query(self, qs)

    def link(self):
        """The query string of the current view (every view control)."""
        from .links import link
        return link(self)

    def finish(self):
        """Add the 'link to this view' and 'numbers as CSV' row and the explanations under the
        dashboard, and sync the figures' first draw; each dashboard calls this at the end of
        __init__."""
        from .links import link_box
        row = W.HBox([self.presentation_toggle()], layout=W.Layout(flex_flow="row wrap"))
        self.widget.children += (row, self.explanation(), W.HTML(PANEL_CSS))
        self.widget.layout.width = "100%"
        row.children += (link_box(self), self.csv_box())    # after every control is on the page:
        self.sync_figures()                                  # the link's defaults include them all

    def presentation_toggle(self):
        """A 'presentation' toggle: every figure's fonts, lines and markers twice as large (for a
        projector), and back."""
        toggle = W.ToggleButton(value=False, description="presentation", tooltip="fonts and lines ×2",
                                layout=W.Layout(width="130px"))

        def scale(change):
            factor = 2.0 if change["new"] else 0.5
            for fig in self.figures():
                with fig.batch_update():
                    fig.layout.font.size = PRESENTATION_FONT if change["new"] else None
                    fig.layout.title.font.size = int(PRESENTATION_FONT * 1.2) if change["new"] else None
                    for t in fig.data:
                        line, marker = getattr(t, "line", None), getattr(t, "marker", None)
                        if line is not None and "width" in line:
                            line.width = (line.width or 2) * factor
                        if marker is not None and "size" in marker and np.ndim(marker.size) == 0:
                            marker.size = (marker.size or 6) * factor
                    if any(_is_mark(sh) for sh in fig.layout.shapes):      # the marks (set_marks) too
                        fig.layout.shapes = [_scaled(sh.to_plotly_json(), factor) if _is_mark(sh) else sh
                                             for sh in fig.layout.shapes]
        toggle.observe(scale, names="value")
        self.presentation = toggle
        return toggle

    def numbers_csv(self):
        """Every plotted number, as CSV text in long form: panel, trace, point index, x, y, z (a
        grid's z row by row, with its x and y); marks (`set_marks`) by their name, with their
        points (a line's two ends, a disc's centre; y empty for a line across the plot)."""
        import csv
        import io
        out = io.StringIO()
        rows = csv.writer(out, lineterminator="\n")
        rows.writerow(["panel", "trace", "i", "x", "y", "z"])
        for name, fig in self.named_figures().items():
            panel = fig.layout.title.text or name
            for t in fig.data:
                if t.visible is False:
                    continue
                z = getattr(t, "z", None)
                if z is not None and np.ndim(z) == 2:
                    Z = np.asarray(z, dtype=float)
                    xs = np.arange(Z.shape[1]) if t.x is None else np.asarray(t.x)
                    ys = np.arange(Z.shape[0]) if t.y is None else np.asarray(t.y)
                    for i, (r, c) in enumerate(np.ndindex(*Z.shape)):
                        rows.writerow([panel, t.name, i, xs[c], ys[r], repr(float(Z[r, c]))])
                    continue
                x, y = getattr(t, "x", None), getattr(t, "y", None)
                if y is None:
                    continue
                if _all_nan(y):                                          # a legend entry only
                    continue
                x = np.arange(len(y)) if x is None else x
                for i, (a, b) in enumerate(zip(x, y)):
                    rows.writerow([panel, t.name, i, a, b, ""])
            count = {}                          # points per mark name, numbered on across its shapes
            for mark in filter(_is_mark, fig.layout.shapes):
                if mark.xsizemode == "pixel":
                    points = [(mark.xanchor, mark.yanchor)]
                else:
                    points = [(mark.x0, mark.y0), (mark.x1, mark.y1)]
                    points = points[:1] if points[0] == points[1] or mark.yref == "paper" else points
                for a, b in points:
                    i = count[mark.name] = count.get(mark.name, -1) + 1
                    rows.writerow([panel, mark.name, i, a, "" if mark.yref == "paper" else b, ""])
        return out.getvalue()

    def csv_box(self):
        """A 'numbers as CSV' button and the download link it makes from the current results."""
        import base64
        button = W.Button(description="numbers as CSV", layout=W.Layout(width="150px"))
        out = W.HTML()

        def write(_=None):
            data = base64.b64encode(self.numbers_csv().encode()).decode()
            name = "curvlab-" + slug(type(self).__name__.lower().removesuffix("dashboard"))
            out.value = (f"<a download=\"{name}.csv\" href=\"data:text/csv;base64,{data}\">{name}.csv</a> "
                         f"<span style='color:#555'>({len(data) * 3 // 4:,} bytes)</span>")
        button.on_click(write)
        return W.HBox([button, out])

    # What each panel shows (keyed by the figure's attribute name) and a few guided experiments:
    # data beside each dashboard's code, so a test can check every figure has its caption.
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
        return W.HTML("<div style='max-width:1100px;line-height:1.4'>"
                      f"<details open><summary style='cursor:pointer'><b>What you see</b></summary>{rows}</details>"
                      f"<details><summary style='cursor:pointer'><b>Try this</b></summary><ol>{steps}</ol></details>"
                      "</div>")
