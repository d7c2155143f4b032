"""Problem: a model, a loss and a data set (plus an optional L2 term), as a function of the
flat parameter vector w:

    L(w) = (1/N) Σ_n ℓ(f(x_n; w), y_n) + (λ/2) ‖w‖².

Every curvature matrix of a Problem is an average over the same N samples, plus λI.
Generic objectives (any autograd-differentiable function of a flat vector) are wrapped in
`Objective` so that `hessian`, `hvp` and the optimisers accept them too.
"""

import autograd.numpy as anp
import numpy as np
from autograd import grad as _ag_grad

from . import engine
from ._checks import as_numpy, finite_array, nonnegative
from .losses import for_outputs, get_loss

# What a model offers a Problem (cl.Sequential / cl.MLP and cl.UnitNetwork do). `point(problem,
# w)` is the problem at w with the gradient `grad()` and the block products `hv(V)`, `gv_rop(V)`
# under one set of names. `layered`: the model is a program of layers that curvlab's engine walks
# (forward trace, backprop, R-passes; `engine.Point`): every exact quantity is open to it, and
# the chain algorithms too when `model.is_chain`; otherwise the model brings its own gradient and
# products (a UnitNetwork: its `units.UnitPoint` — backprop, R{backprop}, relaxations).
MODEL_PROTOCOL = ("layered", "n_params", "n_out", "out_shape", "init", "forward",
                  "check_params", "check_inputs", "layer_slices", "point")


class Problem:
    """Model + loss + data (+ L2). `loss(w)` is autograd-differentiable; the rest is numpy."""

    def __init__(self, model, loss, X, y, l2=0.0):
        missing = [name for name in MODEL_PROTOCOL if not hasattr(model, name)]
        if missing:
            raise TypeError(f"model must be a curvlab model (cl.MLP, cl.Sequential or "
                            f"cl.UnitNetwork), got {type(model).__name__} (it lacks {missing})")
        self.model = model
        self.lossfn = for_outputs(get_loss(loss), model.out_shape)
        X = model.check_inputs(X)
        y = as_numpy(y)
        y_arr = np.asarray(y)
        if y_arr.shape[:1] != X.shape[:1]:
            raise ValueError(f"X and y disagree on the number of samples: X has {X.shape[0]}, "
                             f"y has {y_arr.shape[0] if y_arr.ndim else 'a scalar'}")
        self.X = X
        self.y = self.lossfn.targets(y, X.shape[0], model.n_out)
        self.l2 = nonnegative("l2", l2)

    # sizes ----------------------------------------------------------------------------------
    @property
    def N(self):
        return self.X.shape[0]

    @property
    def n_params(self):
        return self.model.n_params

    @property
    def layered(self):
        """Whether the model is layered (the engine's forward trace and every kind apply)."""
        return bool(self.model.layered)

    @property
    def n_outputs(self):
        return self.model.n_out

    # values ---------------------------------------------------------------------------------
    def loss(self, w):
        """L(w); differentiable by autograd (a torch tensor w is converted)."""
        w = as_numpy(w)
        z = self.model.forward(w, self.X)
        val = anp.mean(self.lossfn.value(z, self.y))
        return val + 0.5 * self.l2 * anp.sum(w * w) if self.l2 else val

    @property
    def out_shape(self):
        """The outputs' shape per sample: (K,), or (T, K) for a loss at every position."""
        return tuple(self.model.out_shape)

    def outputs(self, w):
        """Network outputs z, shape (N, K) — (N, T, K) for sequence outputs."""
        return np.asarray(self.model.forward(self.check(w), self.X))

    def grad(self, w):
        """∇L(w) by one backward pass (checked against autograd's `grad` in the tests); for a
        UnitNetwork by backprop or, recurrent, the adjoint relaxation."""
        return self.point(w).grad()

    def autograd_grad(self, w):
        """∇L(w) by autograd's reverse mode (the reference)."""
        return _ag_grad(self.loss)(self.check(w))

    # internals shared by the curvature modules ----------------------------------------------
    def check(self, w):
        return self.model.check_params(w)

    def require_layered(self, what="this"):
        """Refuse, by name, what needs the engine's layers on a model that has none."""
        if not self.layered:
            raise TypeError(f"{what} needs a layered model (cl.Sequential / cl.MLP); a "
                            f"{type(self.model).__name__} offers loss, grad, hvp, ggnvp, hessian, "
                            "ggn and cl.operator")

    def require_chain(self, what="this"):
        """Refuse, by name, what is defined (so far) for chains of Dense, conv, pooling and
        Flatten layers only (`model.is_chain`): the layer-structured kinds."""
        self.require_layered(what)
        if not self.model.is_chain:
            parts = ", ".join(self.model.beyond_chain())
            per_sample = "sqrt_ggn, per_sample_grads, "
            coupled = ""
            if getattr(self.model, "couples_samples", False):   # train-mode BatchNorm
                per_sample = ""
                coupled = " (not the per-sample ones: its samples are coupled)"
            raise ValueError(
                f"{what} is not supported yet on models with {parts}: it works on chains of "
                "Dense (on vectors), Conv1d, Conv2d, pooling and Flatten layers. On this model "
                "every exact quantity works — hessian, ggn, fisher, hessian_blocks, ggn_blocks, "
                f"diag_hessian, diag_ggn, {per_sample}ntk, hvp, ggnvp, spectra "
                f"and landscapes{coupled}"
            )

    def trace(self, w):
        """Per-layer W̄ and the forward trace (ā, s, f', f'', z, pooling selections) at w."""
        self.require_layered()
        Wbars = self.model.unflatten(w)
        return Wbars, engine.forward(self.model, Wbars, self.X)

    def point(self, w):
        """The problem at w, with what products and builds reuse: an `engine.Point` for layered
        models, the model's own (`model.point`) otherwise — gradient `grad()`, and the block
        products `hv(V)`, `gv_rop(V)` under the same names."""
        return self.model.point(self, w)

    def finite_point(self, w, what):
        """`point(w)`, refusing by name a loss that is NaN or infinite at w (its matrices there
        would be meaningless, finite or not)."""
        pt = self.point(w)
        z = pt.tr.z if self.layered else self.model.forward(pt.w, self.X)
        value = float(np.mean(self.lossfn.value(z, self.y)))
        if not np.isfinite(value):
            raise ValueError(f"{what}: the loss at w is {value} (a NaN or infinite loss has no "
                             "curvature); check the loss function, the data and w (e.g. a "
                             "diverged run)")
        return pt

    def subset(self, idx):
        """The same problem on samples X[idx], y[idx] (mini-batches, one-sample checks)."""
        idx = np.atleast_1d(np.asarray(idx))
        return Problem(self.model, self.lossfn, self.X[idx], self.y[idx], self.l2)

    def __repr__(self):
        return (f"Problem({self.model!r}, {self.lossfn.name!r}, N={self.N}, "
                f"P={self.n_params}, l2={self.l2})")


class Objective:
    """A generic objective: any autograd-differentiable function of a flat float vector.

    Optional extras: `ggn(w)` -> a Gauss-Newton (P, P) matrix (used by the Gauss-Newton and
    natural-gradient optimisers), `minimum` (the known minimiser, for pictures and tests),
    `batch(Ws)` -> the values at many points (G, P) at once (weight perturbation uses it).
    """

    def __init__(self, fun, n_params=None, name=None, ggn=None, minimum=None, batch=None):
        if not callable(fun):
            raise TypeError(
                f"an objective must be a Problem or a callable, got {type(fun).__name__}")
        self.fun = fun
        self.n_params = n_params
        self.name = name or getattr(fun, "__name__", "objective")
        self._grad = _ag_grad(fun)
        self.ggn = ggn
        self.minimum = None if minimum is None else np.asarray(minimum, dtype=np.float64)
        self.batch = batch
        self.l2 = 0.0

    def loss(self, w):
        return self.fun(w)

    def grad(self, w):
        return np.asarray(self._grad(self.check(w)), dtype=np.float64)

    def check(self, w):
        w = finite_array("w", w, ndim=1)
        if self.n_params is not None and w.shape[0] != self.n_params:
            raise ValueError(
                f"{self.name} takes a vector of {self.n_params} entries, got {w.shape[0]}"
            )
        return w

    def __call__(self, w):
        return self.fun(w)

    def __repr__(self):
        return f"Objective({self.name})"


def as_objective(obj):
    """A Problem or Objective as is; a plain callable wrapped as an Objective."""
    if isinstance(obj, (Problem, Objective)):
        return obj
    return Objective(obj)


def require_problem(obj, what):
    if not isinstance(obj, Problem):
        raise TypeError(
            f"{what} needs a Problem (model + loss + data); a generic objective has "
            f"no outputs or loss structure. Use cl.hessian / cl.hvp for it instead."
        )
    return obj
