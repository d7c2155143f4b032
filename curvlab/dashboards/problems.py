"""The problems the dashboards open on: a catalogue of data sets and architectures, each trained
once to a chosen state (cached), the picker that chooses among them, and your own problem."""

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
}
# hidden layers of an MLP, or "conv": Conv(1→4, 3×3, pad 1) → MaxPool 2 → Flatten → Dense
# (8×8 images)
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
    if ARCHITECTURES[arch] != "conv":
        return cl.MLP([n_in] + ARCHITECTURES[arch] + [K], activation=activation)
    if n_in != 64:
        raise ValueError(f"the conv architecture takes 8×8 images; {dataset} has {n_in} "
                         "features per sample: pick digits or curves")
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


class ProblemPicker:
    """Data set, architecture, activation, loss and training state; `.value` is the key.

    Or your own problem instead of the built-in ones: `problem=` a `cl.Problem` (or `model=`,
    `X=`, `y=` and `loss=`, from which one is built) and optionally `w=` (default: the model's
    `init(seed=0)`); the picker then shows what it holds and offers no choices."""

    def __init__(self, dataset="spirals", arch="8", activation="tanh", loss="cross_entropy",
                 state="part-trained", problem=None, w=None, model=None, X=None, y=None):
        self.own = own_problem(problem, w, model, X, y, loss)
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
        self.state = menu(list(STATES), state, "state", "220px")
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
