"""Loss landscapes: directions in parameter space, the loss on 1-D lines and 2-D planes
through w, and each curvature matrix's quadratic model on the same grid.

    grid:       Z[i]    = L(w + aᵢ d₁)            or  Z[i, j] = L(w + aᵢ d₁ + aⱼ d₂)
    quadratic:  Q[i, j] = L(w) + gᵀδ + ½ δᵀ C δ,  δ = aᵢ d₁ + aⱼ d₂
with a = linspace(−span, span, n). Grids are evaluated many points per forward pass; a
quadratic model needs only C d₁ and C d₂, never the matrix.
"""

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

from . import engine
from ._checks import choice, finite_array, flat_vector, nonnegative
from .curvature.kinds import is_outside, matrix
from .curvature.registry import call, get
from .problem import Problem, as_objective

DIRECTION_KINDS = ("random", "filter", "eigen", "ggn_eigen", "gradient", "layer")
# Activations of one chunk of grid points: small enough to stay in cache.
_GRID_BYTES = 2 * 2**20


def _layer_mask(problem, layer, P):
    mask = np.zeros(P, dtype=bool)
    if layer is None:
        mask[:] = True
        return mask
    if not isinstance(problem, Problem):
        raise TypeError("layer-restricted directions need a Problem")
    L = len(problem.model.layers)
    if not (isinstance(layer, (int, np.integer)) and 0 <= layer < L):
        raise ValueError(f"layer must be an integer in 0..{L - 1}, got {layer!r}")
    mask[problem.model.layer_slices()[layer]] = True
    return mask


def filter_normalize(problem, w, d):
    """Li et al. (2018): rescale each row of each layer's W̄ in d (a unit's incoming weights and
    bias) to the norm of the same row of w. A generic objective is one row, and so is a layer
    whose parameters are a vector (a cl.Function's)."""
    d = np.array(d, dtype=np.float64)
    if not isinstance(problem, Problem) or not problem.layered:
        return d * np.linalg.norm(w) / np.linalg.norm(d)
    for Dl, Wl in zip(problem.model.unflatten(d), problem.model.unflatten(w)):
        rows = Dl.shape[0] if Dl.ndim > 1 else 1
        Dl, Wl = Dl.reshape(rows, -1), Wl.reshape(rows, -1)               # views of d and w
        dn = np.linalg.norm(Dl, axis=1, keepdims=True)
        Dl *= np.where(
            dn > 0, np.linalg.norm(Wl, axis=1, keepdims=True) / np.where(dn > 0, dn, 1), 0
        )
    return d


def direction(problem, w, kind="random", seed=0, index=0, layer=None):
    """A direction in parameter space (P,).

    kind: 'random' (Gaussian, unit norm), 'filter' (Gaussian, filter-normalised as in Li et al.),
    'eigen' / 'ggn_eigen' (the index-th eigenvector of the Hessian / GGN from the top, unit
    norm), 'gradient' (∇L / ‖∇L‖), 'layer' (random, restricted to `layer`). `layer=l` restricts
    any kind to layer l's parameters (for eigenvectors: of that layer's diagonal block).
    """
    choice("direction kind", kind, DIRECTION_KINDS)
    obj = as_objective(problem)
    w = obj.check(w)
    P = w.shape[0]
    if kind == "layer" and layer is None:
        raise ValueError("kind='layer' needs layer=<index of the layer>")
    mask = _layer_mask(obj, layer, P)
    rng = np.random.default_rng(seed)
    if kind in ("random", "filter", "layer"):
        d = np.where(mask, rng.standard_normal(P), 0.0)
        if kind == "filter":
            d = filter_normalize(obj, w, d)
            if not np.any(d):
                raise ValueError(
                    "filter-normalised direction is zero: the weights it scales to are all zero"
                )
            return d
    elif kind == "gradient":
        d = np.where(mask, obj.grad(w), 0.0)
    else:
        from .linalg import spectrum  # local: linalg builds on landscape's neighbours

        mat = "hessian" if kind == "eigen" else "ggn"
        n = int(mask.sum())
        if not 0 <= int(index) < n:
            raise ValueError(f"index must be in 0..{n - 1}, got {index}")
        _, vecs = spectrum(obj, w, mat, k=int(index) + 1, which="LA", vectors=True, layer=layer)
        d = np.zeros(P)
        d[mask] = vecs[:, 0]
    norm = np.linalg.norm(d)
    if norm == 0:
        raise ValueError(
            f"the {kind!r} direction is zero here (e.g. a zero gradient); pick another kind"
        )
    return d / norm


def _axis(span, n):
    span = nonnegative("span", span)
    if span == 0:
        raise ValueError("span must be > 0")
    if int(n) < 2:
        raise ValueError(f"n must be >= 2 grid points, got {n}")
    return np.linspace(-span, span, int(n))


def _check_dir(name, d, P):
    d = flat_vector(name, d, P)
    if d.ndim != 1:
        raise ValueError(f"{name} must be one direction of shape ({P},)")
    if not np.any(d):
        raise ValueError(f"{name} is a zero-length direction; use cl.landscape.direction(...)")
    return d


def points(w, d1, d2, span, n):
    """Parameter vectors of the grid: (n, P) or (n·n, P), row-major over (i, j)."""
    a = _axis(span, n)
    if d2 is None:
        return w + a[:, None] * d1
    return (w + a[:, None, None] * d1 + a[None, :, None] * d2).reshape(-1, len(w))


class _Points:
    """G parameter vectors, handed out layer by layer and chunk by chunk: either rows of an
    array Ws (G, P), or the affine set w + C Dᵀ (C (G, q) coefficients, D (P, q) directions).
    The steps before the first layer with parameters do not depend on w, so they run once
    (`engine.prefix`); for w + C Dᵀ a first layer whose pre-activations are linear in its
    parameters (Dense, conv) gets them as a combination of q + 1 precomputed products."""

    def __init__(self, problem, Ws=None, w=None, D=None, C=None):
        self.problem = problem
        model = problem.model
        self.x0, self.stack0 = engine.prefix(model, problem.X)
        self.S0 = None
        if Ws is not None:
            self.Ws, self.G = Ws, len(Ws)
            return
        self.Ws, self.G = None, len(C)
        self.basis = np.vstack([w, D.T])  # (q+1, P)
        self.coef = np.hstack([np.ones((self.G, 1)), C])  # (G, q+1)
        first = model.layers[0]
        if first.linear_in_params:
            S0 = first.preact(self.layer(slice(None), 0, self.basis), self.x0)
            self.S0 = S0.reshape(len(self.basis), -1)

    def layer(self, g, l, rows=None):
        """θ_l of the points in slice g: (G_g, *shape_l) (of the rows of `rows` if given)."""
        layer, sl = self.problem.model.layers[l], self.problem.model.layer_slices()[l]
        if rows is not None:
            Wl = rows[g, sl]
        else:
            Wl = self.Ws[g, sl] if self.Ws is not None else self.coef[g] @ self.basis[:, sl]
        return Wl.reshape((-1,) + layer.shape)

    def first(self, g, out):
        """The first layer's pre-activations at the points in slice g, written into out: for
        w + C Dᵀ linear in the coefficients, a combination of q + 1 precomputed products."""
        np.matmul(self.coef[g], self.S0, out=out.reshape(len(out), -1))
        return out

    def sqnorm(self, g):
        if self.Ws is not None:
            return np.sum(self.Ws[g] ** 2, axis=1)
        return np.einsum("gi,ij,gj->g", self.coef[g], self.basis @ self.basis.T, self.coef[g])


def _per_point(problem):
    """Numbers per grid point of the largest activation (or patch) array of one step."""
    model = problem.model
    sizes = [int(np.prod(s.out_shape)) for s, _ in model.steps if hasattr(s, "out_shape")]
    sizes += [layer.T * getattr(layer, "n_in", 0) for layer in model.layers]
    return problem.N * max(sizes + model.widths)


def _losses(pts, accuracy):
    """Loss and accuracy (nan for regression, or when accuracy=False) at every point: many
    points per forward pass, in chunks small enough to stay in cache. The chunks are
    independent, so they run on all cores, each with a single-threaded BLAS (numpy's
    elementwise work — the activations — is single-threaded, and a multi-threaded BLAS is
    slower than one thread on these small per-point products)."""
    step = max(1, _GRID_BYTES // (8 * _per_point(pts.problem)))
    chunks = [slice(g0, min(g0 + step, pts.G)) for g0 in range(0, pts.G, step)]
    with threadpool_limits(1):
        parts = list(_pool().map(lambda g: _chunk_losses(pts, g, step, accuracy), chunks))
    return tuple(np.concatenate(part) for part in zip(*parts))


@functools.lru_cache(maxsize=1)
def _pool():
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="curvlab-grid")


_workspace = threading.local()


def _buffers(step):
    """This thread's reusable buffers, workspace(i, shape) -> an array of `shape` for step i:
    fresh multi-megabyte arrays per chunk cost more in page faults than the arithmetic (glibc
    hands them out by mmap)."""
    if getattr(_workspace, "step", None) != step or len(_workspace.arrays) > 64:
        _workspace.step, _workspace.arrays = step, {}
    arrays = _workspace.arrays

    def get(i, shape):
        key = (i,) + tuple(shape[1:])
        if key not in arrays:
            arrays[key] = np.empty((step,) + tuple(shape[1:]))
        return arrays[key][: shape[0]]

    return get


def _chunk_losses(pts, g, step, accuracy):
    """The forward pass of the model at G_g points at once (the engine's batched walk)."""
    problem = pts.problem
    model, lossfn, N = problem.model, problem.lossfn, problem.N
    Gg = g.stop - g.start
    work = _buffers(step)
    first = None
    if pts.S0 is not None:
        first = pts.first(g, work(-1, (Gg, pts.S0.shape[1])))
    z = engine.run_batched(model, lambda l: pts.layer(g, l), pts.x0, pts.stack0,
                           first=None if first is None else first.reshape(
                               (Gg,) + pts.x0.shape[:1] + (model.layers[0].T, -1)),
                           workspace=work)
    zt = work(-2, (Gg, z.shape[2], N))
    np.copyto(zt, z.transpose(0, 2, 1))
    accs = lossfn.accuracy(zt, problem.y) if accuracy else np.full(Gg, np.nan)
    losses = lossfn.mean_values(zt, problem.y)  # overwrites zt
    if problem.l2:
        losses += 0.5 * problem.l2 * pts.sqnorm(g)
    return losses, accs


def batch_losses(problem, Ws, accuracy=True):
    """Loss and accuracy (nan for regression) at many parameter vectors Ws (G, P), batched."""
    Ws = finite_array("Ws", Ws, ndim=2)
    if Ws.shape[1] != problem.n_params:
        raise ValueError(
            f"Ws must have shape (G, {problem.n_params}): one parameter vector per "
            f"row in the flat layout, got {Ws.shape}"
        )
    return _losses(_Points(problem, Ws=Ws), accuracy)


def affine_losses(problem, w, D, C, accuracy=True):
    """Loss and accuracy at the points w + C Dᵀ (directions D (P, q), coefficients C (G, q)),
    batched; the first layer costs q + 1 multiply-adds per pre-activation instead of a
    matrix product per point."""
    w = problem.check(w)
    D = flat_vector("D", D, len(w))
    D = D[:, None] if D.ndim == 1 else D
    C = finite_array("C", C)
    C = C[:, None] if C.ndim == 1 else C
    if C.ndim != 2 or C.shape[1] != D.shape[1]:
        raise ValueError(
            f"C must have shape (G, {D.shape[1]}): one coefficient per direction in D, "
            f"got {C.shape}"
        )
    return _losses(_Points(problem, w=w, D=D, C=C), accuracy)


def grid(problem, w, d1, d2=None, span=1.0, n=51, accuracy=False):
    """Loss on the line w + a d₁ (shape (n,)) or the plane w + a d₁ + b d₂ (shape (n, n),
    Z[i, j] at a = aᵢ, b = aⱼ); with accuracy=True also the accuracy on the same grid
    (classification; nan for regression). Many grid points share each forward pass."""
    obj = as_objective(problem)
    w = obj.check(w)
    d1 = _check_dir("d1", d1, len(w))
    d2 = None if d2 is None else _check_dir("d2", d2, len(w))
    shape = (int(n),) if d2 is None else (int(n), int(n))
    if isinstance(obj, Problem) and obj.layered:  # batched: layered models
        a = _axis(span, n)
        D = d1[:, None] if d2 is None else np.stack([d1, d2], axis=1)
        C = (
            a[:, None]
            if d2 is None
            else np.stack(np.meshgrid(a, a, indexing="ij"), -1).reshape(-1, 2)
        )
        Z, A = affine_losses(obj, w, D, C, accuracy)
    else:
        Z = np.array([float(obj.loss(v)) for v in points(w, d1, d2, span, n)])
        A = np.full(Z.shape, np.nan)
    Z = Z.reshape(shape)
    return (Z, A.reshape(shape)) if accuracy else Z


def curvature_products(problem, w, kind, D, samples=1, seed=0):
    """C D for a few directions D (P, Q): by the kind's matrix-free product when it has one
    (Hessian, GGN, Fishers: never the matrix), else through the built curvature object (and
    for your own matrix, whatever form it comes in)."""
    obj = as_objective(problem)
    if not is_outside(kind):
        entry = get(kind)
        if entry.matrix_free and (isinstance(obj, Problem) or not entry.needs_problem):
            # a product takes whatever the kind's build takes
            return call(entry.product, obj, w)(D)
    return matrix(obj, w, kind, samples=samples, seed=seed) @ D


def quadratic(
    problem, w, d1, d2=None, kind="hessian", span=1.0, n=51, damping=0.0, samples=1, seed=0
):
    """The second-order model L(w) + gᵀδ + ½ δᵀ(C + ηI)δ on the grid of `grid` (same shape).
    kind: any registered curvature kind (`cl.kind_table()`) or your own matrix (a (P, P) array,
    LinearOperator or callable v -> M v); η = damping."""
    if not is_outside(kind):
        get(kind)  # an unknown name fails before any work
    obj = as_objective(problem)
    w = obj.check(w)
    d1 = _check_dir("d1", d1, len(w))
    D = d1[:, None] if d2 is None else np.stack([d1, _check_dir("d2", d2, len(w))], 1)
    a = _axis(span, n)
    eta = nonnegative("damping", damping)
    L0, g = float(obj.loss(w)), obj.grad(w)
    CD = curvature_products(obj, w, kind, D, samples, seed) + eta * D
    gd, M = g @ D, D.T @ CD
    M = 0.5 * (M + M.T)
    if d2 is None:
        return L0 + a * gd[0] + 0.5 * a * a * M[0, 0]
    A, B = np.meshgrid(a, a, indexing="ij")
    return (
        L0 + A * gd[0] + B * gd[1] + 0.5 * (A * A * M[0, 0] + 2 * A * B * M[0, 1] + B * B * M[1, 1])
    )


def fit_error(Z, Zq):
    """Root-mean-square gap between the loss and a quadratic model on the same grid."""
    Z, Zq = finite_array("Z", Z), np.asarray(Zq, dtype=np.float64)
    if Z.shape != Zq.shape:
        raise ValueError(f"Z and its model must share a grid, got {Z.shape} and {Zq.shape}")
    return float(np.sqrt(np.mean((Z - Zq) ** 2)))
