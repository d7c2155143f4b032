"""Products: Pearlmutter's exact Hv against finite differences (error against the step r,
log-log), and Lin's two ways of Gauss-Newton products — stored Jacobians vs the R-operator —
in sweeps through the network and measured memory, against the number of CG steps and of
outputs."""

import time
import tracemalloc

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

import curvlab as cl

from .base import Dashboard, guarded
from .figure import LEGEND_BELOW, FigureWidget
from .lessons import Lesson
from .marks import PLACEHOLDER, clear_overlay, overlay
from .widgets import STYLE, panels

R_GRID = np.logspace(-12, 0, 49)
CG_STEPS = [1, 2, 5, 10, 20, 50, 100]
OUTPUTS = [1, 2, 5, 10, 20, 50]


def _measure(fn):
    """(seconds, peak bytes allocated) of fn(), via perf_counter and tracemalloc."""
    tracemalloc.start()
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return dt, peak


def sweeps(method, K, m):
    """Sweeps through the network's layers (a backward pass or an R-forward pass, per output
    seed or direction) that m G·v products take, by construction of `cl.make_ggnvp`: the
    R-operator sweeps forward (J v) and backward (Jᵀ B J v) for each product; the stored
    Jacobians take one backward sweep per output, K, once, and none per product."""
    return K if method == "jacobian" else 2 * m


def _products(problem, w, method, m, v):
    f = cl.make_ggnvp(problem, w, method=method)
    x = v
    for _ in range(m):
        x = f(x)
        x /= np.linalg.norm(x)


def lin_costs(problem, w, steps=CG_STEPS, seed=0):
    """Sweeps (`sweeps`) and measured peak memory of m GGN products for each m in `steps`, both
    of Lin's ways, set-up included (the stored Jacobians are built once per point)."""
    v = np.random.default_rng(seed).standard_normal(problem.n_params)
    K = problem.model.forward(w, problem.X[:1]).shape[1]
    out = {"steps": np.array(steps), "K": K}
    for method in ("jacobian", "rop"):
        peaks = [_measure(lambda m=m: _products(problem, w, method, m, v))[1] for m in steps]
        out[method] = (np.array([sweeps(method, K, m) for m in steps], dtype=float),
                       np.array(peaks))
    return out


def output_costs(X, hidden=16, outputs=OUTPUTS, products=20, seed=0):
    """Sweeps and measured peak memory of `products` GGN products in both ways as the number of
    outputs K grows (an MSE regression MLP [d, hidden, K] on inputs X with random targets)."""
    rng = np.random.default_rng(seed)
    out = {"outputs": np.array(outputs), "products": products}
    res = {"jacobian": ([], []), "rop": ([], [])}
    for K in outputs:
        problem = cl.Problem(cl.MLP([X.shape[1], hidden, K], "tanh"), "mse", X,
                             rng.standard_normal((len(X), K)))
        w = problem.model.init(seed)
        v = rng.standard_normal(problem.n_params)
        for method in res:
            res[method][0].append(sweeps(method, K, products))
            res[method][1].append(_measure(lambda: _products(problem, w, method, products,
                                                             v))[1])
    for method, (t, m) in res.items():
        out[method] = (np.array(t, dtype=float), np.array(m))
    return out


def timing(problem, w, m=20, repeats=3, seed=0):
    """{method: seconds} of m products (set-up included), the fastest of `repeats` runs."""
    v = np.random.default_rng(seed).standard_normal(problem.n_params)
    out = {}
    for method in ("jacobian", "rop"):
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            _products(problem, w, method, m, v)
            runs.append(time.perf_counter() - t0)
        out[method] = min(runs)
    return out


def _cost_figure(title, xtitle, lay):
    """Sweeps through the network (left, log) and measured peak memory (right, dotted) of both
    of Lin's products."""
    ways = ("stored Jacobians", "R-operator")
    return FigureWidget(
        data=[go.Scatter(x=np.zeros(0), y=np.zeros(0), name=f"{m}: sweeps", mode="lines+markers")
              for m in ways]
        + [go.Scatter(x=np.zeros(0), y=np.zeros(0), name=f"{m}: peak MB", mode="lines+markers",
                      yaxis="y2", line=dict(dash="dot")) for m in ways],
        # the axes span a few decades, where plotly's log axis labels every digit once the
        # figure is wide: ask for few ticks
        layout=go.Layout(title=title, xaxis=dict(title=xtitle, type="log", nticks=6),
                         yaxis=dict(title="sweeps through the network", type="log", nticks=6),
                         # memory from zero on a plain axis with few ticks
                         yaxis2=dict(title="peak MB (measured)", overlaying="y", side="right",
                                     rangemode="tozero", tickmode="auto", nticks=5,
                                     tickformat=".3~g", showgrid=False),
                         legend=LEGEND_BELOW, **lay))


class ProductsDashboard(Dashboard):
    title = "Curvature products: exact, finite-difference, and Lin's two Gauss-Newton products"

    CAPTIONS = {
        "fd_fig":
            "The relative error of finite-difference Hessian-vector products, (∇L(w + rv) − ∇L(w − "
            "rv))/2r (central) and (∇L(w + rv) − ∇L(w))/r (forward), against Pearlmutter's exact "
            "Hv, as the step r varies: truncation error falls as r² (r) until rounding error, "
            "growing as ε/r, takes over — the V shape.",
        "cg_fig":
            "Lin's two ways to multiply by the Gauss-Newton matrix G inside conjugate gradients, "
            "against the number of CG steps m: the R-operator sweeps the network forward (J v) "
            "and backward (Jᵀ·B J v) for every product, 2m sweeps; the stored Jacobians take one "
            "backward sweep per output, K, once, and reuse them. Left: those sweeps (counted by "
            "construction); right, dotted: the peak memory measured while the m products run.",
        "k_fig":
            "The same two ways for 20 products, against the number of network outputs K: the "
            "stored Jacobians' sweeps grow with K, and their memory (N·K·Σ units numbers) far "
            "faster than the R-operator's, whose 40 sweeps do not change.",
    }
    TRY_THIS = [
        Lesson("Move 'step r' across the V: the best r sits where truncation and rounding errors "
               "meet, within a factor of 10 of ε^(1/3) ≈ 6e-6 for central differences.",
               "step-r=1e-06"),
        Lesson("At r = 1e-2 the readout shows central differences more than ten times as accurate "
               "as forward ones: their error falls as r² (slope 2 on the plot), the forward "
               "one's as r (slope 1).", "step-r=0.01"),
        Lesson("Measure Lin's two products: past K/2 CG steps the stored Jacobians need fewer "
               "sweeps through the network than the R-operator (here K = 3: from 2 steps on); "
               "what they pay instead is memory, which grows with the outputs K.", "run=measure"),
    ]
    ACTIONS = {"measure": "_on_measure"}

    def current_actions(self):
        return ["measure"] if self.measured_for == self.picker.value else []

    def __init__(self, **picker):
        super().__init__(**picker)
        st = STYLE
        self.seed = W.BoundedIntText(value=0, min=0, max=10_000, description="v seed", style=st,
                                     layout=W.Layout(width="150px"))
        self.r = W.FloatLogSlider(value=1e-4, base=10, min=-12, max=0, step=0.25,
                                  description="step r",
                                  style=st, readout_format=".0e")
        self.measure = W.Button(description="measure Lin's two products",
                                layout=W.Layout(width="240px"))
        self.readout = W.HTML()
        lay = dict(height=380, margin=dict(l=60, r=10, t=40, b=40))
        self.fd_fig = FigureWidget(
            data=[go.Scatter(x=R_GRID, y=np.ones_like(R_GRID), name="central (O(r²))",
                             mode="lines+markers"),
                  go.Scatter(x=R_GRID, y=np.ones_like(R_GRID), name="forward (O(r))",
                             mode="lines+markers"),
                  go.Scatter(x=np.zeros(1), y=np.ones(1), name="at r", mode="markers",
                             marker=dict(size=14, symbol="x", color="black"))],
            layout=go.Layout(title="‖Hv_fd − Hv_exact‖ / ‖Hv_exact‖ against the step r",
                             xaxis=dict(title="r", type="log"),
                             yaxis=dict(title="relative error", type="log"), **lay))
        self.cg_fig = _cost_figure("G·v products: cost against CG steps", "CG steps m (products)",
                                   lay)
        self.k_fig = _cost_figure("G·v products: cost against outputs K", "outputs K", lay)

        self.measured_for = None
        for fig in (self.cg_fig, self.k_fig):
            overlay(fig, "press “measure Lin's two products” to fill this panel", PLACEHOLDER)
        self.picker.observe(self._on_problem)
        self.seed.observe(self._on_problem, names="value")
        self.r.observe(self._on_r, names="value")
        self.measure.on_click(lambda b: self._on_measure())
        controls = W.VBox([self.picker.widget, W.HBox([self.seed, self.r, self.measure]),
                           self.readout])
        self.widget = W.VBox([self.header(), controls, self.status.widget,
                              panels(self.fd_fig, self.cg_fig, self.k_fig)])
        self._on_problem()
        self.finish()

    def _fd(self):
        def make():
            problem, w = self.picker.get()
            v = np.random.default_rng(self.seed.value).standard_normal(problem.n_params)
            exact = cl.hvp(problem, w, v)
            scale = np.linalg.norm(exact)
            err = {s: np.array([np.linalg.norm(cl.fd_hvp(problem, w, v, r, s) - exact) / scale
                                for r in R_GRID])
                   for s in ("central", "forward")}
            return problem, w, v, exact, scale, err
        return self.cache.get(("fd", self.picker.value, self.seed.value), make)

    @guarded
    def _on_problem(self, change=None):
        if self.measured_for is not None and self.measured_for != self.picker.value:
            for fig in (self.cg_fig, self.k_fig):
                overlay(fig, "measured for another problem: press “measure Lin's two products”",
                        PLACEHOLDER)
        with self.status.busy(f"exact Hv and {2 * len(R_GRID)} finite-difference Hv"):
            *_, err = self._fd()
        with self.fd_fig.batch_update():
            self.fd_fig.data[0].y = np.maximum(err["central"], 1e-17)
            self.fd_fig.data[1].y = np.maximum(err["forward"], 1e-17)
        self._on_r()

    @guarded
    def _on_r(self, change=None):
        problem, w, v, exact, scale, _ = self._fd()
        r = self.r.value
        e, ef = (float(np.linalg.norm(cl.fd_hvp(problem, w, v, r, s) - exact) / scale)
                 for s in ("central", "forward"))
        with self.fd_fig.batch_update():
            self.fd_fig.data[2].x, self.fd_fig.data[2].y = np.array([r]), np.array([max(e, 1e-17)])
        best = R_GRID[np.argmin(self._fd()[-1]["central"])]
        self.errors_at_r = {"central": e, "forward": ef}
        self.readout.value = (f"at r = {r:.0e}: relative error {e:.2e} central, {ef:.2e} forward "
                              f"(best central r on the grid ≈ {best:.0e}, where O(r²) truncation "
                              "meets O(ε/r) rounding)")

    @guarded
    def _on_measure(self):
        problem, w = self.picker.get()
        with self.status.busy("measuring Lin's two products (CG steps, outputs, time)",
                              total=3) as b:
            cg = lin_costs(problem, w)
            b.step()
            kk = output_costs(problem.X.reshape(problem.N, -1))
            b.step()
            t = timing(problem, w)
            b.step()
        with self.cg_fig.batch_update():
            for i, m in enumerate(("jacobian", "rop")):
                self.cg_fig.data[i].x, self.cg_fig.data[i].y = cg["steps"], cg[m][0]
                self.cg_fig.data[2 + i].x, self.cg_fig.data[2 + i].y = cg["steps"], cg[m][1] / 1e6
        with self.k_fig.batch_update():
            for i, m in enumerate(("jacobian", "rop")):
                self.k_fig.data[i].x, self.k_fig.data[i].y = kk["outputs"], kk[m][0]
                self.k_fig.data[2 + i].x, self.k_fig.data[2 + i].y = kk["outputs"], kk[m][1] / 1e6
        self.last_measurement, self.measured_for = (cg, kk), self.picker.value
        for fig in (self.cg_fig, self.k_fig):
            clear_overlay(fig, PLACEHOLDER)
        self.readout.value = (f"K = {cg['K']} outputs. Measured time of 20 products, set-up "
                              f"included (fastest of 3 runs): stored Jacobians "
                              f"{t['jacobian'] * 1e3:.2f} ms, R-operator {t['rop'] * 1e3:.2f} ms")
