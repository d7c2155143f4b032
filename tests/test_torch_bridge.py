"""cl.from_torch / cl.to_torch / cl.from_torch_loss against PyTorch itself: the same loss,
gradient and (double-backward) Hessian on the same data, every supported module kind, and the
errors for what curvlab does not model."""

import numpy as np
import pytest
import torch

import curvlab as cl

nn = torch.nn


@pytest.fixture(autouse=True)
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)


def nets():
    return {
        "mlp": (nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 4), nn.Sigmoid(),
                              nn.Linear(4, 3)), (5,)),
        "conv-relu-max": (nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(),
                                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, 3)),
                          (2, 4, 4)),
        "conv-pool-then-act": (nn.Sequential(nn.Conv2d(2, 3, 2, stride=2), nn.MaxPool2d(2),
                                             nn.Softplus(), nn.Identity(), nn.Flatten(),
                                             nn.Linear(3, 3)), (2, 4, 4)),
        "nested-avg": (nn.Sequential(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh()),
                                     nn.AvgPool2d(2), nn.Flatten(),
                                     nn.Sequential(nn.Linear(8, 4), nn.ReLU()), nn.Linear(4, 3)),
                       (1, 6, 6)),
    }


def _data(shape, N=5, K=3):
    rng = np.random.default_rng(1)
    return rng.standard_normal((N,) + shape), rng.integers(0, K, N)


@pytest.mark.parametrize("name", sorted(nets()))
def test_from_torch_reproduces_the_module(name):
    net, shape = nets()[name]
    model, w = cl.from_torch(net, shape)
    X, y = _data(shape)
    problem = cl.Problem(model, "cross_entropy", X, y)
    tX, ty = torch.as_tensor(X), torch.as_tensor(y)
    assert np.allclose(problem.outputs(w), net(tX).detach().numpy(), rtol=1e-12, atol=1e-13)
    loss = nn.CrossEntropyLoss()(net(tX), ty)
    assert abs(problem.loss(w) - loss.item()) < 1e-12
    # the gradient, in curvlab's layout
    grads = torch.autograd.grad(loss, list(net.parameters()))
    back = cl.to_torch(model, problem.grad(w))
    for g, mine in zip(grads, back.parameters()):
        assert torch.allclose(g, mine, rtol=1e-10, atol=1e-13)
    # from_torch ∘ to_torch is the identity
    model2, w2 = cl.from_torch(cl.to_torch(model, w), shape)
    assert np.array_equal(w2, w) and repr(model2) == repr(model)


@pytest.mark.parametrize("name", ["mlp", "conv-relu-max"])
def test_hessian_matches_torch_double_backward(name):
    net, shape = nets()[name]
    model, w = cl.from_torch(net, shape)
    X, y = _data(shape)
    problem = cl.Problem(model, "cross_entropy", X, y)
    params = list(net.parameters())
    loss = nn.CrossEntropyLoss()(net(torch.as_tensor(X)), torch.as_tensor(y))
    g = torch.cat([q.reshape(-1) for q in torch.autograd.grad(loss, params, create_graph=True)])
    Ht = torch.stack([torch.cat([q.reshape(-1) for q in
                                 torch.autograd.grad(g[i], params, retain_graph=True)])
                      for i in range(len(g))]).detach().numpy()
    # curvlab's layout per layer: for each output unit its weights then its bias
    perm = np.concatenate([np.concatenate([I[:, :-1].ravel(), I[:, -1]])
                           for I in model.unflatten(np.arange(model.n_params))])
    H = cl.hessian(problem, w)[np.ix_(perm, perm)]
    assert np.max(np.abs(H - Ht)) < 1e-12 * np.max(np.abs(Ht))


@pytest.mark.parametrize("make,K,N,scale", [
    (lambda: nn.CrossEntropyLoss(), 3, 5, 1.0),
    (lambda: nn.CrossEntropyLoss(reduction="sum"), 3, 5, 5.0),
    (lambda: nn.MSELoss(), 3, 5, 2.0 / 3),
    (lambda: nn.MSELoss(reduction="sum"), 3, 5, 10.0),
    (lambda: nn.BCEWithLogitsLoss(), 3, 5, 1.0 / 3),
])
def test_from_torch_loss_scale_maps_the_values(make, K, N, scale):
    tl = make()
    conv = cl.from_torch_loss(tl, n_outputs=K, n_samples=N)
    loss, s = conv
    assert s == pytest.approx(scale, rel=1e-15)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((N, K))
    if loss.name == "cross_entropy":
        y = rng.integers(0, K, N)
        ty = torch.as_tensor(y)
    else:
        y = rng.random((N, K)) if loss.name == "bce" else rng.standard_normal((N, K))
        ty = torch.as_tensor(y)
    ours = np.mean(loss.value(z, y))
    assert tl(torch.as_tensor(z), ty).item() == pytest.approx(s * ours, rel=1e-13)
    assert "torch" in conv.note and "×" in conv.note


def test_from_torch_loss_needs_what_its_scale_depends_on():
    with pytest.raises(ValueError, match="pass n_outputs=K"):
        cl.from_torch_loss(nn.MSELoss())
    with pytest.raises(ValueError, match="pass n_samples=N"):
        cl.from_torch_loss(nn.CrossEntropyLoss(reduction="sum"))
    with pytest.raises(ValueError, match="label_smoothing"):
        cl.from_torch_loss(nn.CrossEntropyLoss(label_smoothing=0.1))
    with pytest.raises(TypeError, match="cl.Loss"):
        cl.from_torch_loss(nn.L1Loss())


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("module,message", [
    (nn.Conv2d(2, 2, 3, groups=2), "groups=2"),
    (nn.Conv2d(2, 2, 3, dilation=2), "dilation"),
    (nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"), "padding_mode='reflect'"),
    (nn.Conv2d(2, 2, 2, padding="same"), "padding='same' with the even kernel"),
    (nn.MaxPool2d(2, stride=1), "stride 1 different from its kernel 2"),
    (nn.MaxPool2d(2, padding=1), "padding 1"),
    (nn.AvgPool2d(2, ceil_mode=True), "ceil_mode=True"),
    (nn.Softplus(beta=2.0), "beta=2.0"),
    (nn.Flatten(start_dim=2), "start_dim=2"),
    (nn.GELU(approximate="tanh"), "approximate='tanh'"),
])
def test_what_curvlab_does_not_model_is_refused_by_name(module, message):
    net = nn.Sequential(nn.Conv2d(2, 2, 1), module, nn.Flatten())
    with pytest.raises(ValueError, match=message) as e:
        cl.from_torch(net, (2, 6, 6))
    # the module by its name in the module, then a route that exists
    assert str(e.value).startswith("from_torch: module '1' (") and "cl." in str(e.value)


def test_layers_without_bias_gelu_and_silu_are_read():
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding="same", bias=False), nn.GELU(),
                        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(12, 4, bias=False), nn.SiLU(),
                        nn.Linear(4, 3))
    model, w = cl.from_torch(net, (2, 4, 4))
    assert [getattr(m, "bias", None) for m in model.layers] == [False, False, True]
    assert model.n_params == 54 + 48 + 15
    X, y = _data((2, 4, 4))
    problem = cl.Problem(model, "cross_entropy", X, y)
    assert np.allclose(problem.outputs(w), net(torch.as_tensor(X)).detach().numpy(), rtol=1e-12,
                       atol=1e-13)
    flat = nn.utils.parameters_to_vector(net.parameters()).detach().numpy()
    assert np.array_equal(w[cl.torch_order(model)], flat)
    # and back: to_torch writes the same module
    back = cl.to_torch(model, w)
    assert [type(m).__name__ for m in back] == [type(m).__name__ for m in net]
    assert torch.equal(nn.utils.parameters_to_vector(back.parameters()),
                       torch.as_tensor(flat))


def test_unsupported_modules_are_named_with_the_supported_list():
    with pytest.raises(ValueError, match=r"module '1' is ELU.*supported: Linear, Conv1d, Conv2d"):
        cl.from_torch(nn.Sequential(nn.Linear(3, 3), nn.ELU(), nn.Linear(3, 2)), (3,))


def test_activations_that_follow_no_dense_layer_are_layers_of_their_own():
    X = np.random.default_rng(7).standard_normal((4, 3))
    for net, reprs in [
        (nn.Sequential(nn.ReLU(), nn.Linear(3, 2)), ["Act('relu')", "Dense(3, 2, 'identity')"]),
        (nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Tanh(), nn.Linear(3, 2)),
         ["Dense(3, 3, 'relu')", "Act('tanh')", "Dense(3, 2, 'identity')"]),
    ]:
        net = net.double()
        model, w = cl.from_torch(net, (3,))
        assert [repr(m) for m in model.modules] == reprs
        assert np.max(np.abs(model.forward(w, X) - net(torch.as_tensor(X)).detach().numpy())) \
            < 1e-13


def test_to_torch_writes_norms_and_embeddings_and_from_torch_reads_them_back():
    rng = np.random.default_rng(4)
    bn = cl.BatchNorm(4, running_mean=rng.standard_normal(4), running_var=rng.random(4) + 0.5)
    cases = [
        (cl.Sequential([cl.Dense(3, 4), cl.LayerNorm(4, bias=False), cl.Dense(4, 4, "relu"), bn,
                        cl.RMSNorm(4, eps=1e-3), cl.Dense(4, 2)], (3,)),
         rng.standard_normal((5, 3))),
        (cl.Sequential([cl.Conv2d(1, 2, 3, padding=1, activation="tanh"),
                        cl.BatchNorm(2, mode="train"), cl.AvgPool2d(2), cl.Flatten(),
                        cl.Dense(8, 2)], (1, 4, 4)), rng.standard_normal((5, 1, 4, 4))),
        (cl.Sequential([cl.Embedding(5, 3), cl.LayerNorm(3), cl.Dense(3, 5)], (4,)),
         rng.integers(0, 5, (5, 4))),
    ]
    for model, X in cases:
        w = model.init(0) + 0.1 * rng.standard_normal(model.n_params)
        net = cl.to_torch(model, w)
        out = net(torch.as_tensor(X)).detach().numpy()
        assert np.max(np.abs(out - model.forward(w, X))) < 1e-12 * np.max(np.abs(out))
        flat = nn.utils.parameters_to_vector(net.parameters()).detach().numpy()
        assert np.array_equal(w[cl.torch_order(model)], flat)
        model2, w2 = cl.from_torch(net, example=torch.as_tensor(X))
        assert np.array_equal(w2, w) and repr(model2) == repr(model)
