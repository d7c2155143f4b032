"""Kronecker-factored curvature: K-FAC (Martens & Grosse 2015; KFC for conv layers, Grosse &
Martens 2016), KFLR and KFRA (Botev et al. 2017).

Each approximates the GGN's layer block by one Kronecker product S_l ⊗ A_l (row-major layout:
the block is exactly ``np.kron(S_l, A_l)``). For a Dense layer the block is
(1/N) Σₙ Gₙ ⊗ āₙāₙᵀ and
    A_l = (1/N) Σₙ āₙ āₙᵀ                      (augmented layer inputs ā = [a; 1])
    S_l = (1/N) Σₙ Gₙ, Gₙ a per-sample pre-activation curvature:
      kflr  exact:     Gₙ = D̃ₙᵀ D̃ₙ, D̃ₙ = ∂(Cₙᵀ z)/∂s_l  (backprop of the factor C of B = CCᵀ)
      kfra  recursive: S_L = mean B,  S_l = (W_{l+1}ᵀ S_{l+1} W_{l+1}) ⊙ mean(f'_l f'_lᵀ)
      kfac  sampled:   Gₙ = (1/S) Σₛ δₙₛ δₙₛᵀ, δ the backprop of ∂ℓ/∂z at y ~ p(y|x)
            (kind='empirical': the data labels instead).
For one sample every S_l ⊗ A_l equals the exact GGN block.

A layer with weight sharing (Conv2d, T locations, patches ā_{n,t}) has two flavors, exactly as
curvlinops' KFACLinearOperator defines them (mean reduction, joint [W | b] block; Eschenhagen
et al. 2023), with Gₙ,ₜ = Jₙ,ₜᵀ Bₙ Jₙ,ₜ and Jₙ,ₜ = ∂zₙ/∂sₙ,ₜ:
    expand  A = (1/(N·T)) Σₙ Σₜ āₙ,ₜ āₙ,ₜᵀ,      S = (1/N) Σₙ Σₜ Gₙ,ₜ
    reduce  A = (1/N) Σₙ ā̃ₙ ā̃ₙᵀ, ā̃ₙ = [meanₜ aₙ,ₜ; 1],  S = (1/N) Σₙ (Σₜ Jₙ,ₜ)ᵀ Bₙ (Σₜ Jₙ,ₜ)
(Dense layers, T = 1, are the same in both). kflr is curvlinops' fisher_type='type-2', kfac its
'mc'. KFRA carries the batch-averaged GGN of all T·n pre-activations down the net — each
layer's sample-dependent Jacobian averaged as (1/N) Σₙ Jₙᵀ M Jₙ: f' and max-pool's selection
as Hadamard products with E[f'f'ᵀ] and E[m mᵀ] (BackPACK's "expectation approximation") — and
takes S as the sum of its diagonal location blocks (expand) or of all of them (reduce).

Beyond chains (Residual blocks, MeanPool, Dense layers shared over the T positions of a
sequence, a loss at every position) the same formulas hold with Jₙ,ₜ over all of sample n's
outputs and Bₙ its whole output Hessian — the exact type-2 statistics, one √Bₙ per sample (the
backprop of the factor C through the whole graph). A layer whose parameters meet its inputs in
several products (attention's Q, K, V, O) has one Kronecker block per product; a layer without
Kronecker structure (LayerNorm, RMSNorm, BatchNorm's γ, β; cl.Function) keeps its exact GGN
block (sampled, for K-FAC), held as M ⊗ [1]. KFRA's recursion is defined for chains only.

Other conventions, factor by factor (for conv layers; Dense layers agree up to the bias):
BackPACK's KFLR/KFAC keep W and b apart (no ones column, so no weight–bias cross terms) and use
A = (1/N) Σₙ Σₜ aₙ,ₜ aₙ,ₜᵀ (T times our expand A, without the bias row) with S our reduce S;
its KFRA uses that A with the location-summed (reduce) S of the averaged recursion.
curvlinops' MSELoss(reduction='mean') averages over the K outputs too: its factors for MSE are
ours with S divided by K.
"""

import numpy as np

from .. import engine
from .._checks import choice, nonnegative
from ..problem import require_problem
from .base import BlockDiagonal, check_singular
from .fisher import mc_seeds
from .registry import register, require_chain


class KroneckerFactored(BlockDiagonal):
    """Block-diagonal curvature ⊕_l (S_l ⊗ A_l) + λI in the flat layout.

    `.factors` [(A_l, S_l)]; `@ v` costs two small matrix products per layer; `.solve` uses
    each factor's eigendecomposition, computed once and cached, so damping can change freely;
    the eigenvalues are the products λ_S λ_A (never a P × P matrix).
    """

    dense_alternative = "the factors or `{name} @ v`"

    def __init__(self, factors, l2=0.0, name="kronecker", layer_slices=None):
        self.factors = [(np.asarray(A), np.asarray(S)) for A, S in factors]
        self.l2 = float(l2)
        self.name = name
        self.shapes = [(S.shape[0], A.shape[0]) for A, S in self.factors]
        self._set_sizes((n * m for n, m in self.shapes), layer_slices)
        self._eig = None

    def _matrices(self, l, Vl):
        """Block l's rows (size_l, Q) as Q row-major matrices (Q, n_l, m_l + 1)."""
        return Vl.T.reshape((Vl.shape[1],) + self.shapes[l])

    def _block_matmat(self, l, Vl):
        """(S_l ⊗ A_l) vec(V) = vec(S V A) for a row-major V."""
        A, S = self.factors[l]
        return (S @ self._matrices(l, Vl) @ A).reshape(Vl.shape[1], -1).T

    def _block_dense(self, l):
        A, S = self.factors[l]
        return np.kron(S, A)

    def eig(self):
        """Cached [(λ_A, U_A, λ_S, U_S)] per layer."""
        if self._eig is None:
            self._eig = []
            for A, S in self.factors:
                lA, UA = np.linalg.eigh(A)
                lS, US = np.linalg.eigh(S)
                self._eig.append((lA, UA, lS, US))
        return self._eig

    def _block_eigvalsh(self, l):
        lA, _, lS, _ = self.eig()[l]
        return np.outer(lS, lA)

    def block_eigh(self, l):
        """Block l's eigenpairs from the factors': λ_S λ_A + λ and U_S ⊗ U_A."""
        lA, UA, lS, US = self.eig()[l]
        return np.outer(lS, lA).ravel() + self.l2, np.kron(US, UA)

    def _block_solve(self, l, Vl, gamma):
        """In the layer's eigenbasis the inverse is 1 / (λ_S λ_Aᵀ + γ)."""
        lA, UA, lS, US = self.eig()[l]
        den = np.outer(lS, lA) + gamma
        check_singular(f"{self.name} (layer {l})", den, gamma)
        X = US @ ((US.T @ self._matrices(l, Vl) @ UA) / den) @ UA.T
        return X.reshape(Vl.shape[1], -1).T

    def _block_solve_tikhonov(self, l, Vl, gamma):
        A, S = self.factors[l]
        tA, tS = np.trace(A) / A.shape[0], np.trace(S) / S.shape[0]
        pi = np.sqrt(tA / tS) if tA > 0 and tS > 0 else 1.0
        Sd = S + (np.sqrt(gamma) / pi) * np.eye(S.shape[0])
        Ad = A + (pi * np.sqrt(gamma)) * np.eye(A.shape[0])
        X = np.linalg.solve(Sd, np.linalg.solve(Ad, self._matrices(l, Vl).transpose(0, 2, 1))
                            .transpose(0, 2, 1))
        return X.reshape(Vl.shape[1], -1).T

    def solve(self, v, damping=0.0, method="eig"):
        """(C + γI)⁻¹ v with C = ⊕ S_l ⊗ A_l and γ = damping + λ.

        method='eig': exact for the Kronecker matrix: in each layer's eigenbasis the inverse is
        1 / (λ_S λ_Aᵀ + γ). method='tikhonov': the factored damping of Martens & Grosse,
        ((S + (√γ/π) I) ⊗ (A + π√γ I))⁻¹ with π² = (tr A / dim A) / (tr S / dim S); cheaper to
        refactor and better conditioned, but not the exact damped inverse.
        """
        choice("solve method", method, {"eig", "tikhonov"})
        if method == "eig":
            return super().solve(v, damping)
        gamma = nonnegative("damping", damping) + self.l2
        if gamma <= 0:
            raise ValueError("factored Tikhonov damping needs damping + l2 > 0")
        return self._lift(v, lambda V: self._blockwise(
            V, lambda l, Vl: self._block_solve_tikhonov(l, Vl, gamma)))

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r}, layers={self.shapes}, P={self.n_params})"


FLAVORS = ("expand", "reduce")


def _input_factors(pt, flavor):
    """A_l per layer of a chain (KFRA): `input_factor` of each layer's patches."""
    return [input_factor(ab, flavor) for ab in pt.tr.abar]


def input_factor(ab, flavor):
    """A from patches ā (N, T, m): expand (1/(N·T)) Σ āₙ,ₜ āₙ,ₜᵀ; reduce (1/N) Σ ā̃ₙ ā̃ₙᵀ with
    ā̃ₙ = meanₜ āₙ,ₜ."""
    N, T, m1 = ab.shape
    a = ab.mean(1) if flavor == "reduce" else ab.reshape(N * T, m1)
    return a.T @ a / a.shape[0]


def output_factor(d, flavor, N):
    """S from records δ (Q, N, T, n) of Q seeds: (1/N) Σ_q Σ_n Σ_t δ δᵀ (expand) or
    (1/N) Σ_q Σ_n (Σ_t δ)(Σ_t δ)ᵀ (reduce)."""
    if flavor == "reduce":
        d = d.sum(2)
    flat = d.reshape(-1, d.shape[-1])                      # one GEMM per layer
    return flat.T @ flat / N


def kron_blocks(pt, deltas):
    """The model's Kronecker blocks in flat-layout order, from the records `deltas` =
    pt.backward(seeds) of Q output seeds: per block either ('kron', ā, δ, transposed) — the
    layer's parameters (or a contiguous part of them, e.g. attention's Q, K, V, O) meet inputs ā
    (N, T, m) at T positions with pre-activation records δ (Q, N, T, n), the block's per-sample
    gradient Σₜ δₙ,ₜ āₙ,ₜᵀ laid out (n, m) row-major, or (m, n) when `transposed` (an
    embedding's (V, d) table) — or ('exact', rows) for a layer without that structure (norm
    layers, cl.Function): its per-sample Jacobian rows (Q, N, size)."""
    tr = pt.tr
    out = []
    for layer, Wb, st, d in zip(tr.model.layers, tr.Wbars, tr.layer_states, deltas):
        pairs = getattr(layer, "kron_pairs", None)
        pairs = None if pairs is None else pairs(Wb, st, d)
        if pairs is None:
            out.append(("exact", layer.param_rows(Wb, st, d)))
        else:
            out.extend(("kron", ab, dl, transposed) for ab, dl, transposed in pairs)
    return out


def _factors(pt, deltas, flavor):
    """[(A, S)] per block (`kron_blocks`) for KroneckerFactored, whose block is S ⊗ A: a
    transposed block swaps the two, and a layer without Kronecker structure keeps its exact
    (sampled, for seeds drawn from the model) block M = (1/N) Σ_q Σₙ rₙ rₙᵀ as M ⊗ [1]."""
    out = []
    for block in kron_blocks(pt, deltas):
        if block[0] == "exact":
            rows = block[1].reshape(-1, block[1].shape[-1])
            out.append((np.ones((1, 1)), rows.T @ rows / pt.N))
            continue
        _, ab, d, transposed = block
        A, S = input_factor(ab, flavor), output_factor(d, flavor, pt.N)
        out.append((S, A) if transposed else (A, S))
    return out


def _build(pt, S, name, flavor):
    """KFRA's KroneckerFactored from its S per layer (a chain: one block per layer)."""
    K = KroneckerFactored(list(zip(_input_factors(pt, flavor), S)), pt.l2, name)
    K.flavor = flavor
    return K


def _build_from(pt, deltas, name, flavor):
    K = KroneckerFactored(_factors(pt, deltas, flavor), pt.l2, name,
                          pt.problem.model.layer_slices())
    K.flavor = flavor
    return K


def _point(problem, w, name, flavor):
    choice("flavor", flavor, FLAVORS)
    problem = require_problem(problem, name)
    require_chain(problem, name)
    engine.require_independent(problem.model, f"{name} (per-sample Kronecker statistics)")
    return problem.point(w)


def kflr(problem, w, flavor="expand"):
    """KFLR: exact S_l from K backprops of the factor C of B (all samples at once); for conv
    layers and Dense layers shared over positions `flavor` 'expand' or 'reduce' (module
    docstring); layers without Kronecker structure keep their exact GGN block. Cost: about K
    gradients."""
    pt = _point(problem, w, "kflr", flavor)
    return _kflr_from(pt, pt.backward(pt.sqrt_seeds), flavor)


def _kflr_from(pt, deltas, flavor):
    return _build_from(pt, deltas, "kflr", flavor)


def _kfra_down(pt, l, M):
    """KFRA's step from s_l (l = L: from z) down to a_{l-1}: (1/N) Σₙ Jₙᵀ M Jₙ for the layers in
    between — W_l and φ (the same for every sample), then the pooling and Flatten layers."""
    from ..layers.pool import sandwich
    model, tr = pt.problem.model, pt.tr
    L = len(model.layers)
    if l < L:
        layer = model.layers[l]
        W = layer.weight(pt.Wbars[l])
        if not tr.links[l] and layer.whole_input:
            return W.T @ M @ W
        M = sandwich(lambda g: layer.patches_T(g @ W), M, (layer.T, layer.n_out))
    for mod, state in reversed(tr.links[l]):
        M = mod.expected_sandwich(state, M)
    return M


def kfra(problem, w, flavor="expand"):
    """KFRA: the batch-averaged pre-activation GGN by the recursion
    Ḡ_l = (1/N) Σₙ C_{l+1,n}ᵀ Ḡ_{l+1} C_{l+1,n} ⊙ E[f'_l f'_lᵀ] from Ḡ_L = mean B, over all of a
    layer's T·n pre-activations; S_l from Ḡ_l by `flavor` (module docstring). For an MLP,
    S_l = (W_{l+1}ᵀ S_{l+1} W_{l+1}) ⊙ mean(f'_l f'_lᵀ). Cost: no backprop over samples."""
    pt = _point(problem, w, "kfra", flavor)
    model, N = pt.problem.model, pt.N
    L = len(model.layers)
    S = [None] * L
    M = _kfra_down(pt, L, pt.problem.lossfn.mean_hessian(pt.tr.z, pt.problem.y))
    for l in reversed(range(L)):
        fp = pt.tr.fp[l].reshape(N, -1)
        M = M * (fp.T @ fp / N)
        T, n = model.layers[l].T, model.layers[l].n_out
        blocks = M.reshape(T, n, T, n)
        S[l] = np.einsum("titj->ij", blocks) if flavor == "expand" else blocks.sum((0, 2))
        if l:
            M = _kfra_down(pt, l, M)
    return _build(pt, S, "kfra", flavor)


def kfac(problem, w, samples=1, seed=0, kind="mc", flavor="expand"):
    """K-FAC: S_l from backprops of ∂ℓ/∂z at targets sampled from the model (kind='mc',
    `samples` draws per input, seeded) or at the data labels (kind='empirical'); for conv layers
    `flavor` 'expand' or 'reduce' (module docstring). Cost: `samples` gradients."""
    choice("kfac kind", kind, {"mc", "empirical"})
    pt = _point(problem, w, "kfac", flavor)
    seeds = mc_seeds(pt, samples, seed) if kind == "mc" else pt.r[None]
    return _build_from(pt, pt.backward(seeds), "kfac" if kind == "mc" else "kfac (empirical)",
                       flavor)


register(
    "kfac",
    lambda problem, w, samples=1, seed=0, flavor="expand": kfac(
        problem, w, samples=samples, seed=seed, flavor=flavor
    ),
    "K-FAC: sampled S ⊗ A (norm, Function: sampled block)",
    "Martens & Grosse 2015",
    structure="kronecker",
    sampled=True,
    optimizer="kfac",
    references=("→ KFLR as samples grow", "curvlinops KFAC (mc)"),
)
register(
    "kflr",
    lambda problem, w, flavor="expand": kflr(problem, w, flavor=flavor),
    "KFLR: exact S ⊗ A per layer (norm, Function: exact block)",
    "Botev et al. 2017",
    structure="kronecker",
    optimizer="kflr",
    references=("= GGN block for one sample", "curvlinops KFAC (type-2)", "BackPACK KFLR (mapped)"),
)
register(
    "kfra",
    lambda problem, w, flavor="expand": kfra(problem, w, flavor=flavor),
    "KFRA: recursive, batch-averaged S ⊗ A",
    "Botev et al. 2017",
    structure="kronecker",
    chains_only=True,
    optimizer="kfra",
    references=("= GGN block for one sample", "BackPACK KFRA"),
)
