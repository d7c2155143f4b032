"""Function: a layer of your own, y = fn(params, x), whose every rule autograd derives.

fn is any autograd-differentiable function of its parameters (an array of the given shape) and
a batch of inputs x (N, *features), acting on each sample's features separately (it may not
mix samples: that is checked when the model is built). Feature maps reach fn channels first,
as torch lays them out ((N, C, H, W), (N, C, L)); vectors and sequences as they are.

The rules, all by HIPS autograd's reverse mode (so any function autograd can differentiate
twice works — including primitives without a forward mode, such as erf):
    backprop        ∂ℓ/∂x = vjp_x(g)                 (the Q seeds stacked as Q·N samples)
    gradient        ∂ℓ/∂θ = vjp_θ(g_q)               (one pass per seed)
    per-sample rows J_θ per sample, from P_fn Jacobian-vector products (cached per point)
    R-forward       R y = J_θ V + J_x R x            (jvp by reverse-of-reverse)
    R-backward      the first-order vjps of R g plus the Hessian of gᵀ fn(θ, x) along
                    (V, R x) — Pearlmutter's second-order terms, by reverse-over-reverse.
Exact, and slower than a built-in layer (a handful of autograd passes per seed or direction).
"""

import autograd.numpy as anp
import numpy as np
from autograd import grad
from autograd import make_vjp as _make_vjp
from autograd.differential_operators import make_jvp_reversemode

from .base import Layer, Map, describe, is_map


class Function(Layer):
    """A layer y = fn(params, x) with params of `shape` (module docstring). `name` labels it in
    messages and tables; `init(rng) -> params` sets its initial parameters (default: normal
    with variance 1/shape[-1] for a matrix or larger, standard normal for a vector)."""

    has_params = True

    def __init__(self, fn, shape, name=None, init=None):
        if not callable(fn):
            raise TypeError(f"cl.Function(fn, shape): fn must be a function fn(params, x), got "
                            f"{type(fn).__name__}")
        shape = (shape,) if np.ndim(shape) == 0 else tuple(shape)
        try:
            shape = tuple(int(s) for s in shape)
        except (TypeError, ValueError):
            raise TypeError(f"cl.Function: shape must be a tuple of ints, got {shape!r}") from None
        if not shape or min(shape) < 1:
            raise ValueError(f"cl.Function: shape must give at least one parameter, got {shape}")
        if init is not None and not callable(init):
            raise TypeError("cl.Function: init must be a function init(rng) -> params")
        self.fn, self.shape, self._init = fn, shape, init
        self.size = int(np.prod(shape))
        self.name = name or getattr(fn, "__name__", "function")

    # layout -----------------------------------------------------------------------------------
    def _perms(self, shape, ndim):
        """Axis orders from channels-last (internal) to channels-first (fn's) and back, for a
        map of `shape` inside an array of `ndim` axes (None for vectors and sequences)."""
        if not is_map(shape):
            return None, None
        d = len(shape) - 1
        n = ndim - d - 1
        first = tuple(range(n)) + (n + d,) + tuple(range(n, n + d))
        last = tuple(range(n)) + tuple(range(n + 1, n + d + 1)) + (n,)
        return first, last

    def _call(self, theta, x):
        """fn on internal-layout inputs, with internal-layout outputs."""
        to_first, _ = self._perms(self.in_shape, anp.ndim(x))
        y = self.fn(theta, x if to_first is None else anp.transpose(x, to_first))
        if self._map_out:
            y = anp.transpose(y, self._perms(self.out_shape, anp.ndim(y))[1])
        return y

    def build(self, in_shape):
        rng = np.random.default_rng(0)
        theta = 0.5 * rng.standard_normal(self.shape)
        self.in_shape, self._map_out = in_shape, False
        x = rng.standard_normal((3,) + tuple(in_shape))
        try:
            y = np.asarray(self._call(theta, x))
        except Exception as e:
            raise ValueError(f"{self!r}: fn(params, x) failed on params of shape {self.shape} and "
                             f"x of shape (3, *{describe(in_shape)}): {type(e).__name__}: "
                             f"{e}") from None
        if y.ndim < 2 or y.shape[0] != 3:
            raise ValueError(f"{self!r}: fn(params, x) must return (N, *features) for x of N "
                             f"samples; for N = 3 it returned shape {y.shape}")
        one = np.asarray(self._call(theta, x[1:2]))
        if one.shape != y[1:2].shape or not np.allclose(one, y[1:2], rtol=1e-10, atol=1e-12):
            raise ValueError(f"{self!r}: fn mixes the samples (sample 1's output changes with the "
                             "other samples in the batch); a cl.Function must act on each "
                             "sample's features separately")
        out = y.shape[1:]
        if is_map(in_shape) and len(out) == len(in_shape):
            self._map_out = True
            out = Map(out[1:] + out[:1])
        self.out_shape = out
        return out

    def init(self, rng):
        if self._init is not None:
            theta = np.asarray(self._init(rng), dtype=np.float64)
            if theta.shape != self.shape:
                raise ValueError(f"{self!r}: init returned shape {theta.shape}, expected "
                                 f"{self.shape}")
            return theta
        scale = 1.0 / np.sqrt(self.shape[-1]) if len(self.shape) >= 2 else 1.0
        return rng.standard_normal(self.shape) * scale

    @property
    def width(self):
        """Outputs per sample (its record's size)."""
        return int(np.prod(self.out_shape))

    # forward --------------------------------------------------------------------------------
    def run(self, theta, x, out=None):
        if np.ndim(theta) == len(self.shape):
            return self._call(theta, x)
        # G points: x has the G axis too, or one batch serves them all
        xs = x if np.ndim(x) == len(self.in_shape) + 2 else [x] * len(theta)
        return np.stack([np.asarray(self._call(t, xg)) for t, xg in zip(theta, xs)])

    def apply(self, theta, x):
        return self._call(theta, x)

    def trace(self, theta, x):
        y = np.asarray(self._call(theta, x), dtype=np.float64)
        return y, FunctionState(self, theta, x)

    # rules ----------------------------------------------------------------------------------
    def _vjp_x(self, st, g):
        """Σ over outputs of g J_x for seeds g (Q, N, *out): the Q seeds as Q·N samples."""
        Q, N = g.shape[:2]
        X = np.broadcast_to(st.x, (Q,) + st.x.shape).reshape((Q * N,) + st.x.shape[1:])
        vjp, _ = _make_vjp(lambda xx: self._call(st.theta, xx))(X)
        return np.asarray(vjp(g.reshape((Q * N,) + g.shape[2:]))).reshape((Q,) + st.x.shape)

    def backprop(self, theta, st, g, need_input=True):
        return (self._vjp_x(st, g) if need_input else None), g

    def param_grads(self, theta, st, g):
        return np.stack([np.ravel(st.vjp_theta(gq)) for gq in g])

    def param_rows(self, theta, st, g, out=None):
        J = st.jac_theta                                               # (N, out, P_fn)
        rows = np.einsum("qno,nop->qnp", g.reshape(g.shape[:2] + (-1,)), J)
        if out is not None:
            out[...] = rows
            return out
        return rows

    def param_tangent(self, theta, st, V):
        return np.stack([np.asarray(st.jvp_theta(Vq.reshape(self.shape))) for Vq in V])

    def rforward(self, theta, st, Rx, V):
        Ry = self.param_tangent(theta, st, V)
        if Rx is not None:
            Ry = Ry + np.stack([np.asarray(st.jvp_x(r)) for r in Rx])
        return Ry, Rx

    def rbackward(self, theta, st, Rx, g, gout, Rg, V, need_input=True):
        RG = self.param_grads(theta, st, Rg)
        Rgin = self._vjp_x(st, Rg) if need_input else None
        # second-order terms: the Hessian of φ(θ, x) = Σ gout ⊙ fn(θ, x) along (V, R x)
        P, x = self.size, st.x

        def phi(z):
            y = self._call(anp.reshape(z[:P], self.shape), anp.reshape(z[P:], x.shape))
            return anp.sum(gout * y)

        z = np.concatenate([np.ravel(theta), np.ravel(x)])
        hvp, _ = _make_vjp(grad(phi))(z)
        for q in range(Rg.shape[0]):
            d = np.concatenate([np.ravel(V[q]), np.zeros(x.size) if Rx is None
                                else np.ravel(Rx[q])])
            h = np.asarray(hvp(d))
            RG[q] += h[:P]
            if need_input:
                Rgin[q] += h[P:].reshape(x.shape)
        return Rgin, RG

    def __repr__(self):
        return f"Function({self.name!r}, shape={self.shape})"


class FunctionState:
    """A Function layer's forward pass: θ, x, and autograd closures made on first use."""

    def __init__(self, layer, theta, x):
        self.layer, self.theta, self.x = layer, theta, x
        self._cache = {}

    def _lazy(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def vjp_theta(self):
        f = lambda t: self.layer._call(t, self.x)
        return self._lazy("vjp_theta", lambda: _make_vjp(f)(self.theta)[0])

    @property
    def jvp_theta(self):
        f = lambda t: self.layer._call(t, self.x)
        return self._lazy("jvp_theta", lambda: make_jvp_reversemode(f)(self.theta))

    @property
    def jvp_x(self):
        f = lambda xx: self.layer._call(self.theta, xx)
        return self._lazy("jvp_x", lambda: make_jvp_reversemode(f)(self.x))

    @property
    def jac_theta(self):
        """Per-sample ∂y/∂θ, (N, out, P_fn), from P_fn Jacobian-vector products."""
        def make():
            eye = np.eye(self.layer.size)
            cols = [np.asarray(self.jvp_theta(e.reshape(self.layer.shape))) for e in eye]
            N = self.x.shape[0]
            return np.stack([c.reshape(N, -1) for c in cols], axis=-1)
        return self._lazy("jac_theta", make)
