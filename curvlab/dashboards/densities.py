"""Spectral densities over a scope: SLQ of a matrix's diagonal block from its products alone."""

import numpy as np
from scipy.sparse.linalg import LinearOperator

import curvlab as cl


def scoped(op, sl):
    """The diagonal block `sl` of operator `op`, as an operator: products with vectors that are
    zero outside the block, read on the block."""
    P, n = op.shape[0], sl.stop - sl.start

    def mv(V):
        V = np.asarray(V, dtype=float)
        X = np.zeros((P,) + V.shape[1:])
        X[sl] = V
        return np.asarray(op @ X)[sl]
    return LinearOperator((n, n), matvec=mv, matmat=mv, rmatvec=mv, rmatmat=mv, dtype=np.float64)


def scoped_density(problem, w, kind, layer, op, probes=8, steps=40):
    """(grid, density) by SLQ (`cl.slq_density`) of operator `op` (kind `kind`'s products at w)
    over layer `layer`'s diagonal block, or the whole matrix for layer < 0."""
    if layer >= 0:
        op = scoped(op, problem.model.layer_slices()[layer])
    return cl.slq_density(op, probes=probes, steps=min(op.shape[0], steps))
