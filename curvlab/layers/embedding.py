"""Embedding: integer token ids (N, T) -> rows of a table E (V, d), y_{n,t} = E[x_{n,t}].

E is the layer's parameters, flat in row-major order (row v is token v's vector). The map is
linear in E and reads its input only as indices, so it has no input tangent or cotangent: it is
the model's first layer (it reads the raw token ids, which `check_input` validates). Its rules,
with one-hot rows e_{x} (the scatter S_x: Σ_t e_{x_t} ⊗ ·):

    forward        y_t = E[x_t]                          (a gather)
    backprop       record δ = ∂ℓ/∂y (Q, N, T, d);  ∂ℓ/∂E = Σ_{n,t} e_{x_{n,t}} δ_{n,tᵀ}  (a scatter)
    R-forward      R y_t = V[x_t]                        (the gather of the direction)
    R-backward     R{∂ℓ/∂E} = the scatter of R δ; no second-order term (linear in E)

Cost: a gather of N·T·d numbers per pass, a scatter of as many per seed.
"""

import numpy as np

from .base import Layer, describe, is_map


class Embedding(Layer):
    """A table of V token vectors of d features: token ids (N, T) -> (N, T, d), like torch's
    nn.Embedding(V, d). Parameters: the (V, d) table, row-major. It must be the model's first
    layer, with input_shape=(T,) and integer inputs 0..V-1."""

    has_params = True
    reads_tokens = True     # reads raw integer inputs: the model's first step, no input tangent

    def __init__(self, V, d):
        try:
            V, d = int(V), int(d)
        except (TypeError, ValueError):
            raise TypeError(f"cl.Embedding(V, d) takes two ints, got {V!r}, {d!r}") from None
        if V < 1 or d < 1:
            raise ValueError(f"cl.Embedding(V, d) needs V >= 1 tokens and d >= 1 features, "
                             f"got V={V}, d={d}")
        self.V, self.d = V, d

    @property
    def shape(self):
        return (self.V, self.d)

    @property
    def size(self):
        return self.V * self.d

    @property
    def width(self):
        """Outputs per sample (its record's size), T · d."""
        return self.T * self.d

    def build(self, in_shape):
        if is_map(in_shape) or len(in_shape) != 1:
            raise ValueError(f"{self!r} reads integer token ids (N, T): give the model "
                             f"input_shape=(T,), not {describe(in_shape)}")
        self.T = int(in_shape[0])
        self.in_shape, self.out_shape = tuple(in_shape), (self.T, self.d)
        return self.out_shape

    def init(self, rng):
        """Standard normal entries, as torch's nn.Embedding."""
        return rng.standard_normal(self.shape)

    def check_input(self, X, input_shape):
        """Token ids X as an int64 array (N, T) with entries in 0..V-1, or a ValueError naming
        the problem (floats, wrong shape, ids out of range)."""
        X = np.asarray(X)
        if X.dtype.kind not in "iu":
            if X.dtype.kind == "f" and X.size and np.all(np.isfinite(X)) \
                    and np.all(X == np.round(X)):
                hint = "pass them as integers (X.astype(int))"
            else:
                hint = "an Embedding reads token ids 0..V-1, not features"
            raise ValueError(f"{self!r} is the model's first layer and reads integer token ids, "
                             f"but X has dtype {X.dtype}; {hint}")
        if X.ndim != 2 or X.shape[1:] != tuple(input_shape):
            raise ValueError(f"X must hold token ids of shape (N, {input_shape[0]}) for a model "
                             f"with input_shape={tuple(input_shape)}; got {X.shape}")
        if X.shape[0] < 1:
            raise ValueError("X has no samples")
        lo, hi = int(X.min()), int(X.max())
        if lo < 0 or hi >= self.V:
            raise ValueError(f"token ids out of range: X holds {lo}..{hi}, but {self!r} has "
                             f"{self.V} tokens, ids 0..{self.V - 1}; enlarge V or remap the ids")
        return X.astype(np.int64)

    # forward -------------------------------------------------------------------------------
    def _ids(self, x):
        """x itself, refused by name unless it holds token ids 0..V-1 (model.forward is not
        checked by a Problem; numpy would wrap negative ids around silently)."""
        x = np.asarray(x)
        if x.dtype.kind not in "iu" or (x.size and (x.min() < 0 or x.max() >= self.V)):
            self.check_input(x, x.shape[1:])                 # raises, naming the problem
        return x

    def run(self, E, x, out=None):
        """E[x] (N, T, d); E may carry a leading axis of G points: (G, N, T, d)."""
        x = self._ids(x)
        return E[x] if np.ndim(E) == 2 else E[:, x]

    def apply(self, E, x):
        return self.run(E, x)

    def trace(self, E, x):
        x = self._ids(x)
        return E[x], x

    # the rules -----------------------------------------------------------------------------
    def backprop(self, E, x, g, need_input=True):
        """The record is δ = g itself; integer inputs have no cotangent."""
        return None, g

    def _scatter(self, x, d, per_sample):
        """Σ_t e_{x_t} δ_tᵀ for records δ (Q, N, T, d): (Q, V·d), or per sample (Q, N, V·d)."""
        Q, N, T, D = d.shape
        if per_sample:
            out = np.zeros((Q, N * self.V, D))
            idx = (np.arange(N)[:, None] * self.V + x).ravel()
        else:
            out = np.zeros((Q, self.V, D))
            idx = x.ravel()
        np.add.at(out, (slice(None), idx), d.reshape(Q, N * T, D))
        return out.reshape((Q, N, -1) if per_sample else (Q, -1))

    def param_grads(self, E, x, d):
        return self._scatter(x, d, per_sample=False)

    def param_rows(self, E, x, d, out=None):
        rows = self._scatter(x, d, per_sample=True)
        if out is not None:
            out[...] = rows
            return out
        return rows

    def param_tangent(self, E, x, V):
        """V[x] (Q, N, T, d) for directions V (Q, V, d)."""
        return V[:, x]

    def rforward(self, E, x, Rx, V):
        if Rx is not None:
            raise ValueError(f"{self!r} got an input tangent: an Embedding reads token ids and "
                             "must be the model's first layer")
        return V[:, x], None

    def rbackward(self, E, x, rst, d, g, Rg, V, need_input=True):
        return None, self._scatter(x, Rg, per_sample=False)

    # the structured Hessian's view (curvature.blocks.preact_columns) --------------------------
    def injection_blocks(self, x):
        """A Dense on one-hot inputs e_{x_t} (N, T, V) whose pre-activations are the rows read,
        the table laid out (V, d) — transposed against a Dense's (n_out, n_in)."""
        return [(np.eye(self.V)[x], self.d, True, 0, None)]

    def rforward_preact(self, E, x, R):
        """Tangents R (Q, N, T, d) of the rows read, passed on (no state)."""
        return R, None

    def rbackward_rows(self, E, x, rst, d, g, Rg, need_input=True):
        """Nothing below (it reads token ids); its per-sample R{∂ℓ/∂E} is made of R g alone."""
        return None, (Rg,)

    def rows_from(self, x, d, Rg, out=None):
        """Per direction and sample R{∂ℓ/∂E}ₙ = Σ_t e_{x_t} R gₜᵀ: (Q, N, V·d)."""
        Q, N = Rg.shape[:2]
        onehot = np.eye(self.V)[x]                                         # (N, T, V)
        if out is None:
            out = np.empty((Q, N, self.V * self.d))
        np.matmul(onehot.swapaxes(1, 2), Rg, out=out.reshape(Q, N, self.V, self.d))
        return out

    def kron_pairs(self, E, x, d):
        """The Kronecker kinds' view (curvature.kfac.kron_blocks): a Dense on one-hot inputs
        e_{x_t} (N, T, V) with records δ = ∂ℓ/∂E[x_t]; the table is laid out (V, d), the
        transpose of a Dense's (n_out, n_in), so the block is A ⊗ S. For expand A is diagonal
        (token counts / (N·T)), for reduce (1/N) Σₙ c̄ₙ c̄ₙᵀ with c̄ₙ the sequence's token
        frequencies."""
        return [(np.eye(self.V)[x], d, True)]

    def __repr__(self):
        return f"Embedding({self.V}, {self.d})"
