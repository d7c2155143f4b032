"""What every layer kind provides; see the package docstring for the protocol."""

import copy

import autograd.numpy as anp
import numpy as np
from scipy.linalg.blas import dgemm

from .activations import PIECEWISE_LINEAR
from .activations import activation as _activation


class Map(tuple):
    """A channels-last feature map's shape: (H, W, C) for images, (L, C) for 1-D signals. A
    plain tuple of two is a sequence (T, D) of T positions with D features each."""


def is_map(shape):
    return len(shape) == 3 or isinstance(shape, Map)


def describe(shape):
    """A feature shape in the user's terms: (D,) for vectors, (T, D) for sequences, (C, L) and
    (C, H, W) for maps."""
    if is_map(shape):
        return str((shape[-1],) + tuple(shape[:-1]))
    return str(tuple(shape))


def pair(name, value, minimum, n=2):
    """An int or n ints, each >= minimum, as an n-tuple (kernel sizes, strides, padding)."""
    v = (value,) * n if np.ndim(value) == 0 else tuple(np.ravel(value))
    ok = len(v) == n and all(isinstance(x, (int, np.integer)) or
                             (isinstance(x, float) and x.is_integer()) for x in v)
    if not ok or min(v) < minimum:
        what = "an int or a pair of ints" if n == 2 else f"an int (or {n} ints)"
        raise ValueError(f"{name} must be {what} >= {minimum}, got {value!r}")
    return tuple(int(x) for x in v)


def matmul2d(a, B):
    """a (..., m) @ B (m, n) as one 2-D product (numpy would loop over a's leading axes)."""
    return (a.reshape(-1, a.shape[-1]) @ B).reshape(a.shape[:-1] + (B.shape[-1],))


def matmul2d_add(c, a, B):
    """c += a @ B in place, c (..., n) and a (..., m) with the same leading axes, B (m, n): one
    BLAS product with β = 1 (C ← a B + C), so no temporary a @ B and no separate sum — the
    R-rules' sums of two products. Returns c. Cost: the product's, 2·|a|·n flops."""
    if c.size == 0:
        return c
    if not (c.flags.c_contiguous and c.dtype == np.float64):
        c += matmul2d(a, B)
        return c
    c2 = c.reshape(-1, c.shape[-1])
    a2 = np.ascontiguousarray(a, dtype=np.float64).reshape(-1, a.shape[-1])
    # in Fortran's order c2ᵀ (n, M) is contiguous: c2ᵀ ← Bᵀ a2ᵀ + c2ᵀ, written into c itself
    out = dgemm(1.0, B.T, a2.T, beta=1.0, c=c2.T, overwrite_c=1)
    if out.ctypes.data != c2.ctypes.data:      # not written in place (never seen): copy back
        c2[...] = out.T
    return c


class Layer:
    """Base of every layer kind. `build(in_shape)` checks the input's feature shape (internal,
    channels-last layout) and returns the output's; until then the layer is unsized.

    The engine walks a model's layers through the uniform methods below (θ is the layer's
    parameters, None for a parameter-free layer; every array carries leading axes — Q
    directions or seeds, then the N samples). A parameter-free layer that is linear once its
    forward pass has run (pooling, Flatten, MeanPool) only writes forward/apply/push/pull; the
    defaults here turn them into the engine's rules.
    """

    has_params = False
    size = 0
    shape = (0,)
    in_shape = out_shape = None
    chain = False            # handled by the chain algorithms (Botev's build, KFRA, Kronecker)
    linear_in_params = False  # pre-activations linear in θ: `preact` and `finish` (grids)
    linear = True            # parameter-free and linear given its state: no second-order term
    T = 1

    def build(self, in_shape):
        raise NotImplementedError

    def clone(self):
        """An unsized copy (a layer is sized by the model it is in)."""
        return copy.copy(self)

    def program(self):
        """The engine's steps for this layer: itself (a container lists its own steps)."""
        return [self]

    # the engine's rules ------------------------------------------------------------------
    def run(self, theta, x, out=None):
        """The forward map, differentiable by autograd; θ and x may carry a leading axis of G
        points (the landscape's batched grids). `out`: a buffer the result may be written to."""
        return self.apply(x)

    def buffer_shape(self, G, x):
        """The shape of a reusable buffer for the batched output at G points, or None."""
        return None

    def trace(self, theta, x):
        """(y, state): the forward map and what the other rules need from it."""
        return self.forward(x)

    def backprop(self, theta, state, g, need_input=True):
        """(∂ℓ/∂x, record) from the output cotangents g (Q, N, *out): the record is what
        `param_grads`, `param_rows` and `param_tangent` read (None without parameters)."""
        return self.pull(state, g), None

    def rforward(self, theta, state, Rx, V):
        """(R y, R-state) from the input tangent R x (None: zero) and the parameter direction
        V (Q, *shape) (None without parameters)."""
        return (None if Rx is None else self.push(state, Rx)), None

    def rbackward(self, theta, state, rstate, rec, g, Rg, V, need_input=True):
        """(R{∂ℓ/∂x}, R{∂ℓ/∂θ} summed over samples (Q, size) or None): g is the ordinary output
        cotangent (N, *out) and rec its record, Rg = R{g} (Q, N, *out). A nonlinear layer adds
        its second-order terms here."""
        return (self.pull(state, Rg) if need_input else None), None

    # torch interop (curvlab.torch_bridge) --------------------------------------------------

    def torch_layout(self, index):
        """The entries of this layer's parameters (an index array shaped like them) in the order
        torch's parameters_to_vector lists them for the module `to_torch` makes."""
        return np.ravel(index)

    def to_torch(self, torch, theta):
        """The torch modules computing this layer (parameters θ), or a ValueError by name."""
        raise ValueError(f"to_torch: {self!r} has no torch counterpart curvlab writes yet")

    def __repr__(self):
        return type(self).__name__ + "()"


class Affine(Layer):
    """A layer whose parameters W̄ = [W | b] (n_out × (n_in + 1); W alone without bias) meet its
    input through patches: at each of T output locations, s_t = W̄ ā_t with ā_t = [patch_t; 1]
    (ā_t = patch_t without bias), then a = f(s). Subclasses say what the patches are
    (`patches`, its adjoint `patches_T`) and how the (T, n_out) pre-activations fold into the
    output's feature shape (`fold`, `unfold`).

    Its record (what the backward pass keeps) is δ = ∂ℓ/∂s (Q, N, T, n_out); its parameters'
    gradient is Σ_t δ_t ā_tᵀ and their tangent ā Vᵀ. R-rules (Pearlmutter), with the ordinary
    δ and g = ∂ℓ/∂a:
        R s = ā Vᵀ + R ā Wᵀ,   R a = f' ⊙ R s,
        R δ = f' ⊙ R g + f'' ⊙ g ⊙ R s,   R{∂ℓ/∂x} = φᵀ(R δ W + δ V_W),
        R{∂ℓ/∂W̄} = Σ_t R δ_tᵀ ā_t + δ_tᵀ R ā_t.
    """

    has_params = True
    chain = True
    linear_in_params = True
    whole_input = False      # its one patch is its whole input vector (Dense on vectors)
    T = None
    bias = True

    def _set_activation(self, activation, activation_name):
        if activation_name is not None:           # the older keyword
            activation = activation_name
        self.act = _activation(activation if activation is not None else "identity")

    @property
    def shape(self):
        """Shape of W̄ = [W | b] (of W without bias)."""
        return (self.n_out, self.n_in + int(self.bias))

    @property
    def size(self):
        return self.n_out * (self.n_in + int(self.bias))

    @property
    def width(self):
        """Pre-activations per sample, T · n_out."""
        return self.T * self.n_out

    def weight(self, Wbar):
        """W, the part of W̄ that multiplies the patches (leading axes kept)."""
        return Wbar[..., : self.n_in] if self.bias else Wbar

    def init(self, rng):
        """LeCun-normal weights (variance 1/fan-in, fan-in = n_in), zero biases."""
        W = rng.standard_normal((self.n_out, self.n_in)) / np.sqrt(self.n_in)
        return np.hstack([W, np.zeros((self.n_out, 1))]) if self.bias else W

    # torch interop --------------------------------------------------------------------------
    def torch_params(self, torch, mod):
        """W̄ = [weight.reshape(n_out, -1) | bias] of a torch module, float64."""
        W = mod.weight.detach().to("cpu", torch.float64).numpy().reshape(mod.weight.shape[0], -1)
        if not self.bias:
            return W
        return np.hstack([W, mod.bias.detach().to("cpu", torch.float64).numpy()[:, None]])

    def torch_layout(self, index):
        """torch lists the weight (row-major) and then the bias."""
        return np.concatenate([np.ravel(self.weight(index))] +
                              ([index[:, -1]] if self.bias else []))

    def to_torch(self, torch, Wbar):
        from .activations import TORCH_MODULES
        mod = self._torch_module(torch)
        with torch.no_grad():
            mod.weight.copy_(torch.as_tensor(self.weight(Wbar).reshape(mod.weight.shape)))
            if self.bias:
                mod.bias.copy_(torch.as_tensor(Wbar[:, -1]))
        if self.act.name == "identity":
            return [mod]
        return [mod, getattr(torch.nn, TORCH_MODULES[self.act.name])()]

    def augment(self, p):
        """ā = [p; 1] (p itself without bias)."""
        return np.concatenate([p, np.ones(p.shape[:-1] + (1,))], axis=-1) if self.bias else p

    # differentiable forward ----------------------------------------------------------------
    def preact(self, Wbar, x):
        """Pre-activations (..., T, n_out) of inputs x; W̄ may carry a leading axis of G points
        (then x may too, or be shared by the G points). Differentiable by autograd."""
        p = self.patches(x)
        W = self.weight(Wbar)
        if Wbar.ndim == 2:
            s = anp.dot(p, anp.transpose(W))
            return s + Wbar[:, -1] if self.bias else s
        G = Wbar.shape[0]
        shared = self._shared(p)
        lead = ((G,) + p.shape[:-1]) if shared else p.shape[:-1]
        p2 = anp.reshape(p, (-1, self.n_in) if shared else (G, -1, self.n_in))
        s = anp.reshape(anp.matmul(p2, anp.swapaxes(W, 1, 2)), lead + (self.n_out,))
        if self.bias:
            s = s + anp.reshape(Wbar[..., -1], (G,) + (1,) * (len(lead) - 1) + (self.n_out,))
        return s

    def _shared(self, p):
        """Whether patches p (..., T, m) lack the G axis: (N, T, m) is one batch for all points."""
        return anp.ndim(p) == 3

    def buffer_shape(self, G, x):
        """The shape of a buffer for this layer's batched output at G points, (G, N, T, n)."""
        N = x.shape[-len(self.in_shape) - 1]
        return (G, N, self.T, self.n_out)

    def apply(self, Wbar, x):
        """Pre-activations in the output's feature shape, fold(patches(x) Wᵀ + b);
        differentiable by autograd in W̄ and x."""
        return self.fold(self.preact(Wbar, x))

    def run(self, Wbar, x, out=None):
        if out is None:
            return self.fold(self.act.f(self.preact(Wbar, x)))
        # numpy, into a buffer (G, N, T, n): the product, the bias and f in place
        G = Wbar.shape[0]
        p = self.patches(x)
        p = p.reshape(-1, self.n_in) if self._shared(p) else p.reshape(G, -1, self.n_in)
        np.matmul(p, self.weight(Wbar).transpose(0, 2, 1), out=out.reshape(G, -1, self.n_out))
        return self.finish(Wbar, out, biased=False)

    def finish(self, Wbar, s, biased):
        """f(s + b) in place on a buffer s (G, N, T, n) of pre-activations (with the bias
        already in when `biased`), folded."""
        if self.bias and not biased:
            s += Wbar[:, None, None, :, -1]
        return self.fold(self.act.f_inplace(s))

    # the engine's rules --------------------------------------------------------------------
    def trace(self, Wbar, x):
        ab = self.augment(self.patches(x))
        s = matmul2d(ab, Wbar.T)
        a, fp = self.act.f_df(s)
        return self.fold(a), AffineState(self, ab, s, a, fp)

    def backprop(self, Wbar, st, g, need_input=True):
        d = self.unfold(g)
        if not self.act.linear:
            d = d * st.fp
        gin = self.patches_T(matmul2d(d, self.weight(Wbar))) if need_input else None
        return gin, d

    def param_grads(self, Wbar, st, d):
        """Σ_n Σ_t δ_{q,n,t} ⊗ ā_{n,t}: (Q, size)."""
        Q, n = d.shape[0], d.shape[-1]
        ab = st.abar
        out = d.reshape(Q, -1, n).transpose(0, 2, 1) @ ab.reshape(-1, ab.shape[-1])
        return out.reshape(Q, -1)

    def param_rows(self, Wbar, st, d, out=None):
        """Per-sample Σ_t δ_{q,n,t} ⊗ ā_{n,t}: (Q, N, size), written into `out` when given."""
        Q, N, T, n = d.shape
        ab = st.abar
        if out is None:
            out = np.empty((Q, N, n * ab.shape[-1]))
        view = out.reshape(Q, N, n, ab.shape[-1])
        if T == 1:  # one location: an outer product
            np.multiply(d[:, :, 0, :, None], ab[None, :, 0, None, :], out=view)
        else:
            np.matmul(d.transpose(0, 1, 3, 2), ab, out=view)
        return out

    def kron_pairs(self, Wbar, st, d):
        """The Kronecker structure of its parameters (curvature.kfac.kron_blocks): one block,
        inputs ā (N, T, m+1) and records δ (Q, N, T, n), laid out (n, m+1) row-major."""
        return [(st.abar, d, False)]

    def param_tangent(self, Wbar, st, V):
        """ā Vᵀ: the pre-activations' tangent along V (Q, n, m+1): (Q, N, T, n) — the record's
        space, so ⟨δ, ā Vᵀ⟩ is the directional derivative."""
        ab = st.abar
        N, T, m1 = ab.shape
        Q = V.shape[0]
        return (ab.reshape(N * T, m1) @ V.transpose(0, 2, 1)).reshape(Q, N, T, self.n_out)

    def rforward(self, Wbar, st, Rx, V):
        # V None: no parameter direction (a tangent injected below, `rforward_preact`)
        Rs = None if V is None else self.param_tangent(Wbar, st, V)      # ā Vᵀ, fresh
        Rp = None
        if Rx is not None:
            Rp = self.patches(Rx)
            if Rs is None:
                Rs = matmul2d(Rp, self.weight(Wbar).T)
            else:
                matmul2d_add(Rs, Rp, self.weight(Wbar).T)    # + R ā Wᵀ, accumulated in place
        return self.rforward_preact(Wbar, st, Rs, Rp)

    def rforward_preact(self, Wbar, st, Rs, Rp=None):
        """The rest of the R-forward from R s (Q, N, T, n): R a = f' ⊙ R s, folded, and the
        R-state (R s, R ā). Called alone, it starts tangents at this layer's pre-activations
        (`engine.rforward_from`)."""
        Ra = Rs if self.act.linear else st.fp * Rs
        return self.fold(Ra), (Rs, Rp)

    def _rdelta(self, st, Rs, d, g, Rg):
        """R δ = f' ⊙ R g + f'' ⊙ g ⊙ R s: for an f that is not piecewise linear formed in R s
        itself, which only this rule reads (used up, `engine.rbackward`; a nonlinear f makes
        R a another array), f' ⊙ R g a temporary, as R g may also be a residual skip's; for
        the identity R g itself (not written to), else f' ⊙ R g."""
        if self.act.name not in PIECEWISE_LINEAR:
            Rd = st.times_g_fpp(Rs, self.unfold(g), d)
            Rd += self.unfold(Rg) * st.fp
            return Rd
        return self.unfold(Rg) if self.act.linear else self.unfold(Rg) * st.fp

    def rbackward(self, Wbar, st, rst, d, g, Rg, V, need_input=True):
        Rs, Rp = rst
        Rd = self._rdelta(st, Rs, d, g, Rg)
        G = self.param_grads(Wbar, st, Rd).reshape((-1,) + self.shape)
        N, T, n = d.shape
        d2 = d.reshape(N * T, n)
        if Rp is not None:
            G[:, :, : self.n_in] += d2.T @ Rp.reshape(Rp.shape[0], N * T, -1)
        Rgin = None
        if need_input:
            Rgin = matmul2d(Rd, self.weight(Wbar))                      # R δ W
            for Rg_q, V_q in zip(Rgin, () if V is None else V):         # + δ V_W per direction
                matmul2d_add(Rg_q, d2, self.weight(V_q))
            Rgin = self.patches_T(Rgin)
        return Rgin, G.reshape(G.shape[0], -1)

    def rbackward_rows(self, Wbar, st, rst, d, g, Rg, need_input=True):
        """The R-backward with no parameter direction, keeping per sample what R{∂ℓ/∂W̄} is
        made of instead of its sum: (R δ (Q, N, T, n), R ā (Q, N, T, m) or None), so that
        R{∂ℓ/∂W̄}ₙ = Σ_t R δ_{n,t} ā_{n,t}ᵀ + δ_{n,t} [R ā_{n,t}; 0]ᵀ (`curvature.blocks`'
        structured Hessian weighs it by another layer's patches)."""
        Rs, Rp = rst
        Rd = self._rdelta(st, Rs, d, g, Rg)
        Rgin = self.patches_T(matmul2d(Rd, self.weight(Wbar))) if need_input else None
        return Rgin, (Rd, Rp)

    def injection_blocks(self, st):
        """The structured Hessian's view (`curvature.blocks.preact_columns`): one block of
        parameters W̄ (n, m+1) meeting the patches ā (N, T, m+1) at the pre-activations, which
        are the whole record; [(ā, n, transposed, offset, index in the record)]."""
        return [(st.abar, self.n_out, False, 0, None)]

    def rows_from(self, st, d, Rd, Rp, out=None):
        """Per direction and sample R{∂ℓ/∂W̄}ₙ from `rbackward_rows`' pair: (Q, N, size),
        written into `out` when given."""
        Y = self.param_rows(None, st, Rd, out=out)
        if Rp is not None:
            Q, N, T, n = Rd.shape
            view = Y.reshape(Q, N, n, -1)[..., : self.n_in]
            if T == 1:                                            # δ R āᵀ: an outer product
                view += d[None, :, 0, :, None] * Rp[:, :, 0, None, :]
            else:                                                 # Σ_t δ_t R ā_tᵀ
                view += np.matmul(d.transpose(0, 2, 1), Rp)
        return Y


class AffineState:
    """What an Affine layer's forward pass keeps: ā (N, T, m+1), s, a = f(s), f'(s), and f''(s)
    on first use."""

    __slots__ = ("layer", "abar", "s", "a", "fp", "_fpp")

    def __init__(self, layer, abar, s, a, fp):
        self.layer, self.abar, self.s, self.a, self.fp = layer, abar, s, a, fp
        self._fpp = None

    @property
    def fpp(self):
        if self._fpp is None:
            self._fpp = self.layer.act.d2f_from(self.s, self.a, self.fp)
        return self._fpp

    def times_g_fpp(self, out, g, d):
        """out ⊙ g ⊙ f''(s), written into out (Q, N, T, n); g = ∂ℓ/∂a and d = f' ⊙ g (N, T, n).
        An activation with `times_g_d2f` forms it from f and d (tanh: f'' g = −2 f d) without
        f''; otherwise f'' is made (once per trace) and kept."""
        rule = self.layer.act.times_g_d2f
        if rule is not None:
            return rule(out, self.s, self.a, self.fp, g, d)
        out *= self.fpp
        out *= g
        return out
