"""Small data sets, made locally and seeded (no downloads).

Every function returns (X, y) as float64 inputs and targets: integer labels for the
classification sets, real targets for regression, and y = X for the image sets meant for
autoencoders (`curves`; `digits` returns its labels, use (X, X) for an autoencoder). The
sequence tasks (`sorting`, `modular_sums`) return integer tokens X (n, T) for a model that
starts with cl.Embedding, and integer targets y (n, T), one per position.
"""

import numpy as np


def _rng(seed):
    return np.random.default_rng(seed)


def _check_n(n, minimum=1, name="n"):
    n = int(n)
    if n < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {n}")
    return n


def spirals(n=200, classes=3, noise=0.2, seed=0):
    """`classes` interleaved spiral arms in 2-D, n points in all; labels 0..classes-1."""
    n, classes = _check_n(n), _check_n(classes, 2)
    rng = _rng(seed)
    y = np.arange(n) % classes
    r = rng.random(n) * 0.9 + 0.1
    theta = y * 2 * np.pi / classes + 4.0 * r + noise * rng.standard_normal(n)
    X = np.stack([r * np.sin(theta), r * np.cos(theta)], axis=1)
    return X, y


def moons(n=200, noise=0.1, seed=0):
    """Two interleaving half circles (labels 0 and 1) with Gaussian noise."""
    n = _check_n(n)
    rng = _rng(seed)
    y = np.arange(n) % 2
    t = rng.random(n) * np.pi
    X = np.where(y[:, None] == 0,
                 np.stack([np.cos(t), np.sin(t)], 1),
                 np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1))
    return X + noise * rng.standard_normal((n, 2)), y


def xor(n=200, noise=0.15, seed=0):
    """Four Gaussian blobs at (±1, ±1); label 1 where the signs differ (XOR)."""
    n = _check_n(n)
    rng = _rng(seed)
    centers = rng.choice([-1.0, 1.0], size=(n, 2))
    X = centers + noise * rng.standard_normal((n, 2))
    return X, (centers[:, 0] != centers[:, 1]).astype(np.int64)


def regression1d(n=100, noise=0.1, seed=0):
    """y = sin(2x) + 0.3x + noise on x ∈ [-2, 2]; shapes (n, 1) and (n, 1)."""
    n = _check_n(n)
    rng = _rng(seed)
    x = np.sort(rng.uniform(-2, 2, n))[:, None]
    return x, np.sin(2 * x) + 0.3 * x + noise * rng.standard_normal((n, 1))


def digits(n=None, seed=0, images=False):
    """The 8×8 handwritten digits scikit-learn ships (1,797 images, no download), pixels in
    [0, 1], shape (n, 64) — or (n, 1, 8, 8) with images=True, NCHW for conv nets — labels
    0..9. n < 1797 draws a seeded subset."""
    from sklearn.datasets import load_digits

    data = load_digits()
    X, y = data.data / 16.0, data.target.astype(np.int64)
    if n is not None:
        n = _check_n(n)
        if n > len(X):
            raise ValueError(f"digits has {len(X)} images, asked for n={n}")
        idx = np.sort(_rng(seed).choice(len(X), n, replace=False))
        X, y = X[idx], y[idx]
    return (X.reshape(-1, 1, 8, 8) if images else X), y


def curves(n=500, size=16, seed=0, width=0.6):
    """A small CURVES-like set (after Hinton & Salakhutdinov's CURVES): random cubic Bézier
    curves through the image, rendered with a soft pen of `width` pixels into size×size images
    with intensities in [0, 1]. Returns (X, X), shape (n, size²), for autoencoders."""
    n, size = _check_n(n), _check_n(size, 4)
    rng = _rng(seed)
    ctrl = rng.uniform(0.1, 0.9, (n, 4, 2)) * (size - 1)
    t = np.linspace(0, 1, 4 * size)[:, None]
    basis = np.hstack([(1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t ** 2 * (1 - t), t ** 3])  # (T, 4)
    pts = np.einsum("tc,ncd->ntd", basis, ctrl)  # (n, T, 2)
    grid = np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="ij"), -1).reshape(-1, 2)
    X = np.empty((n, size * size))
    for i in range(n):  # per image, to keep memory at T × size² whatever n is
        d2 = ((grid[:, None, :] - pts[i][None]) ** 2).sum(-1).min(1)
        X[i] = np.exp(-d2 / (2 * width**2))
    return X, X.copy()


def sorting(n=200, length=4, vocab=5, seed=0):
    """A sequence task for small transformers: X (n, length) integer tokens drawn uniformly from
    0..vocab-1, y (n, length) the same tokens sorted ascending — a target at every position
    (cross-entropy with vocab classes per position). Every output position depends on every
    input position, so a model must mix positions (attention) to solve it."""
    n, length = _check_n(n), _check_n(length, name="length")
    vocab = _check_n(vocab, 2, "vocab")
    X = _rng(seed).integers(0, vocab, (n, length))
    return X, np.sort(X, axis=1)


def modular_sums(n=200, length=4, modulus=5, seed=0):
    """Running sums modulo `modulus`: X (n, length) integer tokens 0..modulus-1, y (n, length)
    with y[:, t] = (X[:, 0] + … + X[:, t]) mod modulus — a causal task (position t needs the
    positions up to t only), for a causal attention mask."""
    n, length = _check_n(n), _check_n(length, name="length")
    modulus = _check_n(modulus, 2, "modulus")
    X = _rng(seed).integers(0, modulus, (n, length))
    return X, np.cumsum(X, axis=1) % modulus
