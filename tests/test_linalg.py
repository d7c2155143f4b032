import numpy as np
import pytest

import curvlab as cl
from curvlab import linalg
from tests import oracles
from tests.conftest import make_problem


@pytest.fixture(scope="module")
def prob():
    return make_problem([3, 6, 5, 3], "tanh", "cross_entropy", 12, scale=1.0)


DENSE_REFS = {"hessian": oracles.H, "ggn": oracles.GGN, "fisher": oracles.true_fisher,
              "empirical_fisher": oracles.empirical_fisher}


@pytest.mark.parametrize("kind", sorted(DENSE_REFS))
def test_full_spectrum_matches_eigh_of_oracle(prob, kind):
    problem, w = prob
    want = np.linalg.eigvalsh(DENSE_REFS[kind](problem, w))
    assert oracles.rel(cl.spectrum(problem, w, kind), want) < 1e-10


@pytest.mark.parametrize("kind", ["kfac", "kflr", "kfra", "diagonal"])
def test_factored_spectra_match_dense_eigh(prob, kind):
    problem, w = prob
    C = cl.matrix(problem, w, kind)
    assert oracles.rel(cl.spectrum(problem, w, kind), np.linalg.eigvalsh(C.to_dense())) < 1e-12
    vals, vecs = cl.spectrum(problem, w, kind, k=4, vectors=True)
    assert oracles.rel(C.to_dense() @ vecs, vecs * vals) < 1e-10


def test_kronecker_spectrum_never_forms_the_matrix(prob, monkeypatch):
    problem, w = prob
    monkeypatch.setattr(cl.KroneckerFactored, "to_dense", lambda self: pytest.fail("formed dense"))
    assert len(cl.spectrum(problem, w, "kflr")) == problem.n_params


# Not ('ggn', 'SA'): a GGN's smallest eigenvalues cluster near 0 (gaps ~1e-6 of the spread),
# which plain Lanczos cannot resolve; that case is the clear-error test below.
@pytest.mark.parametrize("kind,which", [("hessian", "LA"), ("hessian", "SA"), ("hessian", "LM"),
                                        ("hessian", "BE"), ("ggn", "LA"), ("ggn", "LM"), ("ggn", "BE")])
def test_lanczos_top_k_matches_dense(monkeypatch, which, kind):
    # MSE and N·K > P: the GGN has no null space (Lanczos cannot resolve a many-fold eigenvalue)
    problem, w = make_problem([3, 6, 5, 3], "tanh", "mse", 40, scale=1.0)
    dense = cl.spectrum(problem, w, kind)
    scale = np.abs(dense).max()
    monkeypatch.setattr(linalg, "DENSE_LIMIT", 10)             # force the Lanczos path
    monkeypatch.setattr(linalg, "matrix", lambda *a, **k: pytest.fail("built the matrix"))
    vals, vecs = cl.spectrum(problem, w, kind, k=6, which=which, vectors=True)
    assert np.abs(vals - dense[linalg._select(dense, 6, which)]).max() < 1e-9 * scale
    M = DENSE_REFS[kind](problem, w)
    assert np.abs(M @ vecs - vecs * vals).max() < 1e-7 * scale


def test_lanczos_non_convergence_is_a_clear_error():
    from scipy.sparse.linalg import ArpackNoConvergence
    problem, w = make_problem([3, 6, 5, 3], "tanh", "mse", 40, scale=1.0)
    with pytest.raises(ArpackNoConvergence, match="clustered.*ncv or maxiter"):
        linalg.lanczos_eigs(cl.operator(problem, w, "ggn"), 6, "SA", maxiter=3)


@pytest.mark.parametrize("kind", ["hessian", "ggn", "kflr", "diagonal", "empirical_fisher"])
def test_layer_spectra_are_block_spectra(prob, kind):
    problem, w = prob
    blocks = cl.matrix(problem, w, kind).blocks()
    for vals, B in zip(cl.layer_spectra(problem, w, kind), blocks):
        assert oracles.rel(vals, np.linalg.eigvalsh(B)) < 1e-10


def test_spectrum_bad_input(prob):
    problem, w = prob
    with pytest.raises(ValueError, match="unknown curvature kind"):
        cl.spectrum(problem, w, "bfgs")
    with pytest.raises(ValueError, match="k must be between"):
        cl.spectrum(problem, w, "ggn", k=0)
    with pytest.raises(ValueError, match="layer must be"):
        cl.spectrum(problem, w, "ggn", layer=7)


def _diag_op(values):
    return np.diag(np.asarray(values, dtype=float))


def test_slq_quadrature_is_exact_for_low_degree_moments():
    problem, w = make_problem([3, 5, 3], "tanh", "mse", 8)
    G = oracles.GGN(problem, w)
    P = len(G)
    nodes, weights = cl.slq(G, probes=1, steps=8, seed=3)
    v = np.random.default_rng(3).choice([-1.0, 1.0], size=P)    # the same probe slq drew
    for p in range(1, 15):                                       # exact below degree 2m = 16
        want = v @ np.linalg.matrix_power(G, p) @ v / (v @ v)
        assert abs(np.sum(weights * nodes ** p) - want) < 1e-8 * abs(want)


def test_slq_moments_estimate_normalised_traces():
    problem, w = make_problem([3, 5, 3], "tanh", "mse", 8)
    G = oracles.GGN(problem, w)
    nodes, weights = cl.slq(G, probes=400, steps=10, seed=0)
    for p in (1, 2, 3):
        est = np.mean(np.sum(weights * nodes ** p, axis=1))
        assert abs(est - np.trace(np.linalg.matrix_power(G, p)) / len(G)) < 0.1 * abs(est)


def test_slq_density_integrates_to_one_and_finds_the_clusters():
    vals = np.r_[np.full(60, 1.0), np.full(40, 5.0)]
    t, dens = cl.slq_density(_diag_op(vals), probes=20, steps=10, sigma=0.05)
    assert abs(np.trapezoid(dens, t) - 1) < 1e-12
    mass_low = np.trapezoid(np.where(t < 3, dens, 0), t)
    assert abs(mass_low - 0.6) < 0.1
    assert dens[np.argmin(abs(t - 3))] < 1e-6 * dens.max()


def test_slq_density_on_curvature_operator_matches_dense_histogram():
    problem, w = make_problem([4, 8, 3], "relu", "cross_entropy", 20, scale=1.0)
    op = cl.operator(problem, w, "hessian")
    vals = cl.spectrum(problem, w, "hessian")
    t, dens = cl.slq_density(op, probes=30, steps=problem.n_params, sigma=0.02 * np.ptp(vals))
    # with as many steps as parameters, each probe's quadrature nodes are the eigenvalues
    cdf = np.cumsum(dens) * (t[1] - t[0])
    median = t[np.searchsorted(cdf, 0.5)]
    assert abs(median - np.median(vals)) < 0.1 * np.ptp(vals)


def test_hutchinson_is_exact_on_diagonal_matrices_and_converges_otherwise():
    d = np.arange(1.0, 21.0)
    est = cl.hutchinson(_diag_op(d), samples=10)
    assert est.trace == pytest.approx(d.sum(), rel=1e-14) and est.trace_se == 0
    assert np.allclose(est.diag, d)
    problem, w = make_problem([3, 6, 3], "tanh", "cross_entropy", 10)
    H = oracles.H(problem, w)
    op = cl.operator(problem, w, "hessian")
    errs = []
    for S in (10, 2000):
        e = cl.hutchinson(op, samples=S, seed=1)
        errs.append(abs(e.trace - np.trace(H)))
        assert errs[-1] < 4 * e.trace_se + 1e-12
    assert errs[1] < errs[0]
    e = cl.hutchinson(op, samples=4000, seed=2)
    assert np.max(np.abs(e.diag - np.diag(H)) / (e.diag_se + 1e-15)) < 5


def test_cg_solves_and_stops_by_martens_rule():
    problem, w = make_problem([3, 8, 3], "tanh", "cross_entropy", 30)
    G = oracles.GGN(problem, w) + 1e-3 * np.eye(problem.n_params)
    b = np.random.default_rng(0).standard_normal(problem.n_params)
    res = cl.linalg.cg(lambda v: G @ v, b, maxiter=2000, martens=False, tol=1e-12)
    assert oracles.rel(res.x, np.linalg.solve(G, b)) < 1e-6
    early = cl.linalg.cg(lambda v: G @ v, b, maxiter=2000, eps=1e-2)
    assert early.reason.startswith("Martens") and early.iterations < res.iterations
    assert [i for i, _ in early.iterates] == sorted(i for i, _ in early.iterates)
    neg = cl.linalg.cg(lambda v: -v, b)
    assert neg.reason == "negative curvature"
