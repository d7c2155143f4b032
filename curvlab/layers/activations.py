"""Activations with the derivatives the curvature recursions need: f, f', f'' (and f in place,
for the batched landscape grids). ReLU at exactly 0 has derivative 0; its f'' is 0 everywhere.

`f_df(x)` gives f and f' together and `d2f_from(x, f, f')` gives f'' from them, so a forward
trace evaluates the transcendental function once per pre-activation (tanh' = 1 − tanh²,
tanh'' = −2 tanh tanh'); `f`, `df` and `d2f` alone give the same numbers.

GELU is the erf form, torch's default: f = x Φ(x), f' = Φ + x φ, f'' = φ (2 − x²), with Φ, φ
the standard normal's distribution and density. SiLU: f = x σ(x), f' = σ (1 + x (1 − σ)),
f'' = σ (1 − σ) (2 + x (1 − 2σ)).
"""

from collections import namedtuple

import autograd.numpy as anp
import numpy as np
import scipy.special

from .._checks import choice

# f, f', f'' and f applied in place to a float array (batched grids evaluate it without
# temporaries); f_df(x) -> (f, f'); d2f_from(x, f, f') -> f''; linear: f is the identity;
# times_g_d2f(out, x, f, f', g, d) -> out ⊙ g ⊙ f'' in place, given d = f' ⊙ g, for an f whose
# f'' g follows from f and d without forming f'' (the R-backward's second-order term), or None.
Activation = namedtuple("Activation", "name f df d2f f_inplace f_df d2f_from linear times_g_d2f",
                        defaults=(None, None, False, None))


def _sigmoid(x):
    return 0.5 * (anp.tanh(0.5 * x) + 1.0)  # overflow-free form of 1 / (1 + e^-x)


def _tanh_d2(x):
    t = np.tanh(x)
    return -2.0 * t * (1.0 - t * t)


def _tanh_f_df(x):
    t = np.tanh(x)
    return t, 1.0 - t * t


def _tanh_d2f_from(x, f, fp):
    out = f * fp           # tanh'' = −2 tanh tanh', one array
    out *= -2.0
    return out


def _tanh_times_g_d2f(out, x, f, fp, g, d):
    out *= f               # tanh'' g = −2 tanh (tanh' g) = −2 f d
    out *= d
    out *= -2.0
    return out


def _sigmoid_inplace(x):
    x *= 0.5
    np.tanh(x, out=x)
    x += 1.0
    x *= 0.5
    return x


def _sigmoid_d1(x):
    s = _sigmoid(x)
    return s * (1.0 - s)


def _sigmoid_d2(x):
    s = _sigmoid(x)
    return s * (1.0 - s) * (1.0 - 2.0 * s)


def _sigmoid_f_df(x):
    s = _sigmoid(x)
    return s, s * (1.0 - s)


def _softplus_f_df(x):
    return np.logaddexp(0.0, x), _sigmoid(x)


_SQRT_HALF = np.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


def _gelu(x):
    # imported here: autograd.scipy's package import pulls in scipy.stats, optimize and
    # integrate (~2 s, ~30 MB in every app's kernel) for this one function
    import autograd.scipy.special as aspecial
    return 0.5 * x * (1.0 + aspecial.erf(x * _SQRT_HALF))


def _gelu_parts(x):
    Phi = 0.5 * (1.0 + scipy.special.erf(x * _SQRT_HALF))
    phi = _INV_SQRT_2PI * np.exp(-0.5 * x * x)
    return Phi, phi


def _gelu_d1(x):
    Phi, phi = _gelu_parts(x)
    return Phi + x * phi


def _gelu_d2(x):
    return _INV_SQRT_2PI * np.exp(-0.5 * x * x) * (2.0 - x * x)


def _gelu_f_df(x):
    Phi, phi = _gelu_parts(x)
    return x * Phi, Phi + x * phi


def _gelu_inplace(x):
    Phi = 0.5 * (1.0 + scipy.special.erf(x * _SQRT_HALF))
    x *= Phi
    return x


def _silu(x):
    return x * _sigmoid(x)


def _silu_d1(x):
    s = _sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


def _silu_d2(x):
    s = _sigmoid(x)
    return s * (1.0 - s) * (2.0 + x * (1.0 - 2.0 * s))


def _silu_f_df(x):
    s = _sigmoid(x)
    return x * s, s * (1.0 + x * (1.0 - s))


def _silu_inplace(x):
    x *= _sigmoid(x)
    return x


ACTIVATIONS = {
    "tanh": Activation(
        "tanh", anp.tanh, lambda x: 1.0 - np.tanh(x) ** 2, _tanh_d2, lambda x: np.tanh(x, out=x),
        _tanh_f_df, _tanh_d2f_from, False, _tanh_times_g_d2f,
    ),
    "sigmoid": Activation("sigmoid", _sigmoid, _sigmoid_d1, _sigmoid_d2, _sigmoid_inplace,
                          _sigmoid_f_df, lambda x, f, fp: fp * (1.0 - 2.0 * f)),
    "relu": Activation(
        "relu",
        lambda x: anp.maximum(x, 0.0),
        lambda x: (x > 0).astype(float),
        np.zeros_like,
        lambda x: np.maximum(x, 0.0, out=x),
        lambda x: (np.maximum(x, 0.0), (x > 0).astype(float)),
        lambda x, f, fp: np.zeros_like(x),
    ),
    "softplus": Activation(
        "softplus",
        lambda x: anp.logaddexp(0.0, x),
        _sigmoid,
        _sigmoid_d1,
        lambda x: np.logaddexp(0.0, x, out=x),
        _softplus_f_df,
        lambda x, f, fp: fp * (1.0 - fp),
    ),
    "gelu": Activation("gelu", _gelu, _gelu_d1, _gelu_d2, _gelu_inplace, _gelu_f_df,
                       lambda x, f, fp: _gelu_d2(x)),
    "silu": Activation("silu", _silu, _silu_d1, _silu_d2, _silu_inplace, _silu_f_df,
                       lambda x, f, fp: _silu_d2(x)),
    "identity": Activation("identity", lambda x: x, np.ones_like, np.zeros_like, lambda x: x,
                           lambda x: (x, np.ones_like(x)), lambda x, f, fp: np.zeros_like(x),
                           True),
}
ACTIVATIONS["linear"] = ACTIVATIONS["identity"]

# torch's module for each activation (to_torch; from_torch reads the ones in torch_bridge)
TORCH_MODULES = {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "softplus": "Softplus",
                 "gelu": "GELU", "silu": "SiLU"}

# f'' = 0 everywhere: the activation adds no second-order term to the Hessian recursions.
PIECEWISE_LINEAR = {"identity", "relu"}


def activation(name):
    """Look up an activation by name (tanh, sigmoid, relu, softplus, gelu, silu,
    identity/linear)."""
    if isinstance(name, Activation):
        return name
    if not isinstance(name, str):
        raise TypeError(
            f"activation must be a name such as 'tanh', got {type(name).__name__} "
            f"{name!r}; choose one of {sorted(ACTIVATIONS)}"
        )
    return ACTIVATIONS[choice("activation", name, ACTIVATIONS)]
