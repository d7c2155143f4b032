"""The problems the dashboards open on: a catalogue of data sets and architectures, the weights at
any step of one recorded training run (`cl.dynamics.train`, cached), the picker that chooses
among them, and your own problem.

Training time: the picker's point is step `step` of a full-batch run of `train method` at
`train lr` for `train steps` steps from `model.init(seed=train seed)` (default Adam at lr 0.02
for 1000 steps from seed 0); the states initialisation, part-trained and trained are shortcuts
for its steps 0, 40 and 400. Links carry those settings and the step, never weights. A run is
recorded once per setting and cached: the first view trains only up to its own step (the apps'
first frame), the first step past that records the whole run once, and from then on every step
is a look-up (`recorded_run`)."""

import collections
import functools
import html

import ipywidgets as W
import numpy as np

import curvlab as cl

from .._checks import flat_vector
from ..problem import Problem
from .widgets import STYLE

DATASETS = {
    # name: (loader, kind) — kind 'class' (integer labels), 'regression', 'image' (autoencoder)
    "spirals": (lambda: cl.datasets.spirals(n=150, classes=3, seed=0), "class"),
    "moons": (lambda: cl.datasets.moons(n=150, seed=0), "class"),
    "xor": (lambda: cl.datasets.xor(n=120, seed=0), "class"),
    "regression1d": (lambda: cl.datasets.regression1d(n=80, seed=0), "regression"),
    "digits": (lambda: cl.datasets.digits(n=200, seed=0), "class"),     # 8×8 images, flattened
    "curves": (lambda: cl.datasets.curves(n=120, size=8, seed=0), "image"),
    # integer tokens (N, T), a target at every position: for the transformer
    "sorting": (lambda: cl.datasets.sorting(n=96, length=4, vocab=5, seed=0), "sequence"),
}
# hidden layers of an MLP; "conv": Conv(1→4, 3×3, pad 1) → MaxPool 2 → Flatten → Dense (8×8
# images); "residual-ln": Dense → 8, a pre-norm residual block (LayerNorm, Dense), LayerNorm,
# Dense; "transformer": a one-block pre-norm transformer (width 8, 2 heads) on token sequences
ARCHITECTURES = {"8": [8], "16": [16], "8-8": [8, 8], "4-4-4": [4, 4, 4], "conv": "conv",
                 "residual-ln": "residual-ln", "transformer": "transformer"}
WIDTH = 8                    # the residual net's and the transformer's width
ACTIVATIONS = ["tanh", "sigmoid", "relu", "softplus", "identity"]
LOSSES = ["cross_entropy", "bce", "mse"]
STATES = {"initialisation": 0, "part-trained": 40, "trained": 400}   # shortcuts: steps of the run
OTHER = "other step"         # the state menu's entry when the step is none of the shortcuts
# the recorded run's settings: the step-size methods of cl.optim, and the defaults
RUN_METHODS = ("adam", "gd", "momentum", "nesterov")
RUN = {"method": "adam", "lr": 0.02, "steps": 1000, "seed": 0}
MAX_RUN_STEPS = 5000         # longest run the picker records (every step's weights are kept)
RUNS_KEPT = 8                # recorded runs kept (each holds (steps + 1) × P weights)


def _targets(dataset, loss, X, y):
    """Targets for the chosen loss, or a ValueError that says which combination to pick."""
    kind = DATASETS[dataset][1]
    if kind == "sequence":
        if loss != "cross_entropy":
            raise ValueError(f"{dataset} has a token target at every position: pick the "
                             f"cross_entropy loss, not {loss}")
        return y, int(max(X.max(), y.max())) + 1
    if kind == "regression":
        if loss != "mse":
            raise ValueError(f"{dataset} has real-valued targets: pick the mse loss, not {loss}")
        return y, y.shape[1]
    if kind == "image":
        if loss == "cross_entropy":
            raise ValueError(f"{dataset} is an autoencoder task (targets are pixels): pick mse "
                             "or bce")
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
    sequence = DATASETS[dataset][1] == "sequence"
    if sequence != (arch == "transformer"):
        raise ValueError(f"{dataset} is a token sequence task: pick the transformer" if sequence
                         else f"the transformer reads token sequences: pick the sorting data, "
                         f"not {dataset}")
    d = WIDTH
    if arch == "transformer":                     # n_in: positions, K: the vocabulary
        return cl.Sequential([
            cl.Embedding(K, d),
            cl.Residual([cl.LayerNorm(d), cl.SelfAttention(d, heads=2)]),
            cl.Residual([cl.LayerNorm(d), cl.Dense(d, 2 * d, activation), cl.Dense(2 * d, d)]),
            cl.LayerNorm(d), cl.Dense(d, K)], input_shape=(n_in,))
    if arch == "residual-ln":
        return cl.Sequential([
            cl.Dense(n_in, d, activation),
            cl.Residual([cl.LayerNorm(d), cl.Dense(d, d, activation)]),
            cl.LayerNorm(d), cl.Dense(d, K)], input_shape=(n_in,))
    if ARCHITECTURES[arch] != "conv":
        return cl.MLP([n_in] + ARCHITECTURES[arch] + [K], activation=activation)
    if n_in != 64:
        raise ValueError(f"the conv architecture takes 8×8 images; {dataset} has {n_in} "
                         "features per sample: pick digits or curves")
    return cl.Sequential([cl.Conv2d(1, 4, 3, padding=1, activation=activation), cl.MaxPool2d(2),
                          cl.Flatten(), cl.Dense(64, K)], input_shape=(1, 8, 8))


@functools.lru_cache(maxsize=32)
def problem_for(dataset, arch, activation, loss):
    """The Problem of a picker setting (one object per setting, cached)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown data set {dataset!r}")
    X, y = DATASETS[dataset][0]()
    T, K = _targets(dataset, loss, X, y)
    model = make_model(dataset, arch, X.shape[1], K, activation)
    return cl.Problem(model, loss, X.reshape((len(X),) + model.input_shape), T)


_RUNS = collections.OrderedDict()     # run settings -> the longest Run recorded for them


def check_run(method, lr, steps, seed):
    """The run's settings, checked: a ValueError that names the bad one and what it takes."""
    if method not in RUN_METHODS:
        raise ValueError(f"train method {method!r} is not one of {', '.join(RUN_METHODS)}")
    if not (isinstance(lr, (int, float)) and np.isfinite(lr) and lr > 0):
        raise ValueError(f"train lr must be a positive number, not {lr!r}")
    if not (isinstance(steps, (int, np.integer)) and 1 <= steps <= MAX_RUN_STEPS):
        raise ValueError(f"train steps goes from 1 to {MAX_RUN_STEPS}, not {steps!r}")
    if not (isinstance(seed, (int, np.integer)) and seed >= 0):
        raise ValueError(f"train seed is a whole number >= 0, not {seed!r}")


def recorded_run(dataset, arch, activation, loss, method="adam", lr=0.02, steps=1000, seed=0,
                 upto=None):
    """(Problem, Run): `cl.dynamics.train` of `method` at `lr` for `steps` steps from
    `model.init(seed)`, recording the weights at every step (`every=1`, nothing else tracked).

    Cached by the settings. `upto`: the step the caller needs. A cached run that reaches it (or
    that diverged) is returned as it is; with none cached, only the first `upto` steps are run
    (the same iterates as the whole run's: nothing in the update depends on its length); past a
    cached prefix, the whole run is recorded once. Cost: `steps` full-batch gradients and
    (steps + 1) × P stored weights."""
    check_run(method, lr, steps, seed)
    problem = problem_for(dataset, arch, activation, loss)
    key = (dataset, arch, activation, loss, method, float(lr), int(steps), int(seed))
    need = int(steps) if upto is None else min(int(upto), int(steps))
    run = _RUNS.get(key)
    if run is None or not (run.n_steps >= need or run.diverged):
        length = int(steps) if run is not None else max(need, 1)
        w0 = problem.model.init(seed=int(seed))
        run = cl.dynamics.train(problem, w0, method, lr=float(lr), steps=length, every=1,
                                track=(), progress=False, cache=False)
        _RUNS[key] = run
        while len(_RUNS) > RUNS_KEPT:
            _RUNS.popitem(last=False)
    _RUNS.move_to_end(key)
    return problem, run


def step_of(state, step):
    """The step a (state, step) pair asks for: the shortcut's, or `step` for OTHER."""
    if state in STATES:
        return STATES[state]
    if state != OTHER:
        raise ValueError(f"unknown state {state!r}; choose one of {', '.join(STATES)}, or a step")
    return step


@functools.lru_cache(maxsize=64)
def problem_and_point(dataset, arch, activation, loss, state, step=None, method="adam", lr=0.02,
                      steps=1000, seed=0):
    """(Problem, w) for a picker setting: w the weights at step `step` (default: the state's
    shortcut step) of the recorded run (`recorded_run`), a copy. A step outside the run, or
    after it diverged, is a ValueError that says which steps there are."""
    if state == OTHER and step is None:
        raise ValueError(f"state {OTHER!r} needs a step")
    at = step_of(state, step)
    if state in STATES and step is not None and step != STATES[state]:
        raise ValueError(f"state {state!r} is step {STATES[state]}, not {step}")
    check_run(method, lr, steps, seed)
    if not (isinstance(at, (int, np.integer)) and 0 <= at <= steps):
        raise ValueError(f"step {at} is not a step of this run: pick a step from 0 to {steps} "
                         f"(or train longer: train steps up to {MAX_RUN_STEPS})")
    problem, run = recorded_run(dataset, arch, activation, loss, method, lr, steps, seed,
                                upto=at)
    if at > run.n_steps:       # only a run that diverged stops early
        raise ValueError(f"the run of {method} at lr {lr:g} {run.status}: pick a step from 0 "
                         f"to {run.n_steps}, or a smaller train lr")
    return problem, run.ws[at].copy()


class ProblemPicker:
    """Data set, architecture, activation, loss and training state; `.value` is the key.

    With `time=True` (the default) the state is any step of the recorded run (module docstring):
    a `step` box, the run's `train method`, `train lr`, `train steps` and `train seed`; the
    state menu's shortcuts set the step, and a step that is none of them shows as 'other step'.
    `.controls` are the problem's menus (data … state); `.time_controls` the run's settings and
    the step; `.value` holds both.

    Or your own problem instead of the built-in ones: `problem=` a `cl.Problem` (or `model=`,
    `X=`, `y=` and `loss=`, from which one is built) and optionally `w=` (default: the model's
    `init(seed=0)`); the picker then shows what it holds and offers no choices."""

    def __init__(self, dataset="spirals", arch="8", activation="tanh", loss="cross_entropy",
                 state="part-trained", problem=None, w=None, model=None, X=None, y=None,
                 time=True, step=None, method=RUN["method"], lr=RUN["lr"], steps=RUN["steps"],
                 seed=RUN["seed"]):
        self.own = own_problem(problem, w, model, X, y, loss)
        self.time_controls = []
        if self.own is not None:
            p, w = self.own
            self.controls = []
            self.widget = W.HTML(f"<b>your problem</b>: {html.escape(describe(p))}, "
                                 f"P = {w.size:,} parameters")
            return

        def menu(options, value, description, width="170px"):
            return W.Dropdown(options=options, value=value, description=description,
                              layout=W.Layout(width=width), style=STYLE)
        self.dataset = menu(list(DATASETS), dataset, "data")
        self.arch = menu(list(ARCHITECTURES), arch, "hidden")
        self.activation = menu(ACTIVATIONS, activation, "activation")
        self.loss = menu(LOSSES, loss, "loss", "200px")          # wide enough for cross_entropy
        if time:
            at = STATES[state] if step is None else step
            state = next((k for k, v in STATES.items() if v == at), OTHER)
        self.state = menu(list(STATES) + [OTHER] * time, state, "state", "220px")
        self.controls = [self.dataset, self.arch, self.activation, self.loss, self.state]
        if time:
            self._time_controls(at, method, lr, steps, seed)
        self.widget = W.HBox(self.controls + self.time_controls,
                             layout=W.Layout(flex_flow="row wrap"))

    def _time_controls(self, step, method, lr, steps, seed):
        """The step box and the run's settings; the state menu and the step follow each other."""
        wide = {"description_width": "initial"}
        self.step = W.IntText(value=step, description="step", style=STYLE,
                              layout=W.Layout(width="150px"))
        self.method = W.Dropdown(options=list(RUN_METHODS), value=method,
                                 description="train method", style=wide,
                                 layout=W.Layout(width="190px"))
        self.lr = W.BoundedFloatText(value=lr, min=1e-5, max=10.0, step=0.01,
                                     description="train lr", style=wide,
                                     layout=W.Layout(width="150px"))
        self.steps = W.BoundedIntText(value=steps, min=1, max=MAX_RUN_STEPS,
                                      description="train steps", style=wide,
                                      layout=W.Layout(width="170px"))
        self.seed = W.BoundedIntText(value=seed, min=0, max=10**6, description="train seed",
                                     style=wide, layout=W.Layout(width="150px"))
        self.time_controls = [self.step, self.method, self.lr, self.steps, self.seed]

        # registered before any dashboard's observer, so theirs see the two in agreement
        def shortcut(change):
            if change["new"] in STATES:
                self.step.value = STATES[change["new"]]

        def follow(change):
            self.state.value = next((k for k, v in STATES.items() if v == change["new"]), OTHER)
        self.state.observe(shortcut, names="value")
        self.step.observe(follow, names="value")

    @property
    def value(self):
        if self.own is not None:            # one fixed problem: its identity is the cache key
            return ("your problem", id(self.own[0]))
        return tuple(c.value for c in self.controls + self.time_controls)

    def observe(self, fn):
        # the state menu only sets the step (when it is a shortcut): its change reaches `fn`
        # through the step's, once, with the two in agreement
        watched = [c for c in self.controls if c is not self.state or not self.time_controls]
        for c in watched + self.time_controls:
            c.observe(fn, names="value")

    def get(self):
        return self.own if self.own is not None else problem_and_point(*self.value)

    def run(self):
        """(Problem, Run) of the recorded run the state is a step of (time=True only)."""
        if not self.time_controls:
            raise ValueError("this picker has no training run: build it with time=True")
        dataset, arch, activation, loss = (c.value for c in self.controls[:4])
        return recorded_run(dataset, arch, activation, loss, self.method.value,
                            self.lr.value, self.steps.value, self.seed.value,
                            upto=self.step.value)


def own_problem(problem, w, model, X, y, loss):
    """(Problem, w) from a user's problem or (model, X, y, loss); None when none is given."""
    if problem is None and model is None:
        if w is not None or X is not None or y is not None:
            raise ValueError("w, X and y go with your own problem: pass problem=cl.Problem(...) "
                             "(or model=, X=, y= and loss=)")
        return None
    if problem is not None and (model is not None or X is not None or y is not None):
        raise ValueError("pass either problem= or model= with X=, y= and loss=, not both: a "
                         "Problem holds its own model and data")
    if model is not None:
        if X is None or y is None:
            raise ValueError("model= needs X= and y= (and loss=, default cross_entropy)")
        problem = Problem(model, loss, X, y)
    if not isinstance(problem, Problem):
        raise TypeError(f"problem= takes a cl.Problem, not {type(problem).__name__}; build one "
                        "with cl.Problem(model, loss, X, y)")
    if w is None:
        return problem, problem.model.init(seed=0)
    w = flat_vector("w", w, problem.n_params)
    if w.ndim != 1:
        raise ValueError(f"w must be one flat vector of {problem.n_params} weights, got shape "
                         f"{w.shape}")
    return problem, w


def describe(problem):
    """One line on a problem: its layers (or, a network of units, the model's own words), its
    loss and its number of samples."""
    model = problem.model
    layers = getattr(model, "layers", None)           # a layered net; else (units) the model says
    net = " → ".join(type(layer).__name__ for layer in layers) if layers is not None \
        else repr(model)
    return f"{net}, {problem.lossfn.name} loss, {problem.N} samples"
