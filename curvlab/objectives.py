"""Generic objectives of a flat vector, for the optimisers and the 2-D pictures.

Each is an autograd-differentiable function of w (shape (2,) for the 2-D test functions) and
works with `cl.hessian`, `cl.hvp` and `cl.optim.minimize` as they are.
"""

import autograd.numpy as anp
import numpy as np


def rosenbrock(w, a=1.0, b=100.0):
    """(a − x)² + b (y − x²)²; minimum 0 at (a, a²), a curved, badly conditioned valley."""
    return (a - w[0]) ** 2 + b * (w[1] - w[0] ** 2) ** 2


def beale(w):
    """Beale's function; minimum 0 at (3, 0.5), flat plateaus and steep walls."""
    x, y = w[0], w[1]
    return ((1.5 - x + x * y) ** 2 + (2.25 - x + x * y ** 2) ** 2 + (2.625 - x + x * y ** 3) ** 2)


def make_quadratic(condition=100.0, angle=np.pi / 6, center=(0.0, 0.0)):
    """An ill-conditioned 2-D quadratic ½ (w − c)ᵀ A (w − c), A with eigenvalues 1 and
    `condition`, rotated by `angle`. Returns (f, A, c): the minimum is at c, the Hessian is A."""
    if not condition >= 1:
        raise ValueError(f"condition must be >= 1, got {condition}")
    c, s = np.cos(angle), np.sin(angle)
    R = np.array([[c, -s], [s, c]])
    A = R @ np.diag([1.0, float(condition)]) @ R.T
    center = np.asarray(center, dtype=np.float64)

    def quadratic(w):
        d = w - center
        return 0.5 * anp.dot(d, anp.dot(A, d))

    return quadratic, A, center


def make_logistic_regression(n=100, seed=0, l2=1e-2):
    """A 2-parameter logistic regression (slope, intercept) on seeded 1-D data:
    L(w) = mean softplus(−t (w₀ x + w₁)) + (l2/2)‖w‖² with t ∈ {−1, +1}. Returns (f, x, t)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    t = np.where(rng.random(n) < 1 / (1 + np.exp(-(2.0 * x - 0.5))), 1.0, -1.0)

    def logistic_regression(w):
        m = t * (w[0] * x + w[1])
        return anp.mean(anp.logaddexp(0.0, -m)) + 0.5 * l2 * anp.sum(w * w)

    return logistic_regression, x, t
