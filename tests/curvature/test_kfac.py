import numpy as np
import pytest

import curvlab as cl
from tests import oracles
from tests.conftest import ACTIVATIONS, LOSSES, make_problem

TOL = 1e-10


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("sizes", [[3, 4, 3], [2, 5, 4, 3]])
def test_kflr_and_kfra_equal_ggn_blocks_for_one_sample(sizes, act, loss, record_error):
    problem, w = make_problem(sizes, act, loss, 1)
    want = oracles.blocks(oracles.GGN(problem, w), problem.model)
    for approx in (cl.kflr(problem, w), cl.kfra(problem, w)):
        for got, ref in zip(approx.blocks(), want):
            assert record_error(oracles.rel(got, ref)) < TOL


def test_kflr_factors_are_batch_averages():
    # S_l = (1/N) Σ_n G_n (exact per-sample pre-activation GGN), A_l = (1/N) Σ_n ā ā^T:
    # the average of the single-sample factors.
    problem, w = make_problem([3, 5, 4, 2], "sigmoid", "cross_entropy", 6)
    full = cl.kflr(problem, w).factors
    singles = [cl.kflr(problem.subset([n]), w).factors for n in range(problem.N)]
    for l, (A, S) in enumerate(full):
        assert oracles.rel(A, np.mean([s[l][0] for s in singles], 0)) < TOL
        assert oracles.rel(S, np.mean([s[l][1] for s in singles], 0)) < TOL


def test_kfra_differs_from_kflr_on_a_batch_except_last_layer():
    problem, w = make_problem([3, 5, 4, 3], "tanh", "cross_entropy", 10, scale=1.0)
    kflr, kfra = cl.kflr(problem, w).factors, cl.kfra(problem, w).factors
    assert oracles.rel(kfra[-1][1], kflr[-1][1]) < TOL          # S_L = mean B for both
    assert oracles.rel(kfra[0][1], kflr[0][1]) > 1e-4


@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "bce"])
def test_mc_kfac_converges_to_kflr(loss):
    problem, w = make_problem([3, 4, 3], "tanh", loss, 5)
    ref = cl.kflr(problem, w).factors
    err = []
    for S in (5, 20000):
        mc = cl.kfac(problem, w, samples=S, seed=3).factors
        err.append(max(oracles.rel(m[1], r[1]) for m, r in zip(mc, ref)))
    assert err[1] < 0.05 and err[1] < err[0] / 5


def test_empirical_kfac_uses_data_label_gradients():
    problem, w = make_problem([3, 4, 3], "relu", "cross_entropy", 6)
    ef = oracles.empirical_fisher(problem, w)          # one sample: K-FAC empirical = EF block
    one = problem.subset([2])
    got = cl.kfac(one, w, kind="empirical").blocks()
    want = oracles.blocks(oracles.empirical_fisher(one, w), one.model)
    for g, r in zip(got, want):
        assert oracles.rel(g, r) < TOL
    assert ef.shape == (problem.n_params,) * 2


def test_to_dense_matvec_and_solve_agree():
    problem, w = make_problem([3, 5, 4, 3], "softplus", "cross_entropy", 7, l2=0.05)
    rng = np.random.default_rng(0)
    v = rng.standard_normal(problem.n_params)
    V = rng.standard_normal((problem.n_params, 3))
    for K in (cl.kflr(problem, w), cl.kfra(problem, w), cl.kfac(problem, w, samples=4)):
        D = K.to_dense()
        assert oracles.rel(K @ v, D @ v) < TOL
        assert oracles.rel(K @ V, D @ V) < TOL
        for eta in (1e-3, 0.5):
            x = K.solve(v, damping=eta)
            assert oracles.rel(x, np.linalg.solve(D + eta * np.eye(len(v)), v)) < 1e-8
        # the cached eigendecomposition is reused: a second damping costs no refactorisation
        assert K._eig is not None


def test_factored_tikhonov_damping_matches_its_formula():
    problem, w = make_problem([2, 4, 3], "tanh", "cross_entropy", 6, l2=0.01)
    K = cl.kflr(problem, w)
    v = np.random.default_rng(1).standard_normal(problem.n_params)
    gamma = 0.1 + 0.01
    parts = []
    for (A, S), sl in zip(K.factors, problem.model.layer_slices()):
        pi = np.sqrt((np.trace(A) / len(A)) / (np.trace(S) / len(S)))
        M = np.kron(S + np.sqrt(gamma) / pi * np.eye(len(S)), A + pi * np.sqrt(gamma) * np.eye(len(A)))
        parts.append(np.linalg.solve(M, v[sl]))
    assert oracles.rel(K.solve(v, 0.1, method="tikhonov"), np.concatenate(parts)) < 1e-10


def test_bulatov_single_linear_layer_kfac_step_is_newton_step():
    # Y = W X̄: the Hessian is exactly S ⊗ A (S = I for MSE), so the factored Newton step
    # (S⁻¹ G A⁻¹) equals the exact Newton step H⁻¹ g.
    problem, w = make_problem([4, 3], "identity", "mse", 20)
    g = problem.grad(w)
    newton = np.linalg.solve(cl.hessian(problem, w), g)
    for K in (cl.kflr(problem, w), cl.kfra(problem, w)):
        assert oracles.rel(K.solve(g), newton) < 1e-9
    # after the step the (quadratic) loss is at its minimum: the gradient vanishes
    assert np.abs(problem.grad(w - newton)).max() < 1e-10


def test_kfac_step_is_not_newton_on_a_deeper_net():
    problem, w = make_problem([4, 5, 3], "tanh", "mse", 20)
    g = problem.grad(w)
    newton = np.linalg.solve(cl.hessian(problem, w) + 1e-3 * np.eye(len(g)), g)
    assert oracles.rel(cl.kflr(problem, w).solve(g, 1e-3), newton) > 1e-2


def test_singular_kronecker_solve_asks_for_damping():
    problem, w = make_problem([3, 2], "identity", "cross_entropy", 1)   # rank-deficient factors
    with pytest.raises(np.linalg.LinAlgError, match="damping"):
        cl.kflr(problem, w).solve(np.ones(problem.n_params))
