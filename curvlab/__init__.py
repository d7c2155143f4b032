"""curvlab — a curvature laboratory for small neural networks.

Exact Hessian, GGN, Fisher (true, empirical, Monte-Carlo), K-FAC, KFLR, KFRA and the exact
per-layer Hessian blocks of small layered networks, plus matrix-free products, all in float64
and in one flat parameter layout (see `curvlab.nn`).
"""

from . import datasets, engine, layers, losses, nn, objectives, units
from ._checks import DenseTooLargeError, memory_budget, set_memory_budget
from .curvature import (KroneckerFactored, fd_hvp, fisher, fishervp, ggn, ggn_blocks, ggnvp,
                        hessian, hessian_blocks, hvp, jvp, kfac, kflr, kfra, make_fishervp,
                        make_ggnvp, make_hvp, operator, vjp)
from .losses import BCE, MSE, CrossEntropy, Loss
from .nn import MLP, AvgPool2d, Conv2d, Dense, Flatten, MaxPool2d, Sequential
from .problem import Objective, Problem
from .torch_bridge import from_torch, from_torch_loss, to_torch
from .units import UnitNetwork
from .boltzmann import BoltzmannMachine
from . import boltzmann, perturbation

__version__ = "0.1.0"

from . import analysis, damping, estimators, landscape, linalg, optim
from .analysis import compare
from .curvature import (EigenCorrected, UnitBlocks, batch_stats, diag_ggn_mc, diag_hessian, ekfac,
                        kfoc, kind_table, ntk, per_sample_grads, shampoo, sqrt_ggn, tnt, unitwise, vivit)
from .curvature.diagonal import Diagonal, diag_ggn
from .curvature.kinds import KINDS, matrix
from .linalg import hutchinson, layer_spectra, slq, slq_density, spectrum
