"""The trajectories app's runs: the 2-D test functions (with their frames) and the settings each
optimiser runs with, on a function or on a network; each method's colour."""

import numpy as np

import curvlab as cl

from .menus import FALLBACK_COLOR, optimizer_color

FUNCTIONS = {
    "rosenbrock": (lambda: cl.objectives.rosenbrock, np.array([-1.2, 1.0]),
                   (-2.0, 2.0, -1.0, 3.0)),
    "beale": (lambda: cl.objectives.beale, np.array([1.0, 1.4]), (-0.5, 4.5, -1.5, 2.0)),
    "quadratic": (lambda: cl.objectives.make_quadratic(condition=50.0)[0], np.array([-1.5, 1.0]),
                  (-2.0, 2.0, -2.0, 2.0)),
    "logistic": (lambda: cl.objectives.make_logistic_regression(n=100, seed=0)[0],
                 np.array([-3.0, 3.0]), (-4.0, 6.0, -4.0, 4.0)),
}
# default settings per method, for the 2-D functions and for networks (a method that only the
# registry knows, a new kind's own optimiser, gets DEFAULT_HYPER)
FUNCTION_HYPER = {
    "gd": dict(lr=1e-3), "momentum": dict(lr=5e-4, beta=0.9), "nesterov": dict(lr=5e-4, beta=0.9),
    # undamped second-order steps, so the reparameterisation toggle shows their exact invariance
    "adam": dict(lr=0.05), "newton": dict(variant="plain"), "gauss_newton": dict(damping=0.0),
    "natural_gradient": dict(damping=0.0),
}
NETWORK_HYPER = dict(FUNCTION_HYPER, gd=dict(lr=0.5), momentum=dict(lr=0.2, beta=0.9),
                     nesterov=dict(lr=0.2, beta=0.9),
                     newton=dict(variant="abs", damping=0.1, lr=0.5),
                     gauss_newton=dict(damping=0.1), natural_gradient=dict(damping=0.1),
                     kfac=dict(damping=0.1), kflr=dict(damping=0.1), kfra=dict(damping=0.1),
                     diagonal=dict(damping=0.1, lr=0.3), hessian_free=dict())
# the first-order methods' learning rates on a 2-D function, times FUNCTION_HYPER's (tuned on
# rosenbrock): the quadratic's curvatures (1 and 50) allow steps up to 2/50 = 0.04
FIRST_ORDER_SCALE = {"quadratic": 35.0}
FIRST_ORDER = ("gd", "momentum", "nesterov")
DEFAULT_HYPER = {"2-D functions": {}, "network": dict(damping=0.1)}
# methods named after a curvature kind take its colour (menus.optimizer_color), the others
# their own
PALETTE = dict(zip(NETWORK_HYPER, ["#7f7f7f", "#bcbd22", "#8c564b", "#e377c2", "#d62728",
                                   "#1f77b4", "#17becf", "#ff7f0e", "#2ca02c", "#9467bd",
                                   "#aec7e8", "#000000"]))
# the reparameterisation w = R w̃ (2-D: a shear and an anisotropic scaling)
R2 = np.array([[1.0, 0.0], [1.5, 0.2]])


def method_color(method):
    return optimizer_color(method) or PALETTE.get(method, FALLBACK_COLOR)
