"""Damping: a slider moving through (C + ηI)⁻¹ — the filtered spectrum, the angles of the damped
step with the gradient and the Newton step, predicted vs actual decrease, the step on a 2-D slice
of the loss — and Levenberg–Marquardt adaptation replayed step by step."""

import ipywidgets as W
import numpy as np

import curvlab as cl
from curvlab.curvature import registry

from .base import Dashboard, guarded
from .damping_figs import (
    ETAS,
    FILTER_RANGE,
    NEWTON,
    RHO_RANGE,
    STEP_AT_ETA,
    STEP_COLOR,
    decrease_range,
    figures,
    newton_mark,
    vline,
)
from .lessons import Lesson
from .marks import (
    PLACEHOLDER,
    clear_overlay,
    clip_note,
    disc,
    mark_points,
    overlay,
    set_marks,
    set_note,
)
from .menus import kind_menu
from .play import Player
from .widgets import STYLE, log_slider, panels

CLIPPED = "clipped"
LM_FALLBACK = "ggn"        # the LM replay's matrix when the chosen one's optimiser cannot adapt η


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
            "ν ≫ η (Newton-like), about ν/η where ν ≪ η (gradient-like, scaled by 1/η). Crosses: "
            "negative ν (at |ν|), whose factors leave [0, 1]; the note says which the axis clips.",
        "angle_fig":
            "Cosines between the damped step and −g, and between it and the least-damped step "
            "(η = 1e-6, Newton's), as η varies: damping interpolates between the two directions.",
        "decrease_fig":
            "The decrease L(w) − L(w + p) the quadratic model predicts for the damped step p, and "
            "the decrease the loss really shows, against η. Their ratio ρ is what "
            "Levenberg–Marquardt watches. The axis spans the model's predictions where C + ηI is "
            "positive definite (η ≥ 2|min ν|); the note says what it clips.",
        "plane_fig":
            "The loss (grey, light where low) on the plane spanned by −g and the Newton step; the "
            "black curve is the damped step for every η (from the gradient direction at large η "
            "to Newton's step at η → 0), red the step at the slider's η, blue the replayed "
            "Levenberg–Marquardt path. The frame holds the steps with η ≥ 1e-3; the Newton step "
            "is a star, or an arrow at the edge with its length when it lies beyond.",
        "lm_fig":
            "A Levenberg–Marquardt run: η per step (log axis, left) and ρ = actual / predicted "
            "decrease (right). η falls by 1/3 after a step with ρ > 3/4 (the model is trusted) "
            "and rises by half after one with ρ < 1/4; ▶ replays the run step by step.",
    }
    TRY_THIS = [
        Lesson("From η = 1e2, move η down to 1e-6: the red step turns from −g (cos(p, −g) = 1 in "
               "the readout) to the Newton step; beyond the frame, an arrow at its edge points to "
               "the Newton step and gives its length.", "damping=100"),
        Lesson("At η = 100, far above every eigenvalue ν, each filter factor ν/(ν + η) is close to "
               "ν/η and the step is −g/η: gradient descent with learning rate 1/η.",
               "damping=100"),
        Lesson("Predicted against actual decrease: at large η they agree (ρ ≈ 1); as η falls they "
               "part (here ρ < 0.5 in the readout), and at the smallest η the actual decrease is "
               "negative: the quadratic model promised a decrease over a step too long to trust.",
               "damping=0.01"),
        Lesson("Matrix hessian at state initialisation: it has negative eigenvalues, so below the "
               "largest of their sizes C + ηI is indefinite, and at this η the step points uphill "
               "(cos(p, −g) < 0 in the readout). With the GGN, cos(p, −g) > 0 at every η.",
               "matrix=hessian&state=initialisation&damping=0.0630957"),
        Lesson("Levenberg–Marquardt, replayed with 'replay k' (▶ plays it): η falls after each "
               "step whose ρ is above 3/4 and rises after each below 1/4 — the model earns trust "
               "step by step.", "run=lm"),
    ]
    ACTIONS = {"lm": "_on_lm"}

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
        self.player = Player(self.lm_k)
        self.lm_run = W.Button(description="run Levenberg–Marquardt",
                               layout=W.Layout(width="230px"))
        self.readout = W.HTML()
        figs = figures()
        self.filter_fig, self.angle_fig, self.decrease_fig = (figs["filter_fig"],
                                                              figs["angle_fig"],
                                                              figs["decrease_fig"])
        self.plane_fig, self.lm_fig = figs["plane_fig"], figs["lm_fig"]

        self.lm_for = None
        overlay(self.lm_fig, "press “run Levenberg–Marquardt” to fill this panel", PLACEHOLDER)
        self.picker.observe(self._on_problem)
        self.kind.observe(self._on_problem, names="value")
        self.eta.observe(self._on_eta, names="value")
        self.lm_run.on_click(lambda b: self._on_lm())
        self.lm_k.observe(self._on_lm_k, names="value")
        controls = W.VBox([self.picker.widget, W.HBox([self.kind, self.eta]),
                           W.HBox([self.lm_run, self.lm_steps, self.player.widget]),
                           self.readout])
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
                        cos_g=curves["cos_gradient"], cos_n=curves["cos_newton"],
                        newton_norm=float(curves["step_norm"][0]))
        return self.cache.get(("state",) + key, make)

    @guarded
    def _on_problem(self, change=None):
        if self.lm_for is not None and self.lm_for != self._lm_key():
            overlay(self.lm_fig, "run for other settings: press “run Levenberg–Marquardt”",
                    PLACEHOLDER)
        with self.status.busy(f"eigendecomposition of the {self.kind.value} and the loss plane"):
            s = self._state()
        a = np.linspace(-s["span"], s["span"], 41)
        with self.angle_fig.batch_update():
            self.angle_fig.data[0].y, self.angle_fig.data[1].y = s["cos_g"], s["cos_n"]
        with self.decrease_fig.batch_update():
            self.decrease_fig.data[0].y, self.decrease_fig.data[1].y = s["pred"], s["actual"]
            lo, hi = decrease_range(s["pred"], s["actual"], s["nu"])
            self.decrease_fig.layout.yaxis.range = [lo, hi]
            set_note(self.decrease_fig, CLIPPED, clip_note(
                {"predicted": s["pred"], "actual": s["actual"]}, lo, hi))
        with self.plane_fig.batch_update():
            c = self.plane_fig.data[0]
            c.x, c.y, c.z = a, a, s["Z"].T
            self.plane_fig.layout.xaxis.range = [-s["span"], s["span"]]
            self.plane_fig.layout.yaxis.range = [-s["span"], s["span"]]
            self.plane_fig.data[1].x, self.plane_fig.data[1].y = s["coords"][0], s["coords"][1]
            self.plane_fig.data[3].x, self.plane_fig.data[3].y = np.zeros(0), np.zeros(0)
            star, arrow = newton_mark(*s["coords"][:, 0], s["span"], s["newton_norm"])
            set_marks(self.plane_fig, NEWTON, star)
            self.plane_fig.layout.annotations = [
                n for n in self.plane_fig.layout.annotations if n.name != NEWTON] + arrow
        self._on_eta()

    @guarded
    def _on_eta(self, change=None):
        """View only: the step from the cached curvature object's factorisation."""
        s = self._state()
        eta = self.eta.value
        step = cl.damping.damped_step(s["problem"], s["w"], damping=eta, C=s["C"])
        nu = s["nu"]
        shown = np.abs(nu) > 1e-14 * np.abs(nu).max()
        factor = nu / (nu + eta)
        with self.filter_fig.batch_update():
            for tr, side in zip(self.filter_fig.data, (nu > 0, nu < 0)):
                tr.x, tr.y = np.abs(nu[shown & side]), factor[shown & side]
            set_note(self.filter_fig, CLIPPED, clip_note(
                {"ν < 0": factor[shown & (nu < 0)]}, *FILTER_RANGE))
        for fig in (self.angle_fig, self.decrease_fig):
            set_marks(fig, "η", [vline(eta)])
        x, y = s["d1"] @ step.step, s["d2"] @ step.step    # on the plane (marks: contours stay)
        line = dict(type="line", xref="x", yref="y", x0=0, y0=0, x1=x, y1=y,
                    line=dict(color=STEP_COLOR, width=3))
        finite = np.isfinite(x) and np.isfinite(y)
        set_marks(self.plane_fig, STEP_AT_ETA, [line, disc(x, y, STEP_COLOR, 5)] if finite else [])
        self.step = step
        self.readout.value = (f"η = {eta:.2e}: ‖p‖ = {step.norm:.3g}, "
                              f"cos(p, −g) = {step.cos_gradient:.3f}, predicted decrease "
                              f"{step.predicted:.3g}, actual {step.actual:.3g}, "
                              f"ρ = {step.rho:.3f}")

    def lm_kind(self):
        """(the kind the LM replay runs with, its optimiser): the chosen matrix when its
        optimiser adapts η, else the GGN."""
        s = self._state()
        method = lm_method(self.kind.value, s["problem"], s["w"])
        if method is not None:
            return self.kind.value, method
        return LM_FALLBACK, lm_method(LM_FALLBACK, s["problem"], s["w"])

    def _lm_key(self):
        return (self.picker.value, self.kind.value, self.lm_steps.value)

    def current_actions(self):
        """['lm'] when the LM panel shows a run for the current settings (the link asks for it)."""
        return ["lm"] if self.lm_for is not None and self.lm_for == self._lm_key() else []

    @guarded
    def _on_lm(self):
        s = self._state()
        kind, method = self.lm_kind()
        steps = self.lm_steps.value
        with self.status.busy(f"{steps} Levenberg–Marquardt steps of {method}"):
            tr = self.cache.get(("lm", self.picker.value, kind, steps, self.eta.value),
                                lambda: cl.optim.minimize(
                                    s["problem"], s["w"], method, steps=steps,
                                    damping=self.eta.value, adapt_damping=True,
                                    **lm_settings(kind)))
        self._lm, self.lm_for = tr, self._lm_key()
        clear_overlay(self.lm_fig, PLACEHOLDER)
        k = np.arange(len(tr.losses))
        rho = np.asarray(tr.extra["rho"][1:], dtype=float)
        note = ("" if kind == self.kind.value else
                f"with the {kind}: the {self.kind.value}'s optimiser does not adapt η")
        with self.lm_fig.batch_update():
            self.lm_fig.data[0].x, self.lm_fig.data[0].y = k[1:], tr.dampings[1:]
            self.lm_fig.data[1].x, self.lm_fig.data[1].y = k[1:], rho
            self.lm_fig.layout.title.text = "Levenberg–Marquardt replay" + (
                f" ({note})" if note else "")
            set_note(self.lm_fig, CLIPPED, clip_note({"ρ": rho}, *RHO_RANGE))
        D = tr.ws - s["w"]
        with self.plane_fig.batch_update():
            self.plane_fig.data[3].x, self.plane_fig.data[3].y = D @ s["d1"], D @ s["d2"]
        self.lm_k.max = len(tr.losses) - 1
        self._on_lm_k()
        self.status.info(f"LM run{' ' + note if note else ''}: {tr.status}; loss "
                         f"{tr.losses[0]:.4g} → {tr.losses[-1]:.4g}")

    def step_at_eta(self):
        """The end (x, y) of the step at η on the plane plot."""
        return mark_points(self.plane_fig, STEP_AT_ETA)[STEP_AT_ETA]

    @guarded
    def _on_lm_k(self, change=None):
        tr = getattr(self, "_lm", None)
        if tr is None:
            return
        k = min(self.lm_k.value, len(tr.losses) - 1)
        set_marks(self.lm_fig, "k", [vline(k)])
        if k:
            self.readout.value = (f"LM step {k}: η = {tr.dampings[k]:.3g}, "
                                  f"ρ = {tr.extra['rho'][k]:.3f}, loss {tr.losses[k]:.4g}")
