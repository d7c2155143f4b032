"""The layer-wise passes every curvature quantity is built from, in one place, for any
`Sequential` (Dense and Conv2d layers, pooling, Flatten).

Notation (Botev et al. 2017; Lin's notes), for the layers with parameters l = 0..L-1 and a
batch of N samples; layer l has T_l output locations (1 for Dense, H_out·W_out for Conv2d):
    ā_l  (N, T_l, m_l + 1)  augmented patches [φ(x_l), 1] of the layer's input x_l
    s_l  (N, T_l, n_l)       pre-activations s_l = ā_l W̄_lᵀ
    a_l  = f(s_l),  f'_l = f'(s_l),  f''_l = f''(s_l)
Between a_{l-1} and x_l (and after the last layer, up to the outputs z) sit parameter-free
layers — pooling, Flatten — which are linear once the forward pass has run. `up(l, ·)` carries
a tangent of a_{l-1} through them and the patch map φ of layer l; `down(l, ·)` is its adjoint
(l = L: up to z and back). For an MLP both are reshapes.

Backward passes carry a leading axis of Q "seeds" (directions, output units or samples), so a
whole family of backprops is a handful of large matrix products:
    ∂ℓ/∂a_{L-1} = down(L, seed),   δ_l = f'_l ⊙ ∂ℓ/∂a_l,   ∂ℓ/∂a_{l-1} = down(l, δ_l W_l),
    ∂/∂W̄_l = Σ_t δ_{l,t}ᵀ ā_{l,t}.
The R-operator (Pearlmutter) pushes Q directions V = {V_l} forward,
    R s_l = ā_l V_lᵀ + R ā_l W_lᵀ,  R ā_l = [up(l, f'_{l-1} ⊙ R s_{l-1}), 0],
    R z = up(L, f' ⊙ R s),
and back, with the two extra terms that make it the exact Hessian product:
    R{∂ℓ/∂a_{l-1}} = down(l, R δ_l W_l + δ_l V_l),
    R δ_l = f'_l ⊙ R{∂ℓ/∂a_l} + f''_l ⊙ ∂ℓ/∂a_l ⊙ R s_l,
    R{∂/∂W̄_l} = Σ_t R δ_{l,t}ᵀ ā_{l,t} + δ_{l,t}ᵀ R ā_{l,t}.
Nothing here averages over samples; callers divide by N.
"""

from collections import namedtuple

import numpy as np

from .layers import PIECEWISE_LINEAR

# links[l]: (layer, state) of the parameter-free layers before layer l (l = L: after the last)
Trace = namedtuple("Trace", "abar s fp fpp z links")


def _through(modules, x):
    states = []
    for mod in modules:
        x, st = mod.forward(x)
        states.append((mod, st))
    return x, states


def forward(model, Wbars, X):
    """Forward trace of the network on X: augmented patches, pre-activations, f', f'', outputs."""
    abar, s, fp, fpp, links = [], [], [], [], []
    x = model.prepare(X)
    for l, (layer, Wb) in enumerate(zip(model.layers, Wbars)):
        x, states = _through(model.links[l], x)
        links.append(states)
        p = layer.patches(x)
        ab = np.concatenate([p, np.ones(p.shape[:-1] + (1,))], axis=-1)
        si = ab @ Wb.T
        abar.append(ab)
        s.append(si)
        fp.append(layer.act.df(si))
        fpp.append(layer.act.d2f(si))
        x = layer.fold(layer.act.f(si))
    z, states = _through(model.links[-1], x)
    links.append(states)
    return Trace(abar, s, fp, fpp, z, links)


def up(model, tr, l, da):
    """Tangent of a_{l-1} (..., T, n) -> tangent of layer l's patches (..., T_l, m_l), or of the
    outputs z (..., K) for l = L. Linear: pooling uses the forward pass's selections."""
    x = model.layers[l - 1].fold(da)
    for mod, st in tr.links[l]:
        x = mod.push(st, x)
    return x if l == len(model.layers) else model.layers[l].patches(x)


def down(model, tr, l, g):
    """The adjoint of `up`: a cotangent of layer l's patches (or of z, l = L) -> of a_{l-1}."""
    x = g if l == len(model.layers) else model.layers[l].patches_T(g)
    for mod, st in reversed(tr.links[l]):
        x = mod.pull(st, x)
    return model.layers[l - 1].unfold(x)


def backward(model, Wbars, tr, seed, with_a=False):
    """δ_l (Q, N, T_l, n_l) for every layer from output seeds (Q, N, K): ordinary (linear)
    backprop. with_a: also the cotangents ∂/∂a_l before f' (for the Hessian's f'' terms)."""
    L = len(Wbars)
    deltas, grads_a = [None] * L, [None] * L
    g = down(model, tr, L, seed)
    for l in reversed(range(L)):
        grads_a[l] = g
        deltas[l] = g * tr.fp[l]
        if l:
            g = down(model, tr, l, deltas[l] @ Wbars[l][:, :-1])
    return (deltas, grads_a) if with_a else deltas


def _sum_locations(d, ab):
    """Σ_{n,t} d_{q,n,t} ⊗ ā_{n,t} for d (Q, N, T, n), ā (N, T, m+1): (Q, n, m+1)."""
    Q, N, T, n = d.shape
    return d.reshape(Q, N * T, n).transpose(0, 2, 1) @ ab.reshape(N * T, -1)


def weight_grads(tr, deltas):
    """Σ_n Σ_t δ_{l,n,t} ā_{l,n,t}ᵀ per layer, flattened into the flat layout: (P, Q)."""
    Q = deltas[0].shape[0]
    return np.concatenate(
        [_sum_locations(d, ab).reshape(Q, -1) for d, ab in zip(deltas, tr.abar)], axis=1
    ).T


def jacobian_rows(tr, deltas):
    """Per-sample rows Σ_t δ_{l,n,t} ⊗ ā_{l,n,t} in the flat layout: (Q, N, P), each layer's
    written in place (no concatenated copy)."""
    Q, N = deltas[0].shape[:2]
    widths = [d.shape[-1] * ab.shape[-1] for d, ab in zip(deltas, tr.abar)]
    out = np.empty((Q, N, sum(widths)))
    o = 0
    for d, ab, width in zip(deltas, tr.abar, widths):
        view = out[:, :, o : o + width].reshape(Q, N, d.shape[-1], ab.shape[-1])
        if d.shape[2] == 1:  # one location: an outer product
            np.multiply(d[:, :, 0, :, None], ab[None, :, 0, None, :], out=view)
        else:
            np.matmul(d.transpose(0, 1, 3, 2), ab, out=view)
        o += width
    return out


def split_directions(model, V):
    """Flat directions (P, Q) -> per-layer V_l of shape (Q, n_l, m_l + 1)."""
    Q = V.shape[1]
    return [
        V[sl].T.reshape((Q,) + layer.shape) for sl, layer in zip(model.layer_slices(), model.layers)
    ]


def times_abar(ab, V):
    """ā V_lᵀ for Q directions: (N, T, m+1) x (Q, n, m+1) -> (Q, N, T, n)."""
    N, T, m1 = ab.shape
    Q, n, _ = V.shape
    return (ab.reshape(N * T, m1) @ V.transpose(0, 2, 1)).reshape(Q, N, T, n)


def rforward(model, Wbars, tr, Vs):
    """The R-forward pass for Q directions: R s_l (Q, N, T_l, n_l), R ā_l without its constant
    column (None for l = 0, whose patches do not depend on w), and R z = J v (Q, N, K)."""
    Rs, Rp = [], []
    for l, (Wb, V) in enumerate(zip(Wbars, Vs)):
        r = times_abar(tr.abar[l], V)
        p = None
        if l:
            p = up(model, tr, l, tr.fp[l - 1] * Rs[-1])
            r += p @ Wb[:, :-1].T
        Rs.append(r)
        Rp.append(p)
    L = len(Wbars)
    return Rs, Rp, up(model, tr, L, tr.fp[L - 1] * Rs[-1])


def _r_delta(model, tr, l, Rg, ga, Rs):
    """R δ_l = f'_l ⊙ R{∂ℓ/∂a_l} + f''_l ⊙ ∂ℓ/∂a_l ⊙ R s_l (the last term vanishes for
    piecewise-linear activations)."""
    Rd = Rg * tr.fp[l]
    if model.layers[l].act.name not in PIECEWISE_LINEAR:
        Rd += ga[l] * tr.fpp[l] * Rs[l]
    return Rd


def rbackward(model, Wbars, tr, deltas, grads_a, Rs, Rp, Vs, Rseed):
    """Exact R{∂ℓ/∂W̄_l} (summed over samples) for Q directions, flat (P, Q).

    deltas, grads_a: the ordinary per-sample backprop δ_l and ∂ℓ/∂a_l of ∂ℓ/∂z (N, T_l, n_l);
    Rs, Rp from `rforward`; Rseed = R{∂ℓ/∂z} = B R z (Q, N, K).
    """
    L = len(Wbars)
    out = [None] * L
    Rd = _r_delta(model, tr, L - 1, down(model, tr, L, Rseed), grads_a, Rs)
    for l in reversed(range(L)):
        G = _sum_locations(Rd, tr.abar[l])
        if l:
            d = deltas[l]
            N, T, n = d.shape
            G[:, :, :-1] += d.reshape(N * T, n).T @ Rp[l].reshape(Rp[l].shape[0], N * T, -1)
            W = Wbars[l][:, :-1]
            Rg = down(model, tr, l, Rd @ W + d @ Vs[l][:, None, :, :-1])
            Rd = _r_delta(model, tr, l - 1, Rg, grads_a, Rs)
        out[l] = G.reshape(G.shape[0], -1)
    return np.concatenate(out, axis=1).T


class Point:
    """Everything about a layered Problem at w that curvature builds and products reuse — W̄,
    the forward trace, ∂ℓ/∂z, the backprops δ, B and its square-root seeds — each computed once,
    on first use (`problem.point(w)` makes one). Products take blocks V (P, Q) and include λ."""

    def __init__(self, problem, w):
        self.problem, self.w = problem, problem.check(w)
        self.Wbars, self.tr = problem.trace(self.w)
        self.N, self.l2 = problem.N, problem.l2
        self._cache = {}

    def lazy(self, key, make):
        """The cached value under key, made by make() on first use."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def grad(self):
        """∇L(w) (P,) by one backward pass."""
        g = weight_grads(self.tr, self.backward(self.r[None]))[:, 0]
        return g / self.N + self.l2 * self.w

    @property
    def r(self):
        return self.lazy("r", lambda: self.problem.lossfn.dz(self.tr.z, self.problem.y))

    @property
    def backprop(self):
        """Per-sample backprop of ∂ℓ/∂z: (δ_l, ∂ℓ/∂a_l), each (N, T_l, n_l) per layer."""

        def make():
            deltas, grads_a = backward(
                self.problem.model, self.Wbars, self.tr, self.r[None], with_a=True
            )
            return [d[0] for d in deltas], [g[0] for g in grads_a]

        return self.lazy("backprop", make)

    @property
    def deltas(self):
        return self.backprop[0]

    @property
    def grads_a(self):
        return self.backprop[1]

    @property
    def sqrt_seeds(self):
        """The columns of the factor C of B = C Cᵀ as output seeds (R, N, K): their backprops give
        the type-2 (exact-GGN) quantities."""
        return self.lazy(
            "sqrt_seeds",
            lambda: self.problem.lossfn.sqrt_hessian(self.tr.z, self.problem.y).transpose(2, 0, 1),
        )

    @property
    def B(self):
        return self.lazy("B", lambda: self.problem.lossfn.hessian(self.tr.z, self.problem.y))

    @property
    def D(self):
        """Lin's stored Jacobians ∂z/∂s_l for all samples and outputs: (K, N, T_l, n_l) per layer,
        N·K·Σ_l T_l n_l numbers in all (Lin's memory count)."""

        def make():
            K = self.tr.z.shape[1]
            seed = np.broadcast_to(np.eye(K)[:, None, :], (K, self.N, K))
            return self.backward(seed)

        return self.lazy("D", make)

    def backward(self, seed, with_a=False):
        """Backprop of output seeds (Q, N, K): δ_l (Q, N, T_l, n_l) per layer."""
        return backward(self.problem.model, self.Wbars, self.tr, seed, with_a)

    def Bu(self, U):
        """B U for output directions U (Q, N, K), per sample, without forming B."""
        return self.problem.lossfn.hessian_product(self.tr.z, self.problem.y, U)

    def split(self, V):
        return split_directions(self.problem.model, V)

    # products on blocks (P, Q) ---------------------------------------------------------------
    def jv(self, V):
        """J V: (Q, N, K) by one batched R-forward pass."""
        return rforward(self.problem.model, self.Wbars, self.tr, self.split(V))[2]

    def jtu(self, U):
        """Σ_n J_nᵀ U_n for Q output cotangents U (Q, N, K): (P, Q)."""
        return weight_grads(self.tr, self.backward(U))

    def hv(self, V):
        Vs = self.split(V)
        model = self.problem.model
        Rs, Rp, Rz = rforward(model, self.Wbars, self.tr, Vs)
        HV = rbackward(
            model, self.Wbars, self.tr, self.deltas, self.grads_a, Rs, Rp, Vs, self.Bu(Rz)
        )
        return HV / self.N + self.l2 * V

    def gv_rop(self, V):
        """Lin (b): J v by the R-operator, then a backward pass with B J v in place of ∂ℓ/∂z."""
        BJv = self.Bu(self.jv(V))
        return self.jtu(BJv) / self.N + self.l2 * V

    def gv_jacobian(self, V):
        """Lin (a): reuse the stored ∂z/∂s_l; memory ∝ samples × outputs × units."""
        Jv = 0.0
        for D, ab, Vl in zip(self.D, self.tr.abar, self.split(V)):
            Jv = Jv + np.einsum("knti,qnti->qnk", D, times_abar(ab, Vl))
        u = self.Bu(Jv)
        deltas = [np.einsum("qnk,knti->qnti", u, D) for D in self.D]
        return weight_grads(self.tr, deltas) / self.N + self.l2 * V

    def fv_true(self, V):
        F = self.lazy("F", lambda: self.problem.lossfn.fisher_factor(self.tr.z))
        FJv = np.einsum("nkr,njr,qnj->qnk", F, F, self.jv(V))
        return self.jtu(FJv) / self.N + self.l2 * V

    def fv_empirical(self, V):
        G = self.lazy(
            "g_n", lambda: jacobian_rows(self.tr, self.backward(self.r[None]))[0]
        )  # (N, P)
        return G.T @ (G @ V) / self.N + self.l2 * V
