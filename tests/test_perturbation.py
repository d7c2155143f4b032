"""Weight perturbation: the plain gradient estimate, and the rank-2 Hessian model fitted jointly
(consistent) or per weight (not, for Hv)."""

import numpy as np
import pytest

import curvlab as cl
from tests import oracles


def quadratic(P, seed=0, rank2=False):
    rng = np.random.default_rng(seed)
    g0, v = rng.standard_normal(P), rng.standard_normal(P)
    if rank2:               # H = (z vᵀ + v zᵀ − (v·z)/‖v‖² v vᵀ)/‖v‖²: the estimator's model is exact
        z = rng.standard_normal(P)
        H = (np.outer(z, v) + np.outer(v, z) - (v @ z) / (v @ v) * np.outer(v, v)) / (v @ v)
    else:
        A = rng.standard_normal((P, P))
        H = A + A.T
    f = cl.Objective(lambda w: g0 @ w + 0.5 * w @ H @ w, n_params=P, name="quadratic")
    return f, H, v, g0


def test_joint_fit_is_exact_from_2p_plus_1_noiseless_samples_on_a_rank_2_quadratic(record_error):
    P = 6
    f, H, v, g0 = quadratic(P, rank2=True)
    w = np.random.default_rng(1).standard_normal(P)
    est = cl.perturbation.estimate(f, w, samples=2 * P + 1, sigma=0.3, v=v)
    assert record_error(oracles.rel(est.g, g0 + H @ w)) < 1e-9
    assert record_error(oracles.rel(est.z, H @ v)) < 1e-9


def test_joint_fit_converges_on_a_general_quadratic_and_the_local_fit_does_not():
    # P = 6, σ = 0.1, seeds fixed. The joint fit is consistent: within 4 standard errors, and 16×
    # the samples shrink its error (by √16 = 4 in expectation; asserted > 2).
    f, H, v, g0 = quadratic(6, seed=2)
    w = np.zeros(6)
    Hv = H @ v
    joint = {S: cl.perturbation.estimate(f, w, samples=S, sigma=0.1, v=v, seed=3) for S in (4000, 64000)}
    j = joint[64000]
    assert np.all(np.abs(j.z - Hv) < 4 * j.z_se) and np.all(np.abs(j.g - g0) < 4 * j.g_se)
    assert oracles.rel(joint[4000].z, Hv) > 2 * oracles.rel(j.z, Hv)
    plain = cl.perturbation.estimate(f, w, samples=64000, sigma=0.1, seed=3)
    assert oracles.rel(j.g, g0) < 0.01 and oracles.rel(j.g, g0) < oracles.rel(plain.g, g0) < 0.05
    # The per-weight fit's ẑ is biased: even where the joint fit is exact (a rank-2 quadratic)
    # its error levels off instead of falling as 1/√samples (4× the samples: noise alone would
    # halve it), while its ĝ converges.
    f2, H2, v2, g2 = quadratic(6, seed=2, rank2=True)
    local = {S: cl.perturbation.estimate(f2, w, samples=S, sigma=0.1, v=v2, seed=3, fit="local")
             for S in (64000, 256000)}
    err = {S: oracles.rel(e.z, H2 @ v2) for S, e in local.items()}
    assert err[256000] > 0.2 and err[256000] > 0.75 * err[64000]
    assert oracles.rel(local[256000].g, g2) < 0.01
    assert oracles.rel(cl.perturbation.estimate(f2, w, samples=64000, sigma=0.1, v=v2, seed=3).z, H2 @ v2) < 1e-9


def test_plain_gradient_error_falls_as_one_over_root_samples():
    f, H, v, g0 = quadratic(6, seed=4)
    w = np.zeros(6)
    errs = [np.mean([oracles.rel(cl.perturbation.estimate(f, w, samples=S, sigma=0.05, seed=s).g, g0)
                     for s in range(8)]) for S in (400, 6400)]
    assert 2.5 < errs[0] / errs[1] < 6.5                                   # √16 = 4


def test_perturbation_on_a_problem_is_batched_and_consistent():
    from tests.conftest import make_problem
    problem, w = make_problem([2, 3, 2], "tanh", "mse", 8)
    est = cl.perturbation.estimate(problem, w, samples=20000, sigma=1e-3, v=np.ones(problem.n_params))
    assert oracles.rel(est.g, problem.grad(w)) < 0.02


def test_bad_arguments():
    f, H, v, g0 = quadratic(3)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        cl.perturbation.estimate(f, np.zeros(3), 100, 0.0)
    with pytest.raises(ValueError, match="cannot fit 7 unknowns"):
        cl.perturbation.estimate(f, np.zeros(3), 5, 0.1, v=v)
    with pytest.raises(ValueError, match="unknown fit 'both'"):
        cl.perturbation.estimate(f, np.zeros(3), 100, 0.1, v=v, fit="both")
