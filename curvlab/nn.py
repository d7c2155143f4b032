"""Layered models: `Sequential` (Dense, Conv2d, pooling, Flatten) and `MLP`, a Sequential of
Dense layers. The layer kinds and their rules live in `curvlab.layers`.

The flat parameter vector (the layout every matrix in curvlab uses) is the concatenation
over the layers with parameters, l = 1..L, of W̄_l = [W_l | b_l], shape (n_l, m_l + 1),
flattened row-major: for each output unit (a Dense unit, a conv filter) its incoming weights
and then its bias. A Conv2d's W has its columns in torch's (c_in, kh, kw) order. With this
layout the K-FAC block of layer l is exactly ``np.kron(S_l, A_l)`` (A over ā = [a; 1]).

Inputs are (N, D) for vector models and (N, C, H, W) for image models, like torch; inside,
feature maps are channels-last (see `curvlab.layers`), and Flatten orders features (C, H, W)
like torch.
"""

import copy

import autograd.numpy as anp
import numpy as np

from ._checks import finite_array
from .layers import ACTIVATIONS, AvgPool2d, Conv2d, Dense, Flatten, Layer, MaxPool2d
from .layers import activation as _activation
from .layers.base import describe

__all__ = ["ACTIVATIONS", "MLP", "AvgPool2d", "Conv2d", "Dense", "Flatten", "MaxPool2d",
           "Sequential"]


def _input_shape(input_shape):
    shape = (input_shape,) if np.ndim(input_shape) == 0 else tuple(input_shape)
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise TypeError(
            f"input_shape must be (D,) or (C, H, W) of ints, got {input_shape!r}"
        ) from None
    if len(shape) not in (1, 3) or min(shape) < 1:
        raise ValueError(
            f"input_shape must be (D,) for vectors or (C, H, W) for images, with "
            f"positive sizes; got {input_shape!r}"
        )
    return shape


class Sequential:
    """Layers applied in turn to inputs of `input_shape` ((D,) or (C, H, W)); the output must
    be a vector (end with a Dense layer, or Flatten). `layers` are the layers with parameters,
    in order; `links[l]` the parameter-free layers between layer l−1 and layer l (links[0]
    before the first, links[L] after the last)."""

    def __init__(self, modules, input_shape):
        modules = list(modules)
        for i, mod in enumerate(modules):
            if not isinstance(mod, Layer):
                raise TypeError(
                    f"layer {i} is {type(mod).__name__} {mod!r}, not a curvlab layer; "
                    "use cl.Dense, cl.Conv2d, cl.MaxPool2d, cl.AvgPool2d or cl.Flatten"
                )
        self.input_shape = _input_shape(input_shape)
        shape = (
            self.input_shape
            if len(self.input_shape) == 1
            else self.input_shape[1:] + self.input_shape[:1]
        )
        self.modules = [copy.copy(m) for m in modules]  # a layer is sized by the model it is in
        for i, mod in enumerate(self.modules):
            try:
                shape = mod.build(shape)
            except ValueError as e:
                raise ValueError(f"layer {i}: {e}") from None
        if len(shape) != 1:
            raise ValueError(
                f"the model's output must be a vector, but the last layer gives a "
                f"feature map of shape {describe(shape)} (C, H, W); end with cl.Flatten() "
                "(and a Dense layer)"
            )
        self.layers = [m for m in self.modules if m.has_params]
        if not self.layers:
            raise ValueError("a model needs at least one layer with parameters (Dense or Conv2d)")
        self.links = [[]]
        for mod in self.modules:
            if mod.has_params:
                self.links.append([])
            else:
                self.links[-1].append(mod)
        self.offsets = np.cumsum([0] + [l.size for l in self.layers])
        self.n_out = shape[0]

    layered = True  # the engine walks its layers (see curvlab.problem.MODEL_PROTOCOL)

    @property
    def n_params(self):
        return int(self.offsets[-1])

    @property
    def n_in(self):
        """Input features per sample (C·H·W for images)."""
        return int(np.prod(self.input_shape))

    @property
    def widths(self):
        """Pre-activations per sample of each layer with parameters, T_l · n_l."""
        return [layer.width for layer in self.layers]

    def init(self, seed=0):
        """A flat float64 parameter vector in curvlab's layout."""
        rng = np.random.default_rng(seed)
        return self.flatten([layer.init(rng) for layer in self.layers])

    def unflatten(self, w):
        """Per-layer W̄_l views of a flat vector (works on autograd boxes too)."""
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
        """X as float64 of shape (N, *input_shape), with a clear error otherwise."""
        X = finite_array("X", X)
        if X.ndim == 1 and self.input_shape == (1,):
            X = X[:, None]
        if X.shape[1:] != self.input_shape or X.ndim < 2:
            layout = "(N, C, H, W), NCHW like torch" if len(self.input_shape) == 3 else "(N, D)"
            raise ValueError(
                f"X must have shape (N, {', '.join(map(str, self.input_shape))}) for "
                f"{self!r}, layout {layout}; got {X.shape}"
            )
        if X.shape[0] < 1:
            raise ValueError("X has no samples")
        return X

    def prepare(self, X):
        """Inputs in the internal layout: images NCHW -> NHWC (channels-last)."""
        return X if X.ndim == 2 else anp.transpose(X, (0, 2, 3, 1))

    def forward(self, w, X):
        """Outputs z (N, K); differentiable by autograd in w (and X)."""
        x = self.prepare(X)
        Wbars = iter(self.unflatten(w))
        for mod in self.modules:
            x = mod.act.f(mod.apply(next(Wbars), x)) if mod.has_params else mod.apply(x)
        return x

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
