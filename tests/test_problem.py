import numpy as np
import pytest
from autograd.test_util import check_grads

import curvlab as cl
from tests import oracles
from tests.conftest import make_problem


def test_grad_matches_autograd_and_finite_differences(case):
    problem, w = case
    assert oracles.rel(problem.grad(w), problem.autograd_grad(w)) < 1e-12
    check_grads(problem.loss, modes=["rev"], order=1)(w)


def test_loss_is_a_mean_plus_l2():
    problem, w = make_problem([2, 3, 2], "tanh", "cross_entropy", 4, l2=0.2)
    per = [problem.subset([n]).loss(w) - 0.1 * w @ w for n in range(4)]
    assert np.isclose(problem.loss(w), np.mean(per) + 0.1 * w @ w)


def test_mse_is_half_squared_error():
    model = cl.MLP([1, 1])
    p = cl.Problem(model, "mse", np.array([[2.0]]), np.array([[1.0]]))
    assert np.isclose(p.loss(np.array([3.0, 0.5])), 0.5 * (6.5 - 1.0) ** 2)


def test_bad_problems_are_refused():
    model = cl.MLP([2, 3, 3])
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match="disagree on the number of samples"):
        cl.Problem(model, "cross_entropy", X, np.zeros(5, int))
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        cl.Problem(model, "cross_entropy", np.zeros((4, 3)), np.zeros(4, int))
    with pytest.raises(ValueError, match="labels out of range"):
        cl.Problem(model, "cross_entropy", X, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        cl.Problem(model, "cross_entropy", np.full((4, 2), np.inf), np.zeros(4, int))
    with pytest.raises(ValueError, match="unknown loss"):
        cl.Problem(model, "nll", X, np.zeros(4, int))
    with pytest.raises(ValueError, match="l2"):
        cl.Problem(model, "cross_entropy", X, np.zeros(4, int), l2=-1)
    with pytest.raises(TypeError, match="MLP"):
        cl.Problem("mlp", "mse", X, X)


def test_bad_parameter_vectors_are_refused():
    problem, w = make_problem([2, 3, 2], "tanh", "mse", 3)
    with pytest.raises(ValueError, match="parameters"):
        problem.grad(w[:-1])
    bad = w.copy()
    bad[0] = np.nan
    for f in (problem.grad, lambda v: cl.hessian(problem, v), lambda v: cl.ggn(problem, v)):
        with pytest.raises(ValueError, match="NaN"):
            f(bad)
    with pytest.raises(ValueError, match=r"shape \(17,\)"):
        cl.hvp(problem, w, np.ones(3))


def test_generic_objective_is_refused_where_a_problem_is_needed():
    with pytest.raises(TypeError, match="needs a Problem"):
        cl.ggn(cl.objectives.rosenbrock, np.zeros(2))
    with pytest.raises(TypeError, match="Problem or a callable"):
        cl.hessian(42, np.zeros(2))
