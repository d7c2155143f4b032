"""PyTorch interop: a `torch.nn.Sequential` as a curvlab model with its parameters in curvlab's
flat layout, and back; torch's losses as curvlab's, with the scale between the two.

torch is imported here only, when one of these functions is called (`pip install
'curvlab[torch]'` pins the CPU build). Parameters come over as float64. Layer by layer:

    torch                                   curvlab
    Linear(n_in, n_out)                     Dense(n_in, n_out)          W̄ = [weight | bias]
    Conv2d(c_in, c_out, k, stride, padding) Conv2d(...)                 W̄ = [weight₂ | bias]
                                                     (weight₂: weight.reshape(c_out, -1))
    ReLU / Tanh / Sigmoid / Softplus        the activation of the Linear or Conv2d before it
    Identity                                nothing
    MaxPool2d(k), AvgPool2d(k)              the same (stride = kernel, no padding)
    Flatten()                               Flatten() (both order features (C, H, W))

An activation right after a MaxPool2d is moved in front of it: every supported activation is
non-decreasing, so it commutes with taking a maximum (the values and, almost everywhere, the
derivatives are the same). Each layer kind reads its own torch modules (`torch_names`,
`from_torch`, `torch_params` in its module of `curvlab.layers`) and writes them back
(`to_torch`); what it does not read — a layer without bias (write it with cl.Dense / cl.Conv2d
(..., bias=False)), groups, dilation, padding modes other than zeros, 'same' padding, pooling
with a stride other than its kernel, padding or ceil_mode, Softplus with beta ≠ 1 — raises an
error that names it rather than giving a different network.
"""

from collections import namedtuple

import numpy as np

from . import losses
from .layers import KINDS
from .nn import Sequential

# torch's modules each layer kind reads (its `torch_names`, `from_torch` and `torch_params`)
READERS = {name: kind for kind in KINDS for name in kind.torch_names}
_ACTIVATIONS = {"ReLU": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "Softplus": "softplus"}
SUPPORTED = ", ".join(
    [n for n, k in READERS.items() if k.has_params] + list(_ACTIVATIONS) + ["Identity"]
    + [n for n, k in READERS.items() if not k.has_params]
) + " (inside nn.Sequential, nesting allowed)"


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError(
            "this needs PyTorch: pip install 'curvlab[torch]' (the CPU build of "
            "torch 2.13.0; an unpinned torch pulls several GB of CUDA)"
        ) from None
    return torch


def _modules(module):
    torch = _torch()
    if isinstance(module, torch.nn.Sequential):
        for child in module:
            yield from _modules(child)
    else:
        yield module


def _unsupported(i, mod, what, route=None):
    route = route or "which curvlab does not model; change it"
    return ValueError(f"from_torch: layer {i} ({mod!r}) has {what}, {route}")


def from_torch(module, input_shape):
    """(model, w): the curvlab model of a torch.nn.Sequential and its parameters in curvlab's
    flat layout (float64), for inputs of `input_shape` — (C, H, W) for images, (D,) for vectors."""
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"from_torch takes a torch.nn.Module, got {type(module).__name__}")
    layers, Wbars = [], []
    for i, mod in enumerate(_modules(module)):
        kind = type(mod).__name__

        def refuse(what, route=None, i=i, mod=mod):
            raise _unsupported(i, mod, what, route)

        if kind in READERS:
            layer = READERS[kind].from_torch(mod, refuse)
            layers.append(layer)
            if layer.has_params:
                Wbars.append(layer.torch_params(torch, mod))
        elif kind in _ACTIVATIONS:
            if kind == "Softplus" and (mod.beta != 1 or mod.threshold != 20):
                refuse(f"beta={mod.beta}, threshold={mod.threshold} (curvlab's softplus is "
                       "log(1 + eˣ): beta 1; torch's threshold 20 differs from it by < 3e-9)")
            # an activation after a max-pool moves in front of it: f(max x) = max f(x)
            at = -2 if layers and getattr(layers[-1], "monotone", False) else -1
            target = layers[at] if len(layers) >= -at else None
            if getattr(target, "act", None) is None or target.act.name != "identity":
                raise ValueError(
                    f"from_torch: layer {i} ({mod!r}) must follow a Linear or Conv2d layer "
                    "(or a MaxPool2d after one) that has no activation yet"
                )
            target._set_activation(_ACTIVATIONS[kind], None)
        elif kind == "Identity":
            continue
        else:
            raise TypeError(
                f"from_torch: layer {i} is {kind} ({mod!r}), which curvlab does not "
                f"support; supported: {SUPPORTED}"
            )
    model = Sequential(layers, input_shape)
    return model, model.flatten(Wbars)


def to_torch(model, w):
    """The torch.nn.Sequential (float64) of a curvlab model with parameters w (flat layout)."""
    torch = _torch()
    w = model.check_params(w)
    mods, Wbars = [], iter(model.unflatten(w))
    for layer in model.modules:
        mods += layer.to_torch(torch, next(Wbars) if layer.has_params else None)
    return torch.nn.Sequential(*mods)


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
    (each layer's weight.ravel() then its bias, layer by layer — what
    torch.nn.utils.parameters_to_vector gives for the module `to_torch` makes)."""
    return np.concatenate([layer.torch_layout(I) for layer, I in
                           zip(model.layers, model.unflatten(np.arange(model.n_params)))])


def from_torch_layout(M, model):
    """A vector, a (P, P) matrix, a scipy LinearOperator or a callable v -> M v given in torch's
    parameter order, in curvlab's flat layout (the same kind of object back)."""
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
        f = lambda v: to_curvlab(
            np.asarray(
                apply(to_torch_order(np.asarray(v, dtype=np.float64))), dtype=np.float64
            ).reshape(-1)
        )
        return (
            LinearOperator((P, P), matvec=f, rmatvec=f, dtype=np.float64)
            if isinstance(M, LinearOperator)
            else f
        )
    M = np.asarray(M, dtype=np.float64)
    if M.shape[0] != P:
        raise ValueError(
            f"from_torch_layout: got {M.shape[0]} entries per axis, the model has P = {P}"
        )
    inv = np.argsort(order)
    return M[inv] if M.ndim == 1 else M[np.ix_(inv, inv)]
