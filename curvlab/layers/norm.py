"""Normalisation layers: LayerNorm and RMSNorm over the last axis, BatchNorm over the channel
axis (eval: running statistics; train: the batch's, which couple the samples).

Each normalises x over a group of entries — the last axis (LayerNorm, RMSNorm: d entries per
position), or for BatchNorm in train mode a channel's entries over the N samples and every
spatial position (M of them) — and then scales and shifts per feature:

    x̂ = (x − μ) r,   r = (mean((x − μ)²) + ε)^(-1/2),   y = γ ⊙ x̂ + β,

with μ the group's mean (LayerNorm, BatchNorm) or μ = 0 (RMSNorm: r = (mean(x²) + ε)^(-1/2)),
and for eval-mode BatchNorm fixed μ, r from the running statistics (an affine map per channel).
Parameters, flat: γ then β ((2, d) row-major), γ alone without bias (RMSNorm always), none
without affine. Defaults as torch: γ = 1, β = 0, ε = 1e-5 (RMSNorm: the dtype's machine ε).

The rules, per group (means over the group, g = ∂ℓ/∂y, ḡ = γ ⊙ g the cotangent of x̂):
    tangent    R x̂ = r (R x − mean(R x) − x̂ mean(x̂ ⊙ R x))      (no mean(R x) term for RMSNorm)
    backprop   u = ∂ℓ/∂x = r (ḡ − mean(ḡ) − x̂ mean(ḡ ⊙ x̂))       (the Jacobian is symmetric)
    gradients  ∂ℓ/∂γ = Σ g ⊙ x̂,  ∂ℓ/∂β = Σ g                     (over samples and positions)
    R-forward  R y = V_γ ⊙ x̂ + γ ⊙ R x̂ + V_β
    R-backward R ḡ = γ ⊙ R g + V_γ ⊙ g;  R{∂ℓ/∂γ} = Σ R g ⊙ x̂ + g ⊙ R x̂,  R{∂ℓ/∂β} = Σ R g;
               R u = (the backprop of R ḡ) − r m u − r (c R x̂ + x̂ mean(ḡ ⊙ R x̂)),
               m = mean(x̂ ⊙ R x), c = mean(ḡ ⊙ x̂)   — the second-order term, from
               R r = −r² m (eval-mode BatchNorm is linear in x: no such term).
Each costs a few elementwise passes over the layer's input. The record a backward pass keeps
is g itself (per-sample rows Σ_t g ⊙ x̂, Σ_t g; for train-mode BatchNorm there are none: a
sample's output depends on the whole batch, and per-sample quantities refuse by name).
"""

import autograd.numpy as anp
import numpy as np

from .._checks import choice
from .base import Layer, describe, is_map


def coupled_error(what, layers="train-mode BatchNorm"):
    """The refusal of a per-sample quantity on a model whose samples are coupled (by `layers`,
    in words)."""
    return ValueError(
        f"{what} is a per-sample quantity, but this model couples its samples: {layers} "
        "normalises with the batch's mean and variance, so each sample's outputs "
        "depend on every sample in the batch and there are no per-sample gradients or "
        "Jacobians. Defined on it: hessian, ggn, fisher (true), ggn_blocks, hessian_blocks, "
        "diag_ggn, diag_hessian, ntk, hvp, ggnvp (method='rop'), fishervp (true), jvp, vjp, "
        "spectra and landscapes; or use cl.BatchNorm(..., mode='eval') (running statistics)"
    )


def _mean(a, axes):
    return anp.mean(a, axis=axes, keepdims=True)


class _Norm(Layer):
    """What the three kinds share: the rules of the module docstring, given the group's axes
    (`_axes`), whether it is centred and whether its statistics are fixed (eval BatchNorm)."""

    center = True
    fixed = False
    linear = False

    def _setup(self, d, eps, affine, bias, what):
        if int(d) < 1:
            raise ValueError(f"{what} needs a feature count >= 1, got {d}")
        eps = float(eps)
        if not eps > 0 or not np.isfinite(eps):
            raise ValueError(f"{what}: eps must be a finite number > 0, got {eps}")
        self.d, self.eps = int(d), eps
        self.affine, self.bias = bool(affine), bool(affine) and bool(bias)
        self.has_params = self.affine

    @property
    def shape(self):
        """(2, d) for [γ; β], (d,) for γ alone, (0,) without parameters."""
        if not self.affine:
            return (0,)
        return (2, self.d) if self.bias else (self.d,)

    @property
    def size(self):
        return int(np.prod(self.shape)) if self.affine else 0

    @property
    def width(self):
        """Outputs per sample (the record's size)."""
        return int(np.prod(self.out_shape))

    def init(self, rng):
        """torch's: γ = 1, β = 0."""
        return np.vstack([np.ones(self.d), np.zeros(self.d)]) if self.bias else np.ones(self.d)

    def _axes(self, ndim):
        """The axes of an array of `ndim` axes (…, N, *in_shape) that a group spans."""
        return (-1,)

    # the forward ------------------------------------------------------------------------------
    def _normalise(self, x):
        """(x̂, r), differentiable by autograd; r broadcasts against x."""
        axes = self._axes(anp.ndim(x))
        xc = x - _mean(x, axes) if self.center else x
        r = 1.0 / anp.sqrt(_mean(xc * xc, axes) + self.eps)
        return xc * r, r

    def _scale_shift(self, theta, xh):
        """γ ⊙ x̂ + β; θ may carry a leading axis of G points (x̂ too, or shared by them)."""
        if not self.affine:
            return xh
        if anp.ndim(theta) == len(self.shape) + 1:          # G points: (G, 1, …, 1, d)
            theta = anp.reshape(theta, (theta.shape[0],) + (1,) * len(self.in_shape)
                                + self.shape)
        gamma = theta[..., 0, :] if self.bias else theta
        return xh * gamma + theta[..., 1, :] if self.bias else xh * gamma

    def run(self, theta, x, out=None):
        return self._scale_shift(theta, self._normalise(x)[0])

    def apply(self, x):                                   # without parameters
        return self._normalise(x)[0]

    # the engine's rules -----------------------------------------------------------------------
    def trace(self, theta, x):
        xh, r = self._normalise(x)
        return self._scale_shift(theta, xh), NormState(x, xh, r)

    def _gamma(self, theta):
        return theta[0] if self.bias else theta

    def _pull(self, st, gb):
        """∂ℓ/∂x from ḡ = ∂ℓ/∂x̂ (any leading axes): r (ḡ − mean ḡ − x̂ mean(ḡ x̂))."""
        if self.fixed:
            return gb * st.r
        axes = self._axes(gb.ndim)
        u = gb - _mean(gb, axes) if self.center else gb
        return st.r * (u - st.xh * _mean(gb * st.xh, axes))

    def _push(self, st, dx):
        """R x̂ from R x: the same symmetric map."""
        return self._pull(st, dx)

    def backprop(self, theta, st, g, need_input=True):
        gin = None
        if need_input:
            gin = self._pull(st, g * self._gamma(theta) if self.affine else g)
        return gin, (g if self.affine else None)

    def _sums(self, a):
        """Σ over samples and positions of a (Q, N, …, d): (Q, d)."""
        return a.reshape(a.shape[0], -1, a.shape[-1]).sum(1)

    def param_grads(self, theta, st, g):
        parts = [self._sums(g * st.xh)] + ([self._sums(g)] if self.bias else [])
        return np.concatenate(parts, axis=1)

    def param_rows(self, theta, st, g, out=None):
        """Per sample Σ_t g ⊙ x̂ (and Σ_t g): (Q, N, size)."""
        Q, N, d = g.shape[0], g.shape[1], g.shape[-1]
        parts = [(g * st.xh).reshape(Q, N, -1, d).sum(2)]
        if self.bias:
            parts.append(g.reshape(Q, N, -1, d).sum(2))
        rows = np.concatenate(parts, axis=2)
        if out is None:
            return rows
        out[...] = rows
        return out

    def _per_direction(self, a, V):
        """a (Q, d) -> (Q, 1, …, 1, d) against (Q, N, *out)."""
        return a.reshape((V.shape[0],) + (1,) * len(self.out_shape) + (self.d,))

    def param_tangent(self, theta, st, V):
        """V_γ ⊙ x̂ + V_β: (Q, N, *out)."""
        Vg = self._per_direction(V[:, 0] if self.bias else V, V)
        U = Vg * st.xh
        if self.bias:
            U = U + self._per_direction(V[:, 1], V)
        return U

    def rforward(self, theta, st, Rx, V):
        Rxh = None if Rx is None else self._push(st, Rx)
        Ry = None
        if Rxh is not None:
            Ry = Rxh * self._gamma(theta) if self.affine else Rxh
        if self.affine:
            U = self.param_tangent(theta, st, V)
            Ry = U if Ry is None else Ry + U
        return Ry, (Rx, Rxh)

    def rbackward(self, theta, st, rst, rec, g, Rg, V, need_input=True):
        Rx, Rxh = rst if rst is not None else (None, None)
        RG = None
        if self.affine:
            gamma = self._gamma(theta)
            Vg = self._per_direction(V[:, 0] if self.bias else V, V)
            Rgb = Rg * gamma + Vg * g
            gpart = Rg * st.xh if Rxh is None else Rg * st.xh + g * Rxh
            RG = np.concatenate([self._sums(gpart)] + ([self._sums(Rg)] if self.bias else []),
                                axis=1)
            gb = g * gamma
        else:
            Rgb, gb = Rg, g
        Rgin = None
        if need_input:
            Rgin = self._pull(st, Rgb)
            if Rxh is not None and not self.fixed:
                Rgin = Rgin + self._second_order(st, gb, Rx, Rxh)
        return Rgin, RG

    def _second_order(self, st, gb, Rx, Rxh):
        """(R J)ᵀ ḡ: −r m u − r (c R x̂ + x̂ mean(ḡ R x̂)), u = Jᵀ ḡ, m = mean(x̂ R x),
        c = mean(ḡ x̂) (module docstring)."""
        axes = self._axes(Rx.ndim)
        u = self._pull(st, gb)
        m = _mean(st.xh * Rx, axes)
        c = _mean(gb * st.xh, axes)
        return -st.r * (m * u + c * Rxh + st.xh * _mean(gb * Rxh, axes))

    def _describe_extra(self):
        extra = ""
        if self.eps != 1e-5:
            extra += f", eps={self.eps:g}"
        if not self.affine:
            extra += ", affine=False"
        return extra


class NormState:
    """A norm layer's forward pass: its input x, x̂ and r (broadcasting against x)."""

    __slots__ = ("x", "xh", "r")

    def __init__(self, x, xh, r):
        self.x, self.xh, self.r = x, xh, r


class _LastAxis(_Norm):
    """Normalisation over the last axis of vectors (N, d) and sequences (N, T, d)."""

    positionwise = True      # each position alone (curvature.blocks)

    def build(self, in_shape):
        name = type(self).__name__
        if is_map(in_shape):
            raise ValueError(f"{self!r} normalises the last axis of a vector (N, d) or a "
                             f"sequence (N, T, d), but gets a feature map of shape "
                             f"{describe(in_shape)}; use cl.BatchNorm({in_shape[-1]}) for the "
                             f"channels, or cl.Flatten() before it")
        if in_shape[-1] != self.d:
            raise ValueError(f"{self!r} expects {self.d} features on the last axis but gets "
                             f"{in_shape[-1]} (input {describe(in_shape)}); use "
                             f"cl.{name}({in_shape[-1]})")
        self.in_shape = self.out_shape = tuple(in_shape)
        return self.out_shape


class LayerNorm(_LastAxis):
    """torch's LayerNorm(d) over the last axis: x̂ = (x − mean x) / √(var x + ε) (biased
    variance), y = γ ⊙ x̂ + β. Parameters γ then β, γ alone with bias=False, none with
    affine=False. Cost per sample and position: a few passes over its d features."""

    def __init__(self, d, eps=1e-5, affine=True, bias=True):
        self._setup(d, eps, affine, bias, "LayerNorm")

    def __repr__(self):
        extra = self._describe_extra() + (", bias=False" if self.affine and not self.bias else "")
        return f"LayerNorm({self.d}{extra})"


class RMSNorm(_LastAxis):
    """torch's RMSNorm(d) over the last axis: y = γ ⊙ x / √(mean x² + ε), ε by default the
    dtype's machine epsilon (float64: 2.2e-16), as torch. Parameters γ (none with
    affine=False)."""

    center = False

    def __init__(self, d, eps=None, affine=True):
        self._setup(d, np.finfo(np.float64).eps if eps is None else eps, affine, False,
                    "RMSNorm")

    def __repr__(self):
        extra = "" if self.eps == np.finfo(np.float64).eps else f", eps={self.eps:g}"
        return f"RMSNorm({self.d}{extra}{'' if self.affine else ', affine=False'})"


MODES = ("eval", "train")


class BatchNorm(_Norm):
    """torch's BatchNorm1d / BatchNorm2d over the channel axis of (N, C) vectors or (N, C, ...)
    feature maps (channels first, like torch). mode='eval': the running statistics
    (running_mean, default 0; running_var, default 1): y = γ (x − m) / √(v + ε) + β, an affine
    map per channel. mode='train': the batch's mean and biased variance over the N samples and
    every position, which couple the samples — the Hessian, GGN and true Fisher of the batch
    are exact, per-sample quantities refuse by name. Parameters γ then β (none with
    affine=False). As the first layer on a 2-D input (C, L) it reads it channels first, like
    Conv1d."""

    dims = 1     # a 2-D model input (C, L) is a 1-D feature map (see Sequential)

    def __init__(self, c, eps=1e-5, mode="eval", running_mean=None, running_var=None,
                 affine=True):
        self._setup(c, eps, affine, True, "BatchNorm")
        self.mode = choice("BatchNorm mode", mode, MODES)
        self.running_mean = self._stat("running_mean", running_mean, 0.0)
        self.running_var = self._stat("running_var", running_var, 1.0)
        if np.any(self.running_var < 0):
            raise ValueError("BatchNorm: running_var must be >= 0")
        if self.mode == "train" and (running_mean is not None or running_var is not None):
            raise ValueError("BatchNorm(mode='train') normalises with the batch's statistics; "
                             "running_mean and running_var are for mode='eval'")

    def _stat(self, name, value, default):
        if value is None:
            return np.full(self.d, default)
        v = np.asarray(value, dtype=np.float64).ravel()
        if v.shape != (self.d,) or not np.all(np.isfinite(v)):
            raise ValueError(f"BatchNorm({self.d}): {name} must be {self.d} finite numbers, got "
                             f"shape {np.shape(value)}")
        return v

    @property
    def fixed(self):
        return self.mode == "eval"

    @property
    def couples_samples(self):
        """Train mode: each output depends on the whole batch."""
        return self.mode == "train"

    def build(self, in_shape):
        if len(in_shape) == 2 and not is_map(in_shape):
            raise ValueError(f"{self!r} normalises the channels of (N, C) vectors or (N, C, ...) "
                             f"feature maps, but gets a sequence {describe(in_shape)} (T, D); "
                             f"use cl.LayerNorm({in_shape[-1]}) over its features, or a Conv1d "
                             "model (channels first)")
        if in_shape[-1] != self.d:
            raise ValueError(f"{self!r} expects {self.d} channels but gets {in_shape[-1]} "
                             f"(input {describe(in_shape)}); use cl.BatchNorm({in_shape[-1]})")
        self.in_shape = self.out_shape = in_shape          # a Map stays a Map
        return self.out_shape

    def _axes(self, ndim):
        """The samples and every position: (…, N, *spatial, C) -> the axes N, *spatial."""
        return tuple(range(-len(self.in_shape) - 1, -1))

    def _normalise(self, x):
        if self.fixed:
            r = 1.0 / np.sqrt(self.running_var + self.eps)
            return (x - self.running_mean) * r, r
        return super()._normalise(x)

    def param_rows(self, theta, st, g, out=None):
        if self.couples_samples:
            raise coupled_error("per-sample Jacobian rows")
        return super().param_rows(theta, st, g, out)

    def __repr__(self):
        extra = self._describe_extra() + (", mode='train'" if self.mode == "train" else "")
        return f"BatchNorm({self.d}{extra})"
