"""The generalized Gauss-Newton matrix G = (1/N) Σₙ Jₙᵀ Bₙ Jₙ + λI, dense and exact.

Jₙ = ∂zₙ/∂w is the output Jacobian, Bₙ = ∂²ℓ/∂z² the loss Hessian at the outputs. With the
factor Bₙ = Cₙ Cₙᵀ, G = MᵀM / N where the rows of M are Jₙᵀ Cₙ: one backprop per column of C
for all samples at once (Lin's backward Jacobian evaluation), then one matrix product.
"""

from ..problem import require_problem
from ._dense import gram_of_seeds
from .products import _Point


def ggn(problem, w):
    """G (P, P). Cost: K backprops (all samples, batched) and one (K·N × P)ᵀ(K·N × P) product."""
    pt = _Point(require_problem(problem, "ggn"), w)
    C = pt.problem.lossfn.sqrt_hessian(pt.tr.z, pt.problem.y)        # (N, K, R)
    return gram_of_seeds("ggn", pt, C.transpose(2, 0, 1))
