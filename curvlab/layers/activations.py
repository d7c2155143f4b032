"""Activations with the derivatives the curvature recursions need: f, f', f'' (and f in place,
for the batched landscape grids). ReLU at exactly 0 has derivative 0; its f'' is 0 everywhere."""

from collections import namedtuple

import autograd.numpy as anp
import numpy as np

from .._checks import choice

# f, f', f'' and f applied in place to a float array (batched grids evaluate it without
# temporaries).
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
    "tanh": Activation(
        "tanh", anp.tanh, lambda x: 1.0 - np.tanh(x) ** 2, _tanh_d2, lambda x: np.tanh(x, out=x)
    ),
    "sigmoid": Activation("sigmoid", _sigmoid, _sigmoid_d1, _sigmoid_d2, _sigmoid_inplace),
    "relu": Activation(
        "relu",
        lambda x: anp.maximum(x, 0.0),
        lambda x: (x > 0).astype(float),
        np.zeros_like,
        lambda x: np.maximum(x, 0.0, out=x),
    ),
    "softplus": Activation(
        "softplus",
        lambda x: anp.logaddexp(0.0, x),
        _sigmoid,
        _sigmoid_d1,
        lambda x: np.logaddexp(0.0, x, out=x),
    ),
    "identity": Activation("identity", lambda x: x, np.ones_like, np.zeros_like, lambda x: x),
}
ACTIVATIONS["linear"] = ACTIVATIONS["identity"]

# f'' = 0 everywhere: the activation adds no second-order term to the Hessian recursions.
PIECEWISE_LINEAR = {"identity", "relu"}


def activation(name):
    """Look up an activation by name (tanh, sigmoid, relu, softplus, identity/linear)."""
    if isinstance(name, Activation):
        return name
    if not isinstance(name, str):
        raise TypeError(
            f"activation must be a name such as 'tanh', got {type(name).__name__} "
            f"{name!r}; choose one of {sorted(ACTIVATIONS)}"
        )
    return ACTIVATIONS[choice("activation", name, ACTIVATIONS)]
