"""Pooling over non-overlapping k×k windows (stride = kernel), which must tile the map.

Both are linear maps once the forward pass has run: average pooling always, max pooling given
its per-sample selection P_pool (Lin's notes), kept here as a one-hot mask over each window —
the first maximum in the window, row-major, as torch picks it. P_pool is max-pool's Jacobian,
so the same mask carries tangents forward (push), cotangents back (pull), and the batch
average E[P_poolᵀ M P_pool] that KFRA needs.
"""

import autograd.numpy as anp
import numpy as np
from autograd.tracer import getval

from .base import Layer, describe, pair


def sandwich(pull, M, out_shape):
    """Jᵀ M J for a linear map J given by its adjoint `pull` on (..., *out_shape) arrays;
    M is (D_out, D_out), the result (D_in, D_in)."""
    D = M.shape[0]
    Y = pull(M.reshape((D,) + tuple(out_shape))).reshape(D, -1)          # M J (rows of Jᵀ M)
    Din = Y.shape[1]
    return pull(np.ascontiguousarray(Y.T).reshape((Din,) + tuple(out_shape))).reshape(Din, Din)


class _Pool(Layer):
    def __init__(self, kernel_size):
        self.kernel = pair("kernel_size", kernel_size, 1)

    def build(self, in_shape):
        if len(in_shape) != 3:
            raise ValueError(f"{self!r} needs a (C, H, W) feature map but gets a vector of "
                             f"{in_shape[0]} features")
        H, W, C = in_shape
        kh, kw = self.kernel
        if H % kh or W % kw:
            fit = (C, H - H % kh or kh, W - W % kw or kw)
            raise ValueError(f"{self!r}: the {kh}x{kw} window does not tile the feature map "
                             f"{describe(in_shape)} (C, H, W); use a feature map whose height is a "
                             f"multiple of {kh} and width a multiple of {kw} (e.g. {fit}, by changing "
                             "the padding or stride before it) or a kernel that divides both")
        self.in_shape, self.out_shape = tuple(in_shape), (H // kh, W // kw, C)
        return self.out_shape

    @property
    def window(self):
        return self.kernel[0] * self.kernel[1]

    def windows(self, x):
        """(..., H, W, C) -> (..., H/kh, W/kw, C, kh·kw), window entries row-major."""
        (Ho, Wo, C), (kh, kw) = self.out_shape, self.kernel
        lead = x.shape[:-3]
        n = len(lead)
        x = anp.reshape(x, lead + (Ho, kh, Wo, kw, C))
        x = anp.transpose(x, tuple(range(n)) + (n, n + 2, n + 4, n + 1, n + 3))
        return anp.reshape(x, lead + (Ho, Wo, C, kh * kw))

    def unwindows(self, x):
        """The inverse of `windows`."""
        (Ho, Wo, C), (kh, kw) = self.out_shape, self.kernel
        lead = x.shape[:-4]
        n = len(lead)
        x = x.reshape(lead + (Ho, Wo, C, kh, kw)).transpose(tuple(range(n)) + (n, n + 3, n + 1, n + 4, n + 2))
        return x.reshape(lead + self.in_shape)

    def __repr__(self):
        k = self.kernel[0] if self.kernel[0] == self.kernel[1] else self.kernel
        return f"{type(self).__name__}({k})"


class MaxPool2d(_Pool):
    """Max over each window; ties go to the first maximum, row-major (torch's rule)."""

    def _mask(self, win):
        first = np.argmax(getval(win), axis=-1)
        return (np.arange(self.window) == first[..., None]).astype(np.float64)   # P_pool

    def forward(self, x):
        win = self.windows(x)
        mask = self._mask(win)
        return (win * mask).sum(-1), mask

    def apply(self, x):
        win = self.windows(x)
        return anp.sum(win * self._mask(win), axis=-1)

    def push(self, mask, dx):
        return (self.windows(dx) * mask).sum(-1)

    def pull(self, mask, dy):
        return self.unwindows(dy[..., None] * mask)

    def expected_sandwich(self, mask, M):
        """(1/N) Σₙ P_nᵀ M P_n = (Uᵀ M U) ⊙ E[m mᵀ]: U copies each output to its whole window,
        m is the 0/1 map of the selected inputs."""
        up = sandwich(lambda y: self.unwindows(np.repeat(y[..., None], self.window, -1)), M,
                      self.out_shape)
        m = self.unwindows(mask).reshape(mask.shape[0], -1)
        return up * (m.T @ m / mask.shape[0])


class AvgPool2d(_Pool):
    """Mean over each window."""

    def forward(self, x):
        return self.windows(x).mean(-1), None

    def apply(self, x):
        return anp.mean(self.windows(x), axis=-1)

    def push(self, state, dx):
        return self.windows(dx).mean(-1)

    def pull(self, state, dy):
        return self.unwindows(np.repeat(dy[..., None] / self.window, self.window, -1))

    def expected_sandwich(self, state, M):
        return sandwich(lambda y: self.pull(None, y), M, self.out_shape)
