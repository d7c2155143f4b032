"""cl.from_torch on modules torch.fx traces (residual x + f(x), x.mean(1), functions) and on the
new modules (norms, Embedding, MultiheadAttention, TransformerEncoderLayer): the same outputs as
torch's forward, Hessian and GGN equal to torch's double backward (torch.autograd.grad twice —
not torch.func, whose second derivatives through native layer_norm / batch_norm are wrong),
cl.torch_order against torch's parameter vector, and the refusals by name."""

import autograd.numpy as anp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import curvlab as cl  # noqa: E402

nn = torch.nn
F = torch.nn.functional


@pytest.fixture(autouse=True)
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


# tiny torch nets ---------------------------------------------------------------------------
class ResMLP(nn.Module):
    """x -> a(x); h + f(h) (f: Linear, tanh, Linear, by a function call); LayerNorm; head."""

    def __init__(self, norm=True):
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.f1, self.f2 = nn.Linear(4, 5), nn.Linear(5, 4)
        self.norm = nn.LayerNorm(4) if norm else nn.Identity()
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        h = self.a(x)
        h = h + self.f2(torch.tanh(self.f1(h)))
        return self.head(self.norm(h))


class SeqMean(nn.Module):
    """Linear on (N, T, D) shared over positions, GELU, x.mean(1), head."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.Linear(3, 5), nn.Linear(5, 3)

    def forward(self, x):
        return self.l2(F.gelu(self.l1(x)).mean(1))


class Tiny(nn.Module):
    """Embedding, a TransformerEncoderLayer (causal), a head per position."""

    def __init__(self, norm_first=False, activation="relu", V=5, d=4, dropout=0.0):
        super().__init__()
        self.emb = nn.Embedding(V, d)
        self.enc = nn.TransformerEncoderLayer(d, 2, 6, dropout=dropout, batch_first=True,
                                              norm_first=norm_first, activation=activation)
        self.head = nn.Linear(d, V)

    def forward(self, x):
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1])
        return self.head(self.enc(self.emb(x), src_mask=mask, is_causal=True))


class Attn(nn.Module):
    """x + MHA(x, x, x) (causal, bool mask from a buffer), RMSNorm, mean, head."""

    def __init__(self, d=4):
        super().__init__()
        self.inp = nn.Linear(2, d)
        self.mha = nn.MultiheadAttention(d, 2, batch_first=True)
        self.norm = nn.RMSNorm(d)
        self.head = nn.Linear(d, 3)
        self.register_buffer("mask", torch.triu(torch.ones(3, 3, dtype=torch.bool), 1))

    def forward(self, x):
        h = self.inp(x)
        h = h + self.mha(h, h, h, need_weights=False, attn_mask=self.mask)[0]
        return self.head(self.norm(h).mean(dim=1))


def nets():
    """name -> (module, input (N, ...), targets, loss 'cross_entropy' | 'mse')."""
    rng = np.random.default_rng(0)
    ce = lambda N, K: rng.integers(0, K, N)  # noqa: E731
    return {
        "residual-mlp-layernorm": (ResMLP(), rng.standard_normal((4, 3)), ce(4, 3)),
        "residual-mlp": (ResMLP(norm=False), rng.standard_normal((4, 3)), ce(4, 3)),
        "cnn-no-bias": (nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, bias=False), nn.ReLU(),
                                      nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3)),
                        rng.standard_normal((4, 1, 4, 4)), ce(4, 3)),
        "gelu-silu": (nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 4), nn.SiLU(),
                                    nn.Linear(4, 2, bias=False)),
                      rng.standard_normal((4, 3)), ce(4, 2)),
        "conv1d": (nn.Sequential(nn.Conv1d(2, 2, 3, padding="same"), nn.Softplus(),
                                 nn.Flatten(), nn.Linear(10, 2)),
                   rng.standard_normal((4, 2, 5)), ce(4, 2)),
        "sequence-mean": (SeqMean(), rng.standard_normal((4, 3, 3)), ce(4, 3)),
        # torch's usual order: the activation after the norm (a cl.Act of its own)
        "bn-eval": (nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.Tanh(),
                                  nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8, 2)),
                    rng.standard_normal((4, 1, 4, 4)), ce(4, 2)),
        "bn-train": (nn.Sequential(nn.Linear(3, 4), nn.Sigmoid(), nn.BatchNorm1d(4),
                                   nn.Linear(4, 2)), rng.standard_normal((5, 3)), ce(5, 2)),
        "cnn-bn-train": (nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(),
                                       nn.BatchNorm2d(2), nn.MaxPool2d(2), nn.Flatten(),
                                       nn.Linear(8, 2)), rng.standard_normal((4, 1, 4, 4)),
                         ce(4, 2)),
        "bn1d-on-maps": (nn.Sequential(nn.BatchNorm1d(2), nn.Conv1d(2, 2, 2), nn.Flatten(),
                                       nn.Linear(6, 2)), rng.standard_normal((4, 2, 4)), ce(4, 2)),
        "rmsnorm-silu": (nn.Sequential(nn.Linear(3, 4), nn.SiLU(), nn.RMSNorm(4),
                                       nn.Linear(4, 2)), rng.standard_normal((4, 3)),
                         rng.standard_normal((4, 2))),
        "attention": (Attn(), rng.standard_normal((3, 3, 2)), ce(3, 3)),
        "transformer": (Tiny(), rng.integers(0, 5, (3, 4)), rng.integers(0, 5, (3, 4))),
        "transformer-norm-first-gelu": (Tiny(True, "gelu"), rng.integers(0, 5, (3, 4)),
                                        rng.integers(0, 5, (3, 4))),
    }


def _prepare(name):
    net, X, y = nets()[name]
    if name == "bn-eval":                       # running statistics that are not 0 and 1
        bn = net[1]
        bn.running_mean.copy_(torch.tensor([0.3, -0.2]))
        bn.running_var.copy_(torch.tensor([1.7, 0.6]))
        net.eval()
    loss = "mse" if name == "rmsnorm-silu" else "cross_entropy"
    model, w = cl.from_torch(net, example=torch.as_tensor(X))
    return net, X, y, loss, model, w


def torch_loss(z, y, loss):
    """curvlab's convention in torch: a per-sample sum over outputs (and positions; MSE with ½),
    averaged over the N samples."""
    N = z.shape[0]
    if loss == "mse":
        return 0.5 * ((z - y) ** 2).sum() / N
    K = z.shape[-1]
    return F.cross_entropy(z.reshape(-1, K), y.reshape(-1), reduction="sum") / N


def torch_vector(rows, params):
    return torch.cat([(torch.zeros_like(p) if r is None else r).reshape(-1)
                      for r, p in zip(rows, params)])


def math_attention(f):
    """f under torch's composite ("math") attention kernel: its fused CPU kernels have no
    double backward."""
    def wrapped(*args):
        from torch.nn.attention import SDPBackend, sdpa_kernel
        with sdpa_kernel(SDPBackend.MATH):
            return f(*args)
    return wrapped


@math_attention
def torch_hessian(net, X, y, loss):
    """Torch's Hessian by double backward (torch.autograd.grad twice), in torch's order."""
    params = list(net.parameters())
    L = torch_loss(net(X), y, loss)
    g = torch_vector(torch.autograd.grad(L, params, create_graph=True), params)
    return torch.stack([torch_vector(torch.autograd.grad(g[i], params, retain_graph=True,
                                                         allow_unused=True), params)
                        for i in range(len(g))]).detach().numpy()


@math_attention
def torch_ggn(net, X, y, loss):
    """Jᵀ (∂²L/∂z²) J of the whole batch (J: the batch outputs' Jacobian by backward passes,
    ∂²L/∂z² by double backward), in torch's order."""
    params = list(net.parameters())
    z = net(X)
    zf = z.reshape(-1)
    J = torch.stack([torch_vector(torch.autograd.grad(zf[i], params, retain_graph=True,
                                                      allow_unused=True), params)
                     for i in range(len(zf))])
    zz = z.detach().clone().requires_grad_(True)
    g = torch.autograd.grad(torch_loss(zz, y, loss), zz, create_graph=True)[0].reshape(-1)
    B = torch.stack([torch.autograd.grad(g[i], zz, retain_graph=True)[0].reshape(-1)
                     for i in range(len(g))])
    return (J.T @ B @ J).detach().numpy()


@math_attention
def torch_products(net, X, y, loss, V):
    """H V and G V for the columns of V (torch's order): H V by double backward, G V = Jᵀ B J V
    with J V by the double-vjp trick, B (J V) by double backward of the loss in z, Jᵀ by vjp."""
    params = list(net.parameters())
    z = net(X)
    L = torch_loss(z, y, loss)
    g = torch_vector(torch.autograd.grad(L, params, create_graph=True), params)
    u = torch.zeros_like(z, requires_grad=True)
    Jt_u = torch_vector(torch.autograd.grad(z, params, u, create_graph=True,
                                            allow_unused=True), params)
    zz = z.detach().clone().requires_grad_(True)
    gz = torch.autograd.grad(torch_loss(zz, y, loss), zz, create_graph=True)[0]
    HV, GV = [], []
    for v in torch.as_tensor(V).T:
        HV.append(torch_vector(torch.autograd.grad(g @ v, params, retain_graph=True,
                                                   allow_unused=True), params))
        Jv = torch.autograd.grad(Jt_u @ v, u, retain_graph=True)[0]
        BJv = torch.autograd.grad((gz * Jv).sum(), zz, retain_graph=True)[0]
        GV.append(torch_vector(torch.autograd.grad(z, params, BJv, retain_graph=True,
                                                   allow_unused=True), params))
    return torch.stack(HV, 1).detach().numpy(), torch.stack(GV, 1).detach().numpy()


# the tests ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(nets()))
def test_outputs_parameters_and_order_equal_torchs(name):
    net, X, y, loss, model, w = _prepare(name)
    out = net(torch.as_tensor(X)).detach().numpy()
    assert rel(model.forward(w, X), out) < 1e-12
    flat = nn.utils.parameters_to_vector(net.parameters()).detach().numpy()
    order = cl.torch_order(model)
    assert np.array_equal(np.sort(order), np.arange(len(flat)))
    assert np.array_equal(w[order], flat)


DENSE = ["residual-mlp", "cnn-no-bias", "gelu-silu", "conv1d", "sequence-mean"]


@pytest.mark.parametrize("name", DENSE)
def test_hessian_and_ggn_equal_torchs_double_backward(name):
    net, X, y, loss, model, w = _prepare(name)
    problem = cl.Problem(model, loss, X, y)
    tX, ty = torch.as_tensor(X), torch.as_tensor(y)
    assert abs(problem.loss(w) - torch_loss(net(tX), ty, loss).item()) < 1e-12
    H = cl.torch_bridge.from_torch_layout(torch_hessian(net, tX, ty, loss), model)
    assert rel(cl.hessian(problem, w), H) < 1e-10
    G = cl.torch_bridge.from_torch_layout(torch_ggn(net, tX, ty, loss), model)
    assert rel(cl.ggn(problem, w), G) < 1e-10


@pytest.mark.parametrize("name", sorted(set(nets()) - set(DENSE)))
def test_hessian_and_ggn_products_equal_torchs_double_backward(name):
    """Larger nets: the dense H and G times three random directions against torch's products
    (a wrong entry of H or G changes H v for almost every v)."""
    net, X, y, loss, model, w = _prepare(name)
    problem = cl.Problem(model, loss, X, y)
    tX, ty = torch.as_tensor(X), torch.as_tensor(y)
    assert abs(problem.loss(w) - torch_loss(net(tX), ty, loss).item()) < 1e-12
    order = cl.torch_order(model)
    V = np.random.default_rng(5).standard_normal((model.n_params, 3))
    HV, GV = torch_products(net, tX, ty, loss, V[order])
    assert rel((cl.hessian(problem, w) @ V)[order], HV) < 1e-10
    assert rel((cl.ggn(problem, w) @ V)[order], GV) < 1e-10


def test_what_the_converters_read():
    net, X, y, loss, model, w = _prepare("transformer")
    enc = model.modules[1:5]
    assert [type(m).__name__ for m in enc] == ["Residual", "LayerNorm", "Residual", "LayerNorm"]
    assert enc[0].layers[0].causal and enc[2].layers[0].act.name == "relu"
    _, _, _, _, model, _ = _prepare("transformer-norm-first-gelu")
    assert [type(m).__name__ for m in model.modules[1:3]] == ["Residual", "Residual"]
    assert [type(m).__name__ for m in model.modules[1].layers] == ["LayerNorm", "SelfAttention"]
    assert model.modules[2].layers[1].act.name == "gelu"
    _, _, _, _, model, _ = _prepare("bn-train")
    assert model.modules[1].mode == "train"
    _, _, _, _, model, _ = _prepare("bn-eval")
    assert model.modules[1].mode == "eval" and model.modules[0].act.name == "identity"
    assert isinstance(model.modules[2], cl.Act) and model.modules[2].name == "tanh"
    _, _, _, _, model, _ = _prepare("attention")
    assert model.modules[1].layers[0].causal
    # dropout in eval mode is the identity (torch's fused eval path gives the same outputs)
    net, X = Tiny(dropout=0.1).eval(), torch.tensor([[0, 1, 2, 4], [3, 3, 1, 0]])
    model, w = cl.from_torch(net, example=X)
    with torch.no_grad():
        assert rel(model.forward(w, X.numpy()), net(X).numpy()) < 1e-12
    # the module itself is neither run nor changed (train-mode BatchNorm would update its stats)
    bn = nn.BatchNorm1d(3)
    cl.from_torch(nn.Sequential(nn.Linear(2, 3), bn, nn.Linear(3, 2)), (2,))
    assert int(bn.num_batches_tracked) == 0 and bn.running_mean.abs().max() == 0


def test_layernorm_without_bias_and_norms_without_affine():
    for norm, P in [(nn.LayerNorm(4, bias=False), 4), (nn.LayerNorm(4, elementwise_affine=False),
                                                       0), (nn.RMSNorm(4, eps=1e-3), 4)]:
        net = nn.Sequential(nn.Linear(3, 4), norm, nn.Linear(4, 2))
        X = np.random.default_rng(1).standard_normal((3, 3))
        model, w = cl.from_torch(net, (3,))
        assert model.n_params == 16 + P + 10
        assert rel(model.forward(w, X), net(torch.as_tensor(X)).detach().numpy()) < 1e-12


def test_from_torch_layout_and_to_torch_round_trip_on_a_traced_module():
    net, X, y, loss, model, w = _prepare("residual-mlp")
    problem = cl.Problem(model, loss, X, y)
    H = cl.hessian(problem, w)
    order = cl.torch_order(model)
    assert np.array_equal(cl.torch_bridge.from_torch_layout(H[np.ix_(order, order)], model), H)
    v = np.arange(model.n_params, dtype=float)
    mv = cl.torch_bridge.from_torch_layout(lambda u: 2 * u, model)
    assert np.array_equal(mv(v), 2 * v)


def test_integer_inputs_need_an_example():
    with pytest.raises(ValueError, match="give example= a batch of them"):
        cl.from_torch(Tiny(), input_shape=(4,))
    with pytest.raises(ValueError, match="input_shape is"):
        cl.from_torch(nn.Sequential(nn.Linear(3, 2)), (4,), example=torch.zeros(2, 3))


def _refusal(net, X, match, error=ValueError):
    with pytest.raises(error, match=match) as e:
        cl.from_torch(net, example=X)
    message = str(e.value)
    assert message.startswith("from_torch")
    print(message)
    return message


class Doubled(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(2, 2)

    def forward(self, x):
        return self.l(self.l(x))


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 2)

    def forward(self, x):
        return self.a(x) + self.b(x)


class Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 2)

    def forward(self, x):
        return self.a(x)


class Control(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(2, 2)

    def forward(self, x):
        return self.a(x) if x.sum() > 0 else x


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(2, 2)

    def forward(self, x):
        return 2 * self.a(x)


class WrongMean(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(2, 2)

    def forward(self, x):
        return self.a(x).mean(2)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_refusals_name_the_module_and_a_route_that_exists():
    x4, x2 = torch.randn(2, 2, 4, 4), torch.randn(3, 2)
    seq = torch.randn(3, 4, 2)
    conv = lambda m: nn.Sequential(m, nn.Flatten())   # noqa: E731
    cases = [
        (conv(nn.Conv2d(2, 2, 3, groups=2)), x4, r"module '0' \(Conv2d.*has groups=2"),
        (conv(nn.Conv2d(2, 2, 3, dilation=2)), torch.randn(2, 2, 6, 6), r"has dilation=\(2, 2\)"),
        (conv(nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect")), x4,
         "padding_mode='reflect'"),
        (conv(nn.Conv2d(2, 2, 2, padding="same")), x4, r"padding='same' with the even kernel"),
        (conv(nn.MaxPool2d(2, stride=1)), x4, "stride 1 different from its kernel 2"),
        (conv(nn.AvgPool2d(2, ceil_mode=True)), x4, "ceil_mode=True"),
        (nn.Sequential(nn.Linear(2, 2), nn.Softplus(beta=2.0)), x2, "beta=2.0"),
        (nn.Sequential(nn.Linear(2, 2), nn.GELU(approximate="tanh")), x2,
         "approximate='tanh'.*erf form"),
        (nn.Sequential(nn.Conv2d(2, 2, 1), nn.Flatten(start_dim=2)), x4, "start_dim=2"),
        (nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)), x2, "call module.eval"),
        (nn.Sequential(nn.Linear(2, 2), nn.ELU()), x2, r"module '1' is ELU.*supported: Linear"),
        (nn.Sequential(nn.Embedding(4, 2, padding_idx=0)), torch.tensor([[0, 1]]),
         "padding_idx=0"),
        (nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(4)), seq, "BatchNorm1d on a sequence"),
        (nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2, bias=False)), x2, "BatchNorm1d.*bias"),
        (Doubled(), x2, "called twice"),
        (Branchy(), x2, "not x \\+ f\\(x\\)"),
        (Unused(), x2, "'b.weight'.*not used"),
        (Scaled(), x2, "calls mul"),
        (WrongMean(), seq, r"mean over dim=2"),
        (Control(), x2, "torch.fx cannot trace Control"),
        (Tiny(dropout=0.1), torch.tensor([[0, 1, 2]]), "'enc'.*dropout p=0.1 in training mode"),
    ]
    for net, X, match in cases:
        _refusal(net, X, match)


class MHA(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.mha = nn.MultiheadAttention(4, 2, **kw)

    def forward(self, x):
        return self.mha(x, x, x, need_weights=False, **self.kw)[0]


def test_attention_variants_are_read_or_refused_by_name():
    x = torch.randn(2, 3, 4)

    def mha(call=None, **kw):
        net = MHA(**{"batch_first": True, **kw})
        net.kw = call or {}
        return net
    _refusal(mha(batch_first=False), x, "batch_first=False")
    _refusal(mha(add_bias_kv=True), x, "add_bias_kv")
    _refusal(mha({"key_padding_mask": torch.zeros(2, 3, dtype=torch.bool)}), x,
             "key_padding_mask")
    band = torch.triu(torch.ones(3, 3, dtype=torch.bool), 2)
    _refusal(mha({"attn_mask": band}), x, "not the causal mask")
    floats = torch.triu(torch.full((3, 3), -np.inf), 1)
    model, w = cl.from_torch(mha({"attn_mask": floats}), example=x)
    assert model.modules[0].causal
    model, w = cl.from_torch(mha(bias=False), example=x)
    assert model.n_params == 4 * 16 and not model.modules[0].causal


def test_activations_move_in_front_of_a_max_pool():
    net = nn.Sequential(nn.Conv2d(1, 2, 2, stride=2), nn.MaxPool2d(2), nn.Tanh(), nn.Flatten(),
                        nn.Linear(2, 2))
    model, w = cl.from_torch(net, (1, 4, 4))
    assert model.modules[0].act.name == "tanh"
    X = np.random.default_rng(2).standard_normal((3, 1, 4, 4))
    assert rel(model.forward(w, X), net(torch.as_tensor(X)).detach().numpy()) < 1e-12


def test_activations_after_a_norm_or_a_residual_sum_are_layers_of_their_own():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.norm, self.inner = nn.Linear(3, 3), nn.LayerNorm(3), nn.Linear(3, 3)
            self.out = nn.Linear(3, 2)

        def forward(self, x):
            x = torch.relu(self.norm(self.lin(x)))           # after a norm
            x = nn.functional.gelu(x + self.inner(x))        # after a residual sum
            return self.out(x)

    net = Block().double()
    X = np.random.default_rng(4).standard_normal((5, 3))
    model, w = cl.from_torch(net, (3,))
    names = [type(m).__name__ for m in model.modules]
    assert names == ["Dense", "LayerNorm", "Act", "Residual", "Act", "Dense"]
    assert [model.modules[2].name, model.modules[4].name] == ["relu", "gelu"]
    assert rel(model.forward(w, X), net(torch.as_tensor(X)).detach().numpy()) < 1e-12
    # the Hessian through the stand-alone activations (gelu's f'' term) against torch
    y = np.array([0, 1, 1, 0, 1])
    problem = cl.Problem(model, "cross_entropy", X, y)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    params = list(net.parameters())

    def loss():
        return nn.functional.cross_entropy(net(Xt), yt)

    g = torch.autograd.grad(loss(), params, create_graph=True)
    flat = torch.cat([t.reshape(-1) for t in g])
    order = cl.torch_order(model)
    V = np.random.default_rng(5).standard_normal((model.n_params, 2))
    for v in V.T:
        Hv_torch = torch.autograd.grad(flat @ torch.as_tensor(v[order]), params, retain_graph=True)
        Hv_torch = torch.cat([t.reshape(-1) for t in Hv_torch]).numpy()
        assert rel(cl.hvp(problem, w, v)[order], Hv_torch) < 1e-10


# library manners ---------------------------------------------------------------------------
def _small():
    model = cl.MLP([3, 4, 2], activation="tanh")
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((5, 3)), rng.integers(0, 2, 5)
    return cl.Problem(model, "cross_entropy", X, y), model.init(1)


def test_torch_tensors_are_accepted_where_arrays_go():
    problem, w = _small()
    tw = torch.tensor(w, requires_grad=True)
    assert problem.loss(tw) == problem.loss(w)
    assert np.array_equal(problem.grad(tw), problem.grad(w))
    assert np.array_equal(cl.hessian(problem, tw), cl.hessian(problem, w))
    assert np.array_equal(cl.hvp(problem, tw, torch.ones(len(w))),
                          cl.hvp(problem, w, np.ones(len(w))))
    tp = cl.Problem(problem.model, "cross_entropy", torch.tensor(problem.X, dtype=torch.float32),
                    torch.tensor(problem.y))
    assert tp.X.dtype == np.float64 and abs(tp.loss(w) - problem.loss(w)) < 1e-6
    table = cl.compare(problem, w, ["ggn"], extra={"mine": torch.eye(len(w))})
    assert "mine" in str(table)


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_a_nan_loss_makes_hessian_and_ggn_refuse():
    problem, w = _small()
    # log of a negative output: NaN value, finite derivatives (1/z, -1/z²)
    loss = cl.Loss(lambda z, y: anp.sum(anp.log(z), axis=-1))
    bad = cl.Problem(problem.model, loss, problem.X, np.zeros((5, 2)))
    assert np.isnan(bad.loss(w))
    for f in (cl.hessian, cl.ggn):
        with pytest.raises(ValueError, match="the loss at w is nan"):
            f(bad, w)
    net = cl.UnitNetwork(3, [(0, 2), (1, 2)], inputs=[0, 1], outputs=[2])
    units = cl.Problem(net, loss, problem.X[:, :2], np.zeros((5, 1)))
    wu = np.array([1.0, -1.0, 0.5])
    assert np.isnan(units.loss(wu))
    for f in (cl.hessian, cl.ggn):
        with pytest.raises(ValueError, match="the loss at w is nan"):
            f(units, wu)
    with pytest.raises(ValueError, match="is nan at w"):
        cl.hessian(lambda v: anp.log(v[0]), np.array([-1.0, 2.0]))
