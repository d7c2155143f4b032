"""The Hessian ∇²L(w), dense and exact.

For a Problem: Pearlmutter's R-operator applied to the identity in batched blocks of
directions (each block one R-forward and one R-backward pass of large matrix products),
then symmetrised. For a generic objective: autograd's reverse-over-reverse `hessian`.
"""

import numpy as np
from autograd import hessian as _ag_hessian

from .._checks import check_dense
from ..problem import Problem, as_objective
from ._dense import dense_from_products
from .products import _Point


def hessian(objective, w, progress=None):
    """H = ∇²L(w), shape (P, P), including λI. Cost: about 3 gradients' worth of flops per
    column, done as batched matrix products; memory P² plus a bounded working block."""
    obj = as_objective(objective)
    if isinstance(obj, Problem):
        pt = _Point(obj, w)
        P = obj.n_params
        per_dir = 8 * obj.N * 4 * sum(obj.model.sizes)
        return dense_from_products("hessian", pt.hv, P, per_dir, progress)
    w = obj.check(w)
    check_dense("hessian", w.shape[0], alternative="cl.hvp(objective, w, v)")
    return np.asarray(_ag_hessian(obj.fun)(w), dtype=np.float64)
