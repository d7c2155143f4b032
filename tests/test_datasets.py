import numpy as np
import pytest

import curvlab as cl

SETS = {
    "spirals": lambda s: cl.datasets.spirals(n=90, classes=3, seed=s),
    "moons": lambda s: cl.datasets.moons(n=60, seed=s),
    "xor": lambda s: cl.datasets.xor(n=60, seed=s),
    "regression1d": lambda s: cl.datasets.regression1d(n=40, seed=s),
    "digits": lambda s: cl.datasets.digits(n=100, seed=s),
    "curves": lambda s: cl.datasets.curves(n=20, size=12, seed=s),
}


@pytest.mark.parametrize("name", SETS)
def test_seeded_float64_and_finite(name):
    X, y = SETS[name](0)
    X2, y2 = SETS[name](0)
    X3, _ = SETS[name](1)
    assert X.dtype == np.float64 and np.all(np.isfinite(X))
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    assert not np.array_equal(X, X3)
    assert len(X) == len(y)


def test_shapes_and_label_ranges():
    X, y = cl.datasets.spirals(n=90, classes=3)
    assert X.shape == (90, 2) and set(y) == {0, 1, 2} and np.bincount(y).tolist() == [30, 30, 30]
    X, y = cl.datasets.digits()
    assert X.shape == (1797, 64) and X.min() == 0 and X.max() == 1 and set(y) == set(range(10))
    X, y = cl.datasets.curves(n=5, size=16)
    assert X.shape == (5, 256) and np.array_equal(X, y) and 0 <= X.min() and X.max() <= 1
    assert np.all(X.max(1) > 0.9)   # every image has a stroke
    X, y = cl.datasets.regression1d(n=10)
    assert X.shape == (10, 1) and y.shape == (10, 1)
    X, y = cl.datasets.xor(n=200, noise=0.0)
    assert np.array_equal(y, (np.sign(X[:, 0]) != np.sign(X[:, 1])).astype(int))


def test_data_sets_feed_problems():
    X, y = cl.datasets.spirals(n=60)
    p = cl.Problem(cl.MLP([2, 8, 3]), "cross_entropy", X, y)
    X, y = cl.datasets.xor(n=20)
    p2 = cl.Problem(cl.MLP([2, 4, 1]), "bce", X, y)
    X, _ = cl.datasets.curves(n=10, size=8)
    p3 = cl.Problem(cl.MLP([64, 6, 64], "sigmoid"), "bce", X, X)
    for prob in (p, p2, p3):
        assert np.isfinite(prob.loss(prob.model.init(0)))


def test_bad_sizes():
    with pytest.raises(ValueError, match="n must be"):
        cl.datasets.moons(n=0)
    with pytest.raises(ValueError, match="1797"):
        cl.datasets.digits(n=5000)


def test_sequence_tasks_are_integer_tokens_with_a_target_at_every_position():
    X, y = cl.datasets.sorting(n=50, length=5, vocab=7, seed=1)
    assert X.shape == y.shape == (50, 5) and X.dtype.kind == y.dtype.kind == "i"
    assert X.min() >= 0 and X.max() <= 6
    for xs, ys in zip(X, y):
        assert list(ys) == sorted(xs)
    X, y = cl.datasets.modular_sums(n=30, length=4, modulus=3, seed=2)
    assert X.shape == y.shape == (30, 4) and X.max() <= 2
    for xs, ys in zip(X, y):
        total = 0
        for t in range(4):
            total = (total + int(xs[t])) % 3
            assert ys[t] == total
    assert np.array_equal(cl.datasets.sorting(seed=3)[0], cl.datasets.sorting(seed=3)[0])
    with pytest.raises(ValueError, match="vocab must be >= 2, got 1"):
        cl.datasets.sorting(vocab=1)
