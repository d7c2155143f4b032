"""Weight perturbation (Pearlmutter 1994, section 6): gradient — and Hessian-vector product —
estimates from the objective's changes under random perturbations Δw ~ N(0, σ²I), as local
hardware without backprop would measure them.

Without v:  ĝᵢ = ⟨Δwᵢ ΔE⟩ / ⟨Δwᵢ²⟩, ΔE = E(w + Δw) − E(w).
With v, the paper's symmetric rank-2 Hessian estimate Ĥ = (z vᵀ + v zᵀ − (v·z)/‖v‖² v vᵀ)/‖v‖²
(so that Ĥv = z) makes the second-order model of ΔE linear in (g, z):
    ΔE ≈ Σᵢ gᵢ aᵢ + Σᵢ zᵢ bᵢ,   aᵢ = Δwᵢ,   bᵢ = (s/‖v‖²)(Δwᵢ − s vᵢ/(2‖v‖²)),   s = Δw·v,
    fit='joint'  one least-squares fit of ΔE on [1, a, b] (2P + 1 unknowns): consistent — ĝ → g
                 and ẑ → Hv on any smooth objective as the samples grow (and σ → 0);
    fit='local'  each weight's own fit of ΔE on [1, aᵢ, bᵢ], as local hardware would do: ĝ is
                 consistent, ẑ is not — every other weight's bⱼ shares the s² term, and biases it.
Standard errors from the least-squares residuals (or the sample spread without v).
"""

from dataclasses import dataclass

import numpy as np

from ._checks import choice, flat_vector, short_repr
from .problem import Problem, as_objective


@dataclass
class PerturbationEstimate:
    """ĝ (and ẑ ≈ Hv when v was given) with their standard errors."""

    __repr__ = short_repr

    g: np.ndarray
    g_se: np.ndarray
    z: np.ndarray = None
    z_se: np.ndarray = None
    samples: int = 0
    sigma: float = 0.0
    fit: str = ""


def _changes(obj, w, dW):
    """ΔE at w + Δw for every row of dW: batched for Problems and objectives that offer it."""
    E0 = float(obj.loss(w))
    if isinstance(obj, Problem) and obj.layered:
        from .landscape import batch_losses
        return batch_losses(obj, w + dW, accuracy=False)[0] - E0
    if isinstance(obj, Problem):
        from .units import batch_losses
        return batch_losses(obj, w + dW) - E0
    if getattr(obj, "batch", None) is not None:
        return np.asarray(obj.batch(w + dW), dtype=np.float64) - E0
    return np.array([float(obj.loss(w + d)) for d in dW]) - E0


def _lstsq(F, y):
    """Coefficients and their standard errors for y ≈ F c."""
    c, *_ = np.linalg.lstsq(F, y, rcond=None)
    dof = max(len(y) - F.shape[1], 1)
    s2 = np.sum((y - F @ c) ** 2) / dof
    cov = s2 * np.linalg.pinv(F.T @ F)
    return c, np.sqrt(np.maximum(np.diag(cov), 0.0))


def estimate(objective, w, samples, sigma, seed=0, v=None, fit="joint"):
    """Weight-perturbation estimates of ∇E(w) and, given v, of H v (module docstring).
    objective: a Problem (evaluated in batches) or any objective; samples: perturbations;
    sigma: their standard deviation. Cost: `samples` objective evaluations."""
    obj = as_objective(objective)
    w = obj.check(w)
    P = w.shape[0]
    samples = int(samples)
    sigma = float(sigma)
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    choice("fit", fit, {"joint", "local"})
    need = 2 * P + 1 if (v is not None and fit == "joint") else 3
    if samples < need:
        raise ValueError(f"{samples} samples cannot fit {need} unknowns; use samples ≥ {need}")
    rng = np.random.default_rng(seed)
    dW = sigma * rng.standard_normal((samples, P))
    dE = _changes(obj, w, dW)
    if v is None:
        prod = dW * dE[:, None] / np.mean(dW ** 2, axis=0)
        return PerturbationEstimate(prod.mean(0), prod.std(0, ddof=1) / np.sqrt(samples),
                                    samples=samples, sigma=sigma, fit="plain")
    v = flat_vector("v", v, P)
    vv = v @ v
    if vv == 0:
        raise ValueError("v must be a nonzero direction")
    s = dW @ v
    a = dW
    b = (s / vv)[:, None] * (dW - np.outer(s, v) / (2 * vv))
    ones = np.ones((samples, 1))
    if fit == "joint":
        c, se = _lstsq(np.hstack([ones, a, b]), dE)
        return PerturbationEstimate(
            c[1 : P + 1], se[1 : P + 1], c[P + 1 :], se[P + 1 :], samples, sigma, fit
        )
    g, z, g_se, z_se = (np.empty(P) for _ in range(4))
    for i in range(P):
        c, se = _lstsq(np.hstack([ones, a[:, i : i + 1], b[:, i : i + 1]]), dE)
        g[i], z[i], g_se[i], z_se[i] = c[1], c[2], se[1], se[2]
    return PerturbationEstimate(g, g_se, z, z_se, samples, sigma, fit)
