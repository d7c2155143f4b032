import numpy as np
import pytest

import curvlab as cl
from tests import oracles
from tests.conftest import make_problem

TOL = 1e-10


def _vectors(P, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(P), rng.standard_normal((P, 4))


def test_products_equal_dense_matrix_times_v(case, record_error):
    problem, w = case
    v, V = _vectors(problem.n_params)
    H, G = oracles.H(problem, w), oracles.GGN(problem, w)
    F, EF = oracles.true_fisher(problem, w), oracles.empirical_fisher(problem, w)
    for x in (v, V):
        assert record_error(oracles.rel(cl.hvp(problem, w, x), H @ x)) < TOL
        assert record_error(oracles.rel(cl.ggnvp(problem, w, x, method="rop"), G @ x)) < TOL
        assert record_error(oracles.rel(cl.ggnvp(problem, w, x, method="jacobian"), G @ x)) < TOL
        assert oracles.rel(cl.fishervp(problem, w, x), F @ x) < TOL
        assert oracles.rel(cl.fishervp(problem, w, x, kind="empirical"), EF @ x) < TOL


def test_jvp_and_vjp_match_autograd_jacobian(case):
    problem, w = case
    J = oracles.output_jacobian(problem, w)
    v, V = _vectors(problem.n_params, 1)
    u = np.random.default_rng(2).standard_normal((problem.N, problem.n_outputs))
    assert oracles.rel(cl.jvp(problem, w, v), J @ v) < TOL
    assert oracles.rel(cl.jvp(problem, w, V), np.einsum("nkp,pq->qnk", J, V)) < TOL
    assert oracles.rel(cl.vjp(problem, w, u), np.einsum("nkp,nk->p", J, u)) < TOL


@pytest.mark.parametrize("kind", ["hessian", "ggn", "fisher", "empirical_fisher"])
def test_operator_is_a_symmetric_linear_operator(kind):
    problem, w = make_problem([3, 4, 3], "tanh", "cross_entropy", 5, l2=0.1)
    dense = {"hessian": oracles.H, "ggn": oracles.GGN, "fisher": oracles.true_fisher,
             "empirical_fisher": oracles.empirical_fisher}[kind](problem, w)
    op = cl.operator(problem, w, kind)
    v, V = _vectors(problem.n_params, 3)
    assert op.shape == dense.shape
    assert oracles.rel(op @ v, dense @ v) < TOL
    assert oracles.rel(op.matmat(V), dense @ V) < TOL
    assert oracles.rel(op.rmatvec(v), dense @ v) < TOL


def test_hvp_of_generic_objective():
    w = np.array([-0.5, 1.2])
    v = np.array([0.3, -1.0])
    H = cl.hessian(cl.objectives.rosenbrock, w)
    assert oracles.rel(cl.hvp(cl.objectives.rosenbrock, w, v), H @ v) < 1e-14
    op = cl.operator(cl.objectives.rosenbrock, w, "hessian")
    assert oracles.rel(op @ v, H @ v) < 1e-14


def test_finite_difference_hvp_error_behaves_as_its_order():
    problem, w = make_problem([3, 5, 3], "tanh", "cross_entropy", 6)
    v = np.random.default_rng(4).standard_normal(problem.n_params)
    exact = cl.hvp(problem, w, v)
    central = [oracles.rel(cl.fd_hvp(problem, w, v, r), exact) for r in (1e-1, 1e-2, 1e-3)]
    forward = [oracles.rel(cl.fd_hvp(problem, w, v, r, "forward"), exact) for r in (1e-1, 1e-2)]
    assert central[0] / central[1] > 50      # O(r²): 10x smaller step, ~100x smaller error
    assert 5 < forward[0] / forward[1] < 20  # O(r)
    assert central[1] / central[2] > 50 and central[2] < 1e-4
    # too small a step: cancellation dominates and the error grows again
    assert oracles.rel(cl.fd_hvp(problem, w, v, 1e-13), exact) > central[2]


def test_make_ggnvp_reuses_stored_jacobians():
    problem, w = make_problem([3, 6, 3], "softplus", "mse", 7)
    f = cl.make_ggnvp(problem, w, method="jacobian")
    G = oracles.GGN(problem, w)
    for seed in range(3):
        v, _ = _vectors(problem.n_params, seed)
        assert oracles.rel(f(v), G @ v) < TOL
