"""The generalized Gauss-Newton matrix G = (1/N) Σₙ Jₙᵀ Bₙ Jₙ + λI, dense and exact.

Jₙ = ∂zₙ/∂w is the output Jacobian, Bₙ = ∂²ℓ/∂z² the loss Hessian at the outputs. Restricted
to layers l ≥ m, Jₙ's rows are T_{L←l} ⊗ ā_lᵀ (T_{L←l} = ∂z/∂s_l), so the block is
(1/N) Σₙ (G_l T_{l←m})ₙ ⊗ ā_{l,n} ā_{m,n}ᵀ with G_l = T_{L←l}ᵀ B T_{L←l} the per-sample
pre-activation GGN of Botev's recursion: one matrix product with inner dimension N per block,
about N·P²/2 multiply-adds in all (blocks.dense_from_layers). `gram_ggn` is Lin's backward
Jacobian evaluation instead: with Bₙ = Cₙ Cₙᵀ, G = MᵀM / N where the rows of M are Jₙᵀ Cₙ —
K times the work for K outputs, kept as an independent second route — and the route for a model
that is not a chain (Residual, MeanPool, cl.Function, sequence outputs: blocks.generic_dense).
"""

from .._checks import check_dense
from ..problem import Problem, as_objective, require_problem
from ._dense import from_product, gram_of_seeds
from .base import Dense
from .blocks import dense_from_layers, ggn_blocks
from .products import make_ggnvp
from .registry import register


def ggn(problem, w, progress=None):
    """G (P, P), exactly symmetric. Cost: about N·P²/2 multiply-adds in large matrix products;
    memory P² plus per-sample layer GGNs (N·Σn_l²) and one bounded working block."""
    problem = require_problem(problem, "ggn")
    pt = problem.finite_point(w, "ggn")
    if not problem.layered:
        return from_product("ggn", problem.n_params, pt.gv_rop)   # P products
    return dense_from_layers("ggn", pt, exact=False, progress=progress)


def gram_ggn(problem, w):
    """G (P, P) as MᵀM / N. Cost: K backprops (all samples, batched) and one
    (K·N × P)ᵀ(K·N × P) product."""
    pt = require_problem(problem, "ggn").point(w)
    return gram_of_seeds("ggn", pt, pt.sqrt_seeds)


def objective_ggn(objective, w, name, of_problem, what="Gauss-Newton matrix"):
    """Dense(of_problem(problem, w)) for a Problem; for a generic objective, the Gauss-Newton
    matrix it defines (`cl.Objective(ggn=)`), which stands for the GGN and the true Fisher alike
    (the natural gradient on a function that defines `ggn=`)."""
    obj = as_objective(objective)
    if isinstance(obj, Problem):
        return Dense(of_problem(obj, w), name, obj.model.layer_slices())
    if obj.ggn is None:
        raise TypeError(f"the objective {obj.name!r} defines no {what}; pass ggn=... to "
                        "cl.Objective or use a Problem")
    w = obj.check(w)
    check_dense(name, w.shape[0])
    return Dense(obj.ggn(w), name)


def _build(objective, w):
    """The GGN of a Problem, or of a generic objective that defines one (`cl.Objective(ggn=)`)."""
    return objective_ggn(objective, w, "ggn", ggn)


register("ggn", _build, "generalized Gauss-Newton (1/N) Σ JᵀBJ", "Schraudolph 2002; exact",
         product=make_ggnvp, needs_problem=False, optimizer="gauss_newton",
         layer_blocks=ggn_blocks,
         references=("autograd.jacobian: (1/N) Σ JₙᵀBₙJₙ", "BackPACK SqrtGGNExact"))
