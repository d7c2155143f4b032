"""Act: an activation as a layer of its own, y = f(x) elementwise — for an activation that does
not follow a Dense or conv layer (after a norm layer, after a residual sum: Conv2d, BatchNorm2d,
ReLU as torch's CNNs write it). After a Dense or conv layer, give the activation to that layer
instead (`cl.Dense(..., activation="relu")`): the chain algorithms (Botev's blocks, KFRA) read
it there.

Rules, forward next to backward, with f' and f'' at the input x (elementwise):

    forward    y = f(x)                  R-forward    R y = f' ⊙ R x
    backward   ∂ℓ/∂x = f' ⊙ g            R-backward   R{∂ℓ/∂x} = f' ⊙ R g + f'' ⊙ g ⊙ R x

g = ∂ℓ/∂y. The second term is the layer's curvature; it vanishes for piecewise-linear f (relu,
identity). No parameters, so no record.
"""

import numpy as np

from .activations import PIECEWISE_LINEAR, TORCH_MODULES
from .activations import activation as _activation
from .base import Layer


class Act(Layer):
    """y = f(x) elementwise on any input shape; f one of curvlab's activations by name
    ('relu', 'tanh', 'sigmoid', 'softplus', 'gelu' (erf form), 'silu', 'identity')."""

    linear = False
    positionwise = True      # elementwise (curvature.blocks)

    def __init__(self, activation):
        self.act = _activation(activation)
        self.linear = self.act.linear

    @property
    def name(self):
        return self.act.name

    def build(self, in_shape):
        self.in_shape = self.out_shape = in_shape
        return in_shape

    def apply(self, x):
        return self.act.f(x)

    def run(self, theta, x, out=None):
        return self.act.f(x)

    def trace(self, theta, x):
        y, fp = self.act.f_df(x)
        return y, _ActState(self.act, x, y, fp)

    def backprop(self, theta, st, g, need_input=True):
        return (st.fp * g if need_input else None), None

    def rforward(self, theta, st, Rx, V):
        return (None if Rx is None else st.fp * Rx), Rx

    def rbackward(self, theta, st, Rx, rec, g, Rg, V, need_input=True):
        if not need_input:
            return None, None
        Rgin = st.fp * Rg
        if Rx is not None and self.act.name not in PIECEWISE_LINEAR:
            Rgin = Rgin + st.fpp * g * Rx
        return Rgin, None

    # pooling-style helpers some consumers use on parameter-free layers
    def push(self, st, dx):
        return st.fp * dx

    def pull(self, st, dy):
        return st.fp * dy

    def to_torch(self, torch, theta):
        if self.act.name == "identity":
            return [torch.nn.Identity()]
        return [getattr(torch.nn, TORCH_MODULES[self.act.name])()]

    def __repr__(self):
        return f"Act({self.act.name!r})"


class _ActState:
    """x, f(x), f'(x), and f''(x) on first use."""

    __slots__ = ("act", "x", "y", "fp", "_fpp")

    def __init__(self, act, x, y, fp):
        self.act, self.x, self.y, self.fp = act, x, y, fp
        self._fpp = None

    @property
    def fpp(self):
        if self._fpp is None:
            self._fpp = np.asarray(self.act.d2f_from(self.x, self.y, self.fp))
        return self._fpp
