"""What every layer kind provides; see the package docstring for the protocol."""

import autograd.numpy as anp
import numpy as np

from .activations import activation as _activation


def describe(shape):
    """A feature shape in the user's terms: (D,) for vectors, (C, H, W) for maps."""
    return str(tuple(shape)) if len(shape) == 1 else str((shape[2], shape[0], shape[1]))


def pair(name, value, minimum):
    """An int or a pair of ints, each >= minimum, as a pair (kernel sizes, strides, padding)."""
    v = (value, value) if np.ndim(value) == 0 else tuple(np.ravel(value))
    ok = len(v) == 2 and all(isinstance(x, (int, np.integer)) or
                             (isinstance(x, float) and x.is_integer()) for x in v)
    if not ok or min(v) < minimum:
        raise ValueError(f"{name} must be an int or a pair of ints >= {minimum}, got {value!r}")
    return tuple(int(x) for x in v)


class Layer:
    """Base of every layer kind. `build(in_shape)` checks the input's feature shape (internal,
    channels-last layout) and returns the output's; until then the layer is unsized."""

    has_params = False
    in_shape = out_shape = None

    def build(self, in_shape):
        raise NotImplementedError

    def __repr__(self):
        return type(self).__name__ + "()"


class Affine(Layer):
    """A layer whose parameters W̄ = [W | b] (n_out × (n_in + 1)) meet its input through patches:
    at each of T output locations, s_t = W̄ ā_t with ā_t = [patch_t; 1], then a = f(s).
    Subclasses say what the patches are (`patches`, its adjoint `patches_T`) and how the
    (T, n_out) pre-activations fold into the output's feature shape (`fold`, `unfold`)."""

    has_params = True
    T = None

    def _set_activation(self, activation, activation_name):
        if activation_name is not None:           # the older keyword
            activation = activation_name
        self.act = _activation(activation if activation is not None else "identity")

    @property
    def shape(self):
        """Shape of W̄ = [W | b]."""
        return (self.n_out, self.n_in + 1)

    @property
    def size(self):
        return self.n_out * (self.n_in + 1)

    @property
    def width(self):
        """Pre-activations per sample, T · n_out."""
        return self.T * self.n_out

    def init(self, rng):
        """LeCun-normal weights (variance 1/fan-in, fan-in = n_in), zero biases."""
        W = rng.standard_normal((self.n_out, self.n_in)) / np.sqrt(self.n_in)
        return np.hstack([W, np.zeros((self.n_out, 1))])

    def apply(self, Wbar, x):
        """Pre-activations in the output's feature shape, fold(patches(x) Wᵀ + b);
        differentiable by autograd in W̄ and x."""
        return self.fold(anp.dot(self.patches(x), Wbar[:, :-1].T) + Wbar[:, -1])
