"""Fisher information matrices, dense (each plus λI):

    true       F = (1/N) Σₙ E_{y~p(y|xₙ,w)}[∇ℓₙ(y) ∇ℓₙ(y)ᵀ]   (the expectation exactly)
    empirical  F = (1/N) Σₙ ∇ℓₙ(yₙ) ∇ℓₙ(yₙ)ᵀ                   (data labels, uncentred)
    mc         F = (1/N) Σₙ (1/S) Σₛ ∇ℓₙ(yₙₛ) ∇ℓₙ(yₙₛ)ᵀ,  yₙₛ ~ p(y|xₙ,w)

with ∇ℓₙ(y) = Jₙᵀ ∂ℓ/∂z. The true Fisher is (1/N) Σₙ Jₙᵀ Φₙ Jₙ with the loss's output Fisher
Φₙ = E_y[∂ℓ/∂z ∂ℓ/∂zᵀ] computed from its distribution, built like the GGN (Φ in place of B,
blocks.dense_from_layers); it equals the GGN for the three losses here. The empirical and
Monte-Carlo Fishers are Gram matrices MᵀM / N of backpropagated gradients (N or N·S rows).
"""

import numpy as np

from .. import engine
from .._checks import choice
from ..problem import require_problem
from ._dense import gram_of_seeds
from .base import Dense
from .blocks import dense_from_layers
from .ggn import objective_ggn
from .products import make_fishervp
from .registry import register


def mc_seeds(pt, samples, seed):
    """∂ℓ/∂z at S sampled targets per input, scaled by 1/√S: (S, N, K)."""
    samples = int(samples)
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    rng = np.random.default_rng(seed)
    ys = pt.problem.lossfn.sample(pt.tr.z, rng, samples)
    return pt.problem.lossfn.dz(pt.tr.z[None], ys) / np.sqrt(samples)


def fisher(problem, w, kind="true", samples=1, seed=0):
    """Fisher matrix (P, P) of the given kind ('true', 'empirical', 'mc'). Cost: true about
    N·P²/2 multiply-adds (like `ggn`); empirical N·P²/2 and mc S·N·P²/2 (Gram products)."""
    choice("fisher kind", kind, {"true", "empirical", "mc"})
    pt = require_problem(problem, "fisher").point(w)
    if kind == "true":
        return dense_from_layers("fisher (true)", pt, exact=False,
                                 top=lambda c: c.problem.lossfn.fisher_factor(c.tr.z))  # Φ = F Fᵀ
    if kind != "true":
        engine.require_independent(problem.model, f"fisher(kind={kind!r}) (per-sample gradients)")
    if kind == "empirical":
        seeds = pt.r[None]
    else:
        seeds = mc_seeds(pt, samples, seed)
    return gram_of_seeds(f"fisher ({kind})", pt, seeds)


def _build_true(objective, w):
    """The true Fisher of a Problem; a generic objective's Gauss-Newton matrix stands for it
    (natural gradient on a function that defines `ggn=`)."""
    return objective_ggn(objective, w, "fisher", lambda p, w: fisher(p, w, "true"),
                         what="Gauss-Newton (Fisher) matrix")


def _build(kind, name):
    def build(problem, w, samples=1, seed=0):
        return Dense(fisher(problem, w, kind, samples=samples, seed=seed), name,
                     problem.model.layer_slices())
    return build


register("fisher", _build_true, "true Fisher E_y[∇ℓ∇ℓᵀ]", "Amari 1998; exact expectation",
         product=make_fishervp, needs_problem=False, optimizer="natural_gradient",
         references=("enumerated expectation over labels", "= GGN for the built-in losses"))
register("empirical_fisher", _build("empirical", "empirical_fisher"),
         "empirical Fisher (1/N) Σ ∇ℓₙ∇ℓₙᵀ, data labels", "Kunstner et al. 2019",
         product=lambda problem, w: make_fishervp(problem, w, "empirical"),
         references=("per-sample gradients by autograd",))
register("mc_fisher", _build("mc", "mc_fisher"), "Monte-Carlo Fisher, sampled labels",
         "Martens 2014", sampled=True, references=("→ true Fisher as samples grow",))
