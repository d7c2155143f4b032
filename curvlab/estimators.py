"""Randomized trace, diagonal and norm estimators, and inverse products, for any symmetric
matrix A given as a dense array, a scipy `LinearOperator` or any object with `.shape` and `@`.

Costs are counted in matrix-vector products with A (a block product A V of Q columns counts
Q); products are taken in blocks of at most BLOCK columns. Test vectors are Rademacher
(independent ±1 entries) unless `distribution="gaussian"`, drawn from
`np.random.default_rng(seed)`, so the same seed gives the same estimate.

- `hutchinson_trace`, `hutchinson_diag`, `hutchinson_frobenius`: plain Monte Carlo, error
  ∝ 1/√matvecs (Hutchinson 1989; Bekas, Kokiopoulou & Saad 2007 for the diagonal).
- `hutchpp`: Hutch++ (Meyer, Musco, Musco & Woodruff 2021), a low-rank sketch plus Hutchinson
  on the rest; error ∝ 1/matvecs for PSD A.
- `xtrace`, `xdiag`: XTrace and XDiag (Epperly, Tropp & Webber 2024, SIMAX; arXiv 2301.07825),
  the exchangeable leave-one-out versions that use every test vector both in the sketch and
  in the Monte Carlo correction.
- `inverse`: (A + δI)⁻¹ v by conjugate gradients, LSMR or a truncated Neumann series.
"""

from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_triangular
from scipy.sparse.linalg import LinearOperator, cg, lsmr

from ._checks import choice, finite_array, nonnegative, short_repr
from .linalg import as_operator

BLOCK = 64                       # columns per block product A V
DISTRIBUTIONS = {"rademacher", "gaussian"}


@dataclass
class Estimate:
    """A scalar estimate (a trace or ‖A‖_F²), its standard error (nan where the method has
    none) and the matrix-vector products it cost."""

    __repr__ = short_repr

    value: float
    se: float
    matvecs: int
    method: str


@dataclass
class DiagonalEstimate:
    """An estimate of diag(A), the standard error of each entry, and the products it cost."""

    __repr__ = short_repr

    value: np.ndarray
    se: np.ndarray
    matvecs: int
    method: str


@dataclass
class InverseResult:
    """x ≈ (A + δI)⁻¹ v, the products with A spent (including the one that checks the
    residual), the relative residual ‖(A + δI)x − v‖ / ‖v‖ and the solver's iterations."""

    __repr__ = short_repr

    x: np.ndarray
    matvecs: int
    residual: float
    method: str
    iterations: int


# input checks and helpers --------------------------------------------------------------------

def _square(op):
    """`op` as a LinearOperator, refusing anything that is not square."""
    shape = getattr(op, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"op must be a square matrix or operator, got shape {shape}")
    return as_operator(op)


def _count(name, matvecs, n, least, multiple=1, why="", what="trace"):
    """Check a product budget: an integer >= least, a multiple of `multiple`, below n."""
    if isinstance(matvecs, bool) or not float(matvecs).is_integer():
        raise ValueError(f"{name}: matvecs must be an integer, got {matvecs!r}")
    m = int(matvecs)
    if m % multiple:
        raise ValueError(f"{name}: matvecs must be {why}, got {m}")
    if m < least:
        raise ValueError(f"{name}: matvecs must be at least {least}, got {m}")
    if m >= n:
        raise ValueError(f"{name}: matvecs must be below the dimension n = {n} (n products with "
                         f"the unit vectors give the exact {what}), got {m}")
    return m


def _vectors(rng, n, m, distribution):
    choice("distribution", distribution, DISTRIBUTIONS)
    if distribution == "gaussian":
        return rng.standard_normal((n, m))
    return rng.choice([-1.0, 1.0], size=(n, m))


def _apply(op, V):
    """A V in blocks of at most BLOCK columns (V.shape[1] products)."""
    out = np.empty((op.shape[0], V.shape[1]))
    for c in range(0, V.shape[1], BLOCK):
        out[:, c:c + BLOCK] = op.matmat(V[:, c:c + BLOCK])
    return out


def _se(samples, axis=-1):
    m = samples.shape[axis]
    return np.std(samples, axis=axis, ddof=1) / np.sqrt(m)


def _leave_one_out(R):
    """Unit vectors s_i with Q_(i)Q_(i)ᵀ = Q (I − s_i s_iᵀ) Qᵀ, Q_(i) an orthonormal basis of
    Y with column i left out, for Y = QR: s_i ⊥ every column of R but the i-th, so s_i is the
    normalised i-th column of R⁻ᵀ. When Y is rank-deficient (rank A < m) R is singular; its
    tiny pivots are raised to m·ε·max|R_jj|, a perturbation of Y at rounding level that makes
    each s_i a direction of Q outside range(Y), so every Q_(i) still holds range(A)."""
    m = R.shape[0]
    d = np.diag(R)
    top = np.abs(d).max()
    floor = m * np.finfo(np.float64).eps * top if top > 0 else 1.0
    small = np.flatnonzero(np.abs(d) < floor)
    if small.size:
        R = R.copy()
        R[small, small] = np.where(d[small] < 0, -floor, floor)
    S = solve_triangular(R, np.eye(m)).T          # R⁻ᵀ
    return S / np.linalg.norm(S, axis=0)


def _sketch(op, n, m, seed, distribution):
    """W (n, m) test vectors, Y = A W, Y = QR, S (leave-one-out vectors) and Z = A Q."""
    W = _vectors(np.random.default_rng(seed), n, m, distribution)
    Y = _apply(op, W)
    Q, R = np.linalg.qr(Y)
    S = _leave_one_out(R)
    Z = _apply(op, Q)
    return W, Y, Q, S, Z


# trace ------------------------------------------------------------------------------------------

def hutchinson_trace(op, matvecs, seed=0, distribution="rademacher"):
    """tr(A) ≈ (1/m) Σ wᵢᵀ A wᵢ over m = matvecs test vectors (unbiased; variance
    2(‖A‖_F² − Σ A_jj²)/m for Rademacher). The standard error is the sample standard deviation
    / √m. Cost: matvecs products."""
    op = _square(op)
    n = op.shape[0]
    m = _count("hutchinson_trace", matvecs, n, least=2)
    W = _vectors(np.random.default_rng(seed), n, m, distribution)
    samples = np.sum(W * _apply(op, W), axis=0)
    return Estimate(float(samples.mean()), float(_se(samples)), m, "hutchinson")


def hutchpp(op, matvecs, seed=0, distribution="rademacher"):
    """Hutch++ (Meyer, Musco, Musco & Woodruff 2021). With k = matvecs/3 and test matrices
    S, G (n, k): Q = orth(A S), then

        tr(A) ≈ tr(Qᵀ A Q) + (1/k) tr(Gᵀ (I − QQᵀ) A (I − QQᵀ) G),

    unbiased; exact when rank(A) ≤ k (then QQᵀA = A). `se` is the standard error of the
    Hutchinson part given Q. Cost: matvecs products (k each for A S, A Q, A (I − QQᵀ) G)."""
    op = _square(op)
    n = op.shape[0]
    m = _count("hutchpp", matvecs, n, least=6, multiple=3,
               why="a multiple of 3 (k = matvecs/3 products each for A S, A Q and the "
                   "Hutchinson part)")
    k = m // 3
    rng = np.random.default_rng(seed)
    S, G = _vectors(rng, n, k, distribution), _vectors(rng, n, k, distribution)
    Q, _ = np.linalg.qr(_apply(op, S))
    low = np.trace(Q.T @ _apply(op, Q))
    G = G - Q @ (Q.T @ G)
    samples = np.sum(G * _apply(op, G), axis=0)
    return Estimate(float(low + samples.mean()), float(_se(samples)), m, "hutch++")


def xtrace(op, matvecs, seed=0, distribution="rademacher"):
    """XTrace (Epperly, Tropp & Webber 2024). m = matvecs/2 test vectors W, Y = A W = QR; the
    leave-one-out basis Q_(i) spans A W without column i, Q_(i)Q_(i)ᵀ = Q (I − s_i s_iᵀ) Qᵀ
    (see `_leave_one_out`), and

        tr(A) ≈ (1/m) Σᵢ [tr(Q_(i)ᵀ A Q_(i)) + wᵢᵀ (I − Q_(i)Q_(i)ᵀ) A (I − Q_(i)Q_(i)ᵀ) wᵢ],

    unbiased (wᵢ is independent of Q_(i)); exact when rank(A) ≤ m − 1 = matvecs/2 − 1 (then
    each Q_(i) holds range(A)). `se` is the standard deviation of the m exchangeable terms /
    √m. Cost: matvecs products (A W and A Q) plus O(n m²) flops."""
    op = _square(op)
    n = op.shape[0]
    m = _count("xtrace", matvecs, n, least=4, multiple=2,
               why="even (m = matvecs/2 test vectors w, each costing A w and A q)") // 2
    W, Y, Q, S, Z = _sketch(op, n, m, seed, distribution)
    H = Q.T @ Z
    H = 0.5 * (H + H.T)
    C, T = Q.T @ W, Q.T @ Y                     # T = Qᵀ A W = (A Q)ᵀ W for symmetric A
    D = C - S * np.sum(S * C, axis=0)           # dᵢ: (I − Q_(i)Q_(i)ᵀ) wᵢ = wᵢ − Q dᵢ
    terms = (np.trace(H) - np.sum(S * (H @ S), axis=0)           # tr(Q_(i)ᵀ A Q_(i))
             + np.sum(W * Y, axis=0) - 2 * np.sum(T * D, axis=0) + np.sum(D * (H @ D), axis=0))
    return Estimate(float(terms.mean()), float(_se(terms)), 2 * m, "xtrace")


# diagonal ---------------------------------------------------------------------------------------

def hutchinson_diag(op, matvecs, seed=0, distribution="rademacher"):
    """diag(A) ≈ (1/m) Σ wᵢ ⊙ A wᵢ over m = matvecs test vectors (unbiased; for Rademacher,
    entry j has variance Σ_{k≠j} A_jk² / m), with per-entry standard errors. Cost: matvecs
    products."""
    op = _square(op)
    n = op.shape[0]
    m = _count("hutchinson_diag", matvecs, n, least=2, what="diagonal")
    W = _vectors(np.random.default_rng(seed), n, m, distribution)
    samples = W * _apply(op, W)
    return DiagonalEstimate(samples.mean(axis=1), _se(samples), m, "hutchinson")


def xdiag(op, matvecs, seed=0, distribution="rademacher"):
    """XDiag (Epperly, Tropp & Webber 2024): with W, Y = A W = QR, S and Q_(i) as in `xtrace`,

        diag(A) ≈ (1/m) Σᵢ [diag(Q_(i)Q_(i)ᵀ A) + wᵢ ⊙ (I − Q_(i)Q_(i)ᵀ) A wᵢ],

    where diag(Q_(i)Q_(i)ᵀA) = diag(Q Zᵀ) − (Q sᵢ) ⊙ (Z sᵢ) with Z = A Q (Qᵀ A = Zᵀ for
    symmetric A). Unbiased; exact when rank(A) ≤ m − 1 = matvecs/2 − 1.
    `se` per entry: the standard deviation of the m exchangeable terms / √m. Cost: matvecs
    products plus O(n m²) flops."""
    op = _square(op)
    n = op.shape[0]
    m = _count("xdiag", matvecs, n, least=4, multiple=2, what="diagonal",
               why="even (m = matvecs/2 test vectors w, each costing A w and A q)") // 2
    W, Y, Q, S, Z = _sketch(op, n, m, seed, distribution)
    T = Q.T @ Y
    rest = Y - Q @ (T - S * np.sum(S * T, axis=0))          # (I − Q_(i)Q_(i)ᵀ) A wᵢ
    terms = np.sum(Q * Z, axis=1)[:, None] - (Q @ S) * (Z @ S) + W * rest
    return DiagonalEstimate(terms.mean(axis=1), _se(terms), 2 * m, "xdiag")


# norm -------------------------------------------------------------------------------------------

def hutchinson_frobenius(op, matvecs, seed=0, distribution="rademacher"):
    """‖A‖_F² ≈ (1/m) Σ ‖A wᵢ‖² over m = matvecs test vectors (unbiased: E wwᵀ = I, so
    E ‖Aw‖² = tr(AᵀA)), with its standard error. Cost: matvecs products."""
    op = _square(op)
    n = op.shape[0]
    m = _count("hutchinson_frobenius", matvecs, n, least=2, what="norm")
    W = _vectors(np.random.default_rng(seed), n, m, distribution)
    samples = np.sum(_apply(op, W) ** 2, axis=0)
    return Estimate(float(samples.mean()), float(_se(samples)), m, "hutchinson")


# inverse products -------------------------------------------------------------------------------

INVERSE_OPTIONS = {"cg": {"rtol", "atol", "maxiter", "x0", "M"},
                   "lsmr": {"atol", "btol", "conlim", "maxiter", "x0"},
                   "neumann": {"alpha", "steps", "rtol", "power_steps"}}


class _Counted:
    """v -> (A + δI) v, counting the products with A."""

    def __init__(self, op, damping):
        self.op, self.damping, self.count = op, damping, 0

    def __call__(self, v):
        v = np.asarray(v, dtype=np.float64)
        if v.ndim == 1:
            self.count += 1
            return self.op.matvec(v) + self.damping * v
        self.count += v.shape[1]
        return self.op.matmat(v) + self.damping * v

    def operator(self):
        n = self.op.shape[0]
        return LinearOperator((n, n), matvec=self, rmatvec=self, matmat=self, rmatmat=self,
                              dtype=np.float64)


def inverse(op, v, damping=0.0, method="cg", **options):
    """x ≈ (A + δI)⁻¹ v for symmetric positive (semi-)definite A and δ = damping >= 0.

    method 'cg': `scipy.sparse.linalg.cg` (options rtol (default 1e-10), atol, maxiter
    (default 10 n), x0, M); one product per iteration.
    method 'lsmr': `scipy.sparse.linalg.lsmr` on the operator A + δI (options atol, btol
    (default 1e-12 each), conlim, maxiter (default 10 n), x0); two products per iteration
    (A and Aᵀ = A), and the minimum-norm least-squares solution when A + δI is singular.
    method 'neumann': the truncated series x = α Σ_{k=0}^{K} (I − α(A + δI))^k v, computed as
    Richardson's iteration x ← x + α (v − (A + δI) x); K = `steps` (default 100), stopping
    early once the relative residual is below `rtol` (default 0: all K terms). It converges
    iff α λ < 2 for every eigenvalue λ of A + δI, at the rate max |1 − αλ| per term (about
    κ·ln(1/tol) terms for α = 1/λ_max). α defaults to 1/λ̂, λ̂ the Rayleigh quotient after
    `power_steps` (default 20) power iterations from a Rademacher vector — an estimate of
    λ_max from below, so α λ_max ≥ 1 but below 2 unless the start is nearly orthogonal to
    the top eigenvector. The same power iterations check a given α; α λ̂ ≥ 2 raises, as does
    a residual that grows during the iteration. Cost: power_steps + K + 1 products.
    """
    op = _square(op)
    n = op.shape[0]
    v = finite_array("v", v)
    if v.shape != (n,):
        raise ValueError(f"v must have shape ({n},), got {v.shape}")
    damping = nonnegative("damping", damping)
    choice("method", method, set(INVERSE_OPTIONS))
    unknown = sorted(set(options) - INVERSE_OPTIONS[method])
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for method {method!r}; choose from "
                         f"{sorted(INVERSE_OPTIONS[method])}")
    B = _Counted(op, damping)
    vnorm = np.linalg.norm(v)
    if vnorm == 0:
        return InverseResult(np.zeros(n), 0, 0.0, method, 0)
    if method == "cg":
        opts = {"rtol": 1e-10, "atol": 0.0, "maxiter": 10 * n} | options
        steps = []
        x, _ = cg(B.operator(), v, callback=lambda xk: steps.append(1), **opts)
        iterations = len(steps)
    elif method == "lsmr":
        opts = {"atol": 1e-12, "btol": 1e-12, "maxiter": 10 * n} | options
        out = lsmr(B.operator(), v, **opts)
        x, iterations = out[0], int(out[2])
    else:
        x, iterations, rnorm = _neumann(B, v, vnorm, **options)
        return InverseResult(x, B.count, float(rnorm / vnorm), method, iterations)
    residual = float(np.linalg.norm(B(x) - v) / vnorm)
    return InverseResult(np.asarray(x, dtype=np.float64), B.count, residual, method, iterations)


def _power(B, n, steps, seed=0):
    """Rayleigh quotient after `steps` power iterations on B from a Rademacher vector."""
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"power_steps must be >= 1, got {steps}")
    x = np.random.default_rng(seed).choice([-1.0, 1.0], size=n) / np.sqrt(n)
    lam = 0.0
    for _ in range(steps):
        y = B(x)
        lam = float(x @ y)
        ynorm = np.linalg.norm(y)
        if ynorm == 0:
            break
        x = y / ynorm
    return lam


def _neumann(B, v, vnorm, alpha=None, steps=100, rtol=0.0, power_steps=20):
    steps = int(steps)
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    rtol = nonnegative("rtol", rtol)
    lam = _power(B, v.shape[0], power_steps)
    if lam <= 0:
        raise ValueError(f"neumann: the power iteration found λ_max ≈ {lam:.3g} <= 0; A + δI must "
                         "be positive (semi-)definite and non-zero")
    if alpha is None:
        alpha = 1.0 / lam
    alpha = float(alpha)
    if not np.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"neumann: alpha must be > 0, got {alpha}")
    if alpha * lam >= 2:
        raise ValueError(f"neumann: alpha * lambda_max ≈ {alpha * lam:.4g} >= 2 (alpha = "
                         f"{alpha:.4g}, lambda_max ≈ {lam:.4g} by {int(power_steps)} power "
                         "iterations), so the Neumann series diverges; use alpha < 2 / lambda_max, "
                         "or leave alpha unset for 1 / lambda_max")
    x = alpha * v                                # the k = 0 term
    r = v - B(x)
    rnorm, k = np.linalg.norm(r), 0
    while k < steps and rnorm > rtol * vnorm:
        x = x + alpha * r                        # adds the term α (I − α(A + δI))^(k+1) v
        r = v - B(x)
        rnorm, k = np.linalg.norm(r), k + 1
        if rnorm > (1 + 1e-6) * vnorm:
            raise ValueError(f"neumann: the residual grew to {rnorm / vnorm:.3g} ‖v‖ "
                             f"after {k} terms, so the Neumann series diverges (alpha * "
                             f"lambda_max >= 2; alpha = {alpha:.4g}, the power estimate "
                             f"lambda_max ≈ {lam:.4g} is low); use a smaller alpha")
    return x, k, rnorm
