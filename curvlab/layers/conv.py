"""Conv2d and Conv1d: the convolution as a matrix product over patches (Lin's notes:
S = W φ(pad(Z)) + b 1ᵀ).

φ(pad(Z)) unfolds the zero-padded input into one column per output location t (row-major over
the output map); each patch lists its inputs in torch's weight order (c_in, k...). The same
W̄ = [W | b] meets every patch (weight sharing), so a conv layer is a Dense layer applied at
T output locations at once. φ is a gather with a fixed index array (differentiable by
autograd), its adjoint a sum of strided slices, one per kernel offset.
"""

import itertools

import autograd.numpy as anp
import numpy as np

from .base import Affine, Map, describe, is_map, pair


class _Conv(Affine):
    """A d-dimensional convolution on channels-last maps (..., *spatial, C)."""

    dims = 2

    def __init__(self, c_in, c_out, kernel_size, stride=1, padding=0, activation=None,
                 bias=True, activation_name=None):
        name = type(self).__name__
        if int(c_in) < 1 or int(c_out) < 1:
            raise ValueError(f"{name} channels must be >= 1, got {c_in} -> {c_out}")
        self.c_in, self.c_out = int(c_in), int(c_out)
        d = self.dims
        self.kernel = pair("kernel_size", kernel_size, 1, d)
        self.stride = pair("stride", stride, 1, d)
        self.padding = pair("padding", padding, 0, d)
        self.bias = bool(bias)
        self._set_activation(activation, activation_name)
        self.n_in = self.c_in * int(np.prod(self.kernel))       # patch length
        self.n_out = self.c_out

    def build(self, in_shape):
        d = self.dims
        layout = "(C, H, W)" if d == 2 else "(C, L)"
        if len(in_shape) != d + 1 or (d == 1 and not is_map(in_shape)):
            got = (f"a vector of {in_shape[0]} features" if len(in_shape) == 1
                   else f"an input of shape {describe(in_shape)}")
            raise ValueError(f"{self!r} needs a {layout} feature map but gets {got}")
        *spatial, C = in_shape
        if C != self.c_in:
            raise ValueError(f"{self!r} expects {self.c_in} input channels but gets a feature map "
                             f"of shape {describe(in_shape)} {layout}")
        padded = [n + 2 * p for n, p in zip(spatial, self.padding)]
        if any(k > n for k, n in zip(self.kernel, padded)):
            k = "x".join(map(str, self.kernel))
            raise ValueError(
                f"{self!r}: the kernel {k} is larger than the padded input "
                f"{'x'.join(map(str, padded))} (feature map {describe(in_shape)} plus padding "
                f"{', '.join(map(str, self.padding))}); use a smaller kernel_size or more padding"
            )
        out = [(n - k) // s + 1 for n, k, s in zip(padded, self.kernel, self.stride)]
        self.padded = tuple(padded) + (C,)
        self.out_sp = tuple(out)
        self.T = int(np.prod(out))
        # index[t, (c, offsets)]: position of patch t's input in the flattened padded map
        strides = np.cumprod([1] + padded[::-1])[::-1][1:]                    # row-major
        pos = 0
        for a in range(d):   # output location along axis a, then kernel offset along it
            o = np.arange(out[a]).reshape([-1 if i == a else 1 for i in range(d)] + [1] * (d + 1))
            k = np.arange(self.kernel[a]).reshape([1] * (d + 1 + a) + [-1] + [1] * (d - a - 1))
            pos = pos + (o * self.stride[a] + k) * strides[a]
        c = np.arange(C).reshape([1] * d + [-1] + [1] * d)
        self.index = (pos * C + c).reshape(self.T, self.n_in)
        self.in_shape = Map(in_shape)
        self.out_shape = Map(self.out_sp + (self.c_out,))
        return self.out_shape

    def _pad(self, x):
        if not any(self.padding):
            return x
        pads = [(0, 0)] * (x.ndim - self.dims - 1) + [(p, p) for p in self.padding] + [(0, 0)]
        return anp.pad(x, pads, mode="constant")

    def patches(self, x):
        """φ(pad(x)): (..., *spatial, C) -> (..., T, c_in·prod(kernel))."""
        xp = self._pad(x)
        return anp.reshape(xp, xp.shape[: -self.dims - 1] + (-1,))[..., self.index]

    def patches_T(self, g):
        """The adjoint of `patches`: scatter-add each patch entry back to its input position."""
        d = self.dims
        lead = g.shape[:-2]
        g = g.reshape(lead + self.out_sp + (self.c_in,) + self.kernel)
        out = np.zeros(lead + self.padded)
        for offs in itertools.product(*(range(k) for k in self.kernel)):
            sl = tuple(slice(i, i + s * (n - 1) + 1, s)
                       for i, s, n in zip(offs, self.stride, self.out_sp))
            out[(Ellipsis,) + sl + (slice(None),)] += g[(Ellipsis,) + offs]
        inner = tuple(slice(p, n - p) for p, n in zip(self.padding, self.padded[:d]))
        return out[(Ellipsis,) + inner + (slice(None),)]

    def fold(self, s):
        return s.reshape(s.shape[:-2] + self.out_shape)

    def unfold(self, a):
        return a.reshape(a.shape[: -self.dims - 1] + (self.T, self.c_out))

    def _torch_module(self, torch):
        make = torch.nn.Conv2d if self.dims == 2 else torch.nn.Conv1d
        return make(self.c_in, self.c_out, self.kernel, stride=self.stride,
                    padding=self.padding, bias=self.bias, dtype=torch.float64)

    def __repr__(self):
        k, s, p = (v[0] if len(set(v)) == 1 else v
                   for v in (self.kernel, self.stride, self.padding))
        extra = "" if self.bias else ", bias=False"
        return (
            f"{type(self).__name__}({self.c_in}, {self.c_out}, {k}, stride={s}, padding={p}, "
            f"activation={self.act.name!r}{extra})"
        )


class Conv2d(_Conv):
    """2-D convolution (cross-correlation, as torch.nn.Conv2d) then an activation f.

    W̄ = [W | b] has shape (c_out, c_in·kh·kw + 1) (W alone with bias=False); W's columns are
    ordered (c_in, kh, kw), so W is torch's ``weight.reshape(c_out, -1)``. Zero padding, no
    dilation, no groups. The output size is floor((H + 2·padding − kh) / stride) + 1 per
    axis, as in torch.
    """

    dims = 2


class Conv1d(_Conv):
    """1-D convolution on (N, C, L) inputs (cross-correlation, as torch.nn.Conv1d) then an
    activation f. W̄ = [W | b] has shape (c_out, c_in·k + 1) (W alone with bias=False), W's
    columns ordered (c_in, k) — torch's ``weight.reshape(c_out, -1)``. Zero padding, no
    dilation, no groups; L_out = floor((L + 2·padding − k) / stride) + 1."""

    dims = 1
