"""Layered models: Dense layers, activations with their first two derivatives, MLP.

The flat parameter vector (the layout every matrix in curvlab uses) is the concatenation
over layers l = 1..L of W̄_l = [W_l | b_l], shape (n_l, n_{l-1} + 1), flattened row-major:
for each output unit, its incoming weights and then its bias. With this layout the K-FAC
block of layer l is exactly ``np.kron(S_l, A_l)`` (A over the augmented input ā = [a; 1]).

A layer is a pair of pure functions in the stax sense: ``init(rng)`` gives W̄ and
``apply(Wbar, a)`` gives the pre-activation s = a W̄[:, :-1]ᵀ + b for a batch of rows a.
"""

from collections import namedtuple

import autograd.numpy as anp
import numpy as np

from ._checks import choice, finite_array

# An activation with the derivatives the curvature recursions need: f, f', f'', and f applied
# in place to a float array (batched landscape grids evaluate it without temporaries).
Activation = namedtuple("Activation", "name f df d2f f_inplace")


def _sigmoid(x):
    return 0.5 * (anp.tanh(0.5 * x) + 1.0)  # overflow-free form of 1 / (1 + e^-x)


def _tanh_d2(x):
    t = np.tanh(x)
    return -2.0 * t * (1.0 - t * t)


def _sigmoid_inplace(x):
    x *= 0.5
    np.tanh(x, out=x)
    x += 1.0
    x *= 0.5
    return x


def _sigmoid_d1(x):
    s = _sigmoid(x)
    return s * (1.0 - s)


def _sigmoid_d2(x):
    s = _sigmoid(x)
    return s * (1.0 - s) * (1.0 - 2.0 * s)


ACTIVATIONS = {
    "tanh": Activation("tanh", anp.tanh, lambda x: 1.0 - np.tanh(x) ** 2, _tanh_d2,
                       lambda x: np.tanh(x, out=x)),
    "sigmoid": Activation("sigmoid", _sigmoid, _sigmoid_d1, _sigmoid_d2, _sigmoid_inplace),
    "relu": Activation("relu", lambda x: anp.maximum(x, 0.0), lambda x: (x > 0).astype(float),
                       np.zeros_like, lambda x: np.maximum(x, 0.0, out=x)),
    "softplus": Activation("softplus", lambda x: anp.logaddexp(0.0, x), _sigmoid, _sigmoid_d1,
                           lambda x: np.logaddexp(0.0, x, out=x)),
    "identity": Activation("identity", lambda x: x, np.ones_like, np.zeros_like, lambda x: x),
}
ACTIVATIONS["linear"] = ACTIVATIONS["identity"]


def activation(name):
    """Look up an activation by name (tanh, sigmoid, relu, softplus, identity/linear)."""
    if isinstance(name, Activation):
        return name
    return ACTIVATIONS[choice("activation", name, ACTIVATIONS)]


class Dense:
    """Affine layer s = W a + b followed by an activation f (identity for the last layer)."""

    def __init__(self, n_in, n_out, activation_name="identity"):
        if int(n_in) < 1 or int(n_out) < 1:
            raise ValueError(f"Dense layer sizes must be >= 1, got {n_in} -> {n_out}")
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.act = activation(activation_name)

    @property
    def shape(self):
        """Shape of W̄ = [W | b]."""
        return (self.n_out, self.n_in + 1)

    @property
    def size(self):
        return self.n_out * (self.n_in + 1)

    def init(self, rng):
        """LeCun-normal weights (variance 1/n_in), zero biases."""
        W = rng.standard_normal((self.n_out, self.n_in)) / np.sqrt(self.n_in)
        return np.hstack([W, np.zeros((self.n_out, 1))])

    def apply(self, Wbar, a):
        """Pre-activations of a batch of rows a: s = a Wᵀ + b."""
        return anp.dot(a, Wbar[:, :-1].T) + Wbar[:, -1]

    def __repr__(self):
        return f"Dense({self.n_in}, {self.n_out}, {self.act.name!r})"


class MLP:
    """A stack of Dense layers, sizes [n_0, n_1, ..., n_L]; hidden layers use `activation`,
    the last layer is linear (its outputs z are the loss's logits or predictions)."""

    def __init__(self, sizes, activation="tanh"):
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2:
            raise ValueError(f"MLP needs at least [inputs, outputs] sizes, got {sizes}")
        act = globals()["activation"](activation)
        self.sizes = sizes
        self.activation = act.name
        self.layers = [Dense(a, b, act.name if i < len(sizes) - 2 else "identity")
                       for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]
        self.offsets = np.cumsum([0] + [l.size for l in self.layers])

    @property
    def n_params(self):
        return int(self.offsets[-1])

    @property
    def n_in(self):
        return self.sizes[0]

    @property
    def n_out(self):
        return self.sizes[-1]

    def init(self, seed=0):
        """A flat float64 parameter vector in curvlab's layout."""
        rng = np.random.default_rng(seed)
        return self.flatten([layer.init(rng) for layer in self.layers])

    def unflatten(self, w):
        """Per-layer W̄_l views of a flat vector (works on autograd boxes too)."""
        return [w[o:e].reshape(l.shape) for l, o, e in zip(self.layers, self.offsets[:-1],
                                                             self.offsets[1:])]

    def flatten(self, Wbars):
        return np.concatenate([np.asarray(Wb, dtype=np.float64).ravel() for Wb in Wbars])

    def layer_slices(self):
        """slice of each layer's parameters in the flat vector."""
        return [slice(int(o), int(e)) for o, e in zip(self.offsets[:-1], self.offsets[1:])]

    def check_params(self, w):
        w = finite_array("w", w, ndim=1)
        if w.shape[0] != self.n_params:
            raise ValueError(f"w has {w.shape[0]} entries but {self!r} has {self.n_params} "
                             "parameters; use model.init(seed) for a vector in the right layout")
        return w

    def forward(self, w, X):
        """Outputs z (N, n_L); differentiable by autograd in w."""
        a = X
        for layer, Wb in zip(self.layers, self.unflatten(w)):
            a = layer.act.f(layer.apply(Wb, a))
        return a

    def __repr__(self):
        return f"MLP({self.sizes}, activation={self.activation!r})"
