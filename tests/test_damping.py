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


@pytest.mark.parametrize("kind", ["ggn", "hessian", "fisher", "kflr", "diagonal"])
def test_damped_step_against_a_dense_solve(prob, kind):
    problem, w = prob
    eta, eta0 = 0.3, 1e-6
    M = cl.matrix(problem, w, kind).to_dense()
    g, I = problem.grad(w), np.eye(len(w))
    p = -np.linalg.solve(M + eta * I, g)                       # independent of C.solve
    p0 = -np.linalg.solve(M + eta0 * I, g)
    pred = -(g @ p + 0.5 * p @ M @ p)
    actual = float(problem.loss(w)) - float(problem.loss(w + p))
    cos = lambda a, b: a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    s = dm.damped_step(problem, w, kind, damping=eta, newton_damping=eta0)
    assert s.eta == eta and oracles.rel(s.step, p) < 1e-9
    assert s.norm == pytest.approx(np.linalg.norm(p), rel=1e-9)
    assert s.predicted == pytest.approx(pred, rel=1e-9)
    assert s.actual == pytest.approx(actual, rel=1e-9, abs=1e-14)
    assert s.rho == pytest.approx(actual / pred, rel=1e-8)
    assert s.cos_gradient == pytest.approx(cos(p, -g), abs=1e-10)
    assert s.cos_newton == pytest.approx(cos(p, p0), abs=1e-7)
    assert "DampedStep(eta=0.3" in repr(s)


def test_damped_step_matches_the_sweep_and_reuses_the_factorisation(prob, monkeypatch):
    problem, w = prob
    C = cl.matrix(problem, w, "ggn")
    etas = np.array([1e-6, 1e-2, 1.0])
    sweep = dm.decrease_vs_damping(problem, w, etas=etas, C=C)      # C factorised here, once
    monkeypatch.setattr(np.linalg, "eigh", lambda *a, **k: pytest.fail("a second eigh"))
    for i, eta in enumerate(etas):
        s = dm.damped_step(problem, w, damping=eta, C=C)
        assert oracles.rel(s.step, sweep["steps"][:, i]) < 1e-12
        assert s.predicted == pytest.approx(sweep["predicted"][i], rel=1e-10)
        assert s.actual == pytest.approx(sweep["actual"][i], rel=1e-8, abs=1e-13)
        assert s.cos_gradient == pytest.approx(sweep["cos_gradient"][i], abs=1e-10)
        assert s.cos_newton == pytest.approx(sweep["cos_newton"][i], abs=1e-8)
    with pytest.raises(ValueError, match="damping"):
        dm.damped_step(problem, w, damping=-1.0, C=C)


def test_damped_step_on_a_quadratic_model_is_exact_and_at_its_minimum_promises_nothing():
    f, A, c = cl.objectives.make_quadratic(condition=30, center=(1.0, -2.0))
    s = dm.damped_step(f, np.array([2.0, 0.5]), "hessian", damping=0.5)
    assert s.rho == pytest.approx(1.0, rel=1e-12) and s.predicted > 0     # the model is the loss
    assert s.cos_gradient > 0 and 0 < s.cos_newton < 1
    still = dm.damped_step(f, c, "hessian", damping=0.5)                  # g = 0: no step
    assert still.norm == 0 and np.isnan(still.rho) and np.isnan(still.cos_gradient)
