"""Flatten: a feature map (C, H, W) or (C, L) to a vector, ordered channels first, row-major, as
torch does; a sequence (T, D) to T·D features, position by position; a vector passes as is."""

import autograd.numpy as anp
import numpy as np

from .base import Layer, is_map
from .pool import sandwich


class Flatten(Layer):
    """(..., H, W, C) or (..., L, C) internally -> (..., C·H·W) in torch's (C, H, W) order; a
    sequence (..., T, D) -> (..., T·D); a vector passes as is."""

    chain = True

    def to_torch(self, torch, theta):
        return [torch.nn.Flatten()]

    def build(self, in_shape):
        self.in_shape = in_shape if is_map(in_shape) else tuple(in_shape)
        self.out_shape = (int(np.prod(in_shape)),)
        return self.out_shape

    def _perm(self, ndim, inverse=False):
        """Axes that move channels-last (..., *spatial, C) to channels-first, or back."""
        d = len(self.in_shape) - 1
        n = ndim - d - 1
        if inverse:
            return tuple(range(n)) + tuple(range(n + 1, n + d + 1)) + (n,)
        return tuple(range(n)) + (n + d,) + tuple(range(n, n + d))

    def apply(self, x):
        if len(self.in_shape) == 1:
            return x
        lead = x.shape[: x.ndim - len(self.in_shape)]
        if is_map(self.in_shape):
            x = anp.transpose(x, self._perm(x.ndim))
        return anp.reshape(x, lead + self.out_shape)

    def forward(self, x):
        return self.apply(x), None

    def push(self, state, dx):
        return self.apply(dx)

    def pull(self, state, dy):
        if len(self.in_shape) == 1:
            return dy
        lead = dy.shape[:-1]
        if not is_map(self.in_shape):
            return dy.reshape(lead + tuple(self.in_shape))
        first = (self.in_shape[-1],) + tuple(self.in_shape[:-1])            # (C, *spatial)
        return dy.reshape(lead + first).transpose(self._perm(len(lead) + len(first), True))

    def expected_sandwich(self, state, M):
        return sandwich(lambda y: self.pull(None, y), M, self.out_shape)
