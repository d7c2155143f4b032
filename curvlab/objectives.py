"""Generic objectives of a flat vector, for the optimisers and the 2-D pictures.

Each is a `cl.Objective` (callable, autograd-differentiable) and works with `cl.hessian`,
`cl.hvp` and `cl.optim.minimize`. The least-squares ones also carry their Gauss-Newton matrix
2 JᵀJ of the residuals, so Gauss-Newton and natural-gradient runs work on them too.
"""

import autograd.numpy as anp
import numpy as np
from autograd import jacobian

from .problem import Objective


def least_squares(residuals, n_params, name, minimum=None):
    """f(w) = Σᵢ rᵢ(w)², with Gauss-Newton matrix 2 J_rᵀ J_r (J_r by autograd)."""
    jac = jacobian(residuals)

    def fun(w):
        r = residuals(w)
        return anp.sum(r * r)

    fun.__name__ = name

    def ggn(w):
        J = jac(np.asarray(w, dtype=np.float64))
        return 2.0 * J.T @ J

    return Objective(fun, n_params, name, ggn=ggn, minimum=minimum)


def _rosenbrock_residuals(w, a=1.0, b=100.0):
    return anp.stack([a - w[0], anp.sqrt(b) * (w[1] - w[0] ** 2)])


def _beale_residuals(w):
    x, y = w[0], w[1]
    return anp.stack([1.5 - x + x * y, 2.25 - x + x * y ** 2, 2.625 - x + x * y ** 3])


rosenbrock = least_squares(_rosenbrock_residuals, 2, "rosenbrock", minimum=[1.0, 1.0])
rosenbrock.__doc__ = (
    "(1 − x)² + 100 (y − x²)²; minimum 0 at (1, 1), a curved, badly conditioned valley."
)
beale = least_squares(_beale_residuals, 2, "beale", minimum=[3.0, 0.5])
beale.__doc__ = "Beale's function; minimum 0 at (3, 0.5), flat plateaus and steep walls."


def make_quadratic(condition=100.0, angle=np.pi / 6, center=(0.0, 0.0)):
    """An ill-conditioned 2-D quadratic ½ (w − c)ᵀ A (w − c), A with eigenvalues 1 and
    `condition`, rotated by `angle`. Returns (f, A, c): the minimum is at c, the Hessian
    (and Gauss-Newton matrix) is A."""
    if not condition >= 1:
        raise ValueError(f"condition must be >= 1, got {condition}")
    c, s = np.cos(angle), np.sin(angle)
    R = np.array([[c, -s], [s, c]])
    A = R @ np.diag([1.0, float(condition)]) @ R.T
    center = np.asarray(center, dtype=np.float64)

    def quadratic(w):
        d = w - center
        return 0.5 * anp.dot(d, anp.dot(A, d))

    return Objective(quadratic, 2, "quadratic", ggn=lambda w: A.copy(), minimum=center), A, center


def make_logistic_regression(n=100, seed=0, l2=1e-2):
    """A 2-parameter logistic regression (slope, intercept) on seeded 1-D data:
    L(w) = mean softplus(−t (w₀ x + w₁)) + (l2/2)‖w‖², t ∈ {−1, +1}. Its GGN (= Fisher =
    Hessian here) is mean σ(1 − σ) φφᵀ + l2 I with φ = (x, 1). Returns (f, x, t)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    t = np.where(rng.random(n) < 1 / (1 + np.exp(-(2.0 * x - 0.5))), 1.0, -1.0)
    Phi = np.stack([x, np.ones_like(x)], 1)

    def logistic_regression(w):
        m = t * (w[0] * x + w[1])
        return anp.mean(anp.logaddexp(0.0, -m)) + 0.5 * l2 * anp.sum(w * w)

    def ggn(w):
        s = 1 / (1 + np.exp(-(Phi @ w)))
        return Phi.T @ (Phi * (s * (1 - s))[:, None]) / n + l2 * np.eye(2)

    return Objective(logistic_regression, 2, "logistic_regression", ggn=ggn), x, t
