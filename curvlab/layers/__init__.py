"""Layer kinds, one module each, every rule of a kind beside its twin.

Feature shapes are channels-last inside curvlab: a vector is (D,), a sequence (T, D), a 1-D
map (L, C) and an image (H, W, C) (`base.Map` marks the maps; inputs arrive NCL / NCHW like
torch and are transposed once, by the model). Arrays carry any leading axes: samples N, and
before them directions or seeds Q, or grid points G.

The one protocol (`base.Layer`; θ a layer's parameters, None without): a model is a program
of layers (`cl.Sequential`; `Residual` adds fork and join steps), and the engine
(`curvlab.engine`) walks it with each layer's rules —

    build(in_shape) -> out_shape   check the input's feature shape, size the layer
    run(θ, x)                      the forward map, differentiable by autograd; θ and x may
                                   carry a leading axis of G points (landscape grids)
    trace(θ, x) -> (y, state)      the forward map and what the other rules need
    backprop(θ, state, g)          (∂ℓ/∂x, record) from output cotangents g (Q, N, *out)
    param_grads / param_rows       Σₙ ∂ℓ/∂θ (Q, size) and per sample (Q, N, size) from records
    param_tangent(θ, state, V)     the record space's tangent along a parameter direction
    rforward(θ, state, Rx, V)      (R y, R-state): Pearlmutter's R-forward step
    rbackward(θ, state, Rstate, record, g, Rg, V)
                                   (R{∂ℓ/∂x}, R{∂ℓ/∂θ}), with the second-order terms

A layer kind plugs in by writing these in its own module (a parameter-free layer that is
linear once its forward has run — pooling, Flatten, MeanPool — writes only forward(x) ->
(y, state), apply(x), push(state, dx) and pull(state, dy)). `Affine` layers (`Dense`,
`Conv1d`, `Conv2d`) meet their input through patches, s_t = W̄ ā_t at T locations:

    patches(x)    (..., *in_shape) -> (..., T, n_in)       Lin's φ(pad(Z)); the input for Dense
    patches_T(g)  its adjoint, (..., T, n_in) -> (..., *in_shape)
    fold(s)       (..., T, n_out) -> (..., *out_shape), and unfold(a) back (reshapes)
    act           f, f', f'' applied to s

which the chain algorithms (Botev's dense build, KFRA, the Kronecker kinds) read; a layer with
`chain = True` is one of theirs. Pooling keeps `expected_sandwich(state, M)`, (1/N) Σₙ Jₙᵀ M Jₙ
for KFRA. `Function(fn, shape)` is a layer of your own whose rules autograd derives; `Act(name)`
an activation on its own (after a norm layer or a residual sum).

The norm layers (`LayerNorm`, `RMSNorm`, `BatchNorm`; norm.py) write the rules themselves, the
cotangent of their output as the record. A layer with `couples_samples` True (train-mode
BatchNorm: the batch's statistics) makes each sample's outputs depend on the whole batch; the
engine then keeps only the batch's quantities exact and refuses per-sample ones.

`Embedding` (embedding.py) reads integer token ids, so it is the model's first layer (no input
tangent or cotangent; it validates the ids, `check_input`); `SelfAttention` (attention.py) is
torch's multi-head self-attention, its record the cotangents of its four blocks Q, K, V, O.
"""

from .act import Act
from .activations import ACTIVATIONS, PIECEWISE_LINEAR, Activation, activation
from .attention import SelfAttention
from .base import Affine, Layer, Map
from .conv import Conv1d, Conv2d
from .dense import Dense
from .embedding import Embedding
from .flatten import Flatten
from .function import Function
from .norm import BatchNorm, LayerNorm, RMSNorm
from .pool import AvgPool2d, MaxPool2d, MeanPool
from .residual import FORK, JOIN, Residual

KINDS = (Act, Dense, Conv1d, Conv2d, MaxPool2d, AvgPool2d, MeanPool, Flatten, Residual, Function,
         Embedding, SelfAttention, LayerNorm, RMSNorm, BatchNorm)

__all__ = ["ACTIVATIONS", "Act", "FORK", "JOIN", "PIECEWISE_LINEAR", "Activation", "Affine",
           "AvgPool2d", "BatchNorm", "Conv1d", "Conv2d", "Dense", "Embedding", "Flatten",
           "Function", "KINDS", "Layer", "LayerNorm", "Map", "MaxPool2d", "MeanPool", "RMSNorm",
           "Residual", "SelfAttention", "activation"]
