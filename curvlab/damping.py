"""Damping: what (C + ηI)⁻¹ does to a step (Grosse's lecture; Martens 2010).

In C's eigenbasis (νᵢ, uᵢ) the damped step −(C + ηI)⁻¹g has coordinates −gᵢ / (νᵢ + η): where
νᵢ ≫ η it is Newton's −gᵢ/νᵢ, where νᵢ ≪ η it is gradient descent's −gᵢ/η (step size 1/η).
Levenberg–Marquardt adapts η from the reduction ratio ρ = actual / predicted decrease of the
quadratic model m(p) = gᵀp + ½ pᵀCp.
"""

from dataclasses import dataclass

import numpy as np

from ._checks import flat_vector, nonnegative, short_repr
from .curvature.kinds import matrix
from .landscape import batch_losses
from .problem import Problem, as_objective


def damped_direction(problem, w, kind="ggn", damping=1e-3, samples=1, seed=0, C=None):
    """(C + ηI)⁻¹ ∇L(w) for any curvature kind (the step is its negative)."""
    obj = as_objective(problem)
    C = matrix(obj, w, kind, samples=samples, seed=seed) if C is None else C
    return C.solve(obj.grad(w), nonnegative("damping", damping))


@dataclass
class DampedStep:
    """One damped step and how the quadratic model and the loss judge it (`damped_step`)."""

    __repr__ = short_repr

    eta: float              # the damping η
    step: np.ndarray        # p = −(C + ηI)⁻¹g
    norm: float             # ‖p‖
    predicted: float        # −m(p) = −(gᵀp + ½ pᵀCp), the decrease the model promises
    actual: float           # L(w) − L(w + p)
    rho: float              # actual / predicted (nan when the model promises nothing)
    cos_gradient: float     # cos ∠(p, −g)
    cos_newton: float       # cos ∠(p, p₀), p₀ = −(C + η₀I)⁻¹g the Newton-like step


def damped_step(problem, w, kind="ggn", damping=1e-3, C=None, newton_damping=1e-6, samples=1,
                seed=0):
    """The damped step at w for damping η and what it does.

    With g = ∇L(w) and C the curvature of `kind` at w (or the curvature object `C`, e.g. one
    already built: its cached factorisation is reused, no matrix is decomposed again):

        p = −(C + ηI)⁻¹g                        (C.solve(g, η))
        −m(p) = −(gᵀp + ½ pᵀCp)                 predicted decrease of the quadratic model
        L(w) − L(w + p)                         actual decrease
        ρ = (L(w) − L(w + p)) / (−m(p))         Levenberg–Marquardt's reduction ratio
        cos ∠(p, −g),  cos ∠(p, p₀)             p₀ = −(C + η₀I)⁻¹g, η₀ = newton_damping: the
                                                Newton-like step (Newton's own when η₀ = 0 and
                                                C is nonsingular)

    Returns a `DampedStep`; cosines are nan for a zero vector."""
    obj = as_objective(problem)
    w = obj.check(w)
    eta = nonnegative("damping", damping)
    C = matrix(obj, w, kind, samples=samples, seed=seed) if C is None else C
    g = obj.grad(w)
    p = -C.solve(g, eta)
    newton = -C.solve(g, nonnegative("newton_damping", newton_damping))
    pred = predicted_decrease(g, C, p)
    actual = float(obj.loss(w)) - float(obj.loss(w + p))
    return DampedStep(eta, p, float(np.linalg.norm(p)), pred, actual,
                      actual / pred if pred != 0 else np.nan, _cos(p, -g), _cos(p, newton))


def _cos(a, b):
    n = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / n) if n > 0 else np.nan


@dataclass
class EigenFilter:
    """The damped step in C's eigenbasis: eigenvalues ν (ascending), gradient coordinates
    g_i = uᵢᵀg, and the filter factor ν/(ν + η) that multiplies Newton's coordinates."""

    __repr__ = short_repr

    nu: np.ndarray
    g: np.ndarray
    eta: float

    @property
    def step(self):
        return -self.g / (self.nu + self.eta)

    @property
    def newton(self):
        return -self.g / self.nu

    @property
    def gradient_descent(self):
        return -self.g / self.eta

    @property
    def factor(self):
        return self.nu / (self.nu + self.eta)


def eigen_filter(C, g, damping):
    """The per-eigendirection view of (C + ηI)⁻¹g for a dense curvature object (or array)."""
    M = C if isinstance(C, np.ndarray) else C.to_dense()
    nu, U = np.linalg.eigh(M)
    return EigenFilter(nu, U.T @ flat_vector("g", g, M.shape[0]), nonnegative("damping", damping))


def predicted_decrease(g, C, p):
    """−m(p) = −(gᵀp + ½ pᵀCp): the decrease the quadratic model promises for step p."""
    Cp = C @ p
    return float(-(g @ p + 0.5 * p @ Cp))


def reduction_ratio(objective, w, p, C, g=None):
    """ρ = (L(w) − L(w + p)) / (−m(p)); ρ ≈ 1 where the model is trusted."""
    obj = as_objective(objective)
    g = obj.grad(w) if g is None else g
    pred = predicted_decrease(g, C, p)
    actual = float(obj.loss(w) - obj.loss(w + p))
    return actual / pred if pred != 0 else np.nan


def levenberg_marquardt(eta, rho, lower=0.25, upper=0.75, increase=1.5, decrease=2 / 3,
                        eta_min=1e-12, eta_max=1e12):
    """Martens' (2010) rule: η ← increase·η if ρ < lower (or ρ is nan: a rejected step),
    η ← decrease·η if ρ > upper, unchanged in between; kept within [eta_min, eta_max]."""
    eta = nonnegative("damping", eta)
    if not np.isfinite(rho) or rho < lower:
        eta = max(eta, eta_min) * increase
    elif rho > upper:
        eta = eta * decrease
    return float(min(max(eta, eta_min), eta_max))


def decrease_vs_damping(problem, w, kind="ggn", etas=None, samples=1, seed=0, C=None):
    """For each η: the step p = −(C + ηI)⁻¹g, the predicted and actual decrease, ρ, ‖p‖ and the
    cosines of p with −g and with the (least-damped) Newton-like step. Returns a dict of arrays,
    including the steps themselves as the columns of 'steps' (P, len(etas)). For a Problem the
    actual losses of all steps are evaluated in one batched pass."""
    obj = as_objective(problem)
    w = obj.check(w)
    etas = np.logspace(-4, 2, 25) if etas is None else np.asarray(etas, dtype=np.float64)
    if etas.ndim != 1 or len(etas) == 0 or np.any(~np.isfinite(etas)) or np.any(etas < 0):
        raise ValueError("etas must be a non-empty 1-D array of finite dampings >= 0")
    C = matrix(obj, w, kind, samples=samples, seed=seed) if C is None else C
    g, L0 = obj.grad(w), float(obj.loss(w))
    steps = np.stack([-C.solve(g, eta) for eta in etas], axis=1)
    ref = steps[:, int(np.argmin(etas))]
    pred = -(g @ steps + 0.5 * np.einsum("pe,pe->e", steps, C @ steps))
    if isinstance(obj, Problem):
        actual = L0 - batch_losses(obj, (w[:, None] + steps).T)[0]
    else:
        actual = np.array([L0 - float(obj.loss(w + p)) for p in steps.T])
    norms = np.linalg.norm(steps, axis=0)
    return {"eta": etas, "steps": steps, "predicted": pred, "actual": actual, "rho": actual / pred,
            "step_norm": norms,
            "cos_gradient": (-g @ steps) / (norms * np.linalg.norm(g)),
            "cos_newton": (ref @ steps) / (norms * np.linalg.norm(ref))}
