"""Linear algebra on curvature: spectra (dense, Lanczos, Kronecker), stochastic Lanczos
quadrature, Hutchinson estimates, and conjugate gradients with Martens' stopping rule.

Everything here takes either a problem and a curvature kind (and builds what it needs) or a
matrix-like `op`: a dense array, a `scipy.sparse.linalg.LinearOperator`, or any object with
`@` — so the same estimators run on the exact matrix and on its approximations.
"""

from dataclasses import dataclass

import numpy as np
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, aslinearoperator, eigsh

from ._checks import choice, nonnegative, short_repr
from .curvature.base import Curvature, Operator
from .curvature.diagonal import Diagonal
from .curvature.kinds import as_matrix, is_outside, matrix
from .curvature.products import operator
from .curvature.registry import get
from .problem import Objective, Problem, as_objective

# Above this many parameters a top/bottom-k request uses Lanczos instead of dense eigh.
DENSE_LIMIT = 1500


def as_operator(op):
    """A LinearOperator for a dense array, a LinearOperator, a curvature object, or anything
    with `@` and `shape`."""
    if isinstance(op, LinearOperator):
        return op
    if isinstance(op, Curvature):
        return op.as_linear_operator()
    if isinstance(op, np.ndarray):
        return aslinearoperator(op)
    if hasattr(op, "__matmul__") and hasattr(op, "shape"):
        return LinearOperator(op.shape, matvec=lambda v: op @ v, matmat=lambda V: op @ V,
                              rmatvec=lambda v: op @ v, dtype=np.float64)
    raise TypeError(
        f"expected an array, a LinearOperator or a curvature object, got {type(op).__name__}"
    )


def _select(vals, k, which):
    """Indices of k eigenvalues (ascending `vals`) by `which`: LA, SA, LM, BE (both ends)."""
    n = len(vals)
    if which == "LA":
        idx = np.arange(n - k, n)
    elif which == "SA":
        idx = np.arange(k)
    elif which == "LM":
        idx = np.sort(np.argsort(np.abs(vals))[n - k :])
    else:
        idx = np.unique(np.concatenate([np.arange(k // 2), np.arange(n - (k - k // 2), n)]))
    return idx


def _structured_vectors(C, idx, layer):
    """Eigenvectors of a block-diagonal or diagonal curvature object for positions idx of its
    ascending spectrum (of block `layer` alone when given), from each block's own eigenpairs."""
    if isinstance(C, Diagonal):
        d = C.diag if layer is None else C.diag[C.layer_slices[layer]]
        order = np.argsort(d, kind="stable")
        return np.eye(len(d))[:, order[idx]]
    blocks = range(len(C.sizes)) if layer is None else C.layer_blocks[layer]
    pairs = [(b,) + tuple(C.block_eigh(b)) for b in blocks]
    vals = np.concatenate([lam for _, lam, _ in pairs])
    owner = np.concatenate([np.full(len(lam), i) for i, (_, lam, _) in enumerate(pairs)])
    column = np.concatenate([np.arange(len(lam)) for _, lam, _ in pairs])
    order = np.argsort(vals, kind="stable")
    start = 0 if layer is None else C.layer_slices[layer].start
    n = C.n_params if layer is None else C.layer_slices[layer].stop - start
    V = np.zeros((n, len(idx)))
    for c, g in enumerate(np.asarray(idx)):
        i, j = owner[order[g]], column[order[g]]
        b, _, U = pairs[i]
        bs = C.block_slices[b]
        V[bs.start - start:bs.stop - start, c] = U[:, j]
    return V


def spectrum(
    problem,
    w=None,
    kind="hessian",
    k=None,
    which="LA",
    vectors=False,
    layer=None,
    samples=1,
    seed=0,
    flavor="expand",
    n=None,
):
    """Eigenvalues (ascending) of a curvature matrix at w, and eigenvectors if `vectors`.

    Dispatches on the first argument: a Problem or objective (with w and kind), or your own
    matrix M — a (P, P) array, a scipy LinearOperator, or a callable v -> M v with n = P —
    as `cl.spectrum(M, k=None, n=None)`; for M, k chooses Lanczos as for the operator kinds.

    kind: any registered kind (`cl.kind_table()`); how its spectrum is found follows its
    registered structure: Kronecker-factored kinds from the products of their factors'
    eigenvalues, diagonal kinds from the diagonal, block-diagonal kinds block by block — never
    forming the P × P matrix; dense kinds by `eigh`, or, for an integer k above DENSE_LIMIT
    parameters and a kind with a matrix-free product, by Lanczos (`scipy.sparse.linalg.eigsh`).
    k=None gives the whole spectrum; an integer k gives k eigenvalues chosen by `which` ('LA'
    largest, 'SA' smallest, 'LM' largest magnitude, 'BE' both ends). `layer=l` gives the
    spectrum of the l-th diagonal block (the exact Botev blocks for the kinds that have them).
    flavor: 'expand' or 'reduce', for Kronecker kinds on layers shared over locations.
    """
    choice("which", which, {"LA", "SA", "LM", "BE"})
    if not isinstance(problem, (Problem, Objective)) and (
        isinstance(problem, (np.ndarray, LinearOperator, Curvature))
        or n is not None
        or hasattr(problem, "detach")
    ):
        return _outside_spectrum(problem, k, which, vectors, n, seed)
    if w is None:
        raise ValueError(
            "cl.spectrum: give w (the point) for a Problem or objective, or pass n=P "
            "for your own matrix as a callable v -> M v"
        )
    obj = as_objective(problem)
    P = obj.n_params if obj.n_params is not None else np.asarray(w).shape[0]
    if is_outside(kind):
        return _outside_spectrum(kind, k, which, vectors, P, seed)
    entry = get(kind)
    if layer is not None:
        if not isinstance(obj, Problem):
            raise TypeError("layer spectra need a Problem")
        L = len(obj.model.layer_slices())
        if not (isinstance(layer, (int, np.integer)) and 0 <= layer < L):
            raise ValueError(f"layer must be an integer in 0..{L - 1}, got {layer!r}")
        sl = obj.model.layer_slices()[layer]
        P = sl.stop - sl.start
    if k is not None:
        k = int(k)
        if not 1 <= k <= P:
            raise ValueError(f"k must be between 1 and {P}, got {k}")
    kk = P if k is None else k
    options = dict(samples=samples, seed=seed, flavor=flavor)

    if entry.structure != "dense":  # from the object's own structure
        C = matrix(obj, w, kind, **options)
        vals = C.eigvalsh() if layer is None else C.layer_eigvalsh(layer)
        idx = _select(vals, kk, which)
        return (vals[idx], _structured_vectors(C, idx, layer)) if vectors else vals[idx]
    if layer is not None:
        if entry.layer_blocks is not None:
            M = entry.layer_blocks(obj, w)[layer]
        else:
            M = matrix(obj, w, kind, **options).blocks()[layer]
        return _dense_select(M, kk, which, vectors)
    if k is not None and P > DENSE_LIMIT and k < P - 1 and entry.matrix_free:
        return lanczos_eigs(operator(obj, w, kind), k, which, vectors, seed)
    return _dense_select(matrix(obj, w, kind, **options).to_dense(), kk, which, vectors)


def _outside_spectrum(M, k, which, vectors, n, seed):
    """The spectrum of your own matrix: dense eigh for an array or a small operator, Lanczos for
    k eigenvalues of a large one."""
    C = as_matrix(M, n, "spectrum")
    P = C.shape[0]
    if k is not None and not 1 <= int(k) <= P:
        raise ValueError(f"k must be between 1 and {P}, got {k}")
    if isinstance(C, Operator) and k is not None and P > DENSE_LIMIT and int(k) < P - 1:
        return lanczos_eigs(C.as_linear_operator(), int(k), which, vectors, seed)
    return _dense_select(C.to_dense(), P if k is None else int(k), which, vectors)


def _dense_select(M, k, which, vectors):
    vals, vecs = np.linalg.eigh(M)
    idx = _select(vals, k, which)
    return (vals[idx], vecs[:, idx]) if vectors else vals[idx]


def lanczos_eigs(op, k, which="LA", vectors=False, seed=0, ncv=None, maxiter=None):
    """k extreme eigenpairs of a symmetric operator by implicitly restarted Lanczos (ARPACK),
    ascending; 'BE' asks ARPACK for both ends. Cost: one operator product per Lanczos step
    plus ARPACK's O(P·ncv) work per step. ncv defaults to scipy's max(2k+1, 20) for the large
    end ('LA', 'LM'); the small end of a GGN is a cluster near 0 (its null space) that needs a
    larger Krylov space, so 'SA' and 'BE' default to max(4k, 40)."""
    op = as_operator(op)
    P = op.shape[0]
    v0 = np.random.default_rng(seed).standard_normal(P)
    if ncv is None:
        ncv = max(2 * k + 1, 20) if which in ("LA", "LM") else max(4 * k, 40)
    ncv = min(P, int(ncv))
    try:
        out = eigsh(
            op, k=k, which=which, v0=v0, ncv=ncv, maxiter=maxiter, return_eigenvectors=vectors
        )
    except ArpackNoConvergence as e:
        raise ArpackNoConvergence(
            f"Lanczos found only {len(e.eigenvalues)} of {k} eigenvalues ({which}); the end of the "
            "spectrum is clustered. Pass a larger ncv or maxiter, or use the dense spectrum "
            "(k=None) on a smaller net",
            e.eigenvalues,
            e.eigenvectors,
        ) from None
    if vectors:
        vals, vecs = out
        order = np.argsort(vals)
        return vals[order], vecs[:, order]
    return np.sort(out)


def layer_spectra(problem, w, kind="hessian", **kw):
    """[spectrum of each layer's diagonal block], ascending."""
    return [spectrum(problem, w, kind, layer=l, **kw) for l in range(len(problem.model.layers))]


# Lanczos and stochastic Lanczos quadrature ---------------------------------------------------


def lanczos(op, v0, steps):
    """`steps` Lanczos steps from v0 with full reorthogonalisation (exact in float64 for small
    P). Returns the tridiagonal's (alpha, beta); stops early on an invariant subspace."""
    op = as_operator(op)
    P = op.shape[0]
    steps = min(int(steps), P)
    Q = np.zeros((steps, P))
    alpha, beta = np.zeros(steps), np.zeros(max(steps - 1, 0))
    q = v0 / np.linalg.norm(v0)
    for j in range(steps):
        Q[j] = q
        u = op.matvec(q)
        alpha[j] = q @ u
        u = u - Q[: j + 1].T @ (Q[: j + 1] @ u)  # full reorthogonalisation, twice is enough
        u = u - Q[: j + 1].T @ (Q[: j + 1] @ u)
        if j == steps - 1:
            break
        b = np.linalg.norm(u)
        if b < 1e-12 * max(abs(alpha[: j + 1]).max(), 1e-300):
            return alpha[: j + 1], beta[:j]
        beta[j] = b
        q = u / b
    return alpha, beta


def slq(op, probes=10, steps=30, seed=0):
    """Stochastic Lanczos quadrature nodes and weights, each (probes, m): for a Rademacher
    probe v/‖v‖, vᵀ f(C) v ≈ Σᵢ wᵢ f(θᵢ), exact for polynomials of degree < 2m. Averaged over
    probes, Σ wᵢ θᵢᵖ estimates trace(Cᵖ) / P."""
    op = as_operator(op)
    if int(probes) < 1 or int(steps) < 1:
        raise ValueError(f"probes and steps must be >= 1, got {probes} and {steps}")
    rng = np.random.default_rng(seed)
    nodes, weights = [], []
    m = min(int(steps), op.shape[0])
    for _ in range(int(probes)):
        v = rng.choice([-1.0, 1.0], size=op.shape[0])
        alpha, beta = lanczos(op, v, m)
        T = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
        theta, S = np.linalg.eigh(T)
        wts = S[0] ** 2
        # pad early-terminated runs with zero-weight nodes so every probe has m entries
        pad = m - len(theta)
        nodes.append(np.concatenate([theta, np.full(pad, theta[-1])]))
        weights.append(np.concatenate([wts, np.zeros(pad)]))
    return np.array(nodes), np.array(weights)


def slq_density(op, probes=10, steps=30, grid=None, sigma=None, seed=0):
    """Spectral density by SLQ: φ(t) = mean over probes of Σᵢ wᵢ N(t; θᵢ, σ²).

    grid: points t (default 1000 points over the nodes' range ± 5σ); sigma: kernel width
    (default 1% of that range). Returns (grid, density), the density normalised so that its
    trapezoid integral over the grid is 1."""
    nodes, weights = slq(op, probes, steps, seed)
    return slq_smooth(nodes, weights, grid, sigma)


def slq_smooth(nodes, weights, grid=None, sigma=None):
    """(grid, φ): SLQ nodes and weights (probes, m) smoothed into a density, a Gaussian of width
    σ at each node averaged over the probes (defaults and normalisation: `slq_density`)."""
    lo, hi = nodes.min(), nodes.max()
    if sigma is None:
        sigma = 0.01 * max(hi - lo, 1e-12 * max(abs(hi), 1.0))
    sigma = nonnegative("sigma", sigma)
    if sigma == 0:
        raise ValueError("sigma must be > 0")
    grid = (
        np.linspace(lo - 5 * sigma, hi + 5 * sigma, 1000)
        if grid is None
        else np.asarray(grid, float)
    )
    if grid.ndim != 1 or len(grid) < 2 or np.any(np.diff(grid) <= 0):
        raise ValueError("grid must be an increasing 1-D array of at least 2 points")
    t = grid[:, None]
    dens = np.exp(-0.5 * ((t - nodes.ravel()[None]) / sigma) ** 2) @ weights.ravel()
    dens /= np.sqrt(2 * np.pi) * sigma * nodes.shape[0]
    total = np.trapezoid(dens, grid)
    if total <= 0:
        raise ValueError("the grid holds none of the spectral mass; widen it")
    return grid, dens / total


# Hutchinson ----------------------------------------------------------------------------------


@dataclass
class HutchinsonEstimate:
    """trace(C) and diag(C) estimates with standard errors, from `samples` Rademacher probes."""

    __repr__ = short_repr

    trace: float
    trace_se: float
    diag: np.ndarray
    diag_se: np.ndarray
    samples: int


def hutchinson(op, samples=100, seed=0, block=32):
    """Hutchinson's estimators: trace ≈ mean vᵀCv and diag ≈ mean v ⊙ Cv over Rademacher v
    (unbiased; the standard errors are the sample standard deviations / √samples)."""
    op = as_operator(op)
    samples = int(samples)
    if samples < 2:
        raise ValueError(f"hutchinson needs samples >= 2 for a standard error, got {samples}")
    rng = np.random.default_rng(seed)
    P = op.shape[0]
    prods = []
    for s0 in range(0, samples, block):
        V = rng.choice([-1.0, 1.0], size=(P, min(block, samples - s0)))
        prods.append(V * op.matmat(V))
    D = np.concatenate(prods, axis=1)  # (P, samples): v ⊙ Cv
    tr = D.sum(0)
    return HutchinsonEstimate(
        float(tr.mean()),
        float(tr.std(ddof=1) / np.sqrt(samples)),
        D.mean(1),
        D.std(1, ddof=1) / np.sqrt(samples),
        samples,
    )


# Conjugate gradients ---------------------------------------------------------------------------


@dataclass
class CGResult:
    """The solution x, iterations used, the kept iterates [(iteration, x)] and why CG stopped."""

    __repr__ = short_repr

    x: np.ndarray
    iterations: int
    iterates: list  # [(iteration, x)] kept at geometrically spaced iterations
    reason: str


def cg(matvec, b, x0=None, maxiter=250, tol=1e-10, martens=True, eps=5e-4, keep=1.3):
    """Solve A x = b (A symmetric positive definite via `matvec`) by conjugate gradients.

    Hand-written rather than scipy's `cg` because Hessian-free needs what scipy does not give:
    Martens' (2010) stopping rule on the quadratic φ(x) = ½xᵀAx − bᵀx — stop at iteration i
    when φ(xᵢ) < 0 and (φ(xᵢ) − φ(xᵢ₋ₖ)) / φ(xᵢ) < k·eps with k = max(10, 0.1 i) — and the
    iterates at geometrically spaced iterations (ratio `keep`) for CG backtracking.
    """
    b = np.asarray(b, dtype=np.float64)
    x = np.zeros_like(b) if x0 is None else np.array(x0, dtype=np.float64)
    r = b - matvec(x)
    p = r.copy()
    rr = r @ r
    phis, iterates, next_keep = [], [], 1.0
    bnorm = max(np.linalg.norm(b), 1e-300)
    for i in range(1, int(maxiter) + 1):
        Ap = matvec(p)
        pAp = p @ Ap
        if pAp <= 0:
            return CGResult(x, i - 1, iterates + [(i - 1, x.copy())], "negative curvature")
        a = rr / pAp
        x = x + a * p
        r = r - a * Ap
        rr_new = r @ r
        phi = -0.5 * x @ (r + b)  # φ(x) = ½xᵀAx − bᵀx = −½xᵀ(r + b)
        phis.append(phi)
        if i >= next_keep:
            iterates.append((i, x.copy()))
            next_keep = max(next_keep * keep, i + 1)
        if np.sqrt(rr_new) <= tol * bnorm:
            return CGResult(x, i, iterates + [(i, x.copy())], "residual below tolerance")
        k = max(10, int(0.1 * i))
        if martens and i > k and phi < 0 and (phi - phis[-1 - k]) / phi < k * eps:
            return CGResult(x, i, iterates + [(i, x.copy())], "Martens' relative-progress rule")
        p = r + (rr_new / rr) * p
        rr = rr_new
    return CGResult(x, int(maxiter), iterates + [(int(maxiter), x.copy())], "maxiter")
