"""Pooling over non-overlapping k×k windows (stride = kernel), which must tile the map.

Both are linear maps once the forward pass has run: average pooling always, max pooling given
its per-sample selection P_pool (Lin's notes), kept here as the input position each output
reads — the first maximum in the window, row-major, as torch picks it. P_pool is max-pool's
Jacobian, so the same selection carries tangents forward (push: a gather), cotangents back
(pull: a scatter), and gives the batch average E[P_poolᵀ M P_pool] that KFRA needs.
"""

import autograd.numpy as anp
import numpy as np
from autograd.tracer import getval

from .base import Layer, describe, is_map, pair


def sandwich(pull, M, out_shape):
    """Jᵀ M J for a linear map J given by its adjoint `pull` on (..., *out_shape) arrays;
    M is (D_out, D_out), the result (D_in, D_in)."""
    D = M.shape[0]
    Y = pull(M.reshape((D,) + tuple(out_shape))).reshape(D, -1)          # M J (rows of Jᵀ M)
    Din = Y.shape[1]
    return pull(np.ascontiguousarray(Y.T).reshape((Din,) + tuple(out_shape))).reshape(Din, Din)


class _Pool(Layer):
    chain = True

    def __init__(self, kernel_size):
        self.kernel = pair("kernel_size", kernel_size, 1)

    def to_torch(self, torch, theta):
        return [getattr(torch.nn, type(self).__name__)(self.kernel)]

    def build(self, in_shape):
        if len(in_shape) != 3:
            raise ValueError(f"{self!r} needs a (C, H, W) feature map but gets a vector of "
                             f"{in_shape[0]} features")
        H, W, C = in_shape
        kh, kw = self.kernel
        if H % kh or W % kw:
            fit = (C, H - H % kh or kh, W - W % kw or kw)
            raise ValueError(
                f"{self!r}: the {kh}x{kw} window does not tile the feature map "
                f"{describe(in_shape)} (C, H, W); use a feature map whose height is a "
                f"multiple of {kh} and width a multiple of {kw} (e.g. {fit}, by changing "
                "the padding or stride before it) or a kernel that divides both"
            )
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
        x = x.reshape(lead + (Ho, Wo, C, kh, kw)).transpose(
            tuple(range(n)) + (n, n + 3, n + 1, n + 4, n + 2)
        )
        return x.reshape(lead + self.in_shape)

    def __repr__(self):
        k = self.kernel[0] if self.kernel[0] == self.kernel[1] else self.kernel
        return f"{type(self).__name__}({k})"


class MaxPool2d(_Pool):
    """Max over each window; ties go to the first maximum, row-major (torch's rule). The state
    P_pool is kept as the flat input position each output reads (per sample), so the tangent
    rule is a gather and the adjoint a scatter."""

    monotone = True        # commutes with a non-decreasing activation: max f(x) = f(max x)

    def _selection(self, x):
        """Flat position in the (H, W, C) map of each output's chosen input: (..., Ho·Wo·C)."""
        win = self.windows(getval(x))
        first = np.argmax(win, axis=-1)  # (..., Ho, Wo, C)
        (Ho, Wo, C), (kh, kw) = self.out_shape, self.kernel
        W = self.in_shape[1]
        h = np.arange(Ho)[:, None, None] * kh + first // kw
        w = np.arange(Wo)[None, :, None] * kw + first % kw
        sel = (h * W + w) * C + np.arange(C)
        return sel.reshape(sel.shape[:-3] + (-1,))

    def forward(self, x):
        sel = self._selection(x)
        return self.push(sel, x), sel

    def apply(self, x):
        sel = self._selection(x)
        lead = x.shape[:-3]
        flat = anp.reshape(x, lead + (-1,))
        rows = np.arange(int(np.prod(lead)))[:, None]
        picked = anp.reshape(flat, (-1, flat.shape[-1]))[rows, sel.reshape(len(rows), -1)]
        return anp.reshape(picked, lead + self.out_shape)

    def push(self, sel, dx):
        """Gather each window's chosen input: dx (..., N, H, W, C) with sel (N, Ho·Wo·C)."""
        flat = dx.reshape(dx.shape[:-3] + (-1,))
        out = np.take_along_axis(
            flat, np.broadcast_to(sel, flat.shape[:-1] + sel.shape[-1:]), axis=-1
        )
        return out.reshape(dx.shape[:-3] + self.out_shape)

    def pull(self, sel, dy):
        """Scatter each output back to its chosen input (windows do not overlap: no sums)."""
        lead = dy.shape[:-3]
        out = np.zeros(lead + (int(np.prod(self.in_shape)),))
        np.put_along_axis(
            out, np.broadcast_to(sel, lead + sel.shape[-1:]), dy.reshape(lead + (-1,)), axis=-1
        )
        return out.reshape(lead + self.in_shape)

    def mask(self, sel):
        """The 0/1 map of the chosen inputs, (N, H·W·C)."""
        m = np.zeros((sel.shape[0], int(np.prod(self.in_shape))))
        np.put_along_axis(m, sel, 1.0, axis=-1)
        return m

    def expected_sandwich(self, sel, M):
        """(1/N) Σₙ P_nᵀ M P_n = (Uᵀ M U) ⊙ E[m mᵀ]: U copies each output to its whole window,
        m is the 0/1 map of the selected inputs."""
        up = sandwich(
            lambda y: self.unwindows(np.repeat(y[..., None], self.window, -1)), M, self.out_shape
        )
        m = self.mask(sel)
        return up * (m.T @ m / len(m))


class AvgPool2d(_Pool):
    """Mean over each window."""

    def _split(self, x):
        (Ho, Wo, C), (kh, kw) = self.out_shape, self.kernel
        return anp.reshape(x, x.shape[:-3] + (Ho, kh, Wo, kw, C))

    def apply(self, x):
        return anp.mean(self._split(x), axis=(-4, -2))

    def forward(self, x):
        return self.apply(x), None

    def push(self, state, dx):
        return self.apply(dx)

    def pull(self, state, dy):
        (Ho, Wo, C), (kh, kw) = self.out_shape, self.kernel
        lead = dy.shape[:-3]
        g = np.broadcast_to(
            (dy / self.window)[..., :, None, :, None, :], lead + (Ho, kh, Wo, kw, C)
        )
        return g.reshape(lead + self.in_shape)

    def expected_sandwich(self, state, M):
        return sandwich(lambda y: self.pull(None, y), M, self.out_shape)


class MeanPool(Layer):
    """The mean over positions: a sequence (T, D) -> (D,), like torch's ``x.mean(dim=1)`` on
    (N, T, D); on a 1-D map (C, L), the mean over L. Linear: its adjoint spreads each
    cotangent evenly over the positions."""

    def build(self, in_shape):
        if len(in_shape) != 2:
            raise ValueError(
                f"{self!r} averages over the positions of a sequence (T, D) (or a 1-D map "
                f"(C, L)), but gets an input of shape {describe(in_shape)}"
            )
        self.in_shape, self.out_shape = tuple(in_shape), (in_shape[1],)
        self.on_map = is_map(in_shape)          # a 1-D map (C, L) rather than a sequence
        return self.out_shape

    def apply(self, x):
        return anp.mean(x, axis=-2)

    def forward(self, x):
        return self.apply(x), None

    def push(self, state, dx):
        return dx.mean(axis=-2)

    def pull(self, state, dy):
        T = self.in_shape[0]
        return np.repeat((dy / T)[..., None, :], T, axis=-2)

