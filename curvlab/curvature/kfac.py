"""Kronecker-factored curvature: K-FAC (Martens & Grosse 2015), KFLR and KFRA (Botev et al. 2017).

Each approximates the GGN's layer block (1/N) Σₙ Gₙ ⊗ āₙāₙᵀ by one Kronecker product
S_l ⊗ A_l (row-major layout: the block is exactly ``np.kron(S_l, A_l)``), with
    A_l = (1/N) Σₙ āₙ āₙᵀ                      (augmented layer inputs)
    S_l = (1/N) Σₙ Gₙ, Gₙ a per-sample pre-activation curvature:
      kflr  exact:     Gₙ = D̃ₙᵀ D̃ₙ, D̃ₙ = ∂(Cₙᵀ z)/∂s_l  (backprop of the factor of B)
      kfra  recursive: S_L = mean B,  S_l = (W_{l+1}ᵀ S_{l+1} W_{l+1}) ⊙ mean(f'_l f'_lᵀ)
      kfac  sampled:   Gₙ = (1/S) Σₛ δₙₛ δₙₛᵀ, δ the backprop of ∂ℓ/∂z at y ~ p(y|x)
            (kind='empirical': the data labels instead).
For one sample every S_l ⊗ A_l equals the exact GGN block.
"""

import numpy as np

from .. import engine
from .._checks import check_dense, choice, flat_vector, nonnegative
from ..problem import require_problem
from .fisher import mc_seeds
from .products import _Point


class KroneckerFactored:
    """Block-diagonal curvature ⊕_l (S_l ⊗ A_l) + λI in the flat layout.

    `.factors` [(A_l, S_l)]; `@ v` costs two small matrix products per layer; `.solve` uses
    each factor's eigendecomposition, computed once and cached, so damping can change freely.
    """

    def __init__(self, factors, l2=0.0, name="kronecker"):
        self.factors = [(np.asarray(A), np.asarray(S)) for A, S in factors]
        self.l2 = float(l2)
        self.name = name
        self.shapes = [(S.shape[0], A.shape[0]) for A, S in self.factors]
        self.sizes = [n * m for n, m in self.shapes]
        self.offsets = np.cumsum([0] + self.sizes)
        self.n_params = int(self.offsets[-1])
        self._eig = None

    @property
    def shape(self):
        return (self.n_params, self.n_params)

    def _split(self, V):
        Q = V.shape[1]
        return [V[o:e].T.reshape((Q,) + shp)
                for o, e, shp in zip(self.offsets[:-1], self.offsets[1:], self.shapes)]

    def _join(self, parts):
        return np.concatenate([p.reshape(p.shape[0], -1) for p in parts], axis=1).T

    def _apply(self, v, layerwise):
        v = flat_vector("v", v, self.n_params)
        V = v[:, None] if v.ndim == 1 else v
        out = self._join([layerwise(l, Vl) for l, Vl in enumerate(self._split(V))])
        return out[:, 0] if v.ndim == 1 else out

    def __matmul__(self, v):
        """(⊕ S_l ⊗ A_l + λI) v: per layer S V A (vec of a row-major V)."""
        def mv(l, Vl):
            A, S = self.factors[l]
            return S @ Vl @ A
        return self._apply(v, mv) + self.l2 * np.asarray(v, dtype=np.float64)

    def blocks(self):
        """The dense per-layer blocks S_l ⊗ A_l + λI."""
        return [np.kron(S, A) + self.l2 * np.eye(A.shape[0] * S.shape[0]) for A, S in self.factors]

    def to_dense(self):
        """The full (P, P) block-diagonal matrix."""
        check_dense(self.name, self.n_params, alternative=f"the factors or `{self.name} @ v`")
        out = np.zeros(self.shape)
        for o, e, B in zip(self.offsets[:-1], self.offsets[1:], self.blocks()):
            out[o:e, o:e] = B
        return out

    def eig(self):
        """Cached [(λ_A, U_A, λ_S, U_S)] per layer."""
        if self._eig is None:
            self._eig = []
            for A, S in self.factors:
                lA, UA = np.linalg.eigh(A)
                lS, US = np.linalg.eigh(S)
                self._eig.append((lA, UA, lS, US))
        return self._eig

    def eigvalsh(self):
        """Eigenvalues of ⊕ S_l ⊗ A_l + λI from the factors: all products λ_S λ_A (never dense)."""
        return np.sort(np.concatenate([np.outer(lS, lA).ravel() for lA, _, lS, _ in self.eig()])) + self.l2

    def layer_eigvalsh(self, l):
        """Eigenvalues of layer l's block S_l ⊗ A_l + λI."""
        lA, _, lS, _ = self.eig()[l]
        return np.sort(np.outer(lS, lA).ravel()) + self.l2

    def solve(self, v, damping=0.0, method="eig"):
        """(C + γI)⁻¹ v with C = ⊕ S_l ⊗ A_l and γ = damping + λ.

        method='eig': exact for the Kronecker matrix: in each layer's eigenbasis the inverse is
        1 / (λ_S λ_Aᵀ + γ). method='tikhonov': the factored damping of Martens & Grosse,
        ((S + (√γ/π) I) ⊗ (A + π√γ I))⁻¹ with π² = (tr A / dim A) / (tr S / dim S); cheaper to
        refactor and better conditioned, but not the exact damped inverse.
        """
        gamma = nonnegative("damping", damping) + self.l2
        choice("solve method", method, {"eig", "tikhonov"})
        if method == "eig":
            def inv(l, Vl):
                lA, UA, lS, US = self.eig()[l]
                den = np.outer(lS, lA) + gamma
                if den.min() <= 1e-14 * max(den.max(), 1e-300):
                    raise np.linalg.LinAlgError(
                        f"{self.name}: layer {l} factor product is singular at damping {gamma:g}; "
                        "pass damping > 0")
                return US @ ((US.T @ Vl @ UA) / den) @ UA.T
        else:
            if gamma <= 0:
                raise ValueError("factored Tikhonov damping needs damping + l2 > 0")

            def inv(l, Vl):
                A, S = self.factors[l]
                tA, tS = np.trace(A) / A.shape[0], np.trace(S) / S.shape[0]
                pi = np.sqrt(tA / tS) if tA > 0 and tS > 0 else 1.0
                Sd = S + (np.sqrt(gamma) / pi) * np.eye(S.shape[0])
                Ad = A + (pi * np.sqrt(gamma)) * np.eye(A.shape[0])
                return np.linalg.solve(Sd, np.linalg.solve(Ad, Vl.transpose(0, 2, 1)).transpose(0, 2, 1))
        return self._apply(v, inv)

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r}, layers={self.shapes}, P={self.n_params})"


def _input_factors(pt):
    return [ab.T @ ab / pt.N for ab in pt.tr.abar]


def _output_factors(pt, seeds):
    """S_l = (1/N) Σ_q Σ_n δ δᵀ for backprops of the seeds (Q, N, K)."""
    deltas = engine.backward(pt.Wbars, pt.tr, seeds)
    flat = [d.reshape(-1, d.shape[-1]) for d in deltas]     # (Q·N, n_l): one GEMM per layer
    return [f.T @ f / pt.N for f in flat]


def _build(pt, S, name):
    return KroneckerFactored(list(zip(_input_factors(pt), S)), pt.l2, name)


def kflr(problem, w):
    """KFLR: exact S_l = (1/N) Σₙ Gₙ, from K backprops of the factor C of B (all samples at once)."""
    pt = _Point(require_problem(problem, "kflr"), w)
    C = pt.problem.lossfn.sqrt_hessian(pt.tr.z, pt.problem.y)
    return _build(pt, _output_factors(pt, C.transpose(2, 0, 1)), "kflr")


def kfra(problem, w):
    """KFRA: S_L = mean B, then the batch-averaged recursion S_l = (Wᵀ S W) ⊙ mean(f' f'ᵀ)."""
    pt = _Point(require_problem(problem, "kfra"), w)
    S = [None] * len(pt.Wbars)
    Sl = pt.problem.lossfn.mean_hessian(pt.tr.z, pt.problem.y)
    for l in reversed(range(len(pt.Wbars))):
        S[l] = Sl
        if l:
            W = pt.Wbars[l][:, :-1]
            fp = pt.tr.fp[l - 1]
            Sl = (W.T @ Sl @ W) * (fp.T @ fp / pt.N)
    return _build(pt, S, "kfra")


def kfac(problem, w, samples=1, seed=0, kind="mc"):
    """K-FAC: S_l from backprops of ∂ℓ/∂z at targets sampled from the model (kind='mc',
    `samples` draws per input, seeded) or at the data labels (kind='empirical')."""
    choice("kfac kind", kind, {"mc", "empirical"})
    pt = _Point(require_problem(problem, "kfac"), w)
    seeds = mc_seeds(pt, samples, seed) if kind == "mc" else pt.r[None]
    return _build(pt, _output_factors(pt, seeds), "kfac" if kind == "mc" else "kfac (empirical)")
