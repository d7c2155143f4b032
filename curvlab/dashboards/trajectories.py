"""Trajectories: Newton vs gradient descent and the rest, on the 2-D test functions (paths on
the contour plot) and on small networks (loss against iterations and wall time), with the
reparameterisation toggle that shows which methods are affine invariant."""

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

import curvlab as cl

from .base import Dashboard, guarded
from .figure import FigureWidget
from .lessons import Lesson
from .marks import disc, mark_points, set_marks, set_note
from .play import Player
from .runs import (
    DEFAULT_HYPER,
    FIRST_ORDER,
    FIRST_ORDER_SCALE,
    FUNCTION_HYPER,
    FUNCTIONS,
    NETWORK_HYPER,
    R2,
    method_color,
)
from .widgets import STYLE, panels, with_hint


class TrajectoriesDashboard(Dashboard):
    title = "Trajectories: Newton, gradient descent and the rest"

    CAPTIONS = {
        "path_fig":
            "On the 2-D test functions: each method's iterates on the contours of f, from the same "
            "start; 'show step' marks iterate k on every path.",
        "iter_fig":
            "The loss against the iteration number, per method (log axis): second-order methods "
            "take fewer, costlier steps.",
        "time_fig":
            "The same runs against wall-clock time, which charges each method for the cost of its "
            "steps.",
    }
    TRY_THIS = [
        Lesson("On quadratic — a long narrow valley, curvatures 1 and 50 — gradient descent "
               "(lr 0.035, near 2/50) zig-zags across the valley (its step's component across it "
               "changes sign at every step), while Newton lands on the minimum in one step.",
               "function=quadratic&methods=gd,newton"),
        Lesson("Tick 'reparameterise: w = R w̃' on rosenbrock: gradient descent's path changes with "
               "the coordinates, Newton's does not (Newton's method is affine-invariant) — even "
               "its second step, which leaps out of the frame (the note says where).",
               "reparameterise=1&methods=gd,newton"),
        Lesson("Raise 'lr ×' to 10: gradient descent diverges on rosenbrock, and the summary "
               "reports it instead of failing.", "methods=gd&lr=10"),
        Lesson("On network at state initialisation: natural gradient and K-FAC reach a lower loss "
               "than gd and adam in the same number of iterations; but each natural-gradient step "
               "costs more time than an adam step (the table's seconds), which the wall-time plot "
               "charges.", "on=network&state=initialisation&methods=gd,adam,natural_gradient,kfac"),
    ]
    OUTSIDE = "outside"          # the paths plot's note on paths that leave the frame

    def __init__(self, mode=None, **picker):
        super().__init__(**picker)
        if mode is None:                    # your own problem is a network: start there
            mode = "network" if self.picker.own is not None else "2-D functions"
        st = STYLE
        # every method minimize takes, read now (not at import): the registry's kinds add theirs
        self.method_names = list(NETWORK_HYPER) + [m for m in cl.optim.method_names()
                                                   if m not in NETWORK_HYPER]
        self.colors = {m: method_color(m) for m in self.method_names}
        self.mode = W.ToggleButtons(options=["2-D functions", "network"], value=mode,
                                    description="on", style=st)
        self.function = W.Dropdown(options=list(FUNCTIONS), value="rosenbrock",
                                   description="function", style=st,
                                   layout=W.Layout(width="200px"))
        self.methods = W.SelectMultiple(options=self.method_names,
                                        value=("gd", "momentum", "adam", "newton", "gauss_newton"),
                                        rows=12, description="methods", style=st,
                                        layout=W.Layout(width="220px"))
        self.steps = W.IntSlider(value=60, min=5, max=300, step=5, description="steps",
                                 continuous_update=False, style=st)
        self.lr_scale = W.FloatLogSlider(value=1.0, base=10, min=-1, max=1, step=0.1,
                                         description="lr × ", continuous_update=False, style=st)
        self.reparam = W.Checkbox(value=False, description="reparameterise: w = R w̃ (affine)",
                                  layout=W.Layout(width="auto"))     # (the default 300 px cut it)
        self.k = W.IntSlider(value=0, min=0, max=60, description="show step", style=st)
        self.player = Player(self.k, interval=300)
        self.summary = W.HTML()

        lay = dict(height=400, margin=dict(l=55, r=10, t=40, b=40))
        log_loss = dict(title="loss", type="log")
        self.path_fig = FigureWidget(layout=go.Layout(title="paths on the contours of f",
                                                      xaxis_title="w₀", yaxis_title="w₁", **lay))
        self.path_fig.add_contour(z=np.zeros((2, 2)), colorscale="Greys", showscale=False,
                                  ncontours=40, contours=dict(coloring="lines"), name="f",
                                  hoverinfo="skip")
        self.iter_fig = FigureWidget(layout=go.Layout(title="loss against iterations",
                                                      xaxis_title="step", yaxis=log_loss, **lay))
        self.time_fig = FigureWidget(layout=go.Layout(title="loss against wall time",
                                                      xaxis_title="seconds", yaxis=log_loss,
                                                      **lay))
        none = dict(x=np.zeros(0), y=np.zeros(0), visible=False)
        for m in self.method_names:
            c = self.colors[m]
            self.path_fig.add_scatter(**none, mode="lines+markers", name=m, line=dict(color=c),
                                      marker=dict(size=3))
            self.iter_fig.add_scatter(**none, name=m, line=dict(color=c))
            self.time_fig.add_scatter(**none, name=m, line=dict(color=c))

        self.mode.observe(self._on_mode, names="value")
        self.picker.observe(self._on_run)
        for c in (self.function, self.methods, self.steps, self.lr_scale, self.reparam):
            c.observe(self._on_run, names="value")
        self.k.observe(self._on_k, names="value")
        self.path_box = W.Box([self.path_fig])
        controls = W.VBox([W.HBox([self.mode, self.function]), self.picker.widget,
                           W.HBox([with_hint(self.methods),
                                   W.VBox([self.steps, self.lr_scale, self.reparam,
                                           self.player.widget])])])
        self.widget = W.VBox([self.header(), controls, self.status.widget, self.summary,
                              panels(self.path_box, self.iter_fig, self.time_fig)])
        self._on_mode()
        self.finish()

    # objective and runs ------------------------------------------------------------------------
    def _objective(self):
        if self.mode.value == "2-D functions":
            make, w0, box = FUNCTIONS[self.function.value]
            key = ("fn", self.function.value)
            return key, self.cache.get(key, make), w0, box
        problem, w = self.picker.get()
        return ("net",) + self.picker.value, problem, w, None

    def hyper(self, method):
        """The settings `method` runs with in the current view."""
        net = self.mode.value == "network"
        hyper = dict((NETWORK_HYPER if net else FUNCTION_HYPER).get(
            method, DEFAULT_HYPER[self.mode.value]))
        if not net and method in FIRST_ORDER:
            hyper["lr"] *= FIRST_ORDER_SCALE.get(self.function.value, 1.0)
        if "lr" in hyper:
            hyper["lr"] *= self.lr_scale.value
        elif method != "hessian_free":
            hyper["lr"] = self.lr_scale.value
        return hyper

    def _run(self, okey, obj, w0, method):
        net, hyper = self.mode.value == "network", self.hyper(method)
        reparam = self.reparam.value
        key = ("run", okey, method, tuple(sorted(hyper.items())), self.steps.value, reparam)

        def make():
            if not reparam:
                return cl.optim.minimize(obj, w0, method, steps=self.steps.value, **hyper), None
            R = R2 if not net else self._net_R(len(w0))
            rp = cl.optim.reparameterize(obj, R)
            tr = cl.optim.minimize(rp, rp.from_original(w0), method, steps=self.steps.value,
                                   **hyper)
            return tr, rp.to_original(tr.ws)
        return self.cache.get(key, make)

    def _net_R(self, P):
        def make():
            noise = np.random.default_rng(0).standard_normal((P, P)) / np.sqrt(P)
            return np.eye(P) + 0.3 * noise @ np.diag(np.logspace(0, 1, P))
        return self.cache.get(("R", P), make)

    # callbacks ---------------------------------------------------------------------------------
    @guarded
    def _on_mode(self, change=None):
        fn = self.mode.value == "2-D functions"
        self.function.layout.display = None if fn else "none"
        self.picker.widget.layout.display = "none" if fn else None
        self.path_box.layout.display = None if fn else "none"
        self._on_run()

    @guarded
    def _on_run(self, change=None):
        okey, obj, w0, box = self._objective()
        net = self.mode.value == "network"
        # a method that needs a Problem (a layered network) runs on a network in its own
        # coordinates only: not on the 2-D functions, not reparameterised
        problem_only = {m for m in self.method_names if cl.optim.needs_problem(m)}
        methods = [m for m in self.methods.value
                   if m not in problem_only or (net and not self.reparam.value)]
        skipped = sorted(set(self.methods.value) - set(methods))
        runs = {}
        with self.status.busy(f"running {len(methods)} optimisers", total=len(methods)) as b:
            for m in methods:
                runs[m] = self._run(okey, obj, w0, m)
                b.step()
        self._runs = runs
        if box is not None:
            x0, x1, y0, y1 = box
            xs, ys = np.linspace(x0, x1, 121), np.linspace(y0, y1, 121)
            Z = self.cache.get(("contour", okey), lambda: np.array(
                [[float(obj(np.array([x, y]))) for x in xs] for y in ys]))
            with self.path_fig.batch_update():
                c = self.path_fig.data[0]
                c.x, c.y, c.z = xs, ys, np.log10(Z - Z.min() + 1e-3)
                self.path_fig.layout.xaxis.range = [x0, x1]
                self.path_fig.layout.yaxis.range = [y0, y1]
        floor = self._floor()
        for fig in (self.path_fig, self.iter_fig, self.time_fig):
            with fig.batch_update():
                for i, m in enumerate(self.method_names):
                    tr = fig.data[i + (1 if fig is self.path_fig else 0)]
                    tr.visible = m in runs
                    if m not in runs:
                        continue
                    traj, ws = runs[m]
                    ws = traj.ws if ws is None else ws
                    above = np.maximum(traj.losses - floor, 1e-16)
                    if fig is self.path_fig:
                        tr.x, tr.y = ws[:, 0], ws[:, 1]
                    elif fig is self.iter_fig:
                        tr.x, tr.y = np.arange(len(traj.losses)), above
                    else:
                        tr.x, tr.y = traj.times, above
        self.iter_fig.layout.yaxis.title = "loss" if net else "loss − min"
        self.time_fig.layout.yaxis.title = self.iter_fig.layout.yaxis.title
        self.k.max = self.steps.value
        rows = [(m, t.losses[-1], len(t.losses) - 1, int(t.n_grads.sum()),
                 int(t.n_products.sum()), float(t.times[-1]), t.status)
                for m, (t, _) in runs.items()]
        note = (f" (not run: {', '.join(skipped)} — they need a layered network"
                + (" in its own coordinates)" if net else ")")) if skipped else ""
        self.show_table(self.summary, "runs", ["method", "final loss", "steps", "gradients",
                                               "curv. products", "seconds", "status"], rows,
                        fmt="{:.4g}", note=note)
        set_note(self.path_fig, self.OUTSIDE, self.outside_note(runs, box))
        self._on_k()

    @staticmethod
    def outside_note(runs, box):
        """Which paths leave the frame `box`, first where (the contours cover the frame only)."""
        if box is None:
            return ""
        x0, x1, y0, y1 = box
        out = []
        for m, (t, ws) in runs.items():
            ws = t.ws if ws is None else ws
            off = ~((ws[:, 0] >= x0) & (ws[:, 0] <= x1) & (ws[:, 1] >= y0) & (ws[:, 1] <= y1))
            if off.any():
                k = int(np.argmax(off))
                where = (f"({ws[k, 0]:.3g}, {ws[k, 1]:.3g})" if np.all(np.isfinite(ws[k]))
                         else "(diverged)")
                out.append(f"{m} leaves the frame at step {k} {where}")
        return "; ".join(out)

    def _floor(self):
        """The minimum value of a 2-D function (found once by Newton), to plot loss − min."""
        if self.mode.value != "2-D functions":
            return 0.0
        okey, obj, w0, _ = self._objective()
        return self.cache.get(("floor", okey), lambda: min(0.0, float(cl.optim.minimize(
            obj, w0, "newton", steps=50, variant="damped", damping=1e-8).losses.min())))

    STEP_MARK = "step k"

    @guarded
    def _on_k(self, change=None):
        """Mark iterate k on every 2-D path, as a disc in the method's colour (layout shapes:
        moving them does not redraw the contours under the paths)."""
        runs = getattr(self, "_runs", {}) if self.mode.value == "2-D functions" else {}
        discs, methods = [], []
        for m, (t, ws) in runs.items():
            ws = t.ws if ws is None else ws
            x, y = ws[min(self.k.value, len(ws) - 1)]
            if np.isfinite(x) and np.isfinite(y):                # a diverged run has no mark
                discs.append(disc(x, y, self.colors[m]))
                methods.append(m)
        set_marks(self.path_fig, self.STEP_MARK, discs, labels=methods)

    def step_marks(self):
        """{method: (x, y)} of the 'show step' marks on the paths plot."""
        return mark_points(self.path_fig, self.STEP_MARK)
