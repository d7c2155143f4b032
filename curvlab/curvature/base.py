"""The one curvature contract: `Curvature`, the base of every curvature object.

A curvature object C (plus λI, the problem's L2 term, kept apart as `l2`) is symmetric and acts
on curvlab's flat parameter layout. The base class owns what every kind shares — the checks,
the lifting of one vector (P,) and of a block of vectors (P, Q), the singularity test of a
damped solve, `to_dense`, `@`, `as_linear_operator`, `blocks` and `eigvalsh` — so a subclass
writes only what is its own (as curvlinops' `CurvatureLinearOperator` does):

    _matmat(V)          C V for a block V (P, Q), without λ
    _solve(V, γ)        (C + γI)⁻¹ V, γ = damping + λ (optional: else the dense eigenbasis)
    _eigvalsh()         C's eigenvalues, any order, without λ (optional: else dense)

Block-diagonal kinds (`BlockDiagonal`) write the same three per layer block instead, and get
the split into blocks, `to_dense` without a (P, P) product, `blocks` and per-layer spectra.
"""

import numpy as np
from scipy.sparse.linalg import LinearOperator

from .._checks import check_dense, flat_vector, nonnegative


def check_singular(name, den, gamma):
    """Refuse a solve whose damped eigenvalues `den` (λᵢ + γ) include one at zero (to rounding):
    the inverse does not exist."""
    den = np.asarray(den)
    if den.size and np.abs(den).min() <= 1e-14 * max(np.abs(den).max(), 1e-300):
        raise np.linalg.LinAlgError(f"{name} + {gamma:g} I is singular (an eigenvalue + damping "
                                    "is 0); pass damping > 0")


def _symmetric_eigh(M):
    return np.linalg.eigh(0.5 * (M + M.T))


class Curvature:
    """A symmetric curvature matrix C + λI on the flat layout (module docstring).

    Attributes every object has: `name`, `n_params` (P), `l2` (λ, included in every product,
    solve and eigenvalue), `layer_slices` (the layers' slices of the flat vector, for `blocks`).
    """

    name = "curvature"
    l2 = 0.0
    layer_slices = None
    dense_alternative = "`{name} @ v` (matrix-free)"

    # what a subclass supplies -------------------------------------------------------------
    def _matmat(self, V):
        raise NotImplementedError

    def _solve(self, V, gamma):
        lam, U = self.eigh_dense()                      # eigenvalues of C + λI: λ is in already
        den = lam - self.l2 + gamma
        check_singular(self.name, den, gamma)
        return U @ ((U.T @ V) / den[:, None])

    def _eigvalsh(self):
        return self.eigh_dense()[0] - self.l2

    # the contract ---------------------------------------------------------------------------
    @property
    def shape(self):
        return (self.n_params, self.n_params)

    def _lift(self, v, fn):
        """Apply a block function (P, Q) -> (P, Q) to one vector (P,) or a block (P, Q)."""
        v = flat_vector("v", v, self.n_params)
        out = fn(v[:, None] if v.ndim == 1 else v)
        return out[:, 0] if v.ndim == 1 else out

    def __matmul__(self, v):
        """(C + λI) v for v of shape (P,) or (P, Q)."""
        return self._lift(v, lambda V: self._matmat(V) + self.l2 * V)

    def matvec(self, v):
        return self @ v

    def solve(self, v, damping=0.0):
        """(C + λI + ηI)⁻¹ v, η = damping ≥ 0; a LinAlgError when that matrix is singular."""
        gamma = nonnegative("damping", damping) + self.l2
        return self._lift(v, lambda V: self._solve(V, gamma))

    def eigvalsh(self):
        """All P eigenvalues of C + λI, ascending."""
        return np.sort(np.asarray(self._eigvalsh(), dtype=np.float64).ravel()) + self.l2

    def to_dense(self):
        """The (P, P) matrix C + λI, refused before allocation when over the memory budget."""
        check_dense(self.name, self.n_params,
                    alternative=self.dense_alternative.format(name=self.name))
        M = self @ np.eye(self.n_params)
        return 0.5 * (M + M.T)

    def eigh_dense(self):
        """Cached (eigenvalues ascending, eigenvectors) of the dense C + λI."""
        if getattr(self, "_eigh_dense", None) is None:
            self._eigh_dense = _symmetric_eigh(self.to_dense())
        return self._eigh_dense

    def blocks(self):
        """The diagonal blocks of C + λI over `layer_slices` (one block: the whole matrix)."""
        M = self.to_dense()
        return [M[sl, sl] for sl in (self.layer_slices or [slice(0, self.n_params)])]

    def layer_eigvalsh(self, l):
        """Eigenvalues of the l-th diagonal block, ascending."""
        return np.linalg.eigvalsh(self.blocks()[l])

    def as_linear_operator(self):
        """A scipy LinearOperator with this object's products (for eigsh, cg, ...)."""
        return LinearOperator(self.shape, matvec=self.__matmul__, rmatvec=self.__matmul__,
                              matmat=self.__matmul__, rmatmat=self.__matmul__, dtype=np.float64)

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r}, P={self.n_params})"


class Dense(Curvature):
    """A dense symmetric matrix M (which already includes λI) with a cached eigendecomposition."""

    def __init__(self, M, name, layer_slices=None):
        self.M = np.asarray(M, dtype=np.float64)
        self.name, self.n_params = name, self.M.shape[0]
        self.layer_slices = layer_slices or [slice(0, self.n_params)]
        self._eigh_dense = None

    def _matmat(self, V):
        return self.M @ V

    def to_dense(self):
        return self.M

    def eigh(self):
        """Cached (eigenvalues ascending, eigenvectors)."""
        if self._eigh_dense is None:
            self._eigh_dense = np.linalg.eigh(self.M)
        return self._eigh_dense

    eigh_dense = eigh


class Operator(Curvature):
    """A curvature matrix known through its products v -> M v (a LinearOperator or a callable):
    `@` stays matrix-free; `to_dense` (P products, cached, checked symmetric) backs `solve`,
    `eigvalsh` and `blocks`."""

    def __init__(self, matvec, n, name, layer_slices=None):
        self.fn, self.n_params, self.name = matvec, int(n), name
        self.layer_slices = layer_slices or [slice(0, self.n_params)]
        self._dense = None

    def _matmat(self, V):
        cols = []
        for q in range(V.shape[1]):
            out = np.asarray(self.fn(V[:, q]), dtype=np.float64)
            if out.shape != (self.n_params,):
                raise ValueError(f"{self.name}: the product M v has shape {out.shape}, expected "
                                 f"({self.n_params},)")
            cols.append(out)
        return np.stack(cols, axis=1)

    def to_dense(self):
        if self._dense is None:
            check_dense(self.name, self.n_params)
            self._dense = symmetric(self.name, self @ np.eye(self.n_params))
        return self._dense


def symmetric(name, M):
    """M itself, after checking it is symmetric (to rounding): curvature matrices are."""
    gap = np.max(np.abs(M - M.T)) if M.size else 0.0
    if gap > 1e-10 * max(np.max(np.abs(M)), 1e-300):
        raise ValueError(f"{name}: the matrix is not symmetric (max |M − Mᵀ| = {gap:.3g}); "
                         "curvature matrices are — pass (M + M.T) / 2 if that is what you mean")
    return M


class BlockDiagonal(Curvature):
    """⊕_b C_b + λI over consecutive blocks of the flat vector (`block_slices`, `offsets`). A
    subclass supplies per block b: `_block_matmat(b, V_b)`, `_block_solve(b, V_b, γ)`,
    `_block_eigvalsh(b)` and `_block_dense(b)`, with V_b the block's rows of V (size_b, Q). No
    method forms P × P but `to_dense`, which writes the blocks into it.

    The blocks are the layers (`layer_slices`) unless a layer holds several (attention's Q, K,
    V, O): `blocks()` and `layer_eigvalsh(l)` are per layer, `block_eigh(b)` per block."""

    dense_alternative = "the blocks or `{name} @ v`"

    def _set_sizes(self, sizes, layer_slices=None):
        self.sizes = [int(s) for s in sizes]
        self.offsets = np.cumsum([0] + self.sizes)
        self.n_params = int(self.offsets[-1])
        self.block_slices = [slice(int(o), int(e)) for o, e in zip(self.offsets[:-1],
                                                                    self.offsets[1:])]
        self.layer_slices = self.block_slices if layer_slices is None else list(layer_slices)
        # the blocks of each layer; every block lies inside one layer and they tile it
        self.layer_blocks = [[b for b, bs in enumerate(self.block_slices)
                              if sl.start <= bs.start and bs.stop <= sl.stop]
                             for sl in self.layer_slices]
        for sl, bl in zip(self.layer_slices, self.layer_blocks):
            if sum(self.sizes[b] for b in bl) != sl.stop - sl.start:
                raise ValueError(f"{type(self).__name__}: blocks of sizes {self.sizes} do not "
                                 f"tile the layers {self.layer_slices}")

    def _blockwise(self, V, fn):
        out = np.empty_like(V)
        for b, sl in enumerate(self.block_slices):
            out[sl] = fn(b, V[sl])
        return out

    def _matmat(self, V):
        return self._blockwise(V, self._block_matmat)

    def _solve(self, V, gamma):
        return self._blockwise(V, lambda l, Vl: self._block_solve(l, Vl, gamma))

    def _eigvalsh(self):
        return np.concatenate([np.ravel(self._block_eigvalsh(l)) for l in range(len(self.sizes))])

    def blocks(self):
        """The dense diagonal blocks of the layers, C_l + λI (a layer of several blocks: their
        block-diagonal)."""
        out = []
        for sl, bl in zip(self.layer_slices, self.layer_blocks):
            n = sl.stop - sl.start
            B = self.l2 * np.eye(n)
            for b in bl:
                o = self.block_slices[b].start - sl.start
                B[o:o + self.sizes[b], o:o + self.sizes[b]] += self._block_dense(b)
            out.append(B)
        return out

    def block_eigh(self, b):
        """(eigenvalues, eigenvectors) of block b (C_b + λI), in any order."""
        return np.linalg.eigh(self._block_dense(b) + self.l2 * np.eye(self.sizes[b]))

    def layer_eigvalsh(self, l):
        """Eigenvalues of layer l's block (C_l + λI), ascending, from its blocks' own
        structure."""
        return np.sort(np.concatenate([np.ravel(self._block_eigvalsh(b))
                                       for b in self.layer_blocks[l]])) + self.l2

    def to_dense(self):
        """The full (P, P) block-diagonal matrix."""
        check_dense(self.name, self.n_params,
                    alternative=self.dense_alternative.format(name=self.name))
        out = np.zeros(self.shape)
        for b, sl in enumerate(self.block_slices):
            out[sl, sl] = self._block_dense(b) + self.l2 * np.eye(self.sizes[b])
        return out
