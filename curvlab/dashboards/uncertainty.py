"""Laplace uncertainty and influence: each curvature kind's predictive band (1-D regression) or
confidence map (2-D classification) beside the exact GGN's, the log marginal likelihood against
the prior precision per kind with its optimum, and influence functions against leave-one-out."""

import ipywidgets as W
import numpy as np

import curvlab as cl

from . import uncertainty_figs as F
from .base import Dashboard, guarded
from .lessons import Lesson
from .menus import kind_menu
from .widgets import STYLE, log_slider, panels, with_hint

INFLUENCE_TABLE = "influence against leave-one-out"


class ProblemMenu:
    """The app's own problem menu, in the picker's interface (`base.Dashboard` reads it)."""

    own = None

    def __init__(self, value):
        self.menu = W.Dropdown(options=list(F.PROBLEMS), value=value, description="problem",
                               style=STYLE, layout=W.Layout(width="240px"))
        self.controls = [self.menu]
        self.widget = W.HBox(self.controls)

    @property
    def value(self):
        return self.menu.value

    def observe(self, fn):
        self.menu.observe(fn, names="value")

    def get(self):
        return F.problem_and_point(self.value)


class UncertaintyDashboard(Dashboard):
    title = "Laplace uncertainty and influence: each approximation against the exact answer"

    CAPTIONS = {
        "band_fig":
            "1-D regression (MSE, noise σ): the data (black), the network's mean and the exact "
            "GGN's Laplace band, mean ± 2 standard deviations of the linearised (GLM) predictive "
            "J Λ⁻¹ Jᵀ with Λ = (N/σ²)·C + δI (filled, σ² not added), and each chosen kind's band "
            "edges in its own colour and line style. A narrower band than the GGN's understates "
            "the uncertainty; outside the data (|x| > 2) the GGN's band widens quickly.",
        "map_fig":
            "2-D classification (moons): the probit confidence max_k p_k of the Laplace "
            "predictive on a grid, the exact GGN's first, then the first two chosen kinds'; "
            "each title gives the mean confidence over the map. Brighter away from the data "
            "than the GGN's means the kind is overconfident there.",
        "evidence_fig":
            "MacKay's log marginal likelihood log p(D|w) − (δ/2)‖w‖² + (P/2) log δ − ½ log det Λ "
            "against the prior precision δ, per kind; each star is that kind's optimum δ* "
            "(what optimize_prior_precision returns), the dotted line the δ of the other panels. "
            "The axis spans the curves from the smallest δ up; at large δ they fall below it. "
            "Where Λ is not positive definite (the Hessian's, for a small δ) a curve has a gap "
            "and no star.",
    }
    TRY_THIS = [
        Lesson("Inside the data (|x| ≤ 2) the diagonal's band is wider than the exact GGN's "
               "everywhere, while KFLR's stays within 30 % of it; beyond the data both understate "
               "how fast the GGN's band grows: there, at most inputs, theirs is the narrower.",
               "problem=regression1d&kinds=kflr,diagonal&prior=0.1"),
        Lesson("On moons with a weak prior (δ = 0.1) the diagonal's map is the more confident: its "
               "mean confidence (in its title) exceeds the GGN's by more than 0.05, while KFLR's "
               "is within 0.01 of the GGN's.", "problem=moons&kinds=kflr,diagonal&prior=0.1"),
        Lesson("The evidence picks a larger prior precision for the diagonal than for the GGN: "
               "its star lies right of the GGN's (on both problems).",
               "problem=moons&kinds=diagonal"),
        Lesson("Run leave-one-out on moons: the Hessian, the objective's exact curvature, orders "
               "the points best (the highest rank correlation); the diagonal orders them worst "
               "and gets the size furthest wrong (its scale the furthest from 1).",
               "problem=moons&kinds=kflr,diagonal&run=loo"),
    ]
    ACTIONS = {"loo": "run_loo"}

    def __init__(self, problem="regression1d"):
        super().__init__()
        self.picker = ProblemMenu(problem)
        self.kind_names = [k for k in kind_menu() if k != F.REFERENCE]
        self.kinds = W.SelectMultiple(options=self.kind_names, value=("kflr", "diagonal"),
                                      description="kinds", rows=7, style=STYLE,
                                      layout=W.Layout(width="200px"))
        self.delta = log_slider("prior δ", 1.0, -3, 3)
        self.sigma = log_slider("noise σ", 0.1, -2, 0, step=0.05)
        self.loo = W.Button(description="leave-one-out", icon="",
                            tooltip=f"retrain without each of {F.LOO_CAP} training points",
                            layout=W.Layout(width="160px"))
        self.loo.on_click(lambda _: self.run_loo())
        self.table = W.HTML()
        self.loo_done = None                 # the problem whose leave-one-out the table shows

        self.band_fig = F.band_figure(self.kind_names)
        self.map_fig = F.map_figure()
        self.evidence_fig = F.evidence_figure(self.kind_names)
        self.evidence_fig.add_vline(x=1.0, line=dict(dash="dot", color="#555"))

        self.picker.observe(self._on_problem)
        for c in (self.kinds, self.delta, self.sigma):
            c.observe(self._on_view, names="value")
        controls = W.VBox([self.picker.widget,
                           W.HBox([with_hint(self.kinds),
                                   W.VBox([self.delta, self.sigma, self.loo, self.table])])])
        self.band_box, self.map_box = W.Box([self.band_fig]), W.Box([self.map_fig])
        self.widget = W.VBox([self.header(), controls, self.status.widget,
                              panels(self.map_box, wide=True),
                              panels(self.band_box, self.evidence_fig)])
        self._on_problem()
        self.finish()

    # ---- computations (cached by their inputs) --------------------------------------------
    def problem(self):
        return self.picker.get()

    def shown_kinds(self):
        return [F.REFERENCE] + list(self.kinds.value)

    def results(self):
        """{kind: (shown, evidence curve, (δ*, its value))} at the current view, cached; the
        kinds that failed go into {kind: message}."""
        problem, w, _ = self.problem()
        sigma = self.sigma.value if F.regression(problem) else None
        out, failed = {}, {}
        for k in self.shown_kinds():
            key = ("pred", self.picker.value, k, self.delta.value, sigma)
            try:
                out[k] = self.cache.get(key, lambda k=k: F.predictive(problem, w, k,
                                                                      self.delta.value, sigma))
            except (ValueError, np.linalg.LinAlgError) as exc:
                failed[k] = str(exc)
        return out, failed

    def influence(self):
        """The influence table (kinds: the Hessian, the GGN and the chosen ones) against
        leave-one-out on the capped subset; the retraining cached per problem."""
        problem, w, (Xt, yt) = self.problem()
        pts = F.loo_points(problem)
        truth = self.cache.get(("loo", self.picker.value), lambda: cl.leave_one_out(
            problem, w, Xt, yt, points=pts, progress=False))
        kinds = ["hessian"] + [k for k in self.shown_kinds() if k != "hessian"]
        return self.cache.get(("influence", self.picker.value, tuple(kinds)),
                              lambda: cl.influence_table(problem, w, Xt, yt, kinds=kinds,
                                                         points=pts, truth=truth,
                                                         progress=False))

    # ---- callbacks -------------------------------------------------------------------------
    @guarded
    def _on_problem(self, change=None):
        with self.status.busy("training the problem to a minimum (once, then cached)"):
            problem, w, _ = self.problem()
        reg = F.regression(problem)
        self.band_box.layout.display = None if reg else "none"
        self.map_box.layout.display = "none" if reg else None
        self.sigma.disabled = not reg
        if change is not None:              # a panel appeared: its plot fits its width again
            self.resize.nudge()
        self._on_view()

    @guarded
    def _on_view(self, change=None):
        with self.status.busy("Laplace approximations, predictives and evidence"):
            res, failed = self.results()
        problem, w, _ = self.problem()
        (self._draw_bands if F.regression(problem) else self._draw_maps)(problem, res)
        self._draw_evidence(res)
        if self.loo_done == self.picker.value:
            self._show_table()
        else:
            self.show_table(self.table, INFLUENCE_TABLE, [], [], note=(
                f"<div style='color:#555'>press <i>leave-one-out</i> to retrain without each of "
                f"{len(F.loo_points(problem))} training points</div>"))
        if failed:
            self.status.warn("; ".join(f"{k}: {m}" for k, m in failed.items()))
        else:
            self.status.info(f"P = {w.size} parameters, N = {problem.N}; "
                             f"{len(res)} kinds in {self.status.seconds:.2f} s")

    @guarded
    def run_loo(self):
        problem, _, _ = self.problem()
        with self.status.busy(f"leave-one-out: retraining without each of "
                              f"{len(F.loo_points(problem))} points (once, then cached)"):
            self.influence()
        self.loo_done = self.picker.value
        self._show_table()
        self.status.info(f"leave-one-out on {len(F.loo_points(problem))} training points, "
                         f"{self.status.seconds:.2f} s")

    def current_actions(self):
        return ["loo"] if self.loo_done == self.picker.value else []

    # ---- drawing ---------------------------------------------------------------------------
    def _show_table(self):
        tab = self.influence()
        rows = [(r.kind, r.spearman, r.pearson, r.scale) for r in tab]
        self.show_table(self.table, INFLUENCE_TABLE, ["kind", "rank corr.", "pearson", "scale"],
                        rows, note=f"<div style='color:#555'>{len(tab.points)} removed points × "
                        f"{tab.truth.shape[1]} test points</div>")

    def _draw_bands(self, problem, res):
        x = F.LINE
        with self.band_fig.batch_update():
            d = self.band_fig.data
            d[0].x, d[0].y = problem.X[:, 0], np.ravel(problem.y)
            if F.REFERENCE in res:
                mean, std = res[F.REFERENCE][0]
                d[1].x, d[1].y = x, mean + 2 * std
                d[2].x, d[2].y = x, mean - 2 * std
                d[3].x, d[3].y = x, mean
            for tr in d[4:]:
                tr.visible = tr.name in res
                if tr.name in res:
                    mean, std = res[tr.name][0]
                    tr.x = np.concatenate([x, [np.nan], x])
                    tr.y = np.concatenate([mean + 2 * std, [np.nan], mean - 2 * std])

    def _draw_maps(self, problem, res):
        shown = [k for k in self.shown_kinds() if k in res][:F.SLOTS]
        with self.map_fig.batch_update():
            for i in range(F.SLOTS):
                heat, dots = self.map_fig.data[2 * i], self.map_fig.data[2 * i + 1]
                k = shown[i] if i < len(shown) else None
                heat.visible = dots.visible = k is not None
                for axis in ("xaxis", "yaxis"):
                    self.map_fig.layout[f"{axis}{i + 1 if i else ''}"].visible = k is not None
                title = self.map_fig.layout.annotations[i]
                if k is None:
                    title.text = " "
                    continue
                conf = res[k][0]
                heat.x, heat.y, heat.z = F.GRID, F.GRID, conf
                dots.x, dots.y = problem.X[:, 0], problem.X[:, 1]
                title.text = f"{k} · mean conf. {conf.mean():.3f}"

    def _draw_evidence(self, res):
        with self.evidence_fig.batch_update():
            d = self.evidence_fig.data
            for line, star in zip(d[::2], d[1::2]):
                _, curve, best = res.get(line.name, (None, None, None))
                line.visible, star.visible = line.name in res, best is not None
                if line.name in res:
                    line.x, line.y = F.DELTAS, curve
                    star.x, star.y = [best[0] if best else np.nan], [best[1] if best else np.nan]
            # the curves from the smallest δ up (at large δ they fall off far below)
            ends = [res[k][1][0] for k in res if np.isfinite(res[k][1][0])]
            top = max((np.nanmax(res[k][1]) for k in res), default=np.nan)
            if ends and np.isfinite(top):
                low = min(ends)
                pad = 0.1 * (top - low) if top > low else 1.0
                self.evidence_fig.layout.yaxis.range = [low - pad, top + pad]
            self.evidence_fig.layout.shapes[0].x0 = self.delta.value
            self.evidence_fig.layout.shapes[0].x1 = self.delta.value
