"""How good is an approximation: `compare` measures curvature approximations against the
exact GGN and Hessian, on the quantities that matter for a second-order step."""

from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from ._checks import nonnegative, short_repr
from .curvature.kinds import as_matrix, matrix
from .curvature.registry import get
from .problem import require_problem


@dataclass
class ComparisonRow:
    """One approximation C against one exact reference R (both including λI)."""

    __repr__ = short_repr

    kind: str
    reference: str
    rel_frobenius: float          # ‖C − R‖_F / ‖R‖_F
    layer_errors: list            # the same, per diagonal layer block
    cosine: float                 # cos∠((C + ηI)⁻¹g, (R + ηI)⁻¹g)
    subspace_overlap: float       # ‖U_Cᵀ U_R‖_F² / k for the top-k eigenvectors, in [0, 1]
    trace_ratio: float            # tr C / tr R
    logdet_ratio: float           # log det(C + ηI) − log det(R + ηI); nan unless both are PD
    extra: dict = field(default_factory=dict)


COLUMNS = ("kind", "reference", "rel_frobenius", "cosine", "subspace_overlap", "trace_ratio",
           "logdet_ratio", "layer_errors")


class Comparison(list):
    """A list of ComparisonRow that prints as a table and exports as records, a pandas
    DataFrame, markdown or CSV."""

    def where(self, reference):
        return Comparison(r for r in self if r.reference == reference)

    def to_records(self):
        """One dict per row, keys COLUMNS (layer_errors a list)."""
        return [{c: getattr(r, c) for c in COLUMNS} for r in self]

    def to_pandas(self):
        """A pandas DataFrame (pandas is optional: install it to use this)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Comparison.to_pandas needs pandas (pip install pandas); "
                              "to_records(), to_markdown() and to_csv() need nothing") from None
        return pd.DataFrame.from_records(self.to_records(), columns=list(COLUMNS))

    def _cells(self, r):
        return [r.kind, r.reference] + [f"{getattr(r, c):.6g}" for c in COLUMNS[2:-1]] + \
            [" ".join(f"{e:.6g}" for e in r.layer_errors)]

    def to_markdown(self):
        """A GitHub-flavoured markdown table."""
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(self._cells(r)) + " |" for r in self]
        return "\n".join(lines) + "\n"

    def to_csv(self, path=None):
        """CSV text (layer_errors space-separated in one field); written to `path` when given."""
        import csv
        import io
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(self._cells(r) for r in self)
        text = buf.getvalue()
        if path is not None:
            with open(path, "w", newline="") as f:
                f.write(text)
        return text

    def __str__(self):
        head = (f"{'kind':<18}{'vs':<9}{'rel.Frob':>10}{'cos step':>10}{'overlap':>9}"
                f"{'tr ratio':>10}{'logdet':>10}")
        lines = [head, "-" * len(head)]
        for r in self:
            lines.append(
                f"{r.kind:<18}{r.reference:<9}{r.rel_frobenius:>10.3f}{r.cosine:>10.3f}"
                f"{r.subspace_overlap:>9.3f}{r.trace_ratio:>10.3f}{r.logdet_ratio:>10.2f}"
            )
        return "\n".join(lines)

    __repr__ = __str__


def _logdet(lam, eta):
    """log det(M + ηI) from M's eigenvalues; nan unless M + ηI is positive definite."""
    shifted = lam + eta
    return float(np.sum(np.log(shifted))) if shifted.min() > 0 else np.nan


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _names(what, kinds):
    """Curvature kind names: one string or an iterable of strings."""
    if isinstance(kinds, str):
        return [kinds]
    if isinstance(kinds, np.ndarray) or not hasattr(kinds, "__iter__"):
        raise TypeError(
            f"{what} takes names of curvature kinds (e.g. 'kflr' or ('kfac', 'kflr')), got "
            f"{type(kinds).__name__}; pass your own matrix as extra={{'name': M}}"
        )
    names = list(kinds)
    for kd in names:
        if not isinstance(kd, str):
            raise TypeError(
                f"{what} takes names of curvature kinds, got a {type(kd).__name__} among them; "
                "pass your own matrix as extra={'name': M}"
            )
        get(kd)
    return names


def compare(
    problem,
    w,
    kinds=("kfac", "kflr", "kfra", "diagonal", "empirical_fisher"),
    damping=1e-3,
    k=5,
    references=("ggn", "hessian"),
    samples=1,
    seed=0,
    flavor="expand",
    extra=None,
    progress=None,
):
    """Approximation-quality table: every kind C against every reference R (dense; small nets).

    Columns (each matrix includes the problem's λI; η = damping; g = ∇L(w)):

        rel_frobenius     ‖C − R‖_F / ‖R‖_F                                ("rel.Frob")
        cosine            cos∠((C + ηI)⁻¹g, (R + ηI)⁻¹g): do the damped
                          steps point the same way (1 = same direction)     ("cos step")
        subspace_overlap  ‖U_Cᵀ U_R‖²_F / k for the top-k eigenvectors: the
                          share of R's top-k eigenspace C's spans, in [0, 1]  ("overlap")
        trace_ratio       tr C / tr R (the total curvature, 1 = same scale)  ("tr ratio")
        logdet_ratio      log det(C + ηI) − log det(R + ηI) (the volume the
                          Laplace evidence and natural-gradient steps see)   ("logdet")
        layer_errors      rel_frobenius per diagonal layer block

    logdet_ratio is nan when C + ηI or R + ηI is not positive definite (a log-determinant of
    an indefinite matrix is not real): the Hessian away from a minimum, and any matrix with
    eigenvalues at or below −η (e.g. a rank-deficient one at damping 0).

    kinds, references: curvature kind names (one string or several). extra: {name: M} with your
    own matrices — a (P, P) array, a scipy LinearOperator or a callable v -> M v — compared like
    the kinds. flavor: 'expand' or 'reduce' for the Kronecker kinds on conv layers. progress:
    show a bar over the builds (default: when P ≥ 1,500, where each dense build and
    eigendecomposition takes a noticeable time)."""
    problem = require_problem(problem, "compare")
    eta = nonnegative("damping", damping)
    kinds, references = _names("kinds", kinds), _names("references", references)
    extra = dict(extra or {})
    P = problem.n_params
    k = int(k)
    if not 1 <= k <= P:
        raise ValueError(f"k must be between 1 and {P}, got {k}")
    slices = problem.model.layer_slices()
    for name, M in extra.items():
        if name in kinds or name in references:
            raise ValueError(f"extra name {name!r} is also a kind; pick another name")
        extra[name] = as_matrix(M, P, name, slices)  # checks the size first
    g = problem.grad(w)
    todo = list(dict.fromkeys(kinds + references)) + list(extra)
    show = progress if progress is not None else P >= 1500
    built, dense, eig = {}, {}, {}
    for kd in tqdm(todo, desc="compare", disable=not show, leave=False):
        built[kd] = (
            extra[kd]
            if kd in extra
            else matrix(problem, w, kd, samples=samples, seed=seed, flavor=flavor)
        )
        dense[kd] = built[kd].to_dense()
        eig[kd] = np.linalg.eigh(dense[kd])

    def step(kd):
        lam, U = eig[kd]
        return U @ ((U.T @ g) / (lam + eta))

    table = Comparison()
    for ref in references:
        R = dense[ref]
        for kd in kinds + list(extra):
            C = dense[kd]
            blocks = zip(built[kd].blocks(), built[ref].blocks())
            table.append(
                ComparisonRow(
                    kind=kd,
                    reference=ref,
                    rel_frobenius=float(np.linalg.norm(C - R) / np.linalg.norm(R)),
                    layer_errors=[
                        float(np.linalg.norm(a - b) / np.linalg.norm(b)) for a, b in blocks
                    ],
                    cosine=_cos(step(kd), step(ref)),
                    subspace_overlap=float(
                        np.sum((eig[kd][1][:, -k:].T @ eig[ref][1][:, -k:]) ** 2) / k
                    ),
                    trace_ratio=float(np.trace(C) / np.trace(R)),
                    logdet_ratio=_logdet(eig[kd][0], eta) - _logdet(eig[ref][0], eta),
                )
            )
    return table
