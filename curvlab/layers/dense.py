"""Dense: s = W a + b on the last axis. On a vector (D,) there is one output location (T = 1)
and the patch is the whole input; on a sequence (T, D) the same W̄ meets each of the T
positions (weight sharing, like a convolution with a 1-wide kernel)."""

import autograd.numpy as anp

from .base import Affine, describe, is_map


class Dense(Affine):
    """Affine layer s = W a + b followed by an activation f (identity by default, as for a
    last layer). W̄ = [W | b] has shape (n_out, n_in + 1); with bias=False, W (n_out, n_in).
    On (N, T, D) inputs it acts on the last axis, one weight shared by the T positions."""

    T = 1
    positionwise = True      # on a sequence, each position alone (curvature.blocks)

    def __init__(self, n_in, n_out, activation=None, bias=True, activation_name=None):
        if int(n_in) < 1 or int(n_out) < 1:
            raise ValueError(f"Dense layer sizes must be >= 1, got {n_in} -> {n_out}")
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.bias = bool(bias)
        self._set_activation(activation, activation_name)
        self.sequence = False

    def build(self, in_shape):
        if is_map(in_shape):
            raise ValueError(f"{self!r} needs a vector (or sequence) input but gets a feature "
                             f"map of shape {describe(in_shape)}; put cl.Flatten() before it")
        if in_shape[-1] != self.n_in:
            use = f"Dense({in_shape[-1]}, {self.n_out}, ...)"
            raise ValueError(f"{self!r} expects {self.n_in} input features but gets "
                             f"{in_shape[-1]}; use {use}")
        self.sequence = len(in_shape) == 2
        self.T = int(in_shape[0]) if self.sequence else 1
        self.in_shape = tuple(in_shape)
        self.out_shape = (self.T, self.n_out) if self.sequence else (self.n_out,)
        return self.out_shape

    @property
    def whole_input(self):
        return not self.sequence

    @property
    def chain(self):
        """A Dense shared over positions is not (yet) one of the chain algorithms' layers."""
        return not self.sequence

    # a vector is the single patch (folding drops the location axis); a sequence's positions
    # are its patches
    def patches(self, x):
        return x if self.sequence else x[..., None, :]

    def patches_T(self, g):
        return g if self.sequence else g[..., 0, :]

    def fold(self, s):
        return s if self.sequence else s[..., 0, :]

    def unfold(self, a):
        return a if self.sequence else a[..., None, :]

    def apply(self, Wbar, x):
        """Pre-activations a Wᵀ + b of a batch of rows (the general fold/patches path,
        shortened)."""
        if Wbar.ndim != 2:
            return super().apply(Wbar, x)
        s = anp.dot(x, anp.transpose(self.weight(Wbar)))
        return s + Wbar[:, -1] if self.bias else s

    def run(self, Wbar, x, out=None):
        if out is None:
            return self.act.f(self.apply(Wbar, x))
        return super().run(Wbar, x, out)

    def _torch_module(self, torch):
        return torch.nn.Linear(self.n_in, self.n_out, bias=self.bias, dtype=torch.float64)

    def __repr__(self):
        extra = "" if self.bias else ", bias=False"
        return f"Dense({self.n_in}, {self.n_out}, {self.act.name!r}{extra})"
