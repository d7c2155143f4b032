"""The Hessian ∇²L(w), dense and exact.

For an MLP Problem, block by block from per-sample quantities, with no loop over directions.
W̄_l enters the loss only through s_l = W̄_l ā_l, so for layers l ≥ m the block ∂²L/∂W̄_l∂W̄_m,
indexed by (i, j) of W̄_l and (i', j') of W̄_m, has two parts:

    (1/N) Σₙ (H_l T_{l←m})ₙ[i, i'] ā_{l,n}[j] ā_{m,n}[j']            through s_l and s_m
  + (1/N) Σₙ δ_{l,n}[i] (∂a_{l-1}/∂s_m)ₙ[j, i'] ā_{m,n}[j']   (l > m)  W̄_l times a_{l-1}(W̄_m)

with H_l the per-sample pre-activation Hessian of Botev's recursion (blocks.py),
T_{l←m} = ∂s_l/∂s_m = W_l diag(f'_{l-1}) T_{l-1←m} (T_{m←m} = I) and δ_l = ∂ℓ/∂s_l. (Polarise
the second derivative of ℓ along w + εv: the first part is Σ_l R s_lᵀ Λ_l R s_l, Λ = B or
diag(f'' ⊙ ∂ℓ/∂a); the second is ∂ℓ/∂s_l · 2 V_l R a_{l-1}.) Each sum over n is one matrix
product with inner dimension N (blocks.khatri_rao_into), so the Hessian costs about N·P²/2
multiply-adds — K times fewer than a K-output MᵀM Gram product.

A model that is not a chain (Residual, norms, attention, Embedding, MeanPool, a Dense shared
over positions, cl.Function, sequence outputs) has no such recursion; with independent samples
the columns of its Dense, conv, attention and Embedding layers come from R-passes of their unit
pre-activation tangents — T·n passes per layer (n when its positions stay apart up to a loss at
every position) instead of one per parameter, each block then one matrix product over the
samples as above; where T·n is more than half the parameters or one unit's arrays outgrow the
working budget, H V — and the other layers' from Pearlmutter's H V (blocks.structured_hessian);
with coupled samples (train-mode BatchNorm) all P columns from H V. For a generic objective:
autograd's reverse-over-reverse `hessian` (the reference in tests).
"""

import numpy as np
from autograd import hessian as _ag_hessian

from .._checks import check_dense
from ..problem import Problem, as_objective
from ._dense import from_product
from .base import Dense
from .blocks import dense_from_layers, hessian_blocks
from .products import make_hvp
from .registry import register


def hessian(objective, w, progress=None):
    """H = ∇²L(w), shape (P, P), including λI, exactly symmetric. For a Problem: about N·P²/2
    multiply-adds in large matrix products; memory P² plus per-sample layer Hessians (N·Σn_l²)
    and one bounded working block. progress: show a bar (default: when the build is large)."""
    obj = as_objective(objective)
    if isinstance(obj, Problem) and not obj.layered:
        pt = obj.finite_point(w, "hessian")
        return from_product("hessian", obj.n_params, pt.hv)   # P products, R{backprop}
    if isinstance(obj, Problem):
        return dense_from_layers("hessian", obj.finite_point(w, "hessian"), exact=True,
                                 progress=progress)
    w = obj.check(w)
    if not np.isfinite(float(obj.fun(w))):
        raise ValueError(f"hessian: {obj.name} is {float(obj.fun(w))} at w (a NaN or infinite "
                         "value has no curvature)")
    check_dense("hessian", w.shape[0], alternative="cl.hvp(objective, w, v)")
    return np.asarray(_ag_hessian(obj.fun)(w), dtype=np.float64)


def _build(objective, w):
    obj = as_objective(objective)
    slices = obj.model.layer_slices() if isinstance(obj, Problem) else None
    return Dense(hessian(obj, w), "hessian", slices)


register(
    "hessian",
    _build,
    "Hessian ∇²L",
    "exact",
    product=make_hvp,
    needs_problem=False,
    optimizer="newton",
    layer_blocks=hessian_blocks,
    references=(
        "autograd.hessian on an independent forward",
        "finite differences",
        "torch.func (composite ops)",
    ),
)
