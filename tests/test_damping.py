import numpy as np
import pytest

import curvlab as cl
from curvlab import damping as dm
from tests import oracles
from tests.conftest import make_problem


@pytest.fixture(scope="module")
def prob():
    return make_problem([3, 5, 3], "tanh", "cross_entropy", 10)


@pytest.mark.parametrize("kind", ["hessian", "ggn", "fisher", "kfac", "kflr", "kfra", "diagonal"])
def test_damped_direction_is_the_damped_solve(prob, kind):
    problem, w = prob
    C = cl.matrix(problem, w, kind).to_dense()
    g = problem.grad(w)
    got = dm.damped_direction(problem, w, kind, damping=0.3)
    assert oracles.rel(got, np.linalg.solve(C + 0.3 * np.eye(len(g)), g)) < 1e-10


def test_large_damping_approaches_gradient_descent(prob):
    problem, w = prob
    g = problem.grad(w)
    errs = [oracles.rel(eta * dm.damped_direction(problem, w, "ggn", eta), g) for eta in (1e2, 1e4)]
    assert errs[1] < 1e-3 and errs[0] / errs[1] > 50          # error ∝ ‖C‖ / η


def test_eigen_filter_interpolates_between_newton_and_gradient(prob):
    problem, w = prob
    C = cl.matrix(problem, w, "ggn")
    g = problem.grad(w)
    ef = dm.eigen_filter(C, g, damping=1e-3)
    lam, U = np.linalg.eigh(C.to_dense())
    assert np.allclose(U @ ef.step, -dm.damped_direction(problem, w, "ggn", 1e-3, C=C))
    big, small = ef.nu > 100 * ef.eta, ef.nu < ef.eta / 100
    assert big.any() and small.any()
    assert np.allclose(ef.step[big], ef.newton[big], rtol=0.02)
    assert np.allclose(ef.step[small], ef.gradient_descent[small], rtol=0.02)
    assert np.all((-1e-10 <= ef.factor) & (ef.factor <= 1))


def test_levenberg_marquardt_rule():
    assert dm.levenberg_marquardt(1.0, -0.5) == 1.5          # rejected step: more damping
    assert dm.levenberg_marquardt(1.0, np.nan) == 1.5
    assert dm.levenberg_marquardt(1.0, 0.9) == pytest.approx(2 / 3)   # good step: less
    assert dm.levenberg_marquardt(1.0, 0.5) == 1.0
    with pytest.raises(ValueError, match="damping"):
        dm.levenberg_marquardt(-1.0, 0.5)


def test_reduction_ratio_is_one_for_a_quadratic():
    f, A, c = cl.objectives.make_quadratic(condition=30)
    w = np.array([2.0, -1.0])
    C = cl.matrix(f, w, "hessian")
    p = -C.solve(f.grad(w), 0.5)
    assert dm.reduction_ratio(f, w, p, C) == pytest.approx(1.0, rel=1e-12)


def test_decrease_vs_damping(prob):
    problem, w = prob
    out = dm.decrease_vs_damping(problem, w, "ggn", etas=np.logspace(-3, 3, 7))
    assert abs(out["rho"][-1] - 1) < 0.01                   # tiny steps: the model is right
    assert np.all(np.diff(out["step_norm"]) < 0)            # more damping, shorter steps
    assert out["cos_gradient"][-1] > 0.999 and out["cos_newton"][0] == pytest.approx(1)
    with pytest.raises(ValueError, match="etas"):
        dm.decrease_vs_damping(problem, w, etas=[-1.0])
