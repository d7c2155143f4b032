"""Flatten: a feature map (C, H, W) to a vector, ordered (C, H, W) row-major as torch does."""

import autograd.numpy as anp

from .base import Layer
from .pool import sandwich


class Flatten(Layer):
    """(..., H, W, C) internally -> (..., C·H·W) in torch's (C, H, W) order; a vector passes
    as is."""

    def build(self, in_shape):
        self.in_shape = tuple(in_shape)
        self.out_shape = (int(anp.prod(anp.array(in_shape))),)
        return self.out_shape

    def apply(self, x):
        if len(self.in_shape) == 1:
            return x
        n = x.ndim - 3
        chw = anp.transpose(x, tuple(range(n)) + (n + 2, n, n + 1))
        return anp.reshape(chw, x.shape[:-3] + self.out_shape)

    def forward(self, x):
        return self.apply(x), None

    def push(self, state, dx):
        return self.apply(dx)

    def pull(self, state, dy):
        if len(self.in_shape) == 1:
            return dy
        H, W, C = self.in_shape
        n = dy.ndim - 1
        return dy.reshape(dy.shape[:-1] + (C, H, W)).transpose(tuple(range(n)) + (n + 1, n + 2, n))

    def expected_sandwich(self, state, M):
        return sandwich(lambda y: self.pull(None, y), M, self.out_shape)
