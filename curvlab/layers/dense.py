"""Dense: s = W a + b, one output location (T = 1); its patch is the whole input vector."""

import autograd.numpy as anp

from .base import Affine, describe


class Dense(Affine):
    """Affine layer s = W a + b followed by an activation f (identity by default, as for a
    last layer). W̄ = [W | b] has shape (n_out, n_in + 1)."""

    T = 1

    def __init__(self, n_in, n_out, activation=None, activation_name=None):
        if int(n_in) < 1 or int(n_out) < 1:
            raise ValueError(f"Dense layer sizes must be >= 1, got {n_in} -> {n_out}")
        self.n_in, self.n_out = int(n_in), int(n_out)
        self._set_activation(activation, activation_name)

    def build(self, in_shape):
        if len(in_shape) != 1:
            raise ValueError(f"{self!r} needs a vector input but gets a feature map of shape "
                             f"{describe(in_shape)} (C, H, W); put cl.Flatten() before it")
        if in_shape[0] != self.n_in:
            raise ValueError(f"{self!r} expects {self.n_in} input features but gets {in_shape[0]}; "
                             f"use Dense({in_shape[0]}, {self.n_out}, ...)")
        self.in_shape, self.out_shape = (self.n_in,), (self.n_out,)
        return self.out_shape

    # the input vector is the single patch; folding drops the location axis
    def patches(self, x):
        return x[..., None, :]

    def patches_T(self, g):
        return g[..., 0, :]

    def fold(self, s):
        return s[..., 0, :]

    def unfold(self, a):
        return a[..., None, :]

    def apply(self, Wbar, x):
        """Pre-activations a Wᵀ + b of a batch of rows (the general fold/patches path,
        shortened)."""
        return anp.dot(x, Wbar[:, :-1].T) + Wbar[:, -1]

    def __repr__(self):
        return f"Dense({self.n_in}, {self.n_out}, {self.act.name!r})"
