"""SelfAttention: multi-head self-attention on sequences (T, d), as torch's
nn.MultiheadAttention computes it with q = k = v = x (batch_first, need_weights=False).

Parameters θ = four Dense blocks Q, K, V, O, each W̄ = [W | b] of shape (d, d + 1) (W alone
without bias), in that order: θ has shape (4, d, d + 1). With x̄ = [x; 1] at each position,
h heads of d_h = d / h features and c = 1 / √d_h (heads split the features in order):

    q = x̄ W̄_Qᵀ,  k = x̄ W̄_Kᵀ,  v = x̄ W̄_Vᵀ            (N, T, d) -> per head (N, h, T, d_h)
    S = c q kᵀ  (s > t masked to −∞ when causal),  A = softmax over the last axis
    o = A v  (heads merged back, (N, T, d)),  y = ō W̄_Oᵀ,  ō = [o; 1]

Its record (what backprop keeps) is the four pre-activation cotangents δ = (∂ℓ/∂q, ∂ℓ/∂k,
∂ℓ/∂v, ∂ℓ/∂y), stacked (Q, N, T, 4, d): the gradient of each block is Σ_t δ_t ā_tᵀ with ā = x̄
for Q, K, V and ō for O, exactly as for a Dense layer shared over positions. Backprop from
g = ∂ℓ/∂y:

    ∂o = g W_O,  ∂A = ∂o vᵀ,  ∂v = Aᵀ ∂o,  ∂S = A ⊙ (∂A − rowsum(∂A ⊙ A)),
    ∂q = c ∂S k,  ∂k = c ∂Sᵀ q,  ∂x = ∂q W_Q + ∂k W_K + ∂v W_V.

R-forward (Pearlmutter) along V = (V_Q, V_K, V_V, V_O) and an input tangent R x:

    R q = x̄ V_Qᵀ + R x W_Qᵀ (and k, v),  R S = c (R q kᵀ + q R kᵀ),
    R A = A ⊙ (R S − rowsum(A ⊙ R S)),  R o = R A v + A R v,  R y = ō V_Oᵀ + R o W_Oᵀ,

and the R-backward differentiates every backprop line above (the product rule on each; the
softmax's second-order term is R{∂S} = R A ⊙ (∂A − r) + A ⊙ (R ∂A − R r)), adding to each block's
gradient the terms of its input's tangent: Σ_t δ_t [R x_t; 0]ᵀ for Q, K, V, Σ_t g_t [R o_t; 0]ᵀ
for O.

Cost per pass and seed: 4 N T d² for the projections and 2 N T² d for the scores and mixing;
the states keep A (N, h, T, T) and q, k, v.
"""

import autograd.numpy as anp
import numpy as np

from .base import Layer, describe, is_map, matmul2d


class SelfAttention(Layer):
    """Multi-head self-attention y = MHA(x, x, x) on (N, T, d) (module docstring), torch's
    parameterisation: four blocks Q, K, V, O, each [W | b] (d, d + 1) — W alone without bias.
    causal: position t attends to positions s <= t only (torch's square subsequent mask)."""

    has_params = True

    def __init__(self, d, heads=1, causal=False, bias=True):
        try:
            d, heads = int(d), int(heads)
        except (TypeError, ValueError):
            raise TypeError(f"cl.SelfAttention(d, heads) takes ints, got {d!r}, {heads!r}") \
                from None
        if d < 1 or heads < 1 or d % heads:
            raise ValueError(f"cl.SelfAttention(d, heads): d must be a positive multiple of heads "
                             f"(each head takes d / heads features), got d={d}, heads={heads}")
        self.d, self.heads = d, heads
        self.causal, self.bias = bool(causal), bool(bias)
        self.dh = d // heads
        self.c = 1.0 / np.sqrt(self.dh)

    @property
    def shape(self):
        return (4, self.d, self.d + int(self.bias))

    @property
    def size(self):
        return 4 * self.d * (self.d + int(self.bias))

    @property
    def width(self):
        """Numbers per sample the memory budgets count: its record (4 · T · d) and one array of
        attention weights (h · T · T), which its passes keep beside it."""
        return 4 * self.T * self.d + self.heads * self.T * self.T

    def build(self, in_shape):
        if is_map(in_shape) or len(in_shape) != 2:
            raise ValueError(f"{self!r} needs a sequence (T, d) input but gets "
                             f"{describe(in_shape)}")
        if in_shape[1] != self.d:
            raise ValueError(f"{self!r} expects {self.d} features per position but gets "
                             f"{in_shape[1]}; use SelfAttention({in_shape[1]}, ...)")
        self.T = int(in_shape[0])
        self.in_shape = self.out_shape = tuple(in_shape)
        self.mask = np.tril(np.ones((self.T, self.T), dtype=bool)) if self.causal else None
        return self.out_shape

    def init(self, rng):
        """LeCun-normal weights (variance 1/d) for each of the four blocks, zero biases."""
        W = rng.standard_normal((4, self.d, self.d)) / np.sqrt(self.d)
        return np.concatenate([W, np.zeros((4, self.d, 1))], axis=2) if self.bias else W

    def torch_layout(self, index):
        """torch's MultiheadAttention lists in_proj_weight (Q, K, V rows stacked), in_proj_bias,
        then out_proj's weight and bias."""
        d = self.d
        parts = [index[:3, :, :d]] + ([index[:3, :, d]] if self.bias else [])
        parts += [index[3, :, :d]] + ([index[3, :, d]] if self.bias else [])
        return np.concatenate([np.ravel(p) for p in parts])

    # shapes ----------------------------------------------------------------------------------
    def _heads(self, a):
        """(..., T, d) -> (..., h, T, d_h)."""
        a = anp.reshape(a, a.shape[:-1] + (self.heads, self.dh))
        return anp.swapaxes(a, -2, -3)

    def _merge(self, a):
        """(..., h, T, d_h) -> (..., T, d)."""
        a = anp.swapaxes(a, -2, -3)
        return anp.reshape(a, a.shape[:-2] + (self.d,))

    def _aug(self, x):
        return np.concatenate([x, np.ones(x.shape[:-1] + (1,))], axis=-1) if self.bias else x

    def _softmax(self, S):
        """Row softmax of the scores, masked entries exactly 0. Differentiable by autograd."""
        if self.mask is not None:
            S = anp.where(self.mask, S, -np.inf)
        E = anp.exp(S - anp.max(S, axis=-1, keepdims=True))
        return E / anp.sum(E, axis=-1, keepdims=True)

    # forward -------------------------------------------------------------------------------
    def run(self, theta, x, out=None):
        """The forward map, by autograd-differentiable ops; θ (4, d, m) and x (N, T, d), or θ
        with a leading axis of G points (G, 4, d, m) and x (N, T, d) or (G, N, T, d)."""
        d, G = self.d, anp.ndim(theta) == 4

        def proj(j, a):
            W = theta[..., j, :, :d]
            if G:
                W = anp.expand_dims(W, 1)                       # (G, 1, d, d): shared over N
            s = anp.matmul(a, anp.swapaxes(W, -1, -2))
            if not self.bias:
                return s
            b = theta[..., j, :, d]
            return s + (anp.reshape(b, (-1, 1, 1, d)) if G else b)

        if G and anp.ndim(x) == 3:
            x = anp.expand_dims(x, 0)
        q, k, v = (self._heads(proj(j, x)) for j in range(3))
        A = self._softmax(self.c * anp.matmul(q, anp.swapaxes(k, -1, -2)))
        return proj(3, self._merge(anp.matmul(A, v)))

    def apply(self, theta, x):
        return self.run(theta, x)

    def trace(self, theta, x):
        xb = self._aug(x)
        q, k, v = (self._heads(matmul2d(xb, theta[j].T)) for j in range(3))
        A = self._softmax(self.c * (q @ k.swapaxes(-1, -2)))
        ob = self._aug(self._merge(A @ v))
        return matmul2d(ob, theta[3].T), AttentionState(xb, q, k, v, A, ob)

    # the rules -----------------------------------------------------------------------------
    def _W(self, theta, j):
        """W_j, the part of block j that multiplies its input (leading axes kept)."""
        return theta[..., j, :, : self.d]

    def _scores_back(self, A, dA):
        """∂S = A ⊙ (∂A − rowsum(∂A ⊙ A)): the softmax's adjoint."""
        return A * (dA - np.sum(dA * A, axis=-1, keepdims=True))

    def _qk_back(self, st, dS):
        """(∂q, ∂k) per head from ∂S: c ∂S k and c ∂Sᵀ q."""
        return self.c * (dS @ st.k), self.c * (dS.swapaxes(-1, -2) @ st.q)

    def _record(self, lead):
        """An empty record (*lead, T, 4, d) and its per-head view (*lead, T, 4, h, d_h)."""
        r6 = np.empty(tuple(lead) + (self.T, 4, self.heads, self.dh))
        return r6.reshape(tuple(lead) + (self.T, 4, self.d)), r6

    @staticmethod
    def _put(r6, j, a):
        """Write block j of a record from per-head a (..., h, T, d_h)."""
        r6[..., j, :, :] = np.swapaxes(a, -2, -3)

    def backprop(self, theta, st, g, need_input=True):
        do = self._heads(matmul2d(g, self._W(theta, 3)))                  # (Q, N, h, T, d_h)
        dA = do @ st.v.swapaxes(-1, -2)
        dq, dk = self._qk_back(st, self._scores_back(st.A, dA))
        rec, r6 = self._record(g.shape[:-2])
        self._put(r6, 0, dq)
        self._put(r6, 1, dk)
        self._put(r6, 2, st.A.swapaxes(-1, -2) @ do)                       # ∂v
        rec[..., 3, :] = g
        gin = self._input_back(theta, rec) if need_input else None
        return gin, rec

    def _qkv(self, rec):
        """The Q, K, V part of records (..., T, 4, d) as (..., T, 3 d)."""
        return rec[..., :3, :].reshape(rec.shape[:-2] + (3 * self.d,))

    def _input_back(self, theta, rec):
        """Σ_{j = Q, K, V} δ_j W_j: (..., N, T, d) from records (..., N, T, 4, d)."""
        W = self._W(theta, slice(0, 3)).reshape(3 * self.d, self.d)      # [W_Q; W_K; W_V]
        return matmul2d(self._qkv(rec), W)

    def param_grads(self, theta, st, rec):
        """Σ_n Σ_t δ_{j,t} ā_{j,t}ᵀ per block j: (Q, size)."""
        Q, N = rec.shape[:2]
        d, NT = self.d, N * self.T
        xb, ob = st.xb.reshape(NT, -1), st.ob.reshape(NT, -1)
        out = np.empty((Q, 4, d, xb.shape[1]))
        out[:, :3] = (self._qkv(rec).reshape(Q, NT, 3 * d).swapaxes(1, 2) @ xb).reshape(
            Q, 3, d, -1)
        out[:, 3] = rec[..., 3, :].reshape(Q, NT, d).swapaxes(1, 2) @ ob
        return out.reshape(Q, -1)

    def param_rows(self, theta, st, rec, out=None):
        """Per sample Σ_t δ_{j,t} ā_{j,t}ᵀ: (Q, N, size), written into `out` when given."""
        Q, N = rec.shape[:2]
        d, m = self.d, st.xb.shape[-1]
        if out is None:
            out = np.empty((Q, N, self.size))
        view = out.reshape(Q, N, 4, d, m)
        view[:, :, :3] = np.matmul(self._qkv(rec).swapaxes(-1, -2), st.xb).reshape(Q, N, 3, d, m)
        view[:, :, 3] = np.matmul(rec[..., 3, :].swapaxes(-1, -2), st.ob)
        return out

    def param_tangent(self, theta, st, V):
        """(x̄ V_Qᵀ, x̄ V_Kᵀ, x̄ V_Vᵀ, ō V_Oᵀ): (Q, N, T, 4, d), the record's space."""
        Q, N, T, d = V.shape[0], st.xb.shape[0], self.T, self.d
        out = np.empty((Q, N, T, 4, d))
        qkv = st.xb.reshape(N * T, -1) @ V[:, :3].reshape(Q, 3 * d, -1).swapaxes(-1, -2)
        out[..., :3, :] = qkv.reshape(Q, N, T, 3, d)
        out[..., 3, :] = (st.ob.reshape(N * T, -1) @ V[:, 3].swapaxes(-1, -2)).reshape(Q, N, T, d)
        return out

    def rforward(self, theta, st, Rx, V):
        # V None: no parameter direction (a tangent from below only)
        if V is None:
            R = np.zeros(Rx.shape[:-1] + (4, self.d))
        else:
            R = self.param_tangent(theta, st, V)                          # (Q, N, T, 4, d)
        if Rx is not None:
            W = self._W(theta, slice(0, 3)).reshape(3 * self.d, self.d)
            R[..., :3, :] += matmul2d(Rx, W.T).reshape(Rx.shape[:-1] + (3, self.d))
        return self.rforward_preact(theta, st, R, Rx)

    def rforward_preact(self, theta, st, R, Rx=None):
        """The rest of the R-forward from the tangents of the four blocks' pre-activations R
        (Q, N, T, 4, d) (q, k, v and the output's): R y and the R-state. Called alone, it
        starts tangents there (`engine.rforward_from`)."""
        Rq, Rk, Rv = (self._heads(R[..., j, :]) for j in range(3))
        RS = Rq @ st.k.swapaxes(-1, -2)
        RS += st.q @ Rk.swapaxes(-1, -2)
        RS *= self.c
        RA = st.A * RS                                    # A ⊙ (R S − rowsum(A ⊙ R S))
        RA -= st.A * np.sum(RA, axis=-1, keepdims=True)
        Ro = RA @ st.v
        Ro += st.A @ Rv
        Ro = self._merge(Ro)
        Ry = R[..., 3, :] + matmul2d(Ro, self._W(theta, 3).T)
        return Ry, AttentionRState(Rq, Rk, Rv, RA, Ro, Rx)

    def _rrecord(self, theta, st, rst, g, Rg, V):
        """R of the record (Q, N, T, 4, d): every backprop line differentiated (module
        docstring); g without the seed axis, Rg (Q, N, T, d); V None: no parameter direction."""
        Wo = self._W(theta, 3)                                            # (d, d)
        N, T, d = g.shape
        Q = Rg.shape[0]
        A = st.A
        # the ordinary backprop, recomputed without the seed axis
        do = self._heads(matmul2d(g, Wo))
        dA = do @ st.v.swapaxes(-1, -2)
        r = np.sum(dA * A, axis=-1, keepdims=True)
        dS = A * (dA - r)
        # its R{·}, line by line
        Rdo = matmul2d(Rg, Wo)
        if V is not None:
            Rdo += (g.reshape(N * T, d) @ self._W(V, 3)).reshape(Rg.shape)
        Rdo = self._heads(Rdo)
        RdA = Rdo @ st.v.swapaxes(-1, -2)
        RdA += do @ rst.Rv.swapaxes(-1, -2)
        Rr = np.sum(RdA * A, axis=-1, keepdims=True)
        Rr += np.sum(dA * rst.RA, axis=-1, keepdims=True)
        RdS = rst.RA * (dA - r)                           # R{A ⊙ (∂A − r)}
        RdS += A * (RdA - Rr)
        Rrec, r6 = self._record((Q, N))
        Rdq = RdS @ st.k
        Rdq += dS @ rst.Rk
        self._put(r6, 0, self.c * Rdq)
        Rdk = RdS.swapaxes(-1, -2) @ st.q
        Rdk += dS.swapaxes(-1, -2) @ rst.Rq
        self._put(r6, 1, self.c * Rdk)
        Rdv = rst.RA.swapaxes(-1, -2) @ do
        Rdv += A.swapaxes(-1, -2) @ Rdo
        self._put(r6, 2, Rdv)
        Rrec[..., 3, :] = Rg
        return Rrec

    def rbackward(self, theta, st, rst, rec, g, Rg, V, need_input=True):
        """Every backprop line differentiated (module docstring); rec, g without the seed axis,
        Rg (Q, N, T, d)."""
        N, T, d = g.shape
        Q = Rg.shape[0]
        Rrec = self._rrecord(theta, st, rst, g, Rg, V)
        RG = self.param_grads(theta, st, Rrec).reshape((Q,) + self.shape)
        # the blocks' inputs move too: Σ_t δ_t [R x_t; 0]ᵀ (Q, K, V) and Σ_t g_t [R o_t; 0]ᵀ (O)
        qkv = self._qkv(rec).reshape(N * T, 3 * d)
        if rst.Rx is not None:
            RG[:, :3, :, :d] += (qkv.T @ rst.Rx.reshape(Q, N * T, d)).reshape(Q, 3, d, d)
        RG[:, 3, :, :d] += g.reshape(N * T, d).T @ rst.Ro.reshape(Q, N * T, d)
        Rgin = None
        if need_input:
            Rgin = self._input_back(theta, Rrec)
            if V is not None:
                VW = self._W(V, slice(0, 3)).reshape(Q, 3 * d, d)
                Rgin += (qkv @ VW).reshape(Q, N, T, d)
        return Rgin, RG.reshape(Q, -1)

    # the structured Hessian's view (curvature.blocks.preact_columns) --------------------------
    def injection_blocks(self, st):
        """Four blocks of parameters, each a Dense shared over the T positions: Q, K, V meet
        x̄, O meets ō; their pre-activations are the record's blocks 0-3:
        [(ā, n, transposed, offset, index in the record)]."""
        size = self.d * st.xb.shape[-1]
        return ([(st.xb, self.d, False, j * size, j) for j in range(3)]
                + [(st.ob, self.d, False, 3 * size, 3)])

    def rbackward_rows(self, theta, st, rst, rec, g, Rg, need_input=True):
        """The R-backward with no parameter direction, keeping per sample what R{∂ℓ/∂θ} is
        made of: (R record, R x, R o, g) (`rows_from`)."""
        Rrec = self._rrecord(theta, st, rst, g, Rg, None)
        Rgin = self._input_back(theta, Rrec) if need_input else None
        return Rgin, (Rrec, rst.Rx, rst.Ro, g)

    def rows_from(self, st, rec, Rrec, Rx, Ro, g, out=None):
        """Per direction and sample R{∂ℓ/∂θ}ₙ: Σ_t R δ_{j,t} ā_{j,t}ᵀ per block, plus the
        inputs' moves Σ_t δ_{j,t} [R x_t; 0]ᵀ (Q, K, V) and Σ_t g_t [R o_t; 0]ᵀ (O):
        (Q, N, size), written into `out` when given."""
        Y = self.param_rows(None, st, Rrec, out=out)
        Q, N = Rrec.shape[:2]
        d = self.d
        view = Y.reshape(Q, N, 4, d, -1)
        if Rx is not None:
            view[:, :, :3, :, :d] += np.matmul(self._qkv(rec).swapaxes(-1, -2), Rx).reshape(
                Q, N, 3, d, d)
        view[:, :, 3, :, :d] += np.matmul(g.swapaxes(-1, -2), Ro)
        return Y

    def kron_pairs(self, theta, st, rec):
        """The Kronecker kinds' view (curvature.kfac.kron_blocks): four blocks Q, K, V, O in the
        flat order, each a Dense shared over the T positions — Q, K, V meet the inputs x̄ with
        records δ_Q, δ_K, δ_V; O meets the heads' merged outputs ō with δ_O = ∂ℓ/∂y."""
        return [(st.xb, rec[..., j, :], False) for j in range(3)] + [(st.ob, rec[..., 3, :], False)]

    def __repr__(self):
        extra = (", causal=True" if self.causal else "") + ("" if self.bias else ", bias=False")
        return f"SelfAttention({self.d}, heads={self.heads}{extra})"


class AttentionState:
    """What the forward pass keeps: x̄ (N, T, m), per head q, k, v (N, h, T, d_h), the weights
    A (N, h, T, T) and ō (N, T, m)."""

    __slots__ = ("xb", "q", "k", "v", "A", "ob")

    def __init__(self, xb, q, k, v, A, ob):
        self.xb, self.q, self.k, self.v, self.A, self.ob = xb, q, k, v, A, ob


class AttentionRState:
    """What the R-forward keeps: R q, R k, R v per head, R A, R o (merged) and R x (or None)."""

    __slots__ = ("Rq", "Rk", "Rv", "RA", "Ro", "Rx")

    def __init__(self, Rq, Rk, Rv, RA, Ro, Rx):
        self.Rq, self.Rk, self.Rv, self.RA, self.Ro, self.Rx = Rq, Rk, Rv, RA, Ro, Rx
