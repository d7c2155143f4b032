"""How good is an approximation: `compare` measures curvature approximations against the
exact GGN and Hessian, on the quantities that matter for a second-order step."""

from dataclasses import dataclass, field

import numpy as np

from ._checks import choice, nonnegative
from .curvature.kinds import KINDS, matrix
from .problem import require_problem


@dataclass
class ComparisonRow:
    """One approximation C against one exact reference R (both including λI)."""
    kind: str
    reference: str
    rel_frobenius: float          # ‖C − R‖_F / ‖R‖_F
    layer_errors: list            # the same, per diagonal layer block
    cosine: float                 # cos∠((C + ηI)⁻¹g, (R + ηI)⁻¹g)
    subspace_overlap: float       # ‖U_Cᵀ U_R‖_F² / k for the top-k eigenvectors, in [0, 1]
    trace_ratio: float            # tr C / tr R
    logdet_ratio: float           # log det(C + ηI) − log det(R + ηI); nan if R + ηI is not PD
    extra: dict = field(default_factory=dict)


class Comparison(list):
    """A list of ComparisonRow that prints as a table."""

    def where(self, reference):
        return Comparison(r for r in self if r.reference == reference)

    def __str__(self):
        head = f"{'kind':<18}{'vs':<9}{'rel.Frob':>10}{'cos step':>10}{'overlap':>9}{'tr ratio':>10}{'logdet':>10}"
        lines = [head, "-" * len(head)]
        for r in self:
            lines.append(f"{r.kind:<18}{r.reference:<9}{r.rel_frobenius:>10.3f}{r.cosine:>10.3f}"
                         f"{r.subspace_overlap:>9.3f}{r.trace_ratio:>10.3f}{r.logdet_ratio:>10.2f}")
        return "\n".join(lines)


def _logdet(lam, eta):
    """log det(M + ηI) from M's eigenvalues; nan unless M + ηI is positive definite."""
    shifted = lam + eta
    return float(np.sum(np.log(shifted))) if shifted.min() > 0 else np.nan


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def compare(problem, w, kinds=("kfac", "kflr", "kfra", "diagonal", "empirical_fisher"),
            damping=1e-3, k=5, references=("ggn", "hessian"), samples=1, seed=0, flavor="expand"):
    """Approximation-quality table: every kind against every reference (dense; small nets).
    flavor: 'expand' or 'reduce' for the Kronecker kinds on conv layers."""
    problem = require_problem(problem, "compare")
    eta = nonnegative("damping", damping)
    for kd in list(kinds) + list(references):
        choice("curvature kind", kd, KINDS)
    P = problem.n_params
    k = int(k)
    if not 1 <= k <= P:
        raise ValueError(f"k must be between 1 and {P}, got {k}")
    g = problem.grad(w)
    built = {kd: matrix(problem, w, kd, samples=samples, seed=seed, flavor=flavor)
             for kd in dict.fromkeys(list(kinds) + list(references))}
    dense = {kd: C.to_dense() for kd, C in built.items()}
    eig = {kd: np.linalg.eigh(M) for kd, M in dense.items()}

    def step(kd):
        lam, U = eig[kd]
        return U @ ((U.T @ g) / (lam + eta))

    table = Comparison()
    for ref in references:
        R = dense[ref]
        for kd in kinds:
            C = dense[kd]
            blocks = zip(built[kd].blocks(), built[ref].blocks())
            table.append(ComparisonRow(
                kind=kd, reference=ref,
                rel_frobenius=float(np.linalg.norm(C - R) / np.linalg.norm(R)),
                layer_errors=[float(np.linalg.norm(a - b) / np.linalg.norm(b)) for a, b in blocks],
                cosine=_cos(step(kd), step(ref)),
                subspace_overlap=float(np.sum((eig[kd][1][:, -k:].T @ eig[ref][1][:, -k:]) ** 2) / k),
                trace_ratio=float(np.trace(C) / np.trace(R)),
                logdet_ratio=_logdet(eig[kd][0], eta) - _logdet(eig[ref][0], eta),
            ))
    return table
