"""Losses on network outputs z (N, K): value, ∂ℓ/∂z, exact output Hessian B, its factor C
(B = C Cᵀ), the output Fisher E_{y~p(y|z)}[∇ℓ ∇ℓᵀ] with its factor, and sampling y ~ p(y|z).

Per-sample values; the Problem averages them over the N samples. All three are negative
log-likelihoods of an exponential family with natural parameter z, which is why the true
Fisher equals the GGN for them (a check in the tests, not an assumption in the code: the
output Fisher here is computed from the distribution, the Hessian from the formula).
"""

import autograd.numpy as anp
import numpy as np

from ._checks import choice, finite_array


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(z):
    return 0.5 * (np.tanh(0.5 * z) + 1.0)


class Loss:
    """The interface every loss implements (see MSE, CrossEntropy, BCE), and, called with a
    function, your own loss: ``cl.Loss(fn, sampler=None, name=None)`` (see `CustomLoss`)."""

    name = None

    def __new__(cls, *args, **kwargs):
        if cls is Loss:
            if not args and "fn" not in kwargs:
                raise TypeError(
                    "cl.Loss(fn): fn(outputs (N, K), targets) -> per-sample losses (N,), "
                    "autograd-differentiable in the outputs"
                )
            return super().__new__(CustomLoss)
        return super().__new__(cls)

    def targets(self, y, N, K):
        """Validate data targets and bring them to the loss's canonical shape."""
        raise NotImplementedError

    def value(self, z, y):
        """Per-sample loss ℓ(z_n, y_n), shape (N,); autograd-differentiable in z."""
        raise NotImplementedError

    def mean_values(self, zt, y):
        """(1/N) Σₙ ℓ(zₙ, yₙ) for G sets of outputs laid out zt (G, K, N) — outputs along axis 1,
        so the reductions over K run along contiguous rows of N (batched landscape grids).
        zt may be overwritten: the fast versions use it as scratch space (fresh temporaries
        this size cost more in page faults than the arithmetic)."""
        G, K, N = zt.shape
        z = zt.transpose(0, 2, 1).reshape(G * N, K)
        return self.value(z, np.tile(y, (G,) + (1,) * (np.ndim(y) - 1))).reshape(G, N).mean(1)

    def accuracy(self, zt, y):
        """The accuracy at G sets of outputs laid out zt (G, K, N), shape (G,): nan for a loss
        without classes (MSE, your own)."""
        return np.full(zt.shape[0], np.nan)

    def dz(self, z, y):
        """∂ℓ/∂z, shape of z; y may carry a leading axis of S samples (result (S, N, K))."""
        raise NotImplementedError

    def hessian(self, z, y):
        """B = ∂²ℓ/∂z², shape (N, K, K)."""
        C = self.sqrt_hessian(z, y)
        return C @ C.transpose(0, 2, 1)

    def hessian_product(self, z, y, U):
        """B U per sample for output directions U (..., N, K), without forming B."""
        return np.einsum("nkj,...nj->...nk", self.hessian(z, y), U)

    def sqrt_hessian(self, z, y):
        """C with B = C Cᵀ, shape (N, K, R)."""
        raise NotImplementedError

    def mean_hessian(self, z, y):
        """(1/N) Σₙ Bₙ, shape (K, K) (KFRA's starting point), without the (N, K, K) stack."""
        C = self.sqrt_hessian(z, y)
        flat = C.transpose(1, 0, 2).reshape(C.shape[1], -1)
        return flat @ flat.T / z.shape[0]

    def fisher_factor(self, z):
        """F with F Fᵀ = E_{y~p(y|z)}[∇_z ℓ ∇_z ℓᵀ], from the model's distribution; (N, K, R)."""
        raise NotImplementedError

    def sample(self, z, rng, samples=1):
        """Draw targets y ~ p(y | z): shape (samples, N) for labels, (samples, N, K) otherwise."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


class MSE(Loss):
    """ℓ = ½‖z − y‖², the negative log-likelihood of y ~ N(z, I) up to a constant; B = I."""

    name = "mse"

    def targets(self, y, N, K):
        y = finite_array("y", y)
        if y.ndim == 1 and K == 1:
            y = y[:, None]
        if y.shape != (N, K):
            raise ValueError(
                f"mse targets must have shape ({N}, {K}) to match the outputs, got {y.shape}"
            )
        return y

    def value(self, z, y):
        return 0.5 * anp.sum((z - y) ** 2, axis=-1)

    def mean_values(self, zt, y):
        zt -= y.T
        zt *= zt
        return 0.5 * zt.sum(1).mean(1)

    def dz(self, z, y):
        return z - y

    def hessian_product(self, z, y, U):
        return np.array(U, dtype=np.float64)

    def sqrt_hessian(self, z, y=None):
        N, K = z.shape
        return np.broadcast_to(np.eye(K), (N, K, K))

    def fisher_factor(self, z):
        # y - z ~ N(0, I): E[(z - y)(z - y)ᵀ] = I.
        N, K = z.shape
        return np.broadcast_to(np.eye(K), (N, K, K))

    def sample(self, z, rng, samples=1):
        return z + rng.standard_normal((samples,) + z.shape)


class CrossEntropy(Loss):
    """Softmax cross-entropy ℓ = logsumexp(z) − z_y with integer labels y ∈ {0..K−1};
    B = diag(p) − p pᵀ with p = softmax(z)."""

    name = "cross_entropy"

    def targets(self, y, N, K):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.shape != (N,):
            raise ValueError(f"cross_entropy takes integer labels of shape ({N},), got {y.shape}")
        if y.dtype.kind not in "iufb":
            raise ValueError(
                f"y must hold integer class labels 0..{K - 1}, got dtype {y.dtype}; "
                "map the classes to integers first (e.g. np.unique(y, return_inverse=True))"
            )
        if not np.issubdtype(y.dtype, np.integer):
            yf = finite_array("y", y)
            if not np.all(yf == np.round(yf)):
                raise ValueError("cross_entropy labels must be integers 0..K-1, got non-integers")
            y = yf
        y = y.astype(np.int64)
        if K < 2:
            raise ValueError(f"cross_entropy needs at least 2 outputs (logits), the model has {K}")
        if y.min() < 0 or y.max() >= K:
            raise ValueError(
                f"labels out of range: got {y.min()}..{y.max()}, the model has {K} "
                f"outputs so labels must lie in 0..{K - 1}"
            )
        return y

    def value(self, z, y):
        # logsumexp shifted by the row maximum m: exact for any m, so its derivatives are too
        # (autograd's subgradient of max cancels); about 3x faster than scipy's logsumexp.
        m = anp.max(z, axis=-1, keepdims=True)
        return anp.log(anp.sum(anp.exp(z - m), axis=-1)) + m[:, 0] - z[np.arange(z.shape[0]), y]

    def mean_values(self, zt, y):
        picked = zt[:, y, np.arange(zt.shape[2])]  # z_y, (G, N)
        m = zt.max(axis=1)
        zt -= m[:, None]
        np.exp(zt, out=zt)
        return (np.log(zt.sum(axis=1)) + m - picked).mean(1)

    def accuracy(self, zt, y):
        return (zt.argmax(1) == y[None]).mean(1)

    def dz(self, z, y):
        y = np.asarray(y)
        return _softmax(z) - np.eye(z.shape[-1])[y]

    def hessian(self, z, y=None):
        p = _softmax(z)
        B = -p[:, :, None] * p[:, None, :]
        np.einsum("nkk->nk", B)[...] += p  # + diag p
        return B

    def hessian_product(self, z, y, U):
        p = _softmax(z)
        pU = p * U
        return pU - p * pU.sum(-1, keepdims=True)  # p ⊙ u − p (pᵀu)

    def sqrt_hessian(self, z, y=None):
        p = _softmax(z)
        q = np.sqrt(p)
        # (diag √p − p √pᵀ)(diag √p − √p pᵀ) = diag p − p pᵀ, using Σ p = 1.
        C = -p[:, :, None] * q[:, None, :]
        np.einsum("nkk->nk", C)[...] += q
        return C

    def mean_hessian(self, z, y=None):
        p = _softmax(z)
        return np.diag(p.mean(0)) - p.T @ p / z.shape[0]

    def fisher_factor(self, z):
        # E_y[(p − e_y)(p − e_y)ᵀ] = Σ_c p_c (p − e_c)(p − e_c)ᵀ: column c is √p_c (p − e_c).
        p = _softmax(z)
        K = z.shape[1]
        return (p[:, :, None] - np.eye(K)[None]) * np.sqrt(p)[:, None, :]

    def sample(self, z, rng, samples=1):
        p = _softmax(z)
        u = rng.random((samples, z.shape[0], 1))
        return np.minimum((u > np.cumsum(p, axis=1)[None]).sum(-1), z.shape[1] - 1)


class BCE(Loss):
    """Sigmoid binary cross-entropy per output, summed over the K outputs:
    ℓ = Σ_k softplus(z_k) − y_k z_k with y_k ∈ [0, 1]; B = diag(σ(z)(1 − σ(z)))."""

    name = "bce"

    def targets(self, y, N, K):
        y = finite_array("y", y)
        if y.ndim == 1 and K == 1:
            y = y[:, None]
        if y.shape != (N, K):
            raise ValueError(
                f"bce targets must have shape ({N}, {K}) to match the outputs, got {y.shape}"
            )
        if y.min() < 0 or y.max() > 1:
            raise ValueError(f"bce targets must lie in [0, 1], got {y.min()}..{y.max()}")
        return y

    def value(self, z, y):
        return anp.sum(anp.logaddexp(0.0, z) - y * z, axis=-1)

    def mean_values(self, zt, y):
        yz = np.einsum("gkn,kn->g", zt, y.T)
        np.logaddexp(0.0, zt, out=zt)
        return (zt.sum((1, 2)) - yz) / zt.shape[2]

    def accuracy(self, zt, y):
        return ((zt > 0) == (y.T[None] > 0.5)).mean((1, 2))

    def dz(self, z, y):
        return _sigmoid(z) - y

    def hessian_product(self, z, y, U):
        s = _sigmoid(z)
        return s * (1 - s) * U

    def sqrt_hessian(self, z, y=None):
        s = _sigmoid(z)
        return np.sqrt(s * (1 - s))[:, :, None] * np.eye(z.shape[1])[None]

    def fisher_factor(self, z):
        # Independent Bernoulli outputs: E[(σ − y)(σ − y)ᵀ] = diag Var(y) = diag σ(1 − σ).
        s = _sigmoid(z)
        var = s - s * s
        return np.sqrt(var)[:, :, None] * np.eye(z.shape[1])[None]

    def sample(self, z, rng, samples=1):
        return (rng.random((samples,) + z.shape) < _sigmoid(z)).astype(np.float64)


class CustomLoss(Loss):
    """Your own loss from fn(z, y) -> per-sample losses (N,), any autograd-differentiable
    function of the outputs z (N, K) and targets y (anything with N rows). Its output Hessian
    B = ∂²ℓ/∂z² comes from autograd (K Hessian-vector products, one per output), so the GGN,
    the Hessian, KFRA and every product work with it; KFLR, the GGN diagonal and the GGN of conv
    nets use a factor B = C Cᵀ, which exists only where B is positive semi-definite (a
    non-convex loss raises there). The Monte-Carlo Fisher and MC K-FAC draw targets from the
    model: pass `sampler(z, rng) -> y`; the true Fisher needs the distribution in closed form
    and is not available."""

    def __init__(self, fn, sampler=None, name=None):
        if not callable(fn):
            raise TypeError(f"cl.Loss(fn): fn must be a function, got {type(fn).__name__}")
        if sampler is not None and not callable(sampler):
            raise TypeError(
                "cl.Loss: sampler must be a function sampler(z, rng) -> y, got "
                f"{type(sampler).__name__}"
            )
        self.fn, self.sampler = fn, sampler
        self.name = name or getattr(fn, "__name__", "custom")

    def targets(self, y, N, K):
        y = np.asarray(y)
        if y.dtype.kind not in "iufb":
            raise ValueError(f"targets of {self.name!r} must be numbers, got dtype {y.dtype}")
        if y.shape[:1] != (N,):
            raise ValueError(
                f"targets of {self.name!r} must have N = {N} rows, got shape {y.shape}"
            )
        return finite_array("y", y) if y.dtype.kind == "f" else y

    def value(self, z, y):
        out = self.fn(z, y)
        if np.shape(out) != np.shape(z)[:1]:
            raise ValueError(
                f"loss {self.name!r}: fn must return one loss per sample, shape "
                f"({np.shape(z)[0]},), got {np.shape(out)}"
            )
        return out

    def _grad(self, z, y):
        from autograd import grad

        return grad(lambda zz: anp.sum(self.value(zz, y)))(z)

    def dz(self, z, y):
        if z.ndim == 3:  # (1, N, K) with S sampled targets
            return np.stack([self._grad(z[0], ys) for ys in y])
        return self._grad(z, y)

    def hessian(self, z, y):
        """B (N, K, K): column k of every Bₙ from one Hessian-vector product along e_k (the loss
        is a sum over samples, so the products do not mix them)."""
        from autograd import grad, make_jvp

        jvp = make_jvp(grad(lambda zz: anp.sum(self.value(zz, y))))(z)
        K = z.shape[1]
        cols = [jvp(np.broadcast_to(np.eye(K)[k], z.shape).copy())[1] for k in range(K)]
        B = np.stack(cols, axis=2)
        return 0.5 * (B + B.transpose(0, 2, 1))

    def sqrt_hessian(self, z, y=None):
        B = self.hessian(z, y)
        lam, U = np.linalg.eigh(B)
        if lam.min() < -1e-12 * max(np.abs(lam).max(), 1e-300):
            raise ValueError(
                f"loss {self.name!r}: its output Hessian B is indefinite at some samples "
                f"(eigenvalue {lam.min():.3g}), so B = C Cᵀ has no real factor: kflr, "
                "diag_ggn and the conv-net GGN are unavailable (hessian, ggn on MLPs, "
                "kfra, hvp and ggnvp work)"
            )
        return U * np.sqrt(np.maximum(lam, 0.0))[:, None, :]

    def mean_hessian(self, z, y):
        return self.hessian(z, y).mean(0)

    def fisher_factor(self, z):
        raise ValueError(
            f"loss {self.name!r}: the true Fisher needs the model's distribution in "
            "closed form; a custom loss offers the Monte-Carlo Fisher (kind='mc', with "
            "cl.Loss(fn, sampler=...)) and the empirical Fisher"
        )

    def sample(self, z, rng, samples=1):
        if self.sampler is None:
            raise ValueError(
                f"loss {self.name!r} has no sampler: the Monte-Carlo Fisher and MC K-FAC "
                "draw targets y ~ p(y | z); pass cl.Loss(fn, sampler=lambda z, rng: y)"
            )
        return np.stack([np.asarray(self.sampler(z, rng)) for _ in range(samples)])

    def __repr__(self):
        return f"Loss({self.name!r})"


def _block_diagonal(C, T):
    """Per-position blocks C (N·T, K, R) as one block-diagonal matrix per sample (N, T·K, T·R)."""
    NT, K, R = C.shape
    C = C.reshape(NT // T, T, K, R)
    return np.einsum("ntkr,tu->ntkur", C, np.eye(T)).reshape(NT // T, T * K, T * R)


class PerPosition(Loss):
    """A loss at every position of sequence outputs (N, T, K): a sample's loss is the sum of the
    built-in loss over its T positions (as MSE sums over outputs); the problem's loss is the
    mean over the N samples. Targets: (N, T) labels for cross-entropy, (N, T, K) otherwise.
    The engine hands it outputs flattened per sample, (..., N, T·K); `value` takes (N, T, K)
    too. The output Hessian B of a sample is block-diagonal, one K × K block per position."""

    def __init__(self, base, T, K):
        self.base, self.T, self.K = base, int(T), int(K)
        self.name = base.name

    def _rows(self, z):
        """(..., N, T·K) -> one row per position, (..., N·T, K)."""
        return np.reshape(z, z.shape[:-2] + (-1, self.K))

    def _labels(self, y):
        """(..., N, T[, K]) -> (..., N·T[, K])."""
        y = np.asarray(y)
        tail = 1 if self.base.name == "cross_entropy" else 2
        return y.reshape(y.shape[: y.ndim - tail - 1] + (-1,) + y.shape[y.ndim - tail + 1:])

    def targets(self, y, N, K):
        y = np.asarray(y)
        want = (N, self.T) if self.base.name == "cross_entropy" else (N, self.T, self.K)
        if y.shape != want:
            raise ValueError(
                f"{self.base.name} on sequence outputs (N, T, K) = (N, {self.T}, {self.K}) takes "
                f"targets of shape {want}, one per position; got {y.shape}"
            )
        flat = self.base.targets(y.reshape((N * self.T,) + y.shape[2:]), N * self.T, self.K)
        return flat.reshape((N, self.T) + flat.shape[1:])

    def value(self, z, y):
        N = z.shape[0]
        per = self.base.value(anp.reshape(z, (-1, self.K)), self._labels(y))
        return anp.sum(anp.reshape(per, (N, self.T)), axis=1)

    def _positions(self, zt, y):
        """zt (G, T·K, N) and y (N, T[, K]) as (G, K, T·N) and (T·N[, K]), (t, n) order."""
        G, _, N = zt.shape
        zp = zt.reshape(G, self.T, self.K, N).transpose(0, 2, 1, 3).reshape(G, self.K, -1)
        return zp, np.swapaxes(y, 0, 1).reshape((self.T * N,) + y.shape[2:])

    def mean_values(self, zt, y):
        return self.T * self.base.mean_values(*self._positions(zt, y))

    def accuracy(self, zt, y):
        return self.base.accuracy(*self._positions(zt, y))

    def dz(self, z, y):
        out = self.base.dz(self._rows(z), self._labels(y))
        return out.reshape(out.shape[:-2] + (-1, self.T * self.K))

    def hessian(self, z, y):
        return _block_diagonal(self.base.hessian(self._rows(z), self._labels(y)), self.T)

    def hessian_product(self, z, y, U):
        out = self.base.hessian_product(self._rows(z), self._labels(y), self._rows(U))
        return np.reshape(out, U.shape)

    def sqrt_hessian(self, z, y=None):
        y = None if y is None else self._labels(y)
        return _block_diagonal(self.base.sqrt_hessian(self._rows(z), y), self.T)

    def mean_hessian(self, z, y):
        return self.hessian(z, y).mean(0)

    def fisher_factor(self, z):
        return _block_diagonal(self.base.fisher_factor(self._rows(z)), self.T)

    def sample(self, z, rng, samples=1):
        out = self.base.sample(self._rows(z), rng, samples)
        return out.reshape((samples, z.shape[0], self.T) + out.shape[2:])

    def __repr__(self):
        return f"PerPosition({self.base!r}, T={self.T}, K={self.K})"


def for_outputs(loss, out_shape):
    """The loss of a model with outputs of `out_shape`: as is for vectors (K,); for sequences
    (T, K) a built-in loss at every position (`PerPosition`), your own loss given the outputs
    as (N, T, K)."""
    if len(out_shape) == 1:
        return loss
    T, K = out_shape
    if isinstance(loss, CustomLoss):
        fn = loss.fn
        shaped = CustomLoss(lambda z, y: fn(anp.reshape(z, (z.shape[0], T, K)), y),
                            loss.sampler, loss.name)
        return shaped
    return PerPosition(loss, T, K)


LOSSES = {"mse": MSE, "cross_entropy": CrossEntropy, "bce": BCE}


def get_loss(name):
    """A Loss instance from its name: 'mse', 'cross_entropy' or 'bce' (or a Loss)."""
    if isinstance(name, Loss):
        return name
    return LOSSES[choice("loss", name, LOSSES)]()
