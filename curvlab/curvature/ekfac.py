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
from ..problem import require_problem
from .base import BlockDiagonal, check_singular
from .kfac import _kflr_from, _point, kron_blocks
from .registry import register, require_chain


class EigenCorrected(BlockDiagonal):
    """⊕_l (Q_S ⊗ Q_A) diag(s) (Q_S ⊗ Q_A)ᵀ + λI in the flat layout; `.factors` [(Q_A, Q_S, s)]
    with s shaped like W̄_l. `@`, `solve` and `eigvalsh` never form a block."""

    def __init__(self, factors, l2=0.0, name="ekfac", layer_slices=None):
        self.factors = [(np.asarray(QA), np.asarray(QS), np.asarray(s)) for QA, QS, s in factors]
        self.l2, self.name = float(l2), name
        self._set_sizes((s.size for _, _, s in self.factors), layer_slices)

    def _in_basis(self, l, Vl, scale):
        """Q diag(scale(s)) Qᵀ V_l: rotate into the KFE, scale each coordinate, rotate back."""
        QA, QS, s = self.factors[l]
        C = QS.T @ Vl.T.reshape((-1,) + s.shape) @ QA
        return (QS @ (scale(s) * C) @ QA.T).reshape(Vl.shape[1], -1).T

    def _block_matmat(self, l, Vl):
        return self._in_basis(l, Vl, lambda s: s)

    def _block_solve(self, l, Vl, gamma):
        """(EKFAC + γI)⁻¹: divide the KFE coordinates by s + γ."""
        check_singular(self.name, self.factors[l][2] + gamma, gamma)
        return self._in_basis(l, Vl, lambda s: 1.0 / (s + gamma))

    def _block_eigvalsh(self, l):
        return self.factors[l][2]

    def _block_dense(self, l):
        QA, QS, s = self.factors[l]
        Q = np.kron(QS, QA)
        return (Q * s.ravel()) @ Q.T


def _chain_point(problem, w, name):
    """The problem at w, for a kind defined (so far) on chains of layers (Problem.require_chain)."""
    problem = require_problem(problem, name)
    require_chain(problem, name)
    return problem.point(w)


def gradient_matrices(pt, seeds):
    """Per-sample gradient matrices of each layer for output seeds (Q, N, K): (Q, N, n_l, m_l+1)."""
    deltas = pt.backward(seeds)
    rows = engine.jacobian_rows(pt.tr, deltas)
    Q, N = rows.shape[:2]
    return [rows[:, :, sl].reshape(Q, N, *layer.shape)
            for sl, layer in zip(pt.problem.model.layer_slices(), pt.problem.model.layers)]


def refit(pt, deltas, K):
    """EKFAC's diagonal per block of K (a KroneckerFactored from the same `deltas`): the second
    moments (1/N) Σ_q Σₙ (Q_Sᵀ Gₙ,q Q_A)² of the per-sample gradient matrices in the block's
    eigenbasis, shaped like the block. A block at one position (Gₙ = δₙ āₙᵀ an outer product)
    squares the rotated factors instead: no per-sample matrix is formed."""
    out = []
    for block, (_, QA, _, QS) in zip(kron_blocks(pt, deltas), K.eig()):
        if block[0] == "exact":                     # M ⊗ [1]: rotate the rows by M's eigenbasis
            out.append(((block[1] @ QS) ** 2).sum((0, 1))[:, None] / pt.N)
            continue
        _, ab, d, transposed = block
        d, ab = (d @ QA, ab @ QS) if transposed else (d @ QS, ab @ QA)
        if ab.shape[1] == 1:
            # Σ over the seeds first, then one GEMM over the samples (einsum would not use BLAS)
            s = (d[:, :, 0] ** 2).sum(0).T @ ab[:, 0] ** 2
        else:
            s = (np.matmul(d.transpose(0, 1, 3, 2), ab) ** 2).sum((0, 1))
        out.append((s.T if transposed else s) / pt.N)
    return out


def ekfac(problem, w, flavor="expand"):
    """EKFAC (module docstring). Cost: KFLR's K backprops — whose per-sample backprops serve the
    refit too —, the factors' eigendecompositions, and per block the rotation of the backprops
    and inputs into the KFE and one product of their squares. Blocks without Kronecker structure
    (norm layers, cl.Function) are KFLR's exact blocks, which EKFAC reproduces exactly."""
    pt = _point(problem, w, "ekfac", flavor)
    deltas = pt.backward(pt.sqrt_seeds)
    K = _kflr_from(pt, deltas, flavor)
    return EigenCorrected([(QA, QS, s) for (_, QA, _, QS), s in zip(K.eig(), refit(pt, deltas, K))],
                          pt.l2, "ekfac", K.layer_slices)


register("ekfac", lambda problem, w, flavor="expand": ekfac(problem, w, flavor=flavor),
         "EKFAC: KFLR's eigenbasis, exact diagonal in it",
         "George et al. 2018; curvlinops EKFAC (type-2)", structure="blocks",
         references=("curvlinops EKFAC (type-2)", "‖G − EKFAC‖ ≤ ‖G − KFLR‖"))
