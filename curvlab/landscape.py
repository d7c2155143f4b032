"""Loss landscapes: directions in parameter space, the loss on 1-D lines and 2-D planes
through w, and each curvature matrix's quadratic model on the same grid.

    grid:       Z[i]    = L(w + aᵢ d₁)            or  Z[i, j] = L(w + aᵢ d₁ + aⱼ d₂)
    quadratic:  Q[i, j] = L(w) + gᵀδ + ½ δᵀ C δ,  δ = aᵢ d₁ + aⱼ d₂
with a = linspace(−span, span, n). Grids are evaluated many points per forward pass; a
quadratic model needs only C d₁ and C d₂, never the matrix.
"""

import numpy as np

from ._checks import choice, finite_array, flat_vector, nonnegative
from .curvature.kinds import KINDS, matrix
from .curvature.products import make_fishervp, make_ggnvp, make_hvp
from .problem import Problem, as_objective

DIRECTION_KINDS = ("random", "filter", "eigen", "ggn_eigen", "gradient", "layer")
# Working memory for one batched forward pass over grid points.
_GRID_BYTES = 64 * 2**20


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
    bias) to the norm of the same row of w. A generic objective is one row."""
    d = np.array(d, dtype=np.float64)
    if not isinstance(problem, Problem):
        return d * np.linalg.norm(w) / np.linalg.norm(d)
    for Dl, Wl in zip(problem.model.unflatten(d), problem.model.unflatten(w)):
        dn = np.linalg.norm(Dl, axis=1, keepdims=True)
        Dl *= np.where(dn > 0, np.linalg.norm(Wl, axis=1, keepdims=True) / np.where(dn > 0, dn, 1), 0)
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
                raise ValueError("filter-normalised direction is zero: the weights it scales to are all zero")
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
        raise ValueError(f"the {kind!r} direction is zero here (e.g. a zero gradient); pick another kind")
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


def batch_losses(problem, Ws):
    """Loss (and accuracy, nan for regression) at many parameter vectors Ws (G, P), batched."""
    model, lossfn = problem.model, problem.lossfn
    N = problem.N
    per_point = 8 * N * max(model.sizes) * 3
    step = max(1, _GRID_BYTES // per_point)
    losses, accs = np.empty(len(Ws)), np.empty(len(Ws))
    for g0 in range(0, len(Ws), step):
        Wc = Ws[g0:g0 + step]
        G = len(Wc)
        a = problem.X[None]
        for layer, sl in zip(model.layers, model.layer_slices()):
            Wb = Wc[:, sl].reshape((G,) + layer.shape)
            a = layer.act.f(a @ Wb[:, :, :-1].transpose(0, 2, 1) + Wb[:, None, :, -1])
        z = a                                                         # (G, N, K)
        y = np.tile(problem.y, (G,) + (1,) * (problem.y.ndim - 1))
        vals = lossfn.value(z.reshape(G * N, -1), y).reshape(G, N).mean(1)
        losses[g0:g0 + G] = vals + 0.5 * problem.l2 * np.sum(Wc * Wc, axis=1)
        if lossfn.name == "cross_entropy":
            accs[g0:g0 + G] = (z.argmax(-1) == problem.y[None]).mean(1)
        elif lossfn.name == "bce":
            accs[g0:g0 + G] = ((z > 0) == (problem.y[None] > 0.5)).mean((1, 2))
        else:
            accs[g0:g0 + G] = np.nan
    return losses, accs


def grid(problem, w, d1, d2=None, span=1.0, n=51, accuracy=False):
    """Loss on the line w + a d₁ (shape (n,)) or the plane w + a d₁ + b d₂ (shape (n, n),
    Z[i, j] at a = aᵢ, b = aⱼ); with accuracy=True also the accuracy on the same grid
    (classification; nan for regression). Many grid points share each forward pass."""
    obj = as_objective(problem)
    w = obj.check(w)
    d1 = _check_dir("d1", d1, len(w))
    d2 = None if d2 is None else _check_dir("d2", d2, len(w))
    Ws = points(w, d1, d2, span, n)
    shape = (int(n),) if d2 is None else (int(n), int(n))
    if isinstance(obj, Problem):
        Z, A = batch_losses(obj, Ws)
    else:
        Z = np.array([float(obj.fun(v)) for v in Ws])
        A = np.full(len(Ws), np.nan)
    Z = Z.reshape(shape)
    return (Z, A.reshape(shape)) if accuracy else Z


def curvature_products(problem, w, kind, D, samples=1, seed=0):
    """C D for a few directions D (P, Q): matrix-free for the Hessian, GGN and Fishers."""
    obj = as_objective(problem)
    if kind == "hessian":
        return make_hvp(obj, w)(D)
    if isinstance(obj, Problem) and kind == "ggn":
        return make_ggnvp(obj, w)(D)
    if isinstance(obj, Problem) and kind in ("fisher", "empirical_fisher"):
        return make_fishervp(obj, w, "true" if kind == "fisher" else "empirical")(D)
    return matrix(obj, w, kind, samples=samples, seed=seed) @ D


def quadratic(problem, w, d1, d2=None, kind="hessian", span=1.0, n=51, damping=0.0,
              samples=1, seed=0):
    """The second-order model L(w) + gᵀδ + ½ δᵀ(C + ηI)δ on the grid of `grid` (same shape).
    kind: any curvature kind (hessian, ggn, fisher, empirical_fisher, mc_fisher, kfac, kflr,
    kfra, diagonal); η = damping."""
    choice("curvature kind", kind, KINDS)
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
    return L0 + A * gd[0] + B * gd[1] + 0.5 * (A * A * M[0, 0] + 2 * A * B * M[0, 1] + B * B * M[1, 1])


def fit_error(Z, Zq):
    """Root-mean-square gap between the loss and a quadratic model on the same grid."""
    Z, Zq = finite_array("Z", Z), np.asarray(Zq, dtype=np.float64)
    if Z.shape != Zq.shape:
        raise ValueError(f"Z and its model must share a grid, got {Z.shape} and {Zq.shape}")
    return float(np.sqrt(np.mean((Z - Zq) ** 2)))
