"""Damping: a slider moving through (C + ηI)⁻¹ — the filtered spectrum, the angles of the damped
step with the gradient and the Newton step, predicted vs actual decrease, the step on a 2-D slice
of the loss — and Levenberg–Marquardt adaptation replayed step by step."""

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

import curvlab as cl
from curvlab.curvature import registry

from .base import Dashboard, guarded
from .figure import LEGEND_BELOW, FigureWidget
from .marks import PLACEHOLDER, clear_overlay, disc, mark_points, overlay, set_marks
from .menus import kind_menu
from .widgets import STYLE, log_slider, panels

STEP_AT_ETA = "step at η"
ETAS = np.logspace(-6, 2, 81)


def _vline(x):
    return dict(type="line", xref="x", yref="paper", x0=x, x1=x, y0=0, y1=1,
                line=dict(color="gray", dash="dot"))


def lm_settings(kind):
    """The LM replay's settings for `kind`'s optimiser: a Kronecker-factored kind steps with
    this step's factors (no moving average) and the exact damped inverse, as C + ηI is in the
    other panels."""
    return {"ema": 0.0, "tikhonov": False} if registry.get(kind).structure == "kronecker" else {}


def lm_method(kind, problem, w):
    """The `cl.optim` method that replays Levenberg–Marquardt with `kind`'s curvature: the
    kind's own optimiser (the registry's `optimizer`), if its settings take adapt_damping
    (newton's and diagonal's do not); else None."""
    method = registry.get(kind).optimizer
    if method is None:
        return None
    try:                                    # (no step taken: only the settings are checked)
        cl.optim.minimize(problem, w, method, steps=0, adapt_damping=True, **lm_settings(kind))
    except TypeError:
        return None
    return method


class DampingDashboard(Dashboard):
    title = "Damping: from Newton to gradient descent"

    CAPTIONS = {
        "filter_fig":
            "For each eigenpair (ν, u) of the chosen matrix C, the damped step −(C + ηI)⁻¹g scales "
            "the gradient's component along u by 1/(ν + η), i.e. ν/(ν + η) times Newton's: 1 where "
            "ν ≫ η (Newton-like), 0 where ν ≪ η (gradient-like, scaled by 1/η).",
        "angle_fig":
            "Cosines between the damped step and −g, and between it and the undamped (Newton) "
            "step, as η varies: damping interpolates between the two directions.",
        "decrease_fig":
            "The decrease L(w) − L(w + p) the quadratic model predicts for the damped step p, and "
            "the decrease the loss really shows, against η. Their ratio ρ is what "
            "Levenberg–Marquardt watches.",
        "plane_fig":
            "The loss on the plane spanned by −g and the Newton step; the white curve is the "
            "damped step for every η (from the gradient direction at large η to Newton's step at η "
            "→ 0), red is the step at the slider's η, orange the replayed Levenberg–Marquardt "
            "path.",
        "lm_fig":
            "A Levenberg–Marquardt run: η per step (log axis, left) and ρ = actual / predicted "
            "decrease (right). η falls when ρ is near 1 (the model is trusted) and rises when ρ is "
            "small.",
    }
    TRY_THIS = [
        "Move η from 1e2 down to 1e-6 and watch the red step on the plane turn from −g towards the "
        "Newton step.",
        "At large η, compare the filter factors: every direction is damped alike, which is "
        "gradient descent with step 1/η.",
        "Find the η where 'predicted' and 'actual' decrease part: below it the quadratic model is "
        "no longer trusted over the step's length.",
        "Pick matrix hessian at state initialisation: where it has negative eigenvalues, a small η "
        "leaves C + ηI indefinite and the step can point uphill; with the GGN it cannot.",
        "Run Levenberg–Marquardt and replay it with 'replay k': η adapts to ρ step by step.",
    ]

    def __init__(self, **picker):
        super().__init__(**picker)
        st = STYLE
        kinds = kind_menu()                     # the registered kinds, read now (not at import)
        self.kind = W.Dropdown(options=["ggn"] + [k for k in kinds if k != "ggn"], value="ggn",
                               description="matrix", style=st, layout=W.Layout(width="190px"))
        self.eta = log_slider("damping η", 1e-2, -6, 2, step=0.1)
        self.lm_steps = W.IntSlider(value=15, min=2, max=40, description="LM steps",
                                    continuous_update=False, style=st)
        self.lm_k = W.IntSlider(value=0, min=0, max=14, description="replay k", style=st)
        self.lm_run = W.Button(description="run Levenberg–Marquardt",
                               layout=W.Layout(width="230px"))
        self.readout = W.HTML()

        lay = dict(height=320, margin=dict(l=55, r=10, t=40, b=40))
        none = dict(x=np.zeros(0), y=np.zeros(0))
        self.filter_fig = FigureWidget(
            data=[go.Scatter(**none, mode="markers", name="ν/(ν+η)")],
            layout=go.Layout(title="filter factor per eigendirection (1: Newton-like)",
                             xaxis=dict(title="eigenvalue ν", type="log"),
                             yaxis=dict(title="ν/(ν+η)", range=[-0.05, 1.05]), **lay))
        self.angle_fig = FigureWidget(
            data=[go.Scatter(x=ETAS, y=np.zeros_like(ETAS), name="cos(step, −g)"),
                  go.Scatter(x=ETAS, y=np.zeros_like(ETAS), name="cos(step, Newton)")],
            layout=go.Layout(title="angle of the damped step", xaxis=dict(title="η", type="log"),
                             yaxis=dict(title="cosine", range=[-1.05, 1.05]), **lay))
        self.decrease_fig = FigureWidget(
            data=[go.Scatter(x=ETAS, y=np.zeros_like(ETAS), name="predicted"),
                  go.Scatter(x=ETAS, y=np.zeros_like(ETAS), name="actual")],
            layout=go.Layout(title="decrease of the loss: model vs truth",
                             xaxis=dict(title="η", type="log"), yaxis=dict(title="L(w) − L(w+p)"),
                             **lay))
        self.plane_fig = FigureWidget(
            data=[go.Contour(z=np.zeros((2, 2)), colorscale="Viridis", ncontours=30,
                             showscale=False, name="loss"),
                  go.Scatter(**none, mode="lines", name="steps for all η",
                             line=dict(color="white")),
                  # the step at η is drawn as marks (set_marks); this trace only names it in
                  # the legend
                  go.Scatter(x=np.full(1, np.nan), y=np.full(1, np.nan), mode="lines+markers",
                             name=STEP_AT_ETA, line=dict(color="red", width=3),
                             marker=dict(size=10)),
                  go.Scatter(**none, mode="lines+markers", name="LM path",
                             line=dict(color="orange"), marker=dict(size=5))],
            layout=go.Layout(title="the step on the plane of −g and the Newton step",
                             xaxis_title="along −g", yaxis_title="⊥, towards Newton", **lay))
        self.lm_fig = FigureWidget(
            data=[go.Scatter(**none, name="η_k", mode="lines+markers"),
                  go.Scatter(**none, name="ρ_k", mode="lines+markers", yaxis="y2")],
            layout=go.Layout(title="Levenberg–Marquardt replay", xaxis_title="step k",
                             yaxis=dict(title="η", type="log"),
                             yaxis2=dict(title="ρ", overlaying="y", side="right",
                                         range=[-0.5, 1.5], type="linear", tickmode="auto",
                                         nticks=5, showgrid=False),
                             legend=LEGEND_BELOW, **lay))

        self.lm_for = None
        overlay(self.lm_fig, "press “run Levenberg–Marquardt” to fill this panel", PLACEHOLDER)
        self.picker.observe(self._on_problem)
        self.kind.observe(self._on_problem, names="value")
        self.eta.observe(self._on_eta, names="value")
        self.lm_run.on_click(lambda b: self._on_lm())
        self.lm_k.observe(self._on_lm_k, names="value")
        controls = W.VBox([self.picker.widget, W.HBox([self.kind, self.eta]),
                           W.HBox([self.lm_run, self.lm_steps, self.lm_k]), self.readout])
        self.widget = W.VBox([self.header(), controls, self.status.widget,
                              panels(self.filter_fig, self.angle_fig, self.decrease_fig,
                                     self.plane_fig),
                              panels(self.lm_fig, wide=True)])
        self._on_problem()
        self.finish()

    # the math at w, once per (problem, kind) ---------------------------------------------------
    def _state(self):
        key = (self.picker.value, self.kind.value)

        def make():
            problem, w = self.picker.get()
            C = cl.matrix(problem, w, self.kind.value)
            curves = cl.damping.decrease_vs_damping(problem, w, etas=ETAS, C=C)
            steps, newton = curves["steps"], curves["steps"][:, 0]
            d1 = -problem.grad(w)
            d1 /= np.linalg.norm(d1)
            d2 = newton - (newton @ d1) * d1
            d2 = d2 / np.linalg.norm(d2) if np.linalg.norm(d2) > 1e-12 * np.linalg.norm(newton) \
                else cl.landscape.direction(problem, w, "random", seed=1)
            coords = np.stack([d1 @ steps, d2 @ steps])
            # frame the steps of moderate damping; nearly undamped steps may shoot far away
            moderate = ETAS >= 1e-3
            span = float(np.clip(1.2 * np.abs(coords[:, moderate]).max(), 1e-3, 10.0))
            Z = cl.landscape.grid(problem, w, d1, d2, span=span, n=41)
            # ν from C's own (cached) factorisation, which its solves use too
            return dict(problem=problem, w=w, C=C, nu=C.eigvalsh(), pred=curves["predicted"],
                        actual=curves["actual"], d1=d1, d2=d2, coords=coords, span=span, Z=Z,
                        cos_g=curves["cos_gradient"], cos_n=curves["cos_newton"])
        return self.cache.get(("state",) + key, make)

    @guarded
    def _on_problem(self, change=None):
        if self.lm_for is not None and self.lm_for != (self.picker.value, self.kind.value):
            overlay(self.lm_fig, "run for other settings: press “run Levenberg–Marquardt”",
                    PLACEHOLDER)
        with self.status.busy(f"eigendecomposition of the {self.kind.value} and the loss plane"):
            s = self._state()
        a = np.linspace(-s["span"], s["span"], 41)
        with self.angle_fig.batch_update():
            self.angle_fig.data[0].y, self.angle_fig.data[1].y = s["cos_g"], s["cos_n"]
        with self.decrease_fig.batch_update():
            self.decrease_fig.data[0].y, self.decrease_fig.data[1].y = s["pred"], s["actual"]
            # the interesting range is the model's promise; a far worse actual loss runs off-chart
            top = 1.2 * max(np.max(s["pred"]), np.max(s["actual"]), 1e-12)
            self.decrease_fig.layout.yaxis.range = [-top, top]
        with self.plane_fig.batch_update():
            c = self.plane_fig.data[0]
            c.x, c.y, c.z = a, a, s["Z"].T
            self.plane_fig.layout.xaxis.range = [-s["span"], s["span"]]
            self.plane_fig.layout.yaxis.range = [-s["span"], s["span"]]
            self.plane_fig.data[1].x, self.plane_fig.data[1].y = s["coords"][0], s["coords"][1]
            self.plane_fig.data[3].x, self.plane_fig.data[3].y = np.zeros(0), np.zeros(0)
        self._on_eta()

    @guarded
    def _on_eta(self, change=None):
        """View only: the step from the cached curvature object's factorisation."""
        s = self._state()
        eta = self.eta.value
        step = cl.damping.damped_step(s["problem"], s["w"], damping=eta, C=s["C"])
        nu = s["nu"]
        shown = np.abs(nu) > 1e-14 * np.abs(nu).max()
        with self.filter_fig.batch_update():
            self.filter_fig.data[0].x = np.abs(nu[shown])
            self.filter_fig.data[0].y = (nu / (nu + eta))[shown]
            self.filter_fig.data[0].marker.color = np.where(nu[shown] < 0, "crimson", "steelblue")
        for fig in (self.angle_fig, self.decrease_fig):
            set_marks(fig, "η", [_vline(eta)])
        x, y = s["d1"] @ step.step, s["d2"] @ step.step    # on the plane (marks: contours stay)
        line = dict(type="line", xref="x", yref="y", x0=0, y0=0, x1=x, y1=y,
                    line=dict(color="red", width=3))
        finite = np.isfinite(x) and np.isfinite(y)
        set_marks(self.plane_fig, STEP_AT_ETA, [line, disc(x, y, "red", 5)] if finite else [])
        self.readout.value = (f"η = {eta:.2e}: ‖p‖ = {step.norm:.3g}, "
                              f"cos(p, −g) = {step.cos_gradient:.3f}, predicted decrease "
                              f"{step.predicted:.3g}, actual {step.actual:.3g}, "
                              f"ρ = {step.rho:.3f}")

    @guarded
    def _on_lm(self):
        s = self._state()
        kind = self.kind.value
        method = lm_method(kind, s["problem"], s["w"])
        if method is None:
            able = [k for k in self.kind.options if lm_method(k, s["problem"], s["w"])]
            raise ValueError(f"the LM replay runs damped steps of a curvature kind's own "
                             f"optimiser with adaptive damping; pick {', '.join(able)} instead "
                             f"of {kind}")
        steps = self.lm_steps.value
        with self.status.busy(f"{steps} Levenberg–Marquardt steps of {method}"):
            tr = self.cache.get(("lm", self.picker.value, kind, steps, self.eta.value),
                                lambda: cl.optim.minimize(
                                    s["problem"], s["w"], method, steps=steps,
                                    damping=self.eta.value, adapt_damping=True,
                                    **lm_settings(kind)))
        self._lm, self.lm_for = tr, (self.picker.value, kind)
        clear_overlay(self.lm_fig, PLACEHOLDER)
        k = np.arange(len(tr.losses))
        with self.lm_fig.batch_update():
            self.lm_fig.data[0].x, self.lm_fig.data[0].y = k[1:], tr.dampings[1:]
            self.lm_fig.data[1].x, self.lm_fig.data[1].y = k[1:], tr.extra["rho"][1:]
        D = tr.ws - s["w"]
        with self.plane_fig.batch_update():
            self.plane_fig.data[3].x, self.plane_fig.data[3].y = D @ s["d1"], D @ s["d2"]
        self.lm_k.max = len(tr.losses) - 1
        self._on_lm_k()
        self.status.info(f"LM run: {tr.status}; loss {tr.losses[0]:.4g} → {tr.losses[-1]:.4g}")

    def step_at_eta(self):
        """The end (x, y) of the step at η on the plane plot."""
        return mark_points(self.plane_fig, STEP_AT_ETA)[STEP_AT_ETA]

    @guarded
    def _on_lm_k(self, change=None):
        tr = getattr(self, "_lm", None)
        if tr is None:
            return
        k = min(self.lm_k.value, len(tr.losses) - 1)
        set_marks(self.lm_fig, "k", [_vline(k)])
        if k:
            self.readout.value = (f"LM step {k}: η = {tr.dampings[k]:.3g}, "
                                  f"ρ = {tr.extra['rho'][k]:.3f}, loss {tr.losses[k]:.4g}")
