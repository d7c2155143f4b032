"""Beyond layered nets: Pearlmutter's R{·} on a feed-forward network of units, a recurrent one
(relaxations) and a Boltzmann machine; and weight perturbation's estimates of the gradient and
of Hv approaching the exact ones as the samples grow."""

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

import curvlab as cl
from curvlab import units

from .base import Dashboard, guarded
from .figure import FigureWidget
from .lessons import Lesson
from .marks import mark_points, set_marks
from .widgets import STYLE, panels

SYSTEMS = ["feed-forward units", "recurrent units", "Boltzmann machine"]
YOURS = "your problem"
NOW = "now"      # the marks at the chosen sample count
MAX_P = 400      # weight perturbation's joint fit: ≥ 2P + 1 samples and a (2P + 1)-column solve
SAMPLES = [30, 100, 300, 1000, 3000]
EDGES = [(0, 2), (1, 2), (0, 3), (2, 3), (1, 4), (3, 4), (2, 5), (4, 5), (0, 5), (3, 6), (1, 6),
         (4, 6)]
FEEDBACK = [(5, 2), (6, 3), (4, 3)]


def build_system(name, seed=0):
    """(objective, w, exact gradient, v, exact Hv, extra) for one of SYSTEMS: a 7-unit net with
    skip connections (and, recurrent, three feedback edges), or a 5-unit Boltzmann machine with
    3 visible units; small enough that the perturbation estimates run in a second."""
    rng = np.random.default_rng(seed)
    if name == "Boltzmann machine":
        bm = cl.BoltzmannMachine(5, T=1.0, visible=[0, 1, 2])
        data = (rng.random((20, 3)) < 0.4).astype(float)
        w = bm.init(seed)
        v = rng.standard_normal(bm.n_params)
        return (bm.as_objective(data), w, bm.gradient(w, data), v, bm.hvp(w, data, v),
                dict(bm=bm))
    edges = EDGES + (FEEDBACK if name == "recurrent units" else [])
    net = cl.UnitNetwork(7, edges, [0, 1], [5, 6], "tanh", tol=1e-13)
    problem = cl.Problem(net, "mse", rng.standard_normal((20, 2)),
                         rng.standard_normal((20, 2)))
    w = net.init(seed) + 0.3 * rng.standard_normal(net.n_params)
    if name == "recurrent units":
        w[len(EDGES):len(edges)] *= 0.2             # a contraction, also under perturbation
    v = rng.standard_normal(net.n_params)
    return problem, w, problem.grad(w), v, cl.hvp(problem, w, v), dict(problem=problem)


def your_system(problem, w, seed=0):
    """build_system's tuple for your own `cl.Problem` (a layered net or a network of units) at w,
    with a seeded random direction v."""
    v = np.random.default_rng(seed).standard_normal(problem.n_params)
    return problem, w, problem.grad(w), v, cl.hvp(problem, w, v), dict(problem=problem)


def relaxation_curve(name, steps=60, system=None):
    """(x, relative error of Hv, what x is): for a recurrent net of units, the error after k
    R-relaxation steps ("relax"); a single sweep is exact for a feed-forward one (k = 1,
    "sweep"); otherwise (a Boltzmann machine, a layered net) the error of central differences of
    the exact gradient against the exact Hv, as their step ε shrinks ("fd"). `system` is
    build_system's tuple (your_system for your own problem); default build_system(name)."""
    obj, w, g, v, Hv, extra = system or build_system(name)
    problem = extra.get("problem")
    if problem is None or problem.layered:          # relaxation: a network of units only
        eps = np.logspace(-8, 0, 33)
        fd = [np.linalg.norm(cl.fd_hvp(obj, w, v, r=e, scheme="central") - Hv) for e in eps]
        return eps, np.maximum(np.array(fd) / np.linalg.norm(Hv), 1e-17), "fd"
    recurrent = problem.model.recurrent
    ks = np.arange(1, steps + 1) if recurrent else np.array([1])
    errs = [np.linalg.norm(units.make_hvp(problem, w, steps=int(k))(v[:, None])[:, 0] - Hv)
            for k in ks]
    return (ks, np.maximum(np.array(errs) / np.linalg.norm(Hv), 1e-17),
            "relax" if recurrent else "sweep")


def estimate_curves(name, sigma, seed=0, system=None):
    """(samples used, {estimate: relative errors}): the plain ĝ, the joint ĝ and ẑ and the
    per-weight ẑ at each of SAMPLES, raised to 2P + 1 where the joint fit needs more (`system` as
    in relaxation_curve)."""
    obj, w, g, v, Hv, _ = system or build_system(name)
    rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(b))
    rows = {k: [] for k in ("plain ĝ", "joint ĝ", "joint ẑ ≈ Hv", "per-weight ẑ ≈ Hv")}
    used = np.array([max(S, 2 * len(w) + 1) for S in SAMPLES], dtype=float)
    for S in used.astype(int):
        plain = cl.perturbation.estimate(obj, w, S, sigma, seed=seed)
        joint = cl.perturbation.estimate(obj, w, S, sigma, seed=seed, v=v)
        local = cl.perturbation.estimate(obj, w, S, sigma, seed=seed, v=v, fit="local")
        rows["plain ĝ"].append(rel(plain.g, g))
        rows["joint ĝ"].append(rel(joint.g, g))
        rows["joint ẑ ≈ Hv"].append(rel(joint.z, Hv))
        rows["per-weight ẑ ≈ Hv"].append(rel(local.z, Hv))
    return used, {k: np.array(v_) for k, v_ in rows.items()}


def slopes(used, curves):
    """{estimate: slope of log error against log samples} (a least-squares line)."""
    return {k: float(np.polyfit(np.log(used), np.log(c), 1)[0]) for k, c in curves.items()}


class BeyondDashboard(Dashboard):
    title = "Beyond layered nets: relaxations, Boltzmann machines, weight perturbation"

    CAPTIONS = {
        "relax_fig": (
            "Hv against the exact product",
            "The relative error of the Hessian-vector product Hv against the exact one. Recurrent "
            "units: after k steps of the R-relaxation (Almeida–Pineda), falling at the rate of the "
            "relaxation's spectral radius; feed-forward units: exact in one sweep (k = 1); "
            "Boltzmann machine (or your own layered net): central differences of the exact "
            "gradient against the exact R{p} (Hv) product, as their step shrinks."),
        "err_fig":
            "Weight perturbation: relative errors of the gradient estimate ĝ (plain, and joint "
            "with curvature) and of the Hv estimates ẑ from random perturbations of size σ, "
            "against the number of samples; the cross marks the current samples.",
    }
    TRY_THIS = [
        Lesson("Switch system between feed-forward units and recurrent units: a feed-forward "
               "net's Hv is exact after one sweep; a recurrent one's error falls geometrically — "
               "a straight line on the log axis — to the exact Hv.", "system=feed-forward+units"),
        Lesson("Raise the samples from 30 to 3000: every estimate's error falls roughly as "
               "1/√samples — the slopes in the status line are near −0.5.", "samples=30"),
        Lesson("On feed-forward units at σ = 1, the per-weight ẑ's error levels off as the "
               "samples grow: σ's bias dominates the sampling noise. At σ = 0.01 it keeps "
               "falling.", "system=feed-forward+units&sigma=1"),
        Lesson("Pick Boltzmann machine: central differences of the exact gradient show the V of "
               "truncation against rounding error, while R{p} is exact.",
               "system=Boltzmann+machine"),
    ]

    def __init__(self, **picker):
        """Or on your own problem: `problem=` a `cl.Problem` (a layered net or a
        `cl.UnitNetwork`; or `model=`, `X=`, `y=`, `loss=`) and `w=`, with at most MAX_P
        parameters."""
        super().__init__(**picker)
        own = self.picker.own is not None
        if own and self.picker.own[0].n_params > MAX_P:
            raise ValueError(f"your problem has P = {self.picker.own[0].n_params:,} parameters; "
                             "weight perturbation's joint fit takes 2P + 1 samples per estimate, "
                             f"so this dashboard takes P ≤ {MAX_P}: use "
                             "cl.perturbation.estimate in a notebook for larger problems")
        st = STYLE
        self.system = W.ToggleButtons(options=SYSTEMS + [YOURS] * own,
                                      value=YOURS if own else "recurrent units",
                                      description="system", style=st)
        self.samples = W.SelectionSlider(options=SAMPLES, value=1000, description="samples",
                                         style=st, continuous_update=False)
        self.sigma = W.FloatLogSlider(value=0.05, base=10, min=-3, max=0, step=0.25,
                                      description="σ", style=st, continuous_update=False,
                                      readout_format=".0e")
        self.table = W.HTML()
        lay = dict(height=380, margin=dict(l=60, r=10, t=40, b=45),
                   yaxis=dict(title="relative error", type="log", exponentformat="e"))
        self.relax_fig = FigureWidget(layout=go.Layout(title="exact Hv by relaxation",
                                                       xaxis_title="step", **lay))
        self.relax_fig.add_scatter(x=np.zeros(0), y=np.zeros(0), mode="lines+markers", name="Hv")
        self.err_fig = FigureWidget(layout=go.Layout(
            title="weight perturbation: error against samples",
            xaxis=dict(title="samples", type="log"), **lay))
        for name in ("plain ĝ", "joint ĝ", "joint ẑ ≈ Hv", "per-weight ẑ ≈ Hv"):
            self.err_fig.add_scatter(x=np.zeros(0), y=np.zeros(0), mode="lines+markers",
                                     name=name)
        self.system.observe(self._on_system, names="value")
        self.sigma.observe(self._on_estimates, names="value")
        self.samples.observe(self._on_samples, names="value")
        self.widget = W.VBox([self.header(), *[self.picker.widget] * own, self.system,
                              W.HBox([self.samples, self.sigma]), self.status.widget,
                              panels(self.relax_fig, self.err_fig), self.table])
        self._on_system()
        self.finish()

    def _system(self):
        """The chosen system's (objective, w, gradient, v, Hv, extra), built once."""
        name = self.system.value
        if name == YOURS:
            return self.cache.get(("system", YOURS), lambda: your_system(*self.picker.own))
        return self.cache.get(("system", name), lambda: build_system(name))

    @guarded
    def _on_system(self, change=None):
        name = self.system.value
        with self.status.busy(f"{name}: exact products"):
            x, err, what = self.cache.get(("relax", name),
                                          lambda: relaxation_curve(name, system=self._system()))
        fd = what == "fd"
        with self.relax_fig.batch_update():
            self.relax_fig.data[0].x, self.relax_fig.data[0].y = x, err
            self.relax_fig.layout.title.text = (
                "R{p} vs central differences of ∇G (exact enumeration)"
                if name == "Boltzmann machine"
                else "exact Hv vs central differences of ∇L" if fd
                else "Hv after k R-relaxation steps" if what == "relax"
                else "Hv by one R{backprop} sweep: exact")
            self.relax_fig.layout.xaxis.title.text = ("finite-difference step ε" if fd
                                                      else "relaxation step")
            self.relax_fig.layout.xaxis.type = "log" if fd else "linear"
        self._on_estimates()

    def _curves(self):
        """estimate_curves for the chosen system and σ, once each."""
        name, sigma = self.system.value, self.sigma.value
        return self.cache.get(("est", name, round(np.log10(sigma), 3)),
                              lambda: estimate_curves(name, sigma, system=self._system()))

    @guarded
    def _on_estimates(self, change=None):
        name, sigma = self.system.value, self.sigma.value
        with self.status.busy("weight-perturbation estimates over the sample counts"):
            used, curves = self._curves()
        with self.err_fig.batch_update():
            for tr in self.err_fig.data[:4]:
                tr.x, tr.y = used, curves[tr.name]
        self._on_samples()
        self.slopes = slopes(*self._curves())
        self.status.info(f"{name}, σ = {sigma:.0e}: slopes of log error against log samples "
                         + ", ".join(f"{k} {v:.2f}" for k, v in self.slopes.items())
                         + " (−0.5: errors falling as 1/√samples)")

    def crosses(self):
        """{estimate: (samples, error)} of the crosses on the error plot."""
        return mark_points(self.err_fig, NOW)

    @guarded
    def _on_samples(self, change=None):
        used, curves = self._curves()
        i = SAMPLES.index(self.samples.value)
        # a cross on each curve at the chosen sample count (marks: the curves are not redrawn)
        shown = {k: c[i] for k, c in curves.items() if np.isfinite(c[i]) and c[i] > 0}
        cross = dict(type="path", xref="x", yref="y", xsizemode="pixel", ysizemode="pixel",
                     path="M-6,-6L6,6M-6,6L6,-6", line=dict(color="black", width=3))
        set_marks(self.err_fig, NOW, [dict(cross, xanchor=float(used[i]), yanchor=float(e))
                                      for e in shown.values()], labels=list(shown))
        self.show_table(self.table, f"at {int(used[i]):,} samples",
                        ["estimate", "relative error"], [(k, c[i]) for k, c in curves.items()])
