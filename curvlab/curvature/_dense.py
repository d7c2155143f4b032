"""Shared machinery for dense builds: the memory guard and Gram matrices of backprop rows."""

import numpy as np

from .. import engine
from .._checks import check_dense, memory_budget

# Working memory a single batched pass may use, whatever the budget (keeps BLAS in cache-sized
# blocks without thrashing).
_CHUNK_BYTES = 256 * 2**20


def chunk_size(per_item_bytes, total, cap=None):
    """Items per chunk so one chunk's working memory stays under _CHUNK_BYTES, a quarter of
    the memory budget, and `cap` (bytes) when given."""
    cap = min(_CHUNK_BYTES, memory_budget() // 4, cap or _CHUNK_BYTES)
    return int(max(1, min(total, cap // max(per_item_bytes, 1))))


def from_product(name, P, product):
    """The (P, P) matrix of a block product V (P, Q) -> M V, column block by column block (P
    products in all), exactly symmetrised: for models whose only route is their products
    (a UnitNetwork's)."""
    check_dense(name, P)
    M = np.empty((P, P))
    step = chunk_size(8 * P, P)
    for c0 in range(0, P, step):
        M[:, c0:c0 + step] = product(np.eye(P)[:, c0:c0 + step])
    M += M.T
    M *= 0.5
    return M


def gram_of_seeds(name, pt, seeds):
    """(1/N) Σ_q Σ_n (Jₙᵀ s_{q,n})(Jₙᵀ s_{q,n})ᵀ + λI for output seeds s (Q, N, K).

    Each seed is backpropagated (all at once, in chunks), the per-sample rows Jₙᵀ s form a
    (Q·N, P) matrix M, and the result is the single product MᵀM / N. On a model that couples
    its samples the rows are the batch's (`engine.Point.rows`: N times the backprops).
    """
    P, N = pt.problem.n_params, pt.N
    Q = seeds.shape[0]
    per_seed = 8 * N * (P + 2 * sum(pt.problem.model.widths))
    per_seed *= N if engine.couples(pt.problem.model) else 1
    step = chunk_size(per_seed, Q, cap=8 * P * P)  # peak: the matrix and at most its size again
    check_dense(name, P, extra_bytes=step * per_seed)
    out = None
    for q0 in range(0, Q, step):
        rows = pt.rows(seeds[q0 : q0 + step])
        M = rows.reshape(-1, P)
        if out is None:
            out = M.T @ M
        else:
            out += M.T @ M
    out /= N
    out[np.diag_indices(P)] += pt.l2
    return out
