"""EKFAC (George et al. 2018): K-FAC's eigenbasis with the diagonal refitted to the exact GGN.

For each layer, take KFLR's factors A = Q_A Λ_A Q_Aᵀ and S = Q_S Λ_S Q_Sᵀ (the Kronecker-factored
eigenbasis, KFE, Q = Q_S ⊗ Q_A in the row-major layout) and replace the products λ_S λ_A by the
exact second moments of the per-sample gradients in that basis,

    s = diag(Qᵀ G_l Q) = (1/N) Σₙ Σ_r (Q_Sᵀ Gₙ,ᵣ Q_A)²,   Gₙ,ᵣ = Σ_t δₙ,ₜ,ᵣ āₙ,ₜᵀ,

the per-sample gradient matrices of the columns of √B (type-2, as curvlinops' EKFACLinearOperator
with fisher_type='type-2'; for conv layers the basis comes from the chosen KFLR flavor and the
refit always uses the full per-sample gradients, as curvlinops does). EKFAC = Q diag(s) Qᵀ per
layer is the best matrix diagonal in the KFE in Frobenius norm, so at least as close to G_l as
KFLR. With repeated eigenvalues in A or S the basis — and EKFAC — is not unique.
"""

import numpy as np

from .. import engine
from .._checks import flat_vector, nonnegative
from .diagonal import _squared_rows
from .kfac import BlockDiagonalDense, _kflr_from, _point
from .registry import register


class EigenCorrected(BlockDiagonalDense):
    """⊕_l (Q_S ⊗ Q_A) diag(s) (Q_S ⊗ Q_A)ᵀ + λI in the flat layout; `.factors` [(Q_A, Q_S, s)]
    with s shaped like W̄_l. `@`, `solve` and `eigvalsh` never form a block."""

    def __init__(self, factors, l2=0.0, name="ekfac"):
        self.factors = [(np.asarray(QA), np.asarray(QS), np.asarray(s)) for QA, QS, s in factors]
        self.l2, self.name = float(l2), name
        self.sizes = [s.size for _, _, s in self.factors]
        self.offsets = np.cumsum([0] + self.sizes)
        self.n_params = int(self.offsets[-1])

    @property
    def shape(self):
        return (self.n_params, self.n_params)

    def _apply(self, v, scale):
        v = flat_vector("v", v, self.n_params)
        V = v[:, None] if v.ndim == 1 else v
        out = np.empty_like(V)
        for (QA, QS, s), o, e in zip(self.factors, self.offsets[:-1], self.offsets[1:]):
            Vl = V[o:e].T.reshape((-1,) + s.shape)
            C = QS.T @ Vl @ QA                                        # coordinates in the KFE
            out[o:e] = (QS @ (scale(s) * C) @ QA.T).reshape(len(Vl), -1).T
        return out[:, 0] if v.ndim == 1 else out

    def __matmul__(self, v):
        return self._apply(v, lambda s: s + self.l2)

    def solve(self, v, damping=0.0):
        """(EKFAC + γI)⁻¹ v with γ = damping + λ: divide the KFE coordinates by s + γ."""
        gamma = nonnegative("damping", damping) + self.l2
        if min((s.min() for _, _, s in self.factors)) + gamma <= 1e-14 * max(
                (s.max() for _, _, s in self.factors)):
            raise np.linalg.LinAlgError(f"{self.name} + {gamma:g} I is singular; pass damping > 0")
        return self._apply(v, lambda s: 1.0 / (s + gamma))

    def eigvalsh(self):
        return np.sort(np.concatenate([s.ravel() for _, _, s in self.factors])) + self.l2

    def blocks(self):
        out = []
        for QA, QS, s in self.factors:
            Q = np.kron(QS, QA)
            out.append((Q * (s.ravel() + self.l2)) @ Q.T)
        return out

    def __repr__(self):
        return f"EigenCorrected({self.name!r}, P={self.n_params})"


def gradient_matrices(pt, seeds):
    """Per-sample gradient matrices of each layer for output seeds (Q, N, K): (Q, N, n_l, m_l+1)."""
    deltas = pt.backward(seeds)
    rows = engine.jacobian_rows(pt.tr, deltas)
    Q, N = rows.shape[:2]
    return [rows[:, :, sl].reshape(Q, N, *layer.shape)
            for sl, layer in zip(pt.problem.model.layer_slices(), pt.problem.model.layers)]


def ekfac(problem, w, flavor="expand"):
    """EKFAC (module docstring). Cost: KFLR's K backprops — whose per-sample backprops serve the
    refit too —, the factors' eigendecompositions, and per layer the rotation of the backprops
    and inputs into the KFE and one product of their squares."""
    pt = _point(problem, w, "ekfac", flavor)
    deltas = pt.backward(pt.sqrt_seeds)
    bases = [(QS, QA) for _, QA, _, QS in _kflr_from(pt, deltas, flavor).eig()]
    s = _squared_rows(pt, deltas, rotations=bases)
    return EigenCorrected([(QA, QS, s[sl].reshape(layer.shape)) for (QS, QA), sl, layer in zip(
        bases, pt.problem.model.layer_slices(), pt.problem.model.layers)], pt.l2, "ekfac")


register("ekfac", lambda problem, w, flavor="expand": ekfac(problem, w, flavor=flavor),
         "EKFAC: KFLR's eigenbasis, exact diagonal in it", "George et al. 2018; curvlinops EKFAC (type-2)")
