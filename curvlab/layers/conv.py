"""Conv2d: the convolution as a matrix product over patches (Lin's notes: S = W φ(pad(Z)) + b 1ᵀ).

φ(pad(Z)) unfolds the zero-padded input into one column per output location t = (h, w),
row-major over the output map; each patch lists its inputs in torch's weight order
(c_in, kh, kw). The same W̄ = [W | b] meets every patch (weight sharing), so a conv layer is a
Dense layer applied at T = H_out · W_out locations at once. φ is a gather with a fixed index
array (differentiable by autograd), its adjoint a sum of kh · kw strided slices.
"""

import autograd.numpy as anp
import numpy as np

from .base import Affine, describe, pair


class Conv2d(Affine):
    """2-D convolution (cross-correlation, as torch.nn.Conv2d) then an activation f.

    W̄ = [W | b] has shape (c_out, c_in·kh·kw + 1); W's columns are ordered (c_in, kh, kw), so W
    is torch's ``weight.reshape(c_out, -1)``. Zero padding, no dilation, no groups. The output
    size is floor((H + 2·padding − kh) / stride) + 1 per axis, as in torch.
    """

    def __init__(self, c_in, c_out, kernel_size, stride=1, padding=0, activation=None,
                 activation_name=None):
        if int(c_in) < 1 or int(c_out) < 1:
            raise ValueError(f"Conv2d channels must be >= 1, got {c_in} -> {c_out}")
        self.c_in, self.c_out = int(c_in), int(c_out)
        self.kernel = pair("kernel_size", kernel_size, 1)
        self.stride = pair("stride", stride, 1)
        self.padding = pair("padding", padding, 0)
        self._set_activation(activation, activation_name)
        self.n_in = self.c_in * self.kernel[0] * self.kernel[1]       # patch length
        self.n_out = self.c_out

    def build(self, in_shape):
        if len(in_shape) != 3:
            raise ValueError(f"{self!r} needs a (C, H, W) feature map but gets a vector of "
                             f"{in_shape[0]} features")
        H, W, C = in_shape
        if C != self.c_in:
            raise ValueError(f"{self!r} expects {self.c_in} input channels but gets a feature map "
                             f"of shape {describe(in_shape)} (C, H, W)")
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        Hp, Wp = H + 2 * ph, W + 2 * pw
        if kh > Hp or kw > Wp:
            raise ValueError(
                f"{self!r}: the kernel {kh}x{kw} is larger than the padded input "
                f"{Hp}x{Wp} (feature map {describe(in_shape)} plus padding {ph}, {pw}); "
                "use a smaller kernel_size or more padding"
            )
        Ho, Wo = (Hp - kh) // sh + 1, (Wp - kw) // sw + 1
        self.padded = (Hp, Wp, C)
        self.out_hw = (Ho, Wo)
        self.T = Ho * Wo
        # idx[t, (c, i, j)]: position of patch t's input (c, i, j) in the flattened padded map
        h = np.arange(Ho)[:, None, None, None, None] * sh + np.arange(kh)[None, None, None, :, None]
        w = np.arange(Wo)[None, :, None, None, None] * sw + np.arange(kw)[None, None, None, None, :]
        c = np.arange(C)[None, None, :, None, None]
        self.index = ((h * Wp + w) * C + c).reshape(self.T, self.n_in)
        self.in_shape, self.out_shape = tuple(in_shape), (Ho, Wo, self.c_out)
        return self.out_shape

    def _pad(self, x):
        ph, pw = self.padding
        if ph == pw == 0:
            return x
        return anp.pad(x, [(0, 0)] * (x.ndim - 3) + [(ph, ph), (pw, pw), (0, 0)], mode="constant")

    def patches(self, x):
        """φ(pad(x)): (..., H, W, C) -> (..., T, c_in·kh·kw)."""
        xp = self._pad(x)
        return anp.reshape(xp, xp.shape[:-3] + (-1,))[..., self.index]

    def patches_T(self, g):
        """The adjoint of `patches`: scatter-add each patch entry back to its input position."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        (Ho, Wo), (Hp, Wp, C) = self.out_hw, self.padded
        lead = g.shape[:-2]
        g = g.reshape(lead + (Ho, Wo, C, kh, kw))
        out = np.zeros(lead + (Hp, Wp, C))
        for i in range(kh):
            for j in range(kw):
                out[..., i : i + sh * (Ho - 1) + 1 : sh, j : j + sw * (Wo - 1) + 1 : sw, :] += g[
                    ..., i, j
                ]
        H, W = Hp - 2 * ph, Wp - 2 * pw
        return out[..., ph : ph + H, pw : pw + W, :]

    def fold(self, s):
        return s.reshape(s.shape[:-2] + self.out_shape)

    def unfold(self, a):
        return a.reshape(a.shape[:-3] + (self.T, self.c_out))

    def __repr__(self):
        k, s, p = (v[0] if v[0] == v[1] else v for v in (self.kernel, self.stride, self.padding))
        return (
            f"Conv2d({self.c_in}, {self.c_out}, {k}, stride={s}, padding={p}, "
            f"activation={self.act.name!r})"
        )
