"""Layered models: `Sequential` — a program of layers, with `Residual` blocks for skips — and
`MLP`, a Sequential of Dense layers. The layer kinds and their rules live in `curvlab.layers`;
the one walk over a model (forward, backprop, R-passes, batched grids) in `curvlab.engine`.

The flat parameter vector (the layout every matrix in curvlab uses) is the concatenation over
the layers with parameters, in order of appearance (a Residual's layers in place), of each
layer's parameters flattened row-major: W̄_l = [W_l | b_l], shape (n_l, m_l + 1), for Dense and
conv layers — for each output unit (a Dense unit, a conv filter) its incoming weights and then
its bias; W_l alone with bias=False; a `cl.Function`'s array of its own shape; an Embedding's
(V, d) table; SelfAttention's four blocks Q, K, V, O, each [W | b] (d, d + 1). A conv layer's W
has its columns in torch's (c_in, k...) order. With this layout the K-FAC block of layer l is
exactly ``np.kron(S_l, A_l)`` (A over ā = [a; 1]).

Inputs are (N, D) for vector models, (N, T, D) for sequences, (N, T) integer token ids for a
model that starts with an Embedding, (N, C, L) for 1-D conv models and (N, C, H, W) for image
models, like torch; inside, feature maps are channels-last (see `curvlab.layers`), and Flatten
orders features channels first like torch. Outputs are vectors (N, K) or sequences (N, T, K) —
a loss at every position (`curvlab.losses.PerPosition`).
"""

import autograd.numpy as anp
import numpy as np

from . import engine
from ._checks import finite_array
from .layers import (
    ACTIVATIONS,
    FORK,
    JOIN,
    Act,
    AvgPool2d,
    BatchNorm,
    Conv1d,
    Conv2d,
    Dense,
    Embedding,
    Flatten,
    Function,
    Layer,
    LayerNorm,
    Map,
    MaxPool2d,
    MeanPool,
    Residual,
    RMSNorm,
    SelfAttention,
)
from .layers import activation as _activation
from .layers.base import describe

__all__ = ["ACTIVATIONS", "MLP", "AvgPool2d", "Conv1d", "Conv2d", "Dense", "Flatten", "Function",
           "MaxPool2d", "MeanPool", "Residual", "Sequential"]
__all__ += ["Embedding", "SelfAttention", "Act"]
__all__ += ["BatchNorm", "LayerNorm", "RMSNorm"]


def _input_shape(input_shape):
    shape = (input_shape,) if np.ndim(input_shape) == 0 else tuple(input_shape)
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise TypeError(
            f"input_shape must be (D,), (T, D), (C, L) or (C, H, W) of ints, got {input_shape!r}"
        ) from None
    if len(shape) not in (1, 2, 3) or min(shape) < 1:
        raise ValueError(
            f"input_shape must be (D,) for vectors, (T, D) for sequences, (C, L) for 1-D conv "
            f"models or (C, H, W) for images, with positive sizes; got {input_shape!r}"
        )
    return shape


class Sequential:
    """Layers applied in turn to inputs of `input_shape`; a `Residual` among them adds its input
    to its block's output. The output must be a vector (end with a Dense layer, or Flatten) or
    a sequence (T, K). `layers` are the layers with parameters in order of appearance;
    `steps` the program the engine walks: (step, l) with step a layer or FORK / JOIN (a
    Residual's skip) and l the index of its parameters in `layers` (None without)."""

    layered = True  # the engine walks its layers (see curvlab.problem.MODEL_PROTOCOL)

    def __init__(self, modules, input_shape):
        modules = list(modules)
        for i, mod in enumerate(modules):
            if not isinstance(mod, Layer):
                raise TypeError(
                    f"layer {i} is {type(mod).__name__} {mod!r}, not a curvlab layer; use "
                    "cl.Dense, cl.Conv1d, cl.Conv2d, cl.MaxPool2d, cl.AvgPool2d, cl.MeanPool, "
                    "cl.Flatten, cl.Residual, cl.Embedding, cl.SelfAttention or cl.Function"
                )
        self.input_shape = _input_shape(input_shape)
        self.modules = [m.clone() for m in modules]  # a layer is sized by the model it is in
        program = [step for m in self.modules for step in m.program()]
        first = next((s for s in program if s not in (FORK, JOIN)), None)
        for i, s in enumerate(program):
            if i and getattr(s, "reads_tokens", False):
                raise ValueError(f"{s!r} reads integer token ids, so it must be the model's first "
                                 f"layer (here it is step {i} of the program)")
        # integer token inputs (an Embedding first): the layer validates X itself
        self.reads_tokens = bool(program) and getattr(program[0], "reads_tokens", False)
        self.channels_first = len(self.input_shape) == 3 or (
            len(self.input_shape) == 2 and getattr(first, "dims", None) == 1)
        shape = self.input_shape
        if self.channels_first:                      # (C, *spatial) -> channels-last (*spatial, C)
            shape = Map(self.input_shape[1:] + self.input_shape[:1])
        for i, mod in enumerate(self.modules):
            try:
                shape = mod.build(shape)
            except ValueError as e:
                raise ValueError(f"layer {i}: {e}") from None
        if len(shape) == 3 or isinstance(shape, Map):
            raise ValueError(
                f"the model's output must be a vector or a sequence, but the last layer gives a "
                f"feature map of shape {describe(shape)}; end with cl.Flatten() (and a Dense "
                "layer)"
            )
        self.out_shape = tuple(shape)
        self.layers = [s for s in program if s not in (FORK, JOIN) and s.has_params]
        if not self.layers:
            raise ValueError("a model needs at least one layer with parameters (Dense, Conv1d, "
                             "Conv2d or Function)")
        index = {id(layer): l for l, layer in enumerate(self.layers)}
        self.steps = [(s, index.get(id(s))) for s in program]
        self.first_param_step = next(i for i, (_, l) in enumerate(self.steps) if l is not None)
        self.links = [[]]                  # the steps between layers with parameters (see engine)
        for s, l in self.steps:
            if l is not None:
                self.links.append([])
            else:
                self.links[-1].append(s)
        self.offsets = np.cumsum([0] + [l.size for l in self.layers])
        self.n_out = int(np.prod(self.out_shape))

    @property
    def n_params(self):
        return int(self.offsets[-1])

    @property
    def n_in(self):
        """Input features per sample (C·H·W for images)."""
        return int(np.prod(self.input_shape))

    @property
    def widths(self):
        """Per sample, the size of each layer's record: pre-activations T_l · n_l of a Dense or
        conv layer, outputs of a Function."""
        return [layer.width for layer in self.layers]

    @property
    def is_chain(self):
        """Whether the model is a chain the chain algorithms handle — Botev's block-by-block
        dense build, KFRA's recursion, the Kronecker kinds: Dense layers on vectors, conv
        layers, pooling and Flatten, no Residual, vector outputs."""
        return len(self.out_shape) == 1 and all(
            s not in (FORK, JOIN) and s.chain for s, _ in self.steps)

    @property
    def couples_samples(self):
        """Whether a sample's outputs depend on the other samples of the batch (train-mode
        BatchNorm): the batch's Hessian, GGN and true Fisher stay exact, per-sample quantities
        refuse by name (`engine.require_independent`)."""
        return any(getattr(s, "couples_samples", False) for s, _ in self.steps)

    def beyond_chain(self):
        """What makes the model more than a chain (`is_chain`), in words: ['Residual', ...]."""
        out = []
        for s, _ in self.steps:
            name = ("Residual" if s is FORK else None if s is JOIN or s.chain else
                    "Dense shared over positions" if getattr(s, "sequence", False) else repr(s)
                    if s.has_params else type(s).__name__)
            if name and name not in out:
                out.append(name)
        if len(self.out_shape) != 1:
            out.append("sequence outputs")
        return out

    def init(self, seed=0):
        """A flat float64 parameter vector in curvlab's layout."""
        rng = np.random.default_rng(seed)
        return self.flatten([layer.init(rng) for layer in self.layers])

    def unflatten(self, w):
        """Per-layer parameter views of a flat vector (works on autograd boxes too)."""
        return [
            w[o:e].reshape(l.shape)
            for l, o, e in zip(self.layers, self.offsets[:-1], self.offsets[1:])
        ]

    def flatten(self, Wbars):
        return np.concatenate([np.asarray(Wb, dtype=np.float64).ravel() for Wb in Wbars])

    def layer_slices(self):
        """slice of each layer's parameters in the flat vector."""
        return [slice(int(o), int(e)) for o, e in zip(self.offsets[:-1], self.offsets[1:])]

    def check_params(self, w):
        w = finite_array("w", w, ndim=1)
        if w.shape[0] != self.n_params:
            raise ValueError(
                f"w has {w.shape[0]} entries but {self!r} has {self.n_params} "
                "parameters; use model.init(seed) for a vector in the right layout"
            )
        return w

    def check_inputs(self, X):
        """X as float64 of shape (N, *input_shape) — integer token ids (N, T), checked by the
        Embedding, for a model that starts with one — with a clear error otherwise."""
        if self.reads_tokens:
            return self.steps[0][0].check_input(X, self.input_shape)
        X = finite_array("X", X)
        if X.ndim == 1 and self.input_shape == (1,):
            X = X[:, None]
        if X.shape[1:] != self.input_shape or X.ndim < 2:
            layout = {3: "(N, C, H, W), NCHW like torch", 1: "(N, D)"}.get(
                len(self.input_shape),
                "(N, C, L), NCL like torch" if self.channels_first else "(N, T, D)")
            raise ValueError(
                f"X must have shape (N, {', '.join(map(str, self.input_shape))}) for "
                f"{self!r}, layout {layout}; got {X.shape}"
            )
        if X.shape[0] < 1:
            raise ValueError("X has no samples")
        return X

    def prepare(self, X):
        """Inputs in the internal layout: maps NCHW / NCL -> channels-last."""
        if not self.channels_first:
            return X
        return anp.transpose(X, (0,) + tuple(range(2, X.ndim)) + (1,))

    def point(self, problem, w):
        """The engine's `Point`: the problem at w (see `Problem.point`)."""
        return engine.Point(problem, w)

    def forward(self, w, X):
        """Outputs z (N, K) — (N, T, K) for sequence outputs; differentiable by autograd in w
        (and X). The engine's walk with each layer's differentiable forward."""
        return engine.run(self, self.unflatten(w), self.prepare(X))

    def __repr__(self):
        return f"Sequential({self.modules!r}, input_shape={self.input_shape})"


class MLP(Sequential):
    """A stack of Dense layers, sizes [n_0, n_1, ..., n_L]; hidden layers use `activation` — one
    name, or one per hidden layer — and the last layer is linear (its outputs z are the loss's
    logits or predictions)."""

    def __init__(self, sizes, activation="tanh"):
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2:
            raise ValueError(f"MLP needs at least [inputs, outputs] sizes, got {sizes}")
        hidden = len(sizes) - 2
        if isinstance(activation, (list, tuple)):
            if len(activation) != hidden:
                raise ValueError(
                    f"MLP({sizes}) has {hidden} hidden layers but {len(activation)} "
                    f"activations were given: {list(activation)}"
                )
            acts = [_activation(a).name for a in activation]
            self.activation = acts
        else:
            self.activation = _activation(activation).name
            acts = [self.activation] * hidden
        self.sizes = sizes
        super().__init__(
            [
                Dense(a, b, acts[i] if i < hidden else "identity")
                for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))
            ],
            (sizes[0],),
        )

    def __repr__(self):
        return f"MLP({self.sizes}, activation={self.activation!r})"
