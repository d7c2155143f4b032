import numpy as np
import pytest
from scipy.sparse.linalg import LinearOperator, aslinearoperator

import curvlab as cl
from curvlab import estimators as est
from tests.conftest import make_problem

TRACE = {"hutchinson": est.hutchinson_trace, "hutchpp": est.hutchpp, "xtrace": est.xtrace}
DIAG = {"hutchinson": est.hutchinson_diag, "xdiag": est.xdiag}


def low_rank(n, r, seed=0):
    """A = B Bᵀ with B (n, r) Gaussian: PSD of rank r (almost surely)."""
    B = np.random.default_rng(seed).standard_normal((n, r))
    return B @ B.T


def wishart(n, seed=0, ratio=2):
    """A = B Bᵀ / (ratio n), B (n, ratio n): full rank, eigenvalues in about
    [(1 − 1/√ratio)², (1 + 1/√ratio)²]."""
    B = np.random.default_rng(seed).standard_normal((n, ratio * n))
    return B @ B.T / (ratio * n)


def decaying(n, seed=0, power=2.0):
    """U diag(k^-power) Uᵀ with U a random orthogonal matrix: a rapidly decaying spectrum."""
    U, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return (U * np.arange(1, n + 1) ** -power) @ U.T


def rel(a, b):
    return np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b)


class Counting(LinearOperator):
    """A dense matrix as a LinearOperator that counts the products (block columns count)."""

    def __init__(self, A):
        super().__init__(np.float64, A.shape)
        self.A, self.products = A, 0

    def _matvec(self, v):
        self.products += 1
        return self.A @ v

    def _matmat(self, V):
        self.products += V.shape[1]
        return self.A @ V

    _rmatvec = _matvec


class AtOnly:
    """Anything with `.shape` and `@`."""

    def __init__(self, A):
        self.A, self.shape = A, A.shape

    def __matmul__(self, v):
        return self.A @ v


# exactness where theory says so ------------------------------------------------------------------

@pytest.mark.parametrize("r", [1, 7, 10])
def test_hutchpp_is_exact_when_rank_at_most_a_third_of_matvecs(r):
    # bound: rank(A) <= k = matvecs/3 (then Q = orth(A S) holds range(A) and QQᵀA = A)
    A = low_rank(80, r, seed=r)
    assert rel(est.hutchpp(A, 30).value, np.trace(A)) < 1e-12


def test_hutchpp_bound_is_sharp():
    A = low_rank(80, 11)                       # rank 11 > k = 10
    assert rel(est.hutchpp(A, 30).value, np.trace(A)) > 1e-6


@pytest.mark.parametrize("r", [1, 5, 10])
def test_xtrace_and_xdiag_are_exact_when_rank_below_the_test_vectors(r):
    # bound: rank(A) <= m − 1 with m = matvecs/2 = 11 test vectors, so each leave-one-out
    # basis Q_(i) (A times m − 1 test vectors) holds range(A); for r < 10 the QR of A W is
    # rank-deficient and the exactness goes through the singular-R path
    A = low_rank(80, r, seed=r)
    assert rel(est.xtrace(A, 22).value, np.trace(A)) < 1e-12
    assert rel(est.xdiag(A, 22).value, np.diag(A)) < 1e-12


def test_xtrace_and_xdiag_bound_is_sharp():
    A = low_rank(80, 11)                       # rank 11 = m: Q_(i) has only 10 columns
    assert rel(est.xtrace(A, 22).value, np.trace(A)) > 1e-6
    assert rel(est.xdiag(A, 22).value, np.diag(A)) > 1e-6


def test_zero_matrix_gives_zero():
    A = np.zeros((12, 12))
    for fn in [*TRACE.values(), est.hutchinson_frobenius]:
        assert fn(A, 6).value == 0
    for fn in DIAG.values():
        assert np.all(fn(A, 6).value == 0)


# unbiasedness and accuracy on full-rank matrices ------------------------------------------------

SEEDS = range(200)


@pytest.mark.parametrize("name", sorted(TRACE))
def test_trace_estimators_are_unbiased(name):
    A = wishart(40)
    vals = np.array([TRACE[name](A, 6, seed=s).value for s in SEEDS])
    z = (vals.mean() - np.trace(A)) / (vals.std(ddof=1) / np.sqrt(len(vals)))
    assert abs(z) < 4


@pytest.mark.parametrize("name", sorted(DIAG))
def test_diagonal_estimators_are_unbiased(name):
    A = wishart(40)
    vals = np.array([DIAG[name](A, 6, seed=s).value for s in SEEDS])
    z = (vals.mean(0) - np.diag(A)) / (vals.std(0, ddof=1) / np.sqrt(len(vals)))
    assert np.abs(z).max() < 5                 # 40 entries, each about N(0, 1)


def test_frobenius_is_unbiased_and_its_se_is_calibrated():
    A = wishart(40)
    fro2 = np.linalg.norm(A) ** 2
    runs = [est.hutchinson_frobenius(A, 6, seed=s) for s in SEEDS]
    vals = np.array([r.value for r in runs])
    assert abs(vals.mean() - fro2) < 4 * vals.std(ddof=1) / np.sqrt(len(vals))
    assert 0.7 < np.mean([r.se for r in runs]) / vals.std(ddof=1) < 1.3


def test_hutchinson_se_is_calibrated():
    A = wishart(40)
    runs = [est.hutchinson_trace(A, 8, seed=s) for s in SEEDS]
    spread = np.std([r.value for r in runs], ddof=1)
    assert 0.7 < np.mean([r.se for r in runs]) / spread < 1.3


def median_error(fn, A, exact, matvecs, seeds=20):
    return np.median([rel(fn(A, matvecs, seed=s).value, exact) for s in range(seeds)])


@pytest.mark.parametrize("name", sorted(TRACE) + ["frobenius"])
def test_trace_error_decreases_with_matvecs(name):
    A = wishart(300, ratio=1)
    fn, exact = TRACE.get(name, est.hutchinson_frobenius), np.trace(A)
    if name == "frobenius":
        exact = np.linalg.norm(A) ** 2
    small, large = median_error(fn, A, exact, 12), median_error(fn, A, exact, 192)
    assert large < small / 2                   # Monte Carlo alone gives 1/√16 = 1/4


@pytest.mark.parametrize("name", sorted(DIAG))
def test_diagonal_error_decreases_with_matvecs(name):
    A = wishart(300, ratio=1)
    fn = DIAG[name]
    assert median_error(fn, A, np.diag(A), 192) < median_error(fn, A, np.diag(A), 12) / 2


def test_xtrace_and_hutchpp_beat_hutchinson_on_a_decaying_spectrum():
    A = decaying(200)
    t, d = np.trace(A), np.diag(A)
    hutch = median_error(est.hutchinson_trace, A, t, 48)
    assert median_error(est.xtrace, A, t, 48) < hutch / 10
    assert median_error(est.hutchpp, A, t, 48) < hutch / 5
    assert median_error(est.xdiag, A, d, 48) < median_error(est.hutchinson_diag, A, d, 48) / 5


def test_xtrace_se_tracks_its_error():
    A = decaying(200)
    runs = [est.xtrace(A, 40, seed=s) for s in range(20)]
    rmse = np.sqrt(np.mean([(r.value - np.trace(A)) ** 2 for r in runs]))
    assert 0.2 < np.mean([r.se for r in runs]) / rmse < 5


# operators, blocks, counts ----------------------------------------------------------------------

@pytest.mark.parametrize("fn", [*TRACE.values(), *DIAG.values(), est.hutchinson_frobenius],
                         ids=lambda f: f.__name__)
def test_array_linear_operator_and_matmul_object_agree_and_counts_are_exact(fn):
    A = wishart(50)
    ref = fn(A, 24, seed=3).value
    for M in (aslinearoperator(A), AtOnly(A)):
        assert rel(fn(M, 24, seed=3).value, ref) < 1e-12
    counted = Counting(A)
    out = fn(counted, 24, seed=3)
    assert out.matvecs == counted.products == 24


def test_same_seed_same_estimate_other_seed_other_estimate():
    A = wishart(30)
    assert est.xtrace(A, 10, seed=1).value == est.xtrace(A, 10, seed=1).value
    assert est.xtrace(A, 10, seed=1).value != est.xtrace(A, 10, seed=2).value


def test_gaussian_test_vectors():
    A = low_rank(40, 4)
    assert rel(est.xtrace(A, 10, distribution="gaussian").value, np.trace(A)) < 1e-12
    vals = [est.hutchinson_trace(A, 6, seed=s, distribution="gaussian").value for s in SEEDS]
    assert abs(np.mean(vals) - np.trace(A)) < 4 * np.std(vals, ddof=1) / np.sqrt(len(vals))


def test_reprs_are_short():
    A = wishart(30)
    assert repr(est.xtrace(A, 10)).startswith("Estimate(value=")
    assert "<array (30,)>" in repr(est.xdiag(A, 10))
    assert repr(est.inverse(A, np.ones(30))).startswith("InverseResult(x=<array (30,)>")


# inverse products -------------------------------------------------------------------------------

INVERSE = [("cg", {}), ("lsmr", {}), ("neumann", {"steps": 3000, "rtol": 1e-13})]


@pytest.mark.parametrize("damping", [0.0, 0.3])
@pytest.mark.parametrize("method,options", INVERSE, ids=[m for m, _ in INVERSE])
def test_inverse_matches_solve(method, options, damping):
    A = wishart(60)                            # eigenvalues about [0.09, 2.9]
    v = np.random.default_rng(1).standard_normal(60)
    want = np.linalg.solve(A + damping * np.eye(60), v)
    counted = Counting(A)
    out = est.inverse(counted, v, damping, method, **options)
    assert rel(out.x, want) < 1e-8
    assert out.residual == pytest.approx(rel((A + damping * np.eye(60)) @ out.x, v), rel=1e-6)
    assert out.residual < 1e-9
    assert out.matvecs == counted.products


def test_inverse_of_an_operator_and_zero_v():
    A = wishart(30)
    v = np.arange(30.0)
    want = np.linalg.solve(A + np.eye(30), v)
    assert rel(est.inverse(AtOnly(A), v, 1.0).x, want) < 1e-8
    out = est.inverse(A, np.zeros(30), method="neumann")
    assert np.all(out.x == 0) and out.residual == 0 and out.matvecs == 0


def test_neumann_truncation_is_the_partial_sum():
    A = wishart(20)
    v = np.ones(20)
    alpha, K, delta = 0.3, 7, 0.2
    M = np.eye(20) - alpha * (A + delta * np.eye(20))
    want = alpha * sum(np.linalg.matrix_power(M, k) @ v for k in range(K + 1))
    out = est.inverse(A, v, delta, "neumann", alpha=alpha, steps=K, power_steps=5)
    assert rel(out.x, want) < 1e-13
    assert out.iterations == K and out.matvecs == 5 + K + 1


def test_neumann_refuses_a_divergent_alpha():
    A = wishart(40)
    lam = np.linalg.eigvalsh(A)[-1]
    with pytest.raises(ValueError, match=r"alpha \* lambda_max ≈ .* >= 2 .* diverges"):
        est.inverse(A, np.ones(40), method="neumann", alpha=3 / lam)


def test_neumann_detects_divergence_the_power_estimate_missed():
    # one power step gives the Rayleigh quotient of a sign vector, about tr(A)/n = 1, so the
    # check α λ̂ < 2 passes, while α λ_max ≈ 2.9 > 2: the residual grows and is caught
    A = wishart(40)
    assert np.linalg.eigvalsh(A)[-1] > 2
    with pytest.raises(ValueError, match="residual grew .* diverges"):
        est.inverse(A, np.ones(40), method="neumann", alpha=1.0, power_steps=1)


# bad input --------------------------------------------------------------------------------------

A20 = wishart(20)


@pytest.mark.parametrize("fn,matvecs,message", [
    (est.hutchpp, 10, r"hutchpp: matvecs must be a multiple of 3 \(k = matvecs/3"),
    (est.xtrace, 7, r"xtrace: matvecs must be even \(m = matvecs/2 test vectors"),
    (est.xdiag, 9, r"xdiag: matvecs must be even"),
    (est.hutchinson_trace, 20, r"below the dimension n = 20 .* exact trace\), got 20"),
    (est.hutchinson_diag, 25, r"hutchinson_diag: matvecs must be below .* n = 20 .*diagonal"),
    (est.hutchpp, 21, r"hutchpp: matvecs must be below the dimension n = 20"),
    (est.xtrace, 20, r"xtrace: matvecs must be below the dimension n = 20"),
    (est.xdiag, 22, r"xdiag: matvecs must be below the dimension n = 20"),
    (est.hutchinson_frobenius, 30, r"below the dimension n = 20 .* exact norm"),
    (est.hutchpp, 3, r"hutchpp: matvecs must be at least 6, got 3"),
    (est.xtrace, 2, r"xtrace: matvecs must be at least 4, got 2"),
    (est.hutchinson_trace, 1, r"hutchinson_trace: matvecs must be at least 2, got 1"),
    (est.hutchinson_trace, 6.5, r"matvecs must be an integer, got 6.5"),
], ids=lambda x: getattr(x, "__name__", None) or str(x)[:20])
def test_bad_matvecs(fn, matvecs, message):
    with pytest.raises(ValueError, match=message):
        fn(A20, matvecs)


@pytest.mark.parametrize("fn", [*TRACE.values(), *DIAG.values(), est.hutchinson_frobenius,
                                lambda op, _: est.inverse(op, np.ones(3))])
def test_non_square_operator(fn):
    with pytest.raises(ValueError, match=r"op must be a square matrix .*, got shape \(3, 4\)"):
        fn(np.ones((3, 4)), 2)


def test_bad_distribution():
    with pytest.raises(ValueError, match="unknown distribution 'normal'"):
        est.xtrace(A20, 6, distribution="normal")


def test_bad_inverse_input():
    v = np.ones(20)
    with pytest.raises(ValueError, match="damping must be a finite number >= 0, got -0.1"):
        est.inverse(A20, v, damping=-0.1)
    with pytest.raises(ValueError,
                       match=r"unknown method 'gmres'; choose one of \['cg', 'lsmr', 'neumann'\]"):
        est.inverse(A20, v, method="gmres")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['steps'\] for method 'cg'"):
        est.inverse(A20, v, method="cg", steps=3)
    with pytest.raises(ValueError, match=r"v must have shape \(20,\), got \(19,\)"):
        est.inverse(A20, np.ones(19))
    with pytest.raises(ValueError, match="v contains 1 NaN or infinite entries"):
        est.inverse(A20, np.r_[np.ones(19), np.nan])
    with pytest.raises(ValueError, match="neumann: alpha must be > 0, got -1.0"):
        est.inverse(A20, v, method="neumann", alpha=-1)
    with pytest.raises(ValueError, match="λ_max ≈ .* <= 0"):
        est.inverse(-A20, v, method="neumann")


# on a network's GGN -----------------------------------------------------------------------------

def test_estimators_on_a_ggn_operator():
    problem, w = make_problem([3, 5, 4, 3], "tanh", "cross_entropy", 6)
    G = cl.ggn(problem, w)
    op = cl.operator(problem, w, "ggn")
    P = G.shape[0]
    assert P == 59
    # the cross-entropy output Hessian has rank K − 1 = 2 per sample: rank G <= N (K − 1) = 12
    r = np.linalg.matrix_rank(G)
    assert r <= 12
    t, d = np.trace(G), np.diag(G)
    # exact: Hutch++ with k = 12 >= rank, XTrace / XDiag with m = 13 >= rank + 1 test vectors
    assert rel(est.hutchpp(op, 36).value, t) < 1e-10
    assert rel(est.xtrace(op, 26).value, t) < 1e-10
    assert rel(est.xdiag(op, 26).value, d) < 1e-10
    # near P: still exact, and the Monte Carlo estimators within 4 standard errors
    assert rel(est.hutchpp(op, 57).value, t) < 1e-10
    assert rel(est.xtrace(op, 58).value, t) < 1e-10
    h = est.hutchinson_trace(op, 58)
    assert abs(h.value - t) < 4 * h.se
    hd = est.hutchinson_diag(op, 58)
    assert np.all(np.abs(hd.value - d) <= 4 * hd.se + 1e-12)
    f = est.hutchinson_frobenius(op, 58)
    assert abs(f.value - np.linalg.norm(G) ** 2) < 4 * f.se
    # below the bound XTrace is only approximate, but better than Hutchinson
    assert rel(est.xtrace(op, 16).value, t) < rel(est.hutchinson_trace(op, 16).value, t)
    # inverses of the damped GGN
    g = problem.grad(w)
    want = np.linalg.solve(G + 0.1 * np.eye(P), g)
    for method, options in INVERSE:
        assert rel(est.inverse(op, g, 0.1, method, **options).x, want) < 1e-8
