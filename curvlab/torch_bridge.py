"""PyTorch interop: a torch module as a curvlab model with its parameters in curvlab's flat
layout, and back; torch's losses as curvlab's, with the scale between the two.

torch is imported here only, when one of these functions is called (`pip install
'curvlab[torch]'` pins the CPU build). Parameters come over as float64.

How a module is read. `from_torch` traces the module with torch.fx (an nn.Sequential is traced
like any other module), keeping every module it knows as a leaf (`_tracer`) — torch.fx cannot
trace into TransformerEncoderLayer or MultiheadAttention, whose fast-path checks are control
flow, so they are read from their attributes. It then runs the traced graph once on a batch
(`example`, or standard-normal inputs of `input_shape`), in float64 on a copy of the module,
to know every value's shape and the constant tensors (attention masks), and walks the graph:

    a leaf module               its converter in CONVERTERS (one small function per torch class)
    a + b                       cl.Residual when one of a, b is x and the other f(x)
    x.mean(dim) over positions  cl.MeanPool ((N, T, D) -> (N, D); (N, C, L) -> (N, C))
    relu, tanh, ... (functions) the activation of the Dense / conv layer before it
    torch.flatten(x, 1)         cl.Flatten

    torch                                   curvlab (flat layout: DESIGN.md)
    Linear(n_in, n_out, bias)               Dense(n_in, n_out, bias=...)  W̄ = [weight | bias]
    Conv1d / Conv2d(c_in, c_out, k, ...)    Conv1d / Conv2d(...)   W̄ = [weight₂ | bias]
                                              (weight₂ = weight.reshape(c_out, -1));
                                              padding='same' (odd kernels) as k // 2
    ReLU, Tanh, Sigmoid, Softplus, GELU,    the activation of the Linear or conv layer before it
      SiLU                                    (GELU: the erf form only)
    Identity, Dropout (eval, or p = 0)      nothing
    MaxPool2d(k), AvgPool2d(k)              the same (stride = kernel, no padding)
    Flatten()                               Flatten() (both order features (C, H, W))
    LayerNorm(d), RMSNorm(d)                LayerNorm / RMSNorm      γ then β / γ
    BatchNorm1d / BatchNorm2d(c)            BatchNorm(c, mode=...)   γ then β; mode "train" when
                                              module.training or not track_running_stats
    Embedding(V, d)                         Embedding(V, d)          the (V, d) table
    MultiheadAttention(d, h, batch_first)   SelfAttention(d, h, causal=...)  Q, K, V, O blocks
    TransformerEncoderLayer(batch_first)    Residual blocks of LayerNorm, SelfAttention, Dense

An activation right after a Linear or conv layer becomes that layer's activation (where the
chain algorithms read it); any other (Conv2d, BatchNorm2d, ReLU; after a residual sum) becomes a
layer of its own, cl.Act. An activation right after a MaxPool2d is moved in front of it: every
supported activation is non-decreasing, so it commutes with taking a maximum. What a converter
does not read — groups, dilation, padding modes other than zeros, pooling with a stride other
than its kernel, Softplus with beta ≠ 1, GELU(approximate='tanh'), masks other than the causal
one, ... — is refused by name, with a route that exists (cl.Function, or the model written in
curvlab), never silently changed. As a last guard the curvlab model's outputs are compared with
the module's on the batch it was run on. Cost: a deep copy of the module, one trace, one torch
forward and one curvlab forward on that batch.

`torch_order(model)` maps torch's parameter vector (`parameters_to_vector(module.parameters())`,
registration order) to curvlab's: every converter reads the torch parameters through one
accessor, called once for their values and once for their positions in torch's vector.
"""

import copy
import inspect
import operator
from collections import namedtuple
from types import SimpleNamespace

import numpy as np

from . import losses
from .layers import (
    FORK,
    JOIN,
    Act,
    Affine,
    AvgPool2d,
    Conv1d,
    Conv2d,
    Dense,
    Flatten,
    MaxPool2d,
    MeanPool,
    Residual,
)
from .nn import Sequential

_ROUTE = ("write that part as a cl.Function(fn, shape) (your own layer, its rules by autograd) "
          "or write the model in curvlab (cl.Sequential)")


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError(
            "this needs PyTorch: pip install 'curvlab[torch]' (the CPU build of "
            "torch 2.13.0; an unpinned torch pulls several GB of CUDA)"
        ) from None
    return torch


class TorchRefusal(ValueError):
    """from_torch met something curvlab does not model (the message names it and a route)."""


# What the graph walk builds: curvlab layers, activation markers (attached to the Dense or conv
# layer before them) and residual blocks (assembled into cl.Residual at the end).
_Act = namedtuple("_Act", "name where")
_Res = namedtuple("_Res", "ops")


class _Reader:
    """What a converter gets besides its module: `param(layer, fn)` registers a layer's
    parameters as fn(get) (get maps a torch Parameter to an array; called once for values and
    once for positions in torch's vector), `refuse(what, route)`, and the call's arguments."""

    def __init__(self, torch, name, mod, call, registry):
        self.torch, self.name, self.mod, self.call = torch, name, mod, call
        self.registry = registry

    def param(self, layer, fn):
        self.registry[id(layer)] = fn
        return layer

    def refuse(self, what, route=None):
        raise TorchRefusal(f"from_torch: module '{self.name}' ({_short(self.mod)}) has {what}: "
                           f"{route or 'curvlab does not model it; ' + _ROUTE}")

    def argument(self, key, default=None):
        """The value (after the traced run) of the call's argument `key`."""
        return self.call.get(key, default)


CONVERTERS = {}


def _short(mod):
    """A module's repr on one line (containers: their class name)."""
    text = repr(mod)
    return text if "\n" not in text else type(mod).__name__ + "(...)"


def _registrar(table):
    """A decorator factory: `@deco(*names)` puts the decorated function in `table` under each
    name."""
    def deco(*names):
        def register(fn):
            for name in names:
                table[name] = fn
            return fn
        return register
    return deco


# Register a converter for the torch modules of these class names.
converts = _registrar(CONVERTERS)


# parameter readers --------------------------------------------------------------------------
def _wbar(get, weight, bias):
    """[weight.reshape(n_out, -1) | bias] (weight alone without bias)."""
    W = get(weight).reshape(weight.shape[0], -1)
    return W if bias is None else np.hstack([W, get(bias)[:, None]])


def _affine_params(mod):
    return lambda get: _wbar(get, mod.weight, mod.bias)


def _norm_params(mod):
    """γ then β (γ alone without a bias), flat."""
    return lambda get: np.concatenate([get(p).ravel() for p in
                                       (mod.weight, getattr(mod, "bias", None)) if p is not None])


def _layers_module(name, what):
    """curvlab.layers.<name> (written by the architectures work), or a refusal by name."""
    import importlib
    try:
        return importlib.import_module(f"curvlab.layers.{name}")
    except ImportError:
        raise NotImplementedError(
            f"from_torch: {what} needs curvlab.layers.{name}, which this curvlab does not have "
            f"yet; {_ROUTE}") from None


def _accepts(cls, name):
    return name in inspect.signature(cls.__init__).parameters


def _dropout_off(rd, mod, p, name="dropout"):
    if mod.training and p > 0:
        rd.refuse(f"{name} p={p} in training mode (random)",
                  "call module.eval() first (dropout is the identity in eval mode), or use p=0")


# converters: one small function per torch module class ---------------------------------------
@converts("Linear")
def _linear(mod, rd):
    layer = Dense(mod.in_features, mod.out_features, bias=mod.bias is not None)
    return [rd.param(layer, _affine_params(mod))]


@converts("Conv1d", "Conv2d")
def _conv(mod, rd):
    cls = Conv2d if type(mod).__name__ == "Conv2d" else Conv1d
    if mod.groups != 1:
        rd.refuse(f"groups={mod.groups}")
    if any(d != 1 for d in mod.dilation):
        rd.refuse(f"dilation={tuple(mod.dilation)}")
    if mod.padding_mode != "zeros":
        rd.refuse(f"padding_mode={mod.padding_mode!r}")
    padding = mod.padding
    if padding == "valid":
        padding = 0
    elif padding == "same":
        # torch pads k - 1 in all, split evenly when k is odd (stride is 1 with 'same')
        if any(k % 2 == 0 for k in mod.kernel_size):
            rd.refuse(f"padding='same' with the even kernel {tuple(mod.kernel_size)} (torch "
                      "pads one side more)", "curvlab pads both sides equally; use an odd "
                      f"kernel, or pad with nn.ZeroPad and give the padding as numbers; {_ROUTE}")
        padding = tuple(k // 2 for k in mod.kernel_size)
    layer = cls(mod.in_channels, mod.out_channels, tuple(mod.kernel_size), tuple(mod.stride),
                tuple(padding), bias=mod.bias is not None)
    return [rd.param(layer, _affine_params(mod))]


def _two(x):
    return tuple(np.broadcast_to(x, 2).tolist())


@converts("MaxPool2d", "AvgPool2d")
def _pool(mod, rd):
    k = _two(mod.kernel_size)
    if mod.stride is not None and _two(mod.stride) != k:
        rd.refuse(f"stride {mod.stride} different from its kernel {mod.kernel_size}",
                  "curvlab pools non-overlapping windows (stride = kernel); " + _ROUTE)
    if np.any(np.asarray(mod.padding) != 0):
        rd.refuse(f"padding {mod.padding}")
    if mod.ceil_mode:
        rd.refuse("ceil_mode=True")
    if _two(getattr(mod, "dilation", 1)) != (1, 1):
        rd.refuse(f"dilation {mod.dilation}")
    if getattr(mod, "return_indices", False):
        rd.refuse("return_indices=True")
    if getattr(mod, "divisor_override", None) is not None:
        rd.refuse(f"divisor_override={mod.divisor_override}")
    return [(MaxPool2d if type(mod).__name__ == "MaxPool2d" else AvgPool2d)(k)]


@converts("Flatten")
def _flatten(mod, rd):
    if mod.start_dim != 1 or mod.end_dim != -1:
        rd.refuse(f"start_dim={mod.start_dim}, end_dim={mod.end_dim}",
                  "curvlab flattens each sample's features whole (start_dim=1, end_dim=-1); "
                  + _ROUTE)
    return [Flatten()]


@converts("Identity")
def _identity(mod, rd):
    return []


@converts("Dropout")
def _dropout(mod, rd):
    _dropout_off(rd, mod, mod.p)
    return []


_ACTS = {"ReLU": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "Softplus": "softplus",
         "GELU": "gelu", "SiLU": "silu"}


@converts(*_ACTS)
def _activation(mod, rd):
    kind = type(mod).__name__
    if kind == "Softplus" and (mod.beta != 1 or mod.threshold != 20):
        rd.refuse(f"beta={mod.beta}, threshold={mod.threshold}", "curvlab's softplus is "
                  "log(1 + eˣ) (beta 1; torch's threshold 20 differs from it by < 3e-9); "
                  + _ROUTE)
    if kind == "GELU" and mod.approximate != "none":
        rd.refuse(f"approximate={mod.approximate!r}", "curvlab's gelu is the erf form, "
                  "nn.GELU()'s default; use nn.GELU(), or " + _ROUTE)
    return [_Act(_ACTS[kind], rd.name)]


@converts("LayerNorm")
def _layernorm(mod, rd):
    norm = _layers_module("norm", "LayerNorm")
    if len(mod.normalized_shape) != 1:
        rd.refuse(f"normalized_shape={tuple(mod.normalized_shape)}",
                  "curvlab's LayerNorm normalises the last axis only; " + _ROUTE)
    kw = {}
    if mod.elementwise_affine and mod.bias is None:
        if not _accepts(norm.LayerNorm, "bias"):
            rd.refuse("no bias (bias=False)", "curvlab's LayerNorm has γ and β; " + _ROUTE)
        kw["bias"] = False
    layer = norm.LayerNorm(mod.normalized_shape[0], eps=mod.eps, affine=mod.elementwise_affine,
                           **kw)
    return [rd.param(layer, _norm_params(mod)) if mod.elementwise_affine else layer]


@converts("RMSNorm")
def _rmsnorm(mod, rd):
    norm = _layers_module("norm", "RMSNorm")
    if len(mod.normalized_shape) != 1:
        rd.refuse(f"normalized_shape={tuple(mod.normalized_shape)}",
                  "curvlab's RMSNorm normalises the last axis only; " + _ROUTE)
    layer = norm.RMSNorm(mod.normalized_shape[0], eps=mod.eps, affine=mod.elementwise_affine)
    return [rd.param(layer, _norm_params(mod)) if mod.elementwise_affine else layer]


@converts("BatchNorm1d", "BatchNorm2d")
def _batchnorm(mod, rd):
    norm = _layers_module("norm", "BatchNorm")
    train = mod.training or not mod.track_running_stats
    kw = {}
    if not mod.affine:
        if not _accepts(norm.BatchNorm, "affine"):
            rd.refuse("affine=False", "curvlab's BatchNorm has γ and β; " + _ROUTE)
        kw["affine"] = False
    elif mod.bias is None:
        if not _accepts(norm.BatchNorm, "bias"):
            rd.refuse("no bias (bias=False)", "curvlab's BatchNorm has γ and β; " + _ROUTE)
        kw["bias"] = False
    if not train:
        kw["running_mean"] = mod.running_mean.detach().to("cpu", rd.torch.float64).numpy().copy()
        kw["running_var"] = mod.running_var.detach().to("cpu", rd.torch.float64).numpy().copy()
    layer = norm.BatchNorm(mod.num_features, eps=mod.eps, mode="train" if train else "eval",
                           **kw)
    return [rd.param(layer, _norm_params(mod)) if mod.affine else layer]


@converts("Embedding")
def _embedding(mod, rd):
    emb = _layers_module("embedding", "Embedding")
    if mod.padding_idx is not None:
        rd.refuse(f"padding_idx={mod.padding_idx}", "torch keeps that row's gradient at zero, "
                  "curvlab differentiates every row; build it without padding_idx, or " + _ROUTE)
    if mod.max_norm is not None:
        rd.refuse(f"max_norm={mod.max_norm} (it rescales rows in the forward pass)")
    if mod.scale_grad_by_freq:
        rd.refuse("scale_grad_by_freq=True (a gradient that is not the loss's)")
    layer = emb.Embedding(mod.num_embeddings, mod.embedding_dim)
    return [rd.param(layer, lambda get: get(mod.weight))]


def _is_causal(rd, mask, what):
    """Whether an attention mask is none (False) or the causal one (True); else a refusal."""
    if mask is None:
        return False
    m = mask.detach().cpu().numpy()
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        rd.refuse(f"{what} of shape {tuple(m.shape)}", "curvlab reads the causal mask (T, T) "
                  "only; " + _ROUTE)
    above = np.triu(np.ones(m.shape, dtype=bool), 1)
    if m.dtype == bool:
        masked = m
    elif np.all(m[~above] == 0) and np.all(np.isneginf(m[above]) | (m[above] == 0)):
        masked = np.isneginf(m)
    else:
        masked = None
    if masked is not None and not masked.any():
        return False
    if masked is None or not np.array_equal(masked, above):
        rd.refuse(f"an {what} that is not the causal mask",
                  "curvlab's SelfAttention masks the future positions (causal=True) or "
                  "nothing; " + _ROUTE)
    return True


def _mha_checks(rd, mod):
    if not mod.batch_first:
        rd.refuse("batch_first=False (inputs (T, N, d))", "curvlab's sequences are (N, T, d): "
                  "build it with batch_first=True")
    if not mod._qkv_same_embed_dim:
        rd.refuse(f"kdim={mod.kdim}, vdim={mod.vdim} different from embed_dim={mod.embed_dim}",
                  "curvlab's SelfAttention attends a sequence to itself; " + _ROUTE)
    if mod.bias_k is not None or mod.add_zero_attn:
        rd.refuse("add_bias_kv or add_zero_attn")
    if (mod.in_proj_bias is None) != (mod.out_proj.bias is None):
        rd.refuse("a bias on some projections only")
    _dropout_off(rd, mod, mod.dropout, "attention dropout")


def _attention(rd, mod, causal):
    att = _layers_module("attention", "MultiheadAttention")
    _mha_checks(rd, mod)
    d, bias = mod.embed_dim, mod.in_proj_bias is not None
    layer = att.SelfAttention(d, mod.num_heads, causal=causal, bias=bias)

    def params(get):
        W = get(mod.in_proj_weight)
        b = get(mod.in_proj_bias) if bias else None
        blocks = [W[i * d:(i + 1) * d] if b is None else
                  np.hstack([W[i * d:(i + 1) * d], b[i * d:(i + 1) * d, None]]) for i in range(3)]
        blocks.append(_wbar(get, mod.out_proj.weight, mod.out_proj.bias))
        return np.concatenate([B.ravel() for B in blocks])         # Q, K, V, O
    return rd.param(layer, params)


@converts("MultiheadAttention")
def _mha(mod, rd):
    q, k, v = (rd.argument(n) for n in ("query", "key", "value"))
    if not (q is k is v):
        rd.refuse("different query, key and value inputs", "curvlab's SelfAttention is "
                  "self-attention, mha(x, x, x); " + _ROUTE)
    if rd.argument("key_padding_mask") is not None:
        rd.refuse("a key_padding_mask", "curvlab attends every position; " + _ROUTE)
    return [_attention(rd, mod, _is_causal(rd, rd.argument("attn_mask"), "attn_mask"))]


def _tel_activation(rd, mod):
    torch = rd.torch
    f = mod.activation
    if f is torch.nn.functional.relu or isinstance(f, torch.nn.ReLU):
        return "relu"
    if f is torch.nn.functional.gelu or (isinstance(f, torch.nn.GELU) and f.approximate == "none"):
        return "gelu"
    rd.refuse(f"activation {f!r}", "curvlab reads 'relu' and 'gelu' (erf form) here; " + _ROUTE)


@converts("TransformerEncoderLayer")
def _encoder_layer(mod, rd):
    if rd.argument("src_key_padding_mask") is not None:
        rd.refuse("a src_key_padding_mask", "curvlab attends every position; " + _ROUTE)
    for name in ("dropout", "dropout1", "dropout2"):
        _dropout_off(rd, mod, getattr(mod, name).p, name)
    causal = _is_causal(rd, rd.argument("src_mask"), "src_mask")
    act = _tel_activation(rd, mod)
    sa = _attention(rd, mod.self_attn, causal)
    norms = [_layernorm(n, _Reader(rd.torch, f"{rd.name}.{k}", n, {}, rd.registry))[0]
             for k, n in (("norm1", mod.norm1), ("norm2", mod.norm2))]
    ff = [_linear(mod.linear1, rd)[0], _linear(mod.linear2, rd)[0]]
    ff[0]._set_activation(act, None)
    if mod.norm_first:       # x + sa(norm1(x)), then x + ff(norm2(x))
        return [_Res([norms[0], sa]), _Res([norms[1]] + ff)]
    return [_Res([sa]), norms[0], _Res(ff), norms[1]]          # norm1(x + sa(x)), norm2(x + ff(x))


# the traced graph's functions and methods ---------------------------------------------------
def _functions(torch):
    """call_function targets and call_method names -> what they are."""
    F = torch.nn.functional
    table = {operator.add: "add", operator.iadd: "add", torch.add: "add", "add": "add",
             torch.mean: "mean", "mean": "mean", torch.flatten: "flatten", "flatten": "flatten",
             operator.getitem: "getitem"}
    for f, name in ((torch.relu, "relu"), (F.relu, "relu"), ("relu", "relu"),
                    (torch.tanh, "tanh"), (F.tanh, "tanh"), ("tanh", "tanh"),
                    (torch.sigmoid, "sigmoid"), (F.sigmoid, "sigmoid"), ("sigmoid", "sigmoid"),
                    (F.gelu, "gelu"), (F.silu, "silu"), (F.softplus, "softplus")):
        table[f] = "act:" + name
    return table


class _Walk:
    """The traced graph (run once) as curvlab ops: a list of layers / _Act / _Res per value."""

    def __init__(self, torch, gm, env, registry):
        self.torch, self.gm, self.env, self.registry = torch, gm, env, registry
        self.functions = _functions(torch)
        self.ops, self.first = {}, {}      # node -> ops from the input; -> channels-first map
        self.called = set()

    def refuse(self, node, what, route=None):
        raise TorchRefusal(f"from_torch: {what} (traced as '{node.name}'): "
                           f"{route or 'from_torch does not read it; ' + _ROUTE}")

    def data(self, a):
        return isinstance(a, self.torch.fx.Node) and a in self.ops

    def value(self, a):
        return self.env[a] if isinstance(a, self.torch.fx.Node) else a

    def run(self):
        out = None
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                if self.ops:
                    if not self._tensor(node):         # an argument left at its default
                        continue
                    self.refuse(node, "a second input", "from_torch reads modules of one input")
                self.ops[node] = []
                x = self.env[node]
                users = [u for u in node.users if u.op == "call_module"]
                self.first[node] = x.ndim == 4 or (x.ndim == 3 and any(   # (N, C, L) maps
                    type(self.gm.get_submodule(u.target)).__name__ in ("Conv1d", "BatchNorm1d")
                    for u in users))
            elif node.op == "output":
                out = node.args[0]
                if not self.data(out) or isinstance(self.ops[out], tuple):
                    self.refuse(node, "an output that is not one tensor computed from the input")
            elif any(self.data(a) for a in node.all_input_nodes) and self._tensor(node):
                getattr(self, node.op)(node)
            # else: a constant (a mask, a shape and what is computed from it): its value is in env
        return self.ops[out]

    def _tensor(self, node):
        v = self.env[node]
        T = self.torch.Tensor
        return isinstance(v, T) or (isinstance(v, tuple) and any(isinstance(t, T) for t in v))

    def _input(self, node):
        ins = [a for a in node.all_input_nodes if self.data(a)]
        if len(ins) != 1:
            self.refuse(node, f"{len(ins)} inputs computed from the data")
        if isinstance(self.ops[ins[0]], tuple):
            self.refuse(node, "an attention's output (values, weights) used whole",
                        "from_torch reads its values, mha(x, x, x)[0]; " + _ROUTE)
        return ins[0]

    def call_module(self, node):
        mod = self.gm.get_submodule(node.target)
        kind = type(mod).__name__
        if kind not in CONVERTERS:
            self.refuse(node, f"module '{node.target}' is {kind} ({_short(mod)}), which from_torch "
                        "does not read", f"supported: {', '.join(CONVERTERS)}, residual +, "
                        f"x.mean(dim) over positions; {_ROUTE}")
        if node.target in self.called and any(True for _ in mod.parameters()):
            self.refuse(node, f"module '{node.target}' is called twice (its parameters shared "
                        "by two layers)", "each curvlab layer owns its parameters; " + _ROUTE)
        self.called.add(node.target)
        x = self._input(node)
        bound = inspect.signature(mod.forward).bind(
            *[self.value(a) for a in node.args], **{k: self.value(v) for k, v in
                                                    node.kwargs.items()})
        call = dict(bound.arguments)
        # identity of the data arguments (q is k is v) survives: compare nodes, not values
        for name, a in zip(bound.signature.parameters, node.args):
            if self.data(a):
                call[name] = a
        rd = _Reader(self.torch, node.target, mod, call, self.registry)
        self._check_layout(node, kind, x)
        new = CONVERTERS[kind](mod, rd)
        ops = self.ops[x] + list(new)
        self.ops[node] = (ops,) if kind == "MultiheadAttention" else ops   # a tuple (out, w)
        self.first[node] = kind.startswith("Conv") or (
            self.first[x] and (kind.endswith("Pool2d") or kind.startswith("BatchNorm")
                               or kind in _ACTS or kind in ("Identity", "Dropout")))

    def _check_layout(self, node, kind, x):
        """Refuse what torch and curvlab would compute over different axes."""
        shape = tuple(self.env[x].shape)
        if kind in ("LayerNorm", "RMSNorm") and self.first[x]:
            self.refuse(node, f"{kind} on a feature map of shape {shape} normalises its last "
                        "spatial axis", "curvlab's norms act on the features (channels) of a "
                        "map; use BatchNorm, or " + _ROUTE)
        if kind == "BatchNorm1d" and len(shape) == 3 and not self.first[x]:
            self.refuse(node, f"BatchNorm1d on a sequence of shape (N, T, D) = {shape} "
                        "normalises over the T axis as channels",
                        "curvlab's BatchNorm normalises channels of "
                        "(N, C) or (N, C, L) maps (after a Conv1d); " + _ROUTE)
        if kind == "Embedding" and self.ops[x]:
            self.refuse(node, "an Embedding after other layers", "an Embedding reads the "
                        "model's integer inputs; " + _ROUTE)

    def call_function(self, node, what=None):
        what = what or self.functions.get(node.target)
        if what is None:
            name = getattr(node.target, "__name__", str(node.target))
            self.refuse(node, f"the forward calls {name}",
                        "from_torch reads modules, residual +, x.mean(dim) over positions, "
                        "flatten(x, 1) and activations; " + _ROUTE)
        getattr(self, "_" + what.split(":")[0])(node, what)

    def call_method(self, node):
        self.call_function(node, self.functions.get(node.target))

    def get_attr(self, node):
        """A tensor attribute (an attention mask buffer): its value is read where it is used
        (a converter's argument); as data (in a sum, a module's input) it is refused there."""

    def _getitem(self, node, what):
        src, i = node.args
        if not isinstance(self.ops[src], tuple) or i != 0:
            self.refuse(node, f"indexing [{i}]", "from_torch reads [0] of an attention's "
                        "output (its values, not the weights); " + _ROUTE)
        self.ops[node] = self.ops[src][0]
        self.first[node] = False

    def _add(self, node, what):
        if len(node.args) != 2 or node.kwargs or not all(self.data(a) for a in node.args):
            self.refuse(node, "a sum that is not x + f(x)", "from_torch reads residual sums "
                        "x + f(x) of two values computed from the input; " + _ROUTE)
        a, b = (self.ops[n] for n in node.args)
        if len(a) > len(b):
            a, b = b, a
        if len(a) == len(b) or any(p is not q for p, q in zip(a, b)):
            self.refuse(node, "a sum of two branches that is not x + f(x)",
                        "curvlab's cl.Residual adds a block's input to its output; " + _ROUTE)
        self.ops[node] = a + [_Res(b[len(a):])]
        self.first[node] = self.first[node.args[0]]

    def _args(self, node, names):
        """Positional and keyword arguments after the first, by name."""
        out = dict(zip(names, node.args[1:]))
        out.update(node.kwargs)
        return out

    def _mean(self, node, what):
        x = node.args[0]
        kw = self._args(node, ("dim", "keepdim"))
        dim, keep = kw.get("dim"), kw.get("keepdim", False)
        shape = tuple(self.env[x].shape)
        dim = dim[0] if isinstance(dim, (tuple, list)) and len(dim) == 1 else dim
        axis = None if not isinstance(dim, int) else dim % len(shape)
        want = 2 if self.first[x] else 1
        if len(shape) != 3 or axis != want or keep or kw.get("dtype") is not None:
            self.refuse(node, f"a mean over dim={kw.get('dim')!r} (keepdim={keep}) of shape "
                        f"{shape}", "from_torch reads the mean over positions: x.mean(1) on "
                        "(N, T, D), x.mean(2) on (N, C, L) (cl.MeanPool); " + _ROUTE)
        self.ops[node] = self.ops[x] + [MeanPool()]
        self.first[node] = False

    def _flatten(self, node, what):
        kw = self._args(node, ("start_dim", "end_dim"))
        if kw.get("start_dim", 0) != 1 or kw.get("end_dim", -1) != -1:
            self.refuse(node, f"flatten(start_dim={kw.get('start_dim', 0)}, "
                        f"end_dim={kw.get('end_dim', -1)})", "from_torch reads flatten(x, 1) "
                        "(each sample's features whole); " + _ROUTE)
        self.ops[node] = self.ops[node.args[0]] + [Flatten()]
        self.first[node] = False

    def _act(self, node, what):
        name = what.split(":")[1]
        kw = self._args(node, ())
        if name == "gelu" and kw.get("approximate", "none") != "none":
            self.refuse(node, f"gelu(approximate={kw['approximate']!r})", "curvlab's gelu is the "
                        "erf form; " + _ROUTE)
        if name == "softplus" and (self._args(node, ("beta", "threshold")).get("beta", 1) != 1):
            self.refuse(node, "softplus with beta ≠ 1", "curvlab's softplus has beta 1; " + _ROUTE)
        x = self._input(node)
        self.ops[node] = self.ops[x] + [_Act(name, node.name)]
        self.first[node] = self.first[x]


def _assemble(ops):
    """Curvlab layers from walk ops: each activation set on the Dense / conv layer right before
    it (moved in front of a max-pool), where the chain algorithms read it; any other activation
    (after a norm layer, a residual sum, or at a block's start) a layer of its own, cl.Act; each
    _Res a cl.Residual."""
    out = []
    for op in ops:
        if isinstance(op, _Res):
            out.append(Residual(_assemble(op.ops)))
        elif isinstance(op, _Act):
            at = -2 if out and getattr(out[-1], "monotone", False) else -1
            target = out[at] if len(out) >= -at else None
            if isinstance(target, Affine) and target.act.name == "identity":
                target._set_activation(op.name, None)
            else:
                out.append(Act(op.name))
        else:
            out.append(op)
    return out


def _param_layers(modules):
    return [s for m in modules for s in m.program() if s not in (FORK, JOIN) and s.has_params]


def _tracer(torch):
    """A torch.fx.Tracer that keeps the modules curvlab reads as leaves (and torch's own, as
    fx does): it cannot trace into TransformerEncoderLayer or MultiheadAttention, and the
    converters read every leaf from its attributes."""
    class Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m, qualname):
            return type(m).__name__ in CONVERTERS or super().is_leaf_module(m, qualname)
    return Tracer()


def _trace(torch, module):
    try:
        graph = _tracer(torch).trace(module)
    except Exception as e:
        raise TorchRefusal(
            f"from_torch: torch.fx cannot trace {type(module).__name__} ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}): from_torch reads an nn.Sequential or "
            f"a module torch.fx can trace; {_ROUTE}") from None
    return torch.fx.GraphModule(module, graph)


def _run(torch, gm, example):
    """Every node's value on the example (float64), and the output."""
    env = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            env[n] = super().run_node(n)
            return env[n]

    try:
        with torch.no_grad():
            out = Recorder(gm).run(example)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise ValueError(f"from_torch: the module fails on the example batch of shape "
                         f"{tuple(example.shape)} ({type(e).__name__}: {first}); give "
                         "input_shape= or example= inputs the module accepts") from None
    return env, out


def _example(torch, module, input_shape, example):
    if example is None:
        if input_shape is None:
            raise ValueError("from_torch needs input_shape=(D,), (T, D), (C, L) or (C, H, W), or "
                             "example= a batch of inputs (integer token ids for an Embedding)")
        shape = (input_shape,) if np.ndim(input_shape) == 0 else tuple(input_shape)
        if any(type(m).__name__ == "Embedding" for m in module.modules()):
            raise ValueError("from_torch: this module has an Embedding, whose inputs are "
                             "integer token ids; give example= a batch of them, (N, T)")
        x = np.random.default_rng(0).standard_normal((3,) + tuple(int(s) for s in shape))
        return torch.as_tensor(x, dtype=torch.float64)
    x = torch.as_tensor(example.detach() if hasattr(example, "detach") else np.asarray(example))
    if x.dtype.is_floating_point:
        x = x.to(torch.float64)
    elif x.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"from_torch: example must be a float or integer tensor, got {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"from_torch: example must be a batch (N, ...) of inputs, got shape "
                         f"{tuple(x.shape)}")
    if input_shape is not None and tuple(x.shape[1:]) != tuple(np.ravel(input_shape)):
        raise ValueError(f"from_torch: example's samples have shape {tuple(x.shape[1:])} but "
                         f"input_shape is {input_shape}; give one of them")
    return x.cpu()


TorchSource = namedtuple("TorchSource", "order names")
TorchSource.__doc__ = ("What from_torch keeps on the model: order (torch_order) and the torch "
                       "parameters' names in torch's order.")


def from_torch(module, input_shape=None, example=None):
    """(model, w): the curvlab model of a torch module and its parameters in curvlab's flat
    layout (float64). input_shape: one sample's shape — (D,), (T, D), (C, L) or (C, H, W);
    example: a batch of inputs (needed for integer token inputs; the model's input shape is
    its samples' shape). The module is read from a copy: the module itself is not run or
    changed. Supported modules and what they become: the module docstring (and
    `CONVERTERS`). `torch_order(model)` maps torch's parameter vector to w."""
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"from_torch takes a torch.nn.Module, got {type(module).__name__}")
    x = _example(torch, module, input_shape, example)
    mod64 = copy.deepcopy(module).to(torch.float64)
    gm = _trace(torch, mod64)
    env, out = _run(torch, gm, x)
    registry = {}
    ops = _Walk(torch, gm, env, registry).run()
    modules = _assemble(ops)
    model = Sequential(modules, tuple(x.shape[1:]))

    # parameters: values and their positions in torch's vector, through the same readers
    params = list(dict.fromkeys(mod64.parameters()))        # parameters_to_vector's order
    names = {id(p): n for n, p in mod64.named_parameters()}
    offsets = np.cumsum([0] + [p.numel() for p in params])
    where = {id(p): o for p, o in zip(params, offsets)}
    values = lambda p: p.detach().cpu().numpy().astype(np.float64)  # noqa: E731
    positions = lambda p: np.arange(where[id(p)], where[id(p)] + p.numel()).reshape(p.shape)  # noqa: E731
    layers = _param_layers(modules)
    read = [registry[id(layer)](values) for layer in layers]
    for layer, theta in zip(layers, read):
        if np.size(theta) != layer.size:      # a converter's slip, not the user's
            raise RuntimeError(f"from_torch: read {np.size(theta)} parameters for {layer!r}, "
                               f"which has {layer.size}; please report this")
    w = model.flatten(read)
    pos = np.concatenate([np.ravel(registry[id(layer)](positions)) for layer in layers])
    _check_one_to_one(pos, params, names, offsets)
    model.torch_source = TorchSource(np.argsort(pos), [names[id(p)] for p in params])
    _check_outputs(model, w, x, out)
    return model, w


def _check_one_to_one(pos, params, names, offsets):
    """Every torch parameter entry read exactly once (torch_order is then a permutation)."""
    counts = np.bincount(pos.astype(np.int64), minlength=int(offsets[-1]))
    for p, o, e in zip(params, offsets[:-1], offsets[1:]):
        c = counts[o:e]
        if np.any(c == 0):
            raise TorchRefusal(
                f"from_torch: the parameter '{names[id(p)]}' {tuple(p.shape)} is not used by the "
                "forward pass, so curvlab's parameter vector would not be torch's; remove it "
                "from the module (or read the submodule that is used)")
        if np.any(c > 1):
            raise TorchRefusal(
                f"from_torch: the parameter '{names[id(p)]}' is used by more than one layer "
                "(shared weights); each curvlab layer owns its parameters: " + _ROUTE)


def _check_outputs(model, w, x, out):
    """The last guard: curvlab's forward equals the module's on the batch it was run on."""
    torch = _torch()
    if not isinstance(out, torch.Tensor):
        raise TorchRefusal(f"from_torch: the module returns {type(out).__name__}, not a tensor")
    ref = out.detach().cpu().numpy()
    mine = np.asarray(model.forward(w, x.numpy()))
    scale = max(1.0, float(np.max(np.abs(ref))) if ref.size else 1.0)
    if mine.shape != ref.shape or not np.allclose(mine, ref, rtol=0, atol=1e-9 * scale):
        err = np.max(np.abs(mine - ref)) if mine.shape == ref.shape else "shape"
        raise RuntimeError(
            f"from_torch: the curvlab model {model!r} does not reproduce the module's outputs "
            f"(shapes {mine.shape} and {ref.shape}, largest difference {err}); this is a gap "
            "in from_torch — please report it, and meanwhile " + _ROUTE)


WRITERS = {}


# Register a writer fn(torch, layer, θ) -> [torch modules] for curvlab layer classes.
writes = _registrar(WRITERS)


def _copy(param, value):
    """Set a torch parameter or buffer to a numpy value (float64)."""
    torch = _torch()
    with torch.no_grad():
        param.copy_(torch.as_tensor(np.asarray(value).reshape(param.shape)))


def _write_norm_params(mod, layer, theta):
    if layer.affine:
        gb = np.reshape(theta, (-1, layer.d))
        _copy(mod.weight, gb[0])
        if getattr(layer, "bias", False):
            _copy(mod.bias, gb[1])


@writes("LayerNorm")
def _write_layernorm(torch, layer, theta):
    mod = torch.nn.LayerNorm(layer.d, eps=layer.eps, elementwise_affine=layer.affine,
                             bias=layer.bias or not layer.affine, dtype=torch.float64)
    _write_norm_params(mod, layer, theta)
    return [mod]


@writes("RMSNorm")
def _write_rmsnorm(torch, layer, theta):
    mod = torch.nn.RMSNorm(layer.d, eps=layer.eps, elementwise_affine=layer.affine,
                           dtype=torch.float64)
    _write_norm_params(mod, layer, theta)
    return [mod]


@writes("BatchNorm")
def _write_batchnorm(torch, layer, theta):
    make = torch.nn.BatchNorm2d if len(layer.in_shape) == 3 else torch.nn.BatchNorm1d
    mod = make(layer.d, eps=layer.eps, affine=layer.affine, dtype=torch.float64)
    _write_norm_params(mod, layer, theta)
    _copy(mod.running_mean, layer.running_mean)
    _copy(mod.running_var, layer.running_var)
    mod.train(layer.mode == "train")
    return [mod]


@writes("Embedding")
def _write_embedding(torch, layer, theta):
    mod = torch.nn.Embedding(layer.V, layer.d, dtype=torch.float64)
    _copy(mod.weight, theta)
    return [mod]


@writes("SelfAttention")
def _write_attention(torch, layer, theta):
    d, bias = layer.d, layer.bias
    mod = torch.nn.MultiheadAttention(d, layer.heads, bias=bias, batch_first=True,
                                      dtype=torch.float64)
    _copy(mod.in_proj_weight, theta[:3, :, :d])                     # Q, K, V rows stacked
    _copy(mod.out_proj.weight, theta[3, :, :d])
    if bias:
        _copy(mod.in_proj_bias, theta[:3, :, d])
        _copy(mod.out_proj.bias, theta[3, :, d])
    mask = None
    if layer.causal:            # torch's square subsequent mask: True = may not attend
        mask = torch.triu(torch.ones(layer.T, layer.T, dtype=torch.bool), 1)
    return [_modules(torch).SelfAttention(mod, mask)]


@writes("MeanPool")
def _write_meanpool(torch, layer, theta):
    # a sequence (N, T, D) averages dim 1; a 1-D map, channels first in torch (N, C, L), dim 2
    return [_modules(torch).MeanPool(2 if layer.on_map else 1)]


_MODULES = {}


def _modules(torch):
    """The small torch modules to_torch writes for what torch has no module of its own for:
    x + f(x), self-attention mha(x, x, x) (with its causal mask), the mean over positions —
    each written so that from_torch reads it back (torch.fx traces their forwards)."""
    if "classes" not in _MODULES:
        class Residual(torch.nn.Module):
            """x + block(x)."""

            def __init__(self, block):
                super().__init__()
                self.block = block

            def forward(self, x):
                return x + self.block(x)

        class SelfAttention(torch.nn.Module):
            """attn(x, x, x)[0]; mask (T, T), True where a position may not attend, or None."""

            def __init__(self, attn, mask=None):
                super().__init__()
                self.attn = attn
                self.register_buffer("mask", mask)

            def forward(self, x):
                return self.attn(x, x, x, need_weights=False, attn_mask=self.mask)[0]

        class MeanPool(torch.nn.Module):
            """x.mean(dim): over the positions."""

            def __init__(self, dim):
                super().__init__()
                self.dim = dim

            def forward(self, x):
                return x.mean(self.dim)

        # module-level names (`__getattr__` below), so a module holding them pickles
        for cls in (Residual, SelfAttention, MeanPool):
            cls.__name__ = cls.__qualname__ = "Torch" + cls.__name__
            cls.__module__ = __name__
        _MODULES["classes"] = SimpleNamespace(Residual=Residual, SelfAttention=SelfAttention,
                                              MeanPool=MeanPool)
    return _MODULES["classes"]


_TORCH_CLASSES = {"TorchResidual": "Residual", "TorchSelfAttention": "SelfAttention",
                  "TorchMeanPool": "MeanPool"}


def __getattr__(name):
    """curvlab.torch_bridge.TorchResidual, TorchSelfAttention, TorchMeanPool: the modules
    to_torch writes, made when first asked for (torch is imported then, not with curvlab)."""
    if name in _TORCH_CLASSES:
        return getattr(_modules(_torch()), _TORCH_CLASSES[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _write(torch, layers, thetas):
    """The torch modules of curvlab layers, their parameters drawn in turn from `thetas`."""
    mods = []
    for layer in layers:
        if isinstance(layer, Residual):
            block = torch.nn.Sequential(*_write(torch, layer.layers, thetas))
            mods.append(_modules(torch).Residual(block))
            continue
        theta = next(thetas) if layer.has_params else None
        write = WRITERS.get(type(layer).__name__)
        mods += write(torch, layer, theta) if write else layer.to_torch(torch, theta)
    return mods


def to_torch(model, w):
    """The torch.nn.Sequential (float64) of a curvlab model with parameters w (flat layout):
    Dense, conv, pooling, Flatten, LayerNorm, RMSNorm, BatchNorm (in its mode), Embedding and
    activation layers as torch's own modules; SelfAttention as nn.MultiheadAttention
    (batch_first) called on (x, x, x) with the causal mask if any, Residual as x + block(x)
    and MeanPool as x.mean(dim), in three small modules of curvlab's (`_modules`) that
    from_torch reads back. A cl.Function is refused by name (torch cannot run its autograd
    function). `torch_order(model)` maps the module's parameter vector to w."""
    torch = _torch()
    w = model.check_params(w)
    return torch.nn.Sequential(*_write(torch, model.modules, iter(model.unflatten(w))))


class LossConversion(namedtuple("LossConversion", "loss scale")):
    """(curvlab loss, scale) with torch's loss value = scale × curvlab's (likewise every
    gradient, Hessian, GGN and Fisher of it); `.note` says why."""

    note = ""

    def __repr__(self):
        return f"LossConversion(loss={self.loss!r}, scale={self.scale:g}): {self.note}"


def from_torch_loss(loss, n_outputs=None, n_samples=None):
    """The curvlab loss of a torch CrossEntropyLoss, MSELoss or BCEWithLogitsLoss and the scale
    between the two conventions. curvlab: a per-sample sum over the outputs (MSE with ½),
    averaged over the N samples. torch's reduction='mean' averages over every output element
    (N·K of them for MSE and BCE) and its MSE has no ½; reduction='sum' sums over the samples.
    n_outputs (K) is needed for MSE and BCE with 'mean', n_samples (N) for 'sum'."""
    _torch()
    kind = type(loss).__name__
    table = {"CrossEntropyLoss": "cross_entropy", "MSELoss": "mse", "BCEWithLogitsLoss": "bce"}
    if kind not in table:
        raise TypeError(
            f"from_torch_loss takes CrossEntropyLoss, MSELoss or BCEWithLogitsLoss, got {kind}; "
            "for another loss use cl.Loss(fn)"
        )
    if getattr(loss, "weight", None) is not None or getattr(loss, "pos_weight", None) is not None:
        raise ValueError(
            f"{kind} with weight/pos_weight is not one of curvlab's losses; write it as cl.Loss(fn)"
        )
    if getattr(loss, "label_smoothing", 0.0):
        raise ValueError(
            "CrossEntropyLoss with label_smoothing is not one of curvlab's losses; write it as "
            "cl.Loss(fn)"
        )
    if loss.reduction not in ("mean", "sum"):
        raise ValueError(
            f"{kind}(reduction={loss.reduction!r}) gives no scalar loss; use 'mean' or 'sum'"
        )
    per_sample = {"cross_entropy": 1.0, "mse": 2.0, "bce": 1.0}[
        table[kind]
    ]  # torch / curvlab per sample
    if loss.reduction == "sum":
        if n_samples is None:
            raise ValueError(f"{kind}(reduction='sum') sums over the samples: pass n_samples=N")
        scale, how = per_sample * n_samples, f"torch sums over the N = {n_samples} samples"
    elif table[kind] == "cross_entropy":
        scale, how = 1.0, "both average over the samples"
    else:
        if n_outputs is None:
            raise ValueError(
                f"{kind}(reduction='mean') averages over the outputs too: pass n_outputs=K"
            )
        scale, how = (
            per_sample / n_outputs,
            f"torch averages over the N·K outputs (K = {n_outputs})",
        )
    extra = " and has no ½ in its MSE" if table[kind] == "mse" else ""
    out = LossConversion(losses.get_loss(table[kind]), float(scale))
    out.note = f"torch's {kind} = {scale:g} × curvlab's {table[kind]!r}: {how}{extra}"
    return out


def torch_order(model):
    """order[i] = the position in curvlab's flat vector of entry i of torch's parameter vector
    `torch.nn.utils.parameters_to_vector(module.parameters())`, so `w[order]` is torch's vector
    — for the module `from_torch` read (kept on the model it returned: torch's registration
    order can differ from the forward's, e.g. with norm_first, and MultiheadAttention packs
    Q, K, V in in_proj_weight), otherwise for the module `to_torch` makes (each layer's weight
    row-major, then its bias, layer by layer)."""
    source = getattr(model, "torch_source", None)
    if source is not None:
        return source.order.copy()
    return np.concatenate([layer.torch_layout(I) for layer, I in
                           zip(model.layers, model.unflatten(np.arange(model.n_params)))])


def from_torch_layout(M, model):
    """A vector, a (P, P) matrix, a scipy LinearOperator or a callable v -> M v given in torch's
    parameter order (`torch_order`), in curvlab's flat layout (the same kind of object back)."""
    from scipy.sparse.linalg import LinearOperator

    order = torch_order(model)
    P = len(order)

    def to_torch_order(v):
        return v[order]

    def to_curvlab(u):
        out = np.empty_like(u)
        out[order] = u
        return out

    if isinstance(M, LinearOperator) or callable(M):
        apply = M.matvec if isinstance(M, LinearOperator) else M
        f = lambda v: to_curvlab(  # noqa: E731
            np.asarray(
                apply(to_torch_order(np.asarray(v, dtype=np.float64))), dtype=np.float64
            ).reshape(-1)
        )
        return (
            LinearOperator((P, P), matvec=f, rmatvec=f, dtype=np.float64)
            if isinstance(M, LinearOperator)
            else f
        )
    M = _as_numpy(M)
    if M.shape[0] != P:
        raise ValueError(
            f"from_torch_layout: got {M.shape[0]} entries per axis, the model has P = {P}"
        )
    inv = np.argsort(order)
    return M[inv] if M.ndim == 1 else M[np.ix_(inv, inv)]


def _as_numpy(M):
    from ._checks import as_numpy
    return np.asarray(as_numpy(M), dtype=np.float64)
