"""Loss landscape: 1-D and 2-D slices through w along chosen directions, with the quadratic
model of each curvature matrix on the same slice and its fit error."""

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

import curvlab as cl

from .base import Dashboard, guarded
from .figure import FigureWidget
from .lessons import Lesson
from .marks import clip_note, set_note
from .menus import kind_color, kind_dash, kind_menu
from .widgets import STYLE, panels, with_hint

CLIPPED = "clipped"         # the 1-D plot's note on models that leave the loss's range
FIT_TABLE = "fit to the loss"

DIRECTIONS = ["random", "filter", "eigen", "ggn_eigen", "gradient", "layer"]
SURFACE_EYE = dict(x=1.7, y=1.7, z=1.1)


class LandscapeDashboard(Dashboard):
    title = "Loss landscape and quadratic models"

    CAPTIONS = {
        "line_fig":
            "The loss L(w + a·d1) along the direction d1 (black), and each chosen matrix C's "
            "quadratic model L(w) + a·gᵀd1 + ½a²·d1ᵀC d1 (each kind in its own colour and line "
            "style). All models share the gradient term, so they agree at a = 0 to first order; "
            "where a model's curve leaves the black one, that matrix stops describing the loss "
            "along d1. The table gives each model's RMS gap along d1 (and, with d2 set, on the "
            "plane) and its curvature d1ᵀC d1. The axis spans the loss's range and half as much "
            "again each way; a model beyond it is clipped, and the note says so.",
        "contour_fig":
            "The loss on the plane w + a·d1 + b·d2 (filled contours, 25 levels) and the quadratic "
            "model chosen under 'overlay' (dashed, at every other level of the loss). Matching "
            "contours mean the matrix captures the curvature in this plane.",
        "surface_fig":
            "The same plane as two surfaces: the loss (colour) and the overlaid model (red, "
            "translucent). Drag to rotate, scroll to zoom.",
    }
    TRY_THIS = [
        Lesson("Set d1 = gradient and widen the span to 3: the models agree with the loss near "
               "a = 0 and part ways further out; the table's 1-D column says which stays closest.",
               "d1=gradient&d2=none&span=3"),
        Lesson("With activation relu at initialisation and d1 = layer W2, the Hessian's and the "
               "GGN's curves coincide (for a piecewise-linear net each layer's diagonal block of H "
               "equals the GGN's). Set d1 = filter and layer = all, across every layer, and they "
               "part: their d1ᵀC d1 in the table differ.",
               "activation=relu&state=initialisation&d1=layer&layer=W2&d2=none&models=hessian,ggn"),
        Lesson("Move state from initialisation to trained: as the residuals shrink, the GGN's "
               "curvature along d1 (the table's d1ᵀC d1) comes closer to the Hessian's.",
               "state=initialisation&d2=none&models=hessian,ggn"),
        Lesson("K-FAC's Monte-Carlo estimate (one sampled label per input) against KFLR, its exact "
               "(type-2) counterpart: here K-FAC's model strays further from the loss — a larger "
               "fit error in the table.", "models=ggn,kflr,kfac&d2=none"),
        Lesson("Data digits with hidden conv: the same slices for a small convolutional net, where "
               "KFLR is KFC (Grosse & Martens) — its curve parts from the exact GGN's, which it "
               "approximates.", "data=digits&hidden=conv&d2=none&models=ggn,kflr"),
    ]

    def __init__(self, **picker):
        super().__init__(**picker)
        # every registered kind with a quadratic model to draw, read now (not at import)
        self.kind_names = kind_menu()
        st = STYLE

        def menu(options, value, description, width):
            return W.Dropdown(options=options, value=value, description=description, style=st,
                              layout=W.Layout(width=width))
        self.d1 = menu(DIRECTIONS, "filter", "d1", "170px")
        self.d2 = menu(["none"] + DIRECTIONS, "filter", "d2", "170px")
        self.layer = menu([("all", -1)], -1, "layer", "150px")
        self.seed = W.BoundedIntText(value=0, min=0, max=10_000, description="seed", style=st,
                                     layout=W.Layout(width="150px"))
        self.span = W.FloatSlider(value=1.0, min=0.05, max=5.0, step=0.05, description="span",
                                  continuous_update=False, style=st)
        self.n = W.IntSlider(value=31, min=5, max=61, step=2, description="points",
                             continuous_update=False, style=st)
        self.models = W.SelectMultiple(options=self.kind_names, value=("hessian", "ggn", "kflr"),
                                       description="models", rows=7, style=st,
                                       layout=W.Layout(width="200px"))
        self.view = W.ToggleButtons(options=["contour", "surface"], value="contour",
                                    description="view", style=st)
        self.shown = menu(self.kind_names, "hessian", "overlay", "200px")
        self.fit = W.HTML()

        lay = dict(height=420, margin=dict(l=50, r=10, t=40, b=40))
        self.line_fig = FigureWidget(
            data=[go.Scatter(x=np.zeros(0), y=np.zeros(0), name="loss",
                             line=dict(color="black", width=3))]
            + [go.Scatter(x=np.zeros(0), y=np.zeros(0), name=m, visible=False,
                          line=dict(color=kind_color(m), dash=kind_dash(m)))
               for m in self.kind_names],
            layout=go.Layout(title="1-D slice along d1", xaxis_title="a (w + a d1)",
                             yaxis_title="loss", **dict(lay, height=360)))
        self.contour_fig = FigureWidget(
            data=[go.Contour(z=np.zeros((2, 2)), name="loss", colorscale="Viridis", ncontours=25,
                             colorbar=dict(title="loss")),
                  go.Contour(z=np.zeros((2, 2)), name="model", showscale=False, ncontours=25,
                             contours=dict(coloring="lines"), line=dict(width=1.5, dash="dash"),
                             colorscale=[[0, "white"], [1, "white"]])],
            layout=go.Layout(title="2-D slice: loss (filled) and model (dashed)",
                             xaxis_title="a (d1)", yaxis_title="b (d2)", **lay))
        self.surface_fig = FigureWidget(
            data=[go.Surface(z=np.zeros((2, 2)), name="loss", colorscale="Viridis",
                             showscale=False),
                  go.Surface(z=np.zeros((2, 2)), name="model", colorscale="Reds", opacity=0.55,
                             showscale=False)],
            # the camera a little further out than plotly's default, so the box with its axis
            # titles fits the panel when rotated
            layout=go.Layout(title="2-D slice: surfaces", height=460,
                             margin=dict(l=0, r=0, t=40, b=10),
                             scene=dict(xaxis_title="a", yaxis_title="b", zaxis_title="loss",
                                        aspectmode="cube",
                                        camera=dict(eye=SURFACE_EYE, center=dict(x=0, y=0,
                                                                                 z=-0.1)))))

        self.picker.observe(self._on_problem)
        for c in (self.d1, self.d2, self.layer, self.seed, self.span, self.n, self.models):
            c.observe(self._on_slice, names="value")
        self.view.observe(self._on_view, names="value")
        self.shown.observe(self._on_view, names="value")

        controls = W.VBox([self.picker.widget,
                           W.HBox([self.d1, self.d2, self.layer, self.seed]),
                           W.HBox([self.span, self.n]),
                           W.HBox([with_hint(self.models),
                                   W.VBox([self.view, self.shown, self.fit])])])
        self.plane_box = W.Box([self.contour_fig])
        self.widget = W.VBox([self.header(), controls, self.status.widget,
                              panels(self.line_fig, self.plane_box)])
        self._on_problem()
        self.finish()

    # ---- computations (cached by their inputs) --------------------------------------------
    def _problem(self):
        return self.picker.get()

    def _direction(self, which):
        kind = self.d1.value if which == 1 else self.d2.value
        layer = None if self.layer.value < 0 else self.layer.value
        if kind == "layer" and layer is None:
            raise ValueError("the 'layer' direction needs a layer: pick one in the layer menu")
        key = (self.picker.value, kind, layer, self.seed.value + which)

        def make():
            problem, w = self._problem()
            return cl.landscape.direction(problem, w, kind, seed=self.seed.value + which,
                                          index=which - 1 if kind in ("eigen", "ggn_eigen") else 0,
                                          layer=layer)
        return key, self.cache.get(("dir",) + key, make)

    def _grids(self):
        problem, w = self._problem()
        k1, d1 = self._direction(1)
        two_d = self.d2.value != "none"
        k2, d2 = self._direction(2) if two_d else (None, None)
        span, n = self.span.value, self.n.value
        out = {"a": np.linspace(-span, span, n), "two_d": two_d}
        out["Z1"] = self.cache.get(("grid1", k1, span, n),
                                   lambda: cl.landscape.grid(problem, w, d1, span=span, n=n))
        out["Q1"] = {m: self.cache.get(("q1", k1, m, span, n), lambda m=m: cl.landscape.quadratic(
                         problem, w, d1, kind=m, span=span, n=n))
                     for m in self.models.value}
        if two_d:
            out["Z2"] = self.cache.get(("grid2", k1, k2, span, n),
                                       lambda: cl.landscape.grid(problem, w, d1, d2, span=span,
                                                                 n=n))
            out["Q2"] = {m: self.cache.get(("q2", k1, k2, m, span, n),
                                           lambda m=m: cl.landscape.quadratic(
                                               problem, w, d1, d2, kind=m, span=span, n=n))
                         for m in self.models.value}
        return out

    # ---- callbacks -------------------------------------------------------------------------
    @guarded
    def _on_problem(self, change=None):
        with self.status.busy("building the problem (training once, then cached)"):
            problem, _ = self._problem()
        L = len(problem.model.layers)
        opts = [("all", -1)] + [(f"W{l + 1}", l) for l in range(L)]
        if list(self.layer.options) != opts:
            self.layer.options = opts
            self.layer.value = -1
        self._on_slice()

    @guarded
    def _on_slice(self, change=None):
        with self.status.busy("computing the slice and the quadratic models"):
            g = self._grids()
        self._draw(g)
        self.status.info(f"{'2-D' if g['two_d'] else '1-D'} slice, {len(g['a'])} points per axis, "
                         f"{self.status.seconds:.2f} s")

    @guarded
    def _on_view(self, change=None):
        self._draw(self._grids())   # all cached: only the view changes

    def fit_rows(self, g):
        """[(model, RMS gap along d1, RMS gap on the plane or nan, d1ᵀC d1)] for the drawn grids
        (the curvature from the model's curve: Q(a) + Q(−a) − 2Q(0) = a²·d1ᵀC d1)."""
        a, mid = g["a"], len(g["a"]) // 2
        rows = []
        for m, Q in g["Q1"].items():
            plane = cl.landscape.fit_error(g["Z2"], g["Q2"][m]) if g["two_d"] else np.nan
            curv = (Q[0] + Q[-1] - 2 * Q[mid]) / a[-1] ** 2
            rows.append((m, cl.landscape.fit_error(g["Z1"], Q), plane, float(curv)))
        return rows

    def _fit_table(self, g):
        rows = self.fit_rows(g)
        header = ["model", "RMS along d1"] + ["RMS on the plane"] * g["two_d"] + ["d1ᵀC d1"]
        shown = [(m, one, *([two] if g["two_d"] else []), c) for m, one, two, c in rows]
        best = min(rows, key=lambda r: r[1])[0] if rows else None
        note = (f"<div style='color:#555'>closest along d1: <b>{best}</b></div>" if best else "")
        self.show_table(self.fit, FIT_TABLE, header, shown, note=note)

    def _clip(self, g):
        """The 1-D plot's y axis: the loss's range and half of it again each way; a note on the
        models beyond it."""
        Z = g["Z1"]
        lo, hi = float(np.min(Z)), float(np.max(Z))
        pad = 0.5 * (hi - lo) if hi > lo else max(abs(hi), 1e-3)
        lo, hi = lo - pad, hi + pad
        self.line_fig.layout.yaxis.range = [lo, hi]
        set_note(self.line_fig, CLIPPED, clip_note(g["Q1"], lo, hi))

    def _draw(self, g):
        a = g["a"]
        with self.line_fig.batch_update():          # the curves, their axis and its note at once
            self.line_fig.data[0].x, self.line_fig.data[0].y = a, g["Z1"]
            for tr, m in zip(self.line_fig.data[1:], self.kind_names):
                # (inside batch_update, reading tr.visible gives the old value)
                shown = m in g["Q1"]
                tr.visible = shown
                if shown:
                    tr.x, tr.y = a, g["Q1"][m]
            self._clip(g)
        self._fit_table(g)
        self.shown.options = list(g["Q1"]) or ["(none)"]
        if not g["two_d"]:
            self.plane_box.layout.display = "none"
            return
        self.plane_box.layout.display = None
        shown = self.shown.value if self.shown.value in g.get("Q2", {}) else None
        Zq = g["Q2"][shown] if shown else np.full_like(g["Z2"], np.nan)
        if self.view.value == "contour":
            self.plane_box.children = [self.contour_fig]
            lo, hi = float(np.min(g["Z2"])), float(np.percentile(g["Z2"], 95))
            with self.contour_fig.batch_update():
                # the model's dashed lines at every other level of the loss's 25 (aligned with
                # them): as dense as the filled levels, they hid the loss
                for tr, Z, every in zip(self.contour_fig.data, (g["Z2"], Zq), (1, 2)):
                    tr.x, tr.y, tr.z = a, a, Z.T          # plotly: z[row=y][col=x]
                    tr.contours.start, tr.contours.end = lo, hi
                    tr.contours.size = every * (hi - lo) / 25 if hi > lo else 1.0
                    tr.autocontour = False
                self.contour_fig.data[1].name = shown or "model"
        else:
            self.plane_box.children = [self.surface_fig]
            with self.surface_fig.batch_update():
                for tr, Z in zip(self.surface_fig.data, (g["Z2"], Zq)):
                    tr.x, tr.y, tr.z = a, a, Z.T
                self.surface_fig.data[1].name = shown or "model"
