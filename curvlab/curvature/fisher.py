"""Fisher information matrices, dense (each plus λI):

    true       F = (1/N) Σₙ E_{y~p(y|xₙ,w)}[∇ℓₙ(y) ∇ℓₙ(y)ᵀ]   (the expectation exactly)
    empirical  F = (1/N) Σₙ ∇ℓₙ(yₙ) ∇ℓₙ(yₙ)ᵀ                   (data labels, uncentred)
    mc         F = (1/N) Σₙ (1/S) Σₛ ∇ℓₙ(yₙₛ) ∇ℓₙ(yₙₛ)ᵀ,  yₙₛ ~ p(y|xₙ,w)

with ∇ℓₙ(y) = Jₙᵀ ∂ℓ/∂z. The true Fisher uses the loss's output Fisher E_y[∂ℓ/∂z ∂ℓ/∂zᵀ]
computed from its distribution; it equals the GGN for the three losses here.
"""

import numpy as np

from .._checks import choice
from ..problem import require_problem
from ._dense import gram_of_seeds
from .products import _Point


def mc_seeds(pt, samples, seed):
    """∂ℓ/∂z at S sampled targets per input, scaled by 1/√S: (S, N, K)."""
    samples = int(samples)
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    rng = np.random.default_rng(seed)
    ys = pt.problem.lossfn.sample(pt.tr.z, rng, samples)
    return pt.problem.lossfn.dz(pt.tr.z[None], ys) / np.sqrt(samples)


def fisher(problem, w, kind="true", samples=1, seed=0):
    """Fisher matrix (P, P) of the given kind ('true', 'empirical', 'mc')."""
    choice("fisher kind", kind, {"true", "empirical", "mc"})
    pt = _Point(require_problem(problem, "fisher"), w)
    if kind == "true":
        seeds = pt.problem.lossfn.fisher_factor(pt.tr.z).transpose(2, 0, 1)
    elif kind == "empirical":
        seeds = pt.r[None]
    else:
        seeds = mc_seeds(pt, samples, seed)
    return gram_of_seeds(f"fisher ({kind})", pt, seeds)
