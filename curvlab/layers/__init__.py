"""Layer kinds, one module each, every rule of a kind beside its twin.

Feature maps are channels-last inside curvlab: a vector has feature shape (D,), an image
(H, W, C) (inputs arrive NCHW like torch and are transposed once, by the model). Arrays carry
any leading axes: samples N, and before them directions Q or grid points G.

Layers with parameters (`Dense`, `Conv2d`; `has_params`) say how their parameters meet their
input — at T output locations, s_t = W̄ ā_t with ā_t = [patch_t; 1]:

    patches(x)    (..., *in_shape) -> (..., T, n_in)       Lin's φ(pad(Z)); the input for Dense
    patches_T(g)  its adjoint, (..., T, n_in) -> (..., *in_shape)
    fold(s)       (..., T, n_out) -> (..., *out_shape), and unfold(a) back (reshapes)
    act           f, f', f'' applied to s
    apply(W̄, x)  fold(patches(x) Wᵀ + b), differentiable by autograd

Layers without parameters (`MaxPool2d`, `AvgPool2d`, `Flatten`) are linear maps once the
forward pass has run (max-pool remembers its per-sample selection P_pool):

    forward(x) -> (y, state)     the map, and what it chose
    apply(x)                     the same map, differentiable by autograd
    push(state, dx)              its tangent rule (the R-forward pass)
    pull(state, dy)              its adjoint (backprop; the R-backward pass)
    expected_sandwich(state, M)  (1/N) Σₙ Jₙᵀ M Jₙ for a (D_out, D_out) matrix M (KFRA)

`build(in_shape)` checks a layer against its input's feature shape and returns its output's;
`cl.Sequential` builds its layers in turn, so a mismatch is reported at construction.
"""

from .activations import ACTIVATIONS, PIECEWISE_LINEAR, Activation, activation
from .base import Affine, Layer
from .conv import Conv2d
from .dense import Dense
from .flatten import Flatten
from .pool import AvgPool2d, MaxPool2d

KINDS = (Dense, Conv2d, MaxPool2d, AvgPool2d, Flatten)

__all__ = ["ACTIVATIONS", "PIECEWISE_LINEAR", "Activation", "Affine", "AvgPool2d", "Conv2d",
           "Dense", "Flatten", "KINDS", "Layer", "MaxPool2d", "activation"]
