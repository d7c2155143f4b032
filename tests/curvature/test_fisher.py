import numpy as np
import pytest

import curvlab as cl
from tests import oracles
from tests.conftest import make_problem

TOL = 1e-10


def test_true_fisher_matches_enumerated_expectation(case, record_error):
    problem, w = case
    err = record_error(oracles.rel(cl.fisher(problem, w, kind="true"), oracles.true_fisher(problem, w)))
    assert err < TOL


def test_empirical_fisher_matches_per_sample_gradients(case, record_error):
    problem, w = case
    err = record_error(oracles.rel(cl.fisher(problem, w, kind="empirical"),
                                   oracles.empirical_fisher(problem, w)))
    assert err < TOL


def test_true_fisher_equals_ggn(case):
    # Exponential families with natural parameter z: E_y[∇ℓ∇ℓᵀ] = ∂²ℓ/∂z², so F = G.
    problem, w = case
    assert oracles.rel(cl.fisher(problem, w, "true"), cl.ggn(problem, w)) < TOL


def test_empirical_fisher_differs_from_true_fisher():
    problem, w = make_problem([2, 5, 3], "tanh", "cross_entropy", 10)
    assert oracles.rel(cl.fisher(problem, w, "empirical"), cl.fisher(problem, w, "true")) > 0.05


@pytest.mark.parametrize("loss", ["cross_entropy", "bce", "mse"])
def test_mc_fisher_converges_to_true_fisher(loss):
    problem, w = make_problem([2, 4, 3], "tanh", loss, 5)
    F = cl.fisher(problem, w, "true")
    err = [oracles.rel(cl.fisher(problem, w, "mc", samples=S, seed=1), F) for S in (10, 20000)]
    assert err[1] < 0.05 and err[1] < err[0] / 5


def test_mc_fisher_is_seeded():
    problem, w = make_problem([2, 4, 3], "tanh", "cross_entropy", 5)
    a = cl.fisher(problem, w, "mc", samples=3, seed=7)
    assert np.array_equal(a, cl.fisher(problem, w, "mc", samples=3, seed=7))
    assert not np.array_equal(a, cl.fisher(problem, w, "mc", samples=3, seed=8))


def test_mc_fisher_one_sample_is_a_gradient_outer_product():
    # With one draw per input the MC Fisher is the empirical Fisher at the drawn labels.
    problem, w = make_problem([2, 3, 3], "relu", "cross_entropy", 4)
    rng = np.random.default_rng(5)
    z = problem.outputs(w)
    ys = problem.lossfn.sample(z, rng, 1)[0]
    G = oracles.per_sample_grads(problem, w, ys)
    assert oracles.rel(cl.fisher(problem, w, "mc", samples=1, seed=5), G.T @ G / problem.N) < TOL
