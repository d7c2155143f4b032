"""Curvature over training: pick a problem, an optimiser and η, run it (`cl.dynamics.train`:
a new problem runs at once; the optimiser, η, steps and SLQ wait for the "run" button, or a
link's run=train), and watch the loss, the sharpness against its stability threshold, the
Hessian's spectrum and the gradient's share in the top eigenspace along training; a step slider
(and ▶) moves through the recorded steps, and the loss slice through the weights there follows
it."""

import html

import ipywidgets as W
import numpy as np

import curvlab as cl

from .base import Dashboard, guarded
from .dynamics_figs import TOP_K, figures, mark_step, spectrum_map, top_two
from .lessons import Lesson
from .play import Player
from .widgets import STYLE, log_slider, panels

METHODS = ("gd", "momentum", "nesterov", "adam")
STEPS = (100, 300, 1000, 3000)
RECORDS = 30              # recorded steps per run (every = steps // RECORDS)
EXACT_LIMIT = 600         # up to this many parameters the spectrum is exact (else SLQ)
SLQ = dict(probes=2, steps=20)
SLICE_N = 25              # grid points per side of the loss slice


class DynamicsDashboard(Dashboard):
    title = "Curvature over training"

    CAPTIONS = {
        "loss_fig":
            "The full-batch training loss at every step, on a log axis. At the edge of stability "
            "it falls overall, but not monotonically: it spikes now and then.",
        "sharp_fig": (
            "sharpness and its threshold",
            "The largest Hessian eigenvalue λ₁ at each recorded step (exact), and the dashed "
            "line the optimiser's stability threshold on the quadratic model: 2/η for GD, "
            "(2 + 2β)/η for heavy-ball momentum, (2 + 2β)/((1 + 2β)η) for Nesterov. For Adam "
            "the curve is the preconditioned sharpness λ₁(P^-½ H P^-½), P = (1 − β₁ᵗ⁺¹) "
            "diag(√v̂ + ε), against (2 + 2β₁)/((1 − β₁)η) = 38/η. Above the line a quadratic "
            "would diverge; that training drives λ₁ up to it and then hovers there is the "
            "empirical finding (Cohen et al. 2021, 2022)."),
        "spec_fig": (
            "spectrum along training",
            "Each column is the Hessian's spectral density at one recorded step (log₁₀, "
            "colour): its exact eigenvalues, Gaussian-smoothed — or, with 'SLQ density' ticked "
            "(and for nets too large for exact eigenvalues), stochastic Lanczos quadrature "
            "from Hessian-vector products alone. The white lines are the top five "
            "eigenvalues (λ₁ solid): the outliers that leave the bulk."),
        "overlap_fig": (
            "gradient in the top eigenspace",
            "The share of ‖∇L‖² that lies in the span of the top-k Hessian eigenvectors "
            "(k = the number of outputs C), Gur-Ari et al. 2018: 1 means the gradient lives "
            "in the top eigenspace."),
        "plane_fig": (
            "loss slice at the step",
            "The loss (log₁₀) on the plane through the weights at the chosen step (the star) "
            "spanned by that step's top two Hessian eigenvectors u₁, u₂, ± span along each; "
            "the grey line is every recorded step projected on that plane. Move the step "
            "slider (or press ▶): the plane and the marks on the other panels follow."),
    }
    TRY_THIS = [
        Lesson("The default run (mse, GD at η = 1): the sharpness rises from 1.6 to 2/η = 2 "
               "within 30 steps and from then on swings around it (between 1.6 and 2.8, its "
               "median within 5 % of 2/η), while the loss falls fourfold overall, not "
               "monotonically — it spikes now and then: the edge of stability.", "step=300"),
        Lesson("Raise η to 1.5, past the point where 2/η = 1.33 is below the initial sharpness "
               "1.6: GD does not diverge — within 100 steps it drives the sharpness down to "
               "within 10 % of 2/η, and the loss still falls.", "eta=1.5&run=train"),
        Lesson("Compare GD with momentum (β = 0.9) at the same η = 1: the sharpness climbs well "
               "past GD's 2/η = 2, to near momentum's own threshold (2 + 2β)/η = 3.8, and the "
               "loss ends lower than GD's.", "optimiser=momentum&run=train"),
        Lesson("Watch the outliers appear (cross-entropy, 3 classes): at step 0 the top "
               "eigenvalue is within 5× the median |λ|; by step 100 the top three stand over "
               "30× above it — the outliers over the bulk.",
               "loss=cross_entropy&run=train&step=100"),
        Lesson("Switch to cross-entropy: the sharpness rises towards 2/η = 2, peaks, and then "
               "falls late in training — by the last step to under 80 % of its peak — while "
               "the loss keeps falling.", "loss=cross_entropy&run=train&step=300"),
    ]
    ACTIONS = {"train": "run_training"}

    def __init__(self, **picker):
        # the picker's state is where training starts: no second run's step here
        super().__init__(**{"loss": "mse", "state": "initialisation", **picker, "time": False})
        st = STYLE
        self.method = W.Dropdown(options=list(METHODS), value="gd", description="optimiser",
                                 style=st, layout=W.Layout(width="200px"))
        self.eta = log_slider("η", 1.0, -4, 1)
        self.steps = W.Dropdown(options=list(STEPS), value=300, description="steps", style=st,
                                layout=W.Layout(width="150px"))
        self.slq = W.Checkbox(value=False, description="SLQ density",
                              layout=W.Layout(width="auto"))
        self.run_button = W.Button(description="run", button_style="primary", icon="play",
                                   tooltip="train with these settings",
                                   layout=W.Layout(width="100px"))
        self.step = W.IntSlider(value=0, min=0, max=300, step=10, description="step",
                                continuous_update=False, style=st)
        self.player = Player(self.step)
        self.span = log_slider("span", 1.0, -2, 1)
        self.readout = W.HTML()
        figs = figures()
        self.loss_fig, self.sharp_fig = figs["loss_fig"], figs["sharp_fig"]
        self.spec_fig, self.overlap_fig = figs["spec_fig"], figs["overlap_fig"]
        self.plane_fig = figs["plane_fig"]

        self.shown = None                     # (settings key, problem, run) on the panels
        for c in (self.method, self.eta, self.steps, self.slq):
            c.observe(self._on_settings, names="value")
        self.picker.observe(lambda change: self.run_training())      # a new problem: run it
        self.run_button.on_click(lambda b: self.run_training())
        self.step.observe(self._on_step, names="value")
        self.span.observe(self._on_step, names="value")
        controls = W.VBox([self.picker.widget,
                           W.HBox([self.method, self.eta, self.steps, self.slq,
                                   self.run_button], layout=W.Layout(flex_flow="row wrap")),
                           W.HBox([self.player.widget, self.span, self.readout],
                                  layout=W.Layout(flex_flow="row wrap"))])
        self.widget = W.VBox([self.header(), controls, self.status.widget,
                              panels(self.loss_fig, self.sharp_fig, self.spec_fig,
                                     self.overlap_fig),
                              panels(self.plane_fig)])
        self.default_key = self._key()
        self.run_training()
        self.finish()

    # ---- the run: computed when the problem changes or "run" is pressed, cached by its settings
    def _key(self):
        return (self.picker.value, self.method.value, float(self.eta.value),
                int(self.steps.value), bool(self.slq.value))

    def current_actions(self):
        """['train'] when the panels show a run of the current settings other than the first
        view's (a link then asks for it)."""
        shown = self.shown[0] if self.shown else None
        return ["train"] if shown == self._key() != self.default_key else []

    def _train(self, key, progress=False):
        _, method, eta, steps, slq = key
        problem, w0 = self.picker.get()
        exact = problem.n_params <= EXACT_LIMIT
        track = {"sharpness": {}, "top_eigs": {"k": TOP_K}, "grad_overlap": {}}
        track.update({"eigvals": {}} if exact else {})
        track.update({"density": SLQ} if slq or not exact else {})
        if method == "adam":
            track["preconditioned_sharpness"] = {}
        every = max(1, steps // RECORDS)
        run = cl.dynamics.train(problem, w0, method, lr=eta, steps=steps, every=every,
                                track=track, progress=progress)
        return problem, run

    def _progress(self, busy, what, steps):
        """cl.dynamics.train's progress hook for the status line: the bar and 'step t of T',
        sent once per recorded step (each change is a message to the page)."""
        chunk = max(1, steps // RECORDS)

        def tick(done, total):
            if done % chunk and done != total:
                return
            busy.step(done - self.status.bar.value)
            self.status.html.value = (f"<span style='color:#555'>&#8987; {html.escape(what)}: "
                                      f"step {done} of {total}&hellip;</span>")
        return tick

    @guarded
    def run_training(self):
        key = self._key()
        what = (f"training: {key[3]} steps of {key[1]} at η = {key[2]:.3g}, the Hessian every "
                f"{max(1, key[3] // RECORDS)} steps")
        with self.status.busy(what, total=key[3]) as busy:
            problem, run = self.cache.get(("run",) + key, lambda: self._train(
                key, self._progress(busy, what, key[3])))
        self.shown = (key, problem, run)
        self._draw_run()
        if run.diverged:
            self.status.warn(f"{run.status}. The panels show the steps before it.")
        else:
            self.status.info(f"{what}: {run.n_steps} steps, {len(run.steps)} recorded, "
                             f"{self.status.seconds:.2f} s")

    def _on_settings(self, change=None):
        if self.shown is not None and self.shown[0] != self._key():
            self.status.info("settings changed: press “run” to train with them (the panels "
                             "show the last run)")

    # ---- drawing ----------------------------------------------------------------------------
    def _draw_run(self):
        key, problem, run = self.shown
        s = run.steps
        L = np.where(np.isfinite(run.losses), run.losses, np.nan)
        with self.loss_fig.batch_update():
            self.loss_fig.data[0].x, self.loss_fig.data[0].y = np.arange(len(L)), L
        q = run[run.threshold_of]
        adam = run.threshold_of != "sharpness"
        with self.sharp_fig.batch_update():
            self.sharp_fig.data[0].x, self.sharp_fig.data[0].y = s, q
            self.sharp_fig.data[0].name = "preconditioned λ₁" if adam else "sharpness λ₁"
            t = run.threshold
            self.sharp_fig.data[1].x = [0, run.n_steps] if t is not None else []
            self.sharp_fig.data[1].y = [t, t] if t is not None else []
            self.sharp_fig.data[1].name = "threshold" if t is None else f"threshold {t:.3g}"
            self.sharp_fig.layout.title.text = (
                "preconditioned sharpness (Adam) and its threshold" if adam
                else "sharpness λ₁ and its threshold")
        grid, logz, which = spectrum_map(run, key[4] or run.eigvals is None)
        with self.spec_fig.batch_update():
            h = self.spec_fig.data[0]
            h.x, h.y, h.z = s, grid, logz
            for i, tr in enumerate(self.spec_fig.data[1:]):
                tr.x, tr.y = s, run.top_eigs[:, i] if i < run.top_eigs.shape[1] else []
            self.spec_fig.layout.title.text = f"Hessian spectrum along training ({which})"
        k = run.track["grad_overlap"].get("k") or problem.n_outputs
        with self.overlap_fig.batch_update():
            self.overlap_fig.data[0].x, self.overlap_fig.data[0].y = s, run.grad_overlap
            self.overlap_fig.layout.title.text = f"gradient in the top-{k} eigenspace"
        every = int(s[1] - s[0]) if len(s) > 1 else 1
        with self.step.hold_trait_notifications():
            self.step.max = int(s[-1])
            self.step.step = every
            self.player.play.step = every
            self.step.value = min(self.step.value, int(s[-1]))
        self._on_step()

    def _slice(self, i, span):
        key, problem, run = self.shown

        def make():
            w = run.ws[i]
            d1, d2 = top_two(problem, w, EXACT_LIMIT)      # dense up to 600 P, else Lanczos
            Z = cl.landscape.grid(problem, w, d1, d2, span=span, n=SLICE_N)
            return d1, d2, Z
        return self.cache.get(("slice", key, i, span), make)

    @guarded
    def _on_step(self, change=None):
        if self.shown is None:
            return
        key, problem, run = self.shown
        i = run.index(self.step.value)
        step, span = int(run.steps[i]), float(self.span.value)
        d1, d2, Z = self._slice(i, span)
        a = np.linspace(-span, span, SLICE_N)
        D = run.ws - run.ws[i]
        with np.errstate(divide="ignore", invalid="ignore"):
            logz = np.log10(np.where(np.isfinite(Z) & (Z > 0), Z, np.nan))
        with self.plane_fig.batch_update():
            c = self.plane_fig.data[0]
            c.x, c.y, c.z = a, a, logz.T
            self.plane_fig.data[1].x, self.plane_fig.data[1].y = D @ d1, D @ d2
            self.plane_fig.data[2].text = [f"step {step}"]
            self.plane_fig.layout.xaxis.range = self.plane_fig.layout.yaxis.range = [-span, span]
            self.plane_fig.layout.title.text = f"loss slice through the weights at step {step}"
        for fig in (self.loss_fig, self.sharp_fig, self.spec_fig, self.overlap_fig):
            with fig.batch_update():
                mark_step(fig, step)
        q = run[run.threshold_of][i]
        t = run.threshold
        self.readout.value = (
            f"<span style='color:#333'>step <b>{step}</b>: loss {run.losses[step]:.4g}, "
            f"{html.escape('λ₁')} {q:.4g}" + (f" ({q * 100 / t:.0f} % of the threshold)"
                                              if t else "") +
            f", gradient overlap {run.grad_overlap[i]:.2f}</span>")
