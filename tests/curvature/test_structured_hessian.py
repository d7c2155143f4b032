"""The structured dense Hessian of models that are not chains (curvature.blocks.structured_hessian):
columns of Dense, conv, attention and Embedding layers from R-passes of their unit
pre-activation tangents, the other layers' by H V. Checked against autograd's generic `hessian`
on the plain forward of tests/test_attention_layers.py (nothing of curvlab's layers, engine or
losses), with each layer kind taking each route, and against the H V columns."""

import numpy as np
import pytest
from autograd import hessian

import curvlab as cl
from curvlab.curvature import blocks
from tests.test_attention_layers import make_from as make
from tests.test_attention_layers import rel

TOL = 1e-10
V, D = 5, 4


def routes(problem, w):
    """(the layers built from their pre-activations, those of them whose positions stay
    apart, taken as samples)."""
    injected, apart = blocks.structured_routes(problem.point(w))
    return injected, [l for l in injected if apart[l]]


def transformer(T, heads=2, bias=True):
    return ([cl.Embedding(V, D),
             cl.Residual([cl.LayerNorm(D), cl.SelfAttention(D, heads=heads, causal=True,
                                                            bias=bias)]),
             cl.Residual([cl.LayerNorm(D), cl.Dense(D, 6, "gelu"), cl.Dense(6, D)]),
             cl.LayerNorm(D), cl.Dense(D, V)], (T,), "cross_entropy")


# (modules, input shape, loss, the routes expected: layers from their pre-activations, those
# with their positions apart). A layer is built from its T·n unit tangents when they are at most
# half its parameters: T against V / 2 (Embedding), (d + 1) / 2 (attention, Dense) — or n when
# its positions stay apart up to a loss at every position (the Dense layers after the last
# attention), a unit's tangent then set at every position at once
CASES = {
    "short": (*transformer(T=2), ([0, 2, 4, 5, 7], [4, 5, 7])),
    "long": (*transformer(T=6), ([4, 5, 7], [4, 5, 7])),
    "no-bias": (*transformer(T=2, heads=1, bias=False), ([0, 2, 4, 5, 7], [4, 5, 7])),
    "meanpool": ([cl.Embedding(V, D), cl.SelfAttention(D, heads=1), cl.Dense(D, D, "tanh"),
                  cl.MeanPool(), cl.Dense(D, 3)], (2,), "cross_entropy", ([0, 1, 2, 3], [])),
    "float-inputs": ([cl.SelfAttention(D, heads=2, causal=True),
                      cl.Residual([cl.LayerNorm(D), cl.Dense(D, D, "tanh")]),
                      cl.Dense(D, 2)], (2, D), "mse", ([0, 2, 3], [2, 3])),
    "dense-then-attention": ([cl.Dense(D, 6, "tanh"), cl.Dense(6, D), cl.SelfAttention(D, 2),
                              cl.Dense(D, 3)], (3, D), "cross_entropy", ([1, 3], [3])),
}


@pytest.mark.parametrize("name", list(CASES))
def test_structured_hessian_matches_autograd_on_either_route(name, record_error):
    mods, shape, loss, expected = CASES[name]
    problem, w, o = make(mods, shape, loss, l2=0.01)
    assert routes(problem, w) == expected
    H = cl.hessian(problem, w)
    assert np.array_equal(H, H.T)
    assert record_error(rel(H, hessian(o.L)(w))) < TOL


def test_each_route_alone_gives_the_same_matrix(monkeypatch):
    """Every layer by H V columns (no layer injected) and by pre-activations agree, and both
    with autograd: the routes share no code but the layers' R-rules."""
    mods, shape, loss, _ = CASES["short"]
    problem, w, o = make(mods, shape, loss, N=4, l2=0.1, seed=3)
    H = cl.hessian(problem, w)
    monkeypatch.setattr(blocks, "_injected", lambda *args: False)
    assert routes(problem, w) == ([], [])
    Hc = cl.hessian(problem, w)
    assert rel(H, Hc) < 1e-13
    assert rel(Hc, hessian(o.L)(w)) < TOL


def test_chunks_of_units_do_not_change_the_matrix(monkeypatch):
    """One unit per R-pass (the smallest chunks) gives the matrix of whole layers at once."""
    mods, shape, loss, _ = CASES["no-bias"]
    problem, w, _ = make(mods, shape, loss)
    H = cl.hessian(problem, w)
    monkeypatch.setattr(blocks, "chunk_size", lambda *args, **kw: 1)
    assert routes(problem, w) == CASES["no-bias"][3]
    assert rel(cl.hessian(problem, w), H) < 1e-13


def test_within_attention_the_output_block_meets_what_q_k_v_move():
    """The attention's own block: Q, K, V against O carries the term where W_O meets ō, which
    the O block's pre-activation tangents cannot give (their rows come from the Q, K, V
    tangents instead); compared block by block with autograd."""
    mods, shape, loss, _ = CASES["float-inputs"]
    problem, w, o = make(mods, shape, loss, seed=1)
    H, ref = cl.hessian(problem, w), hessian(o.L)(w)
    sl = problem.model.layer_slices()[0]
    size = D * (D + 1)
    for a in range(4):
        for b in range(4):
            rows = slice(sl.start + a * size, sl.start + (a + 1) * size)
            cols = slice(sl.start + b * size, sl.start + (b + 1) * size)
            assert rel(H[rows, cols], ref[rows, cols]) < TOL, (a, b)


def test_coupled_samples_take_the_columns_and_the_split_refuses():
    """Train-mode BatchNorm couples the samples: the pre-activation tangents set at every
    sample at once would mix, so the Hessian comes from H V columns, and the structured build
    refuses by name."""
    model = cl.Sequential([cl.Dense(3, 4, "tanh"), cl.BatchNorm(4, mode="train"),
                           cl.Residual([cl.Dense(4, 4, "tanh")]), cl.Dense(4, 2)],
                          input_shape=(3,))
    rng = np.random.default_rng(0)
    problem = cl.Problem(model, "cross_entropy", rng.standard_normal((5, 3)),
                         rng.integers(0, 2, 5))
    w = model.init(0)
    H = cl.hessian(problem, w)
    assert rel(H, hessian(problem.loss)(w)) < TOL
    with pytest.raises(ValueError, match="BatchNorm"):
        blocks.structured_hessian(problem.point(w))


def test_positions_apart_only_with_a_loss_at_every_position():
    """The same net with MSE at every position and with a loss of your own on the whole
    sequence (here through the positions' sum, which couples them): only the first takes
    positions apart; both match autograd."""
    from autograd import numpy as anp

    def summed(z, y):                                    # z (N, T, K): one value per sample
        return 0.5 * anp.sum((anp.sum(z, axis=1) - y) ** 2, axis=1)

    model = cl.Sequential([cl.Dense(D, 3, "tanh"), cl.Dense(3, 2)], input_shape=(2, D))
    rng = np.random.default_rng(2)
    X = rng.standard_normal((4, 2, D))
    w = model.init(2) + 0.3 * rng.standard_normal(model.n_params)
    per_position = cl.Problem(model, "mse", X, rng.standard_normal((4, 2, 2)))
    whole = cl.Problem(model, cl.Loss(summed), X, rng.standard_normal((4, 2)))
    assert routes(per_position, w) == ([0, 1], [0, 1])
    assert routes(whole, w) == ([0, 1], [])
    for problem in (per_position, whole):
        assert rel(cl.hessian(problem, w), hessian(problem.loss)(w)) < TOL


def test_a_layer_whose_rows_outgrow_the_budget_takes_h_v_columns(monkeypatch):
    """One unit's rows Y hold N·T·P_l numbers: past the working budget the layer's columns come
    from H V (bounded memory), with the same matrix."""
    mods, shape, loss, _ = CASES["short"]
    problem, w, o = make(mods, shape, loss, N=4)
    H = cl.hessian(problem, w)
    monkeypatch.setattr(blocks, "_BATCH_BYTES", 8 * 4 * 2 * 60)    # under any layer's unit
    assert routes(problem, w) == ([], [])
    assert rel(cl.hessian(problem, w), H) < 1e-13
