"""curvlab — a curvature laboratory for small neural networks.

Exact Hessian, GGN, Fisher (true, empirical, Monte-Carlo), K-FAC, KFLR, KFRA and the exact
per-layer Hessian blocks of small layered networks, plus matrix-free products, all in float64
and in one flat parameter layout (see `curvlab.nn`). `cl.kind_table()` lists every curvature
kind with what it can do; `cl.register` adds one.
"""

from . import (analysis, boltzmann, damping, datasets, engine, estimators, landscape, layers,
               linalg, losses, nn, objectives, optim, perturbation, units)
from ._checks import DenseTooLargeError, memory_budget, set_memory_budget
from .analysis import compare
from .boltzmann import BoltzmannMachine
from .curvature import (KINDS, Curvature, Diagonal, EigenCorrected, KroneckerFactored,
                        UnitBlocks, as_matrix, batch_stats, diag_ggn, diag_ggn_mc, diag_hessian,
                        ekfac, fd_hvp, fisher, fishervp, ggn, ggn_blocks, ggnvp, hessian,
                        hessian_blocks, hvp, jvp, kfac, kflr, kfoc, kfra, kind_table, kinds,
                        make_fishervp, make_ggnvp, make_hvp, matrix, ntk, operator,
                        per_sample_grads, register, shampoo, sqrt_ggn, tnt, unitwise,
                        unregister, vivit, vjp)
from .linalg import hutchinson, layer_spectra, slq, slq_density, spectrum
from .losses import BCE, MSE, CrossEntropy, Loss
from .nn import MLP, AvgPool2d, Conv2d, Dense, Flatten, MaxPool2d, Sequential
from .problem import Objective, Problem
from .torch_bridge import from_torch, from_torch_loss, to_torch
from .units import UnitNetwork

__version__ = "0.1.0"

__all__ = [
    # models, losses, problems
    "MLP", "Sequential", "Dense", "Conv2d", "MaxPool2d", "AvgPool2d", "Flatten", "UnitNetwork",
    "BoltzmannMachine", "Loss", "MSE", "CrossEntropy", "BCE", "Problem", "Objective",
    "from_torch", "to_torch", "from_torch_loss",
    # curvature: matrices by name, the registry, the objects
    "hessian", "ggn", "fisher", "hessian_blocks", "ggn_blocks", "kfac", "kflr", "kfra",
    "ekfac", "kfoc", "tnt", "shampoo", "unitwise", "diag_hessian", "diag_ggn", "diag_ggn_mc",
    "per_sample_grads", "batch_stats", "sqrt_ggn", "ntk", "vivit", "matrix", "as_matrix",
    "kind_table", "kinds", "register", "unregister", "KINDS", "Curvature", "KroneckerFactored",
    "EigenCorrected", "Diagonal", "UnitBlocks",
    # products
    "hvp", "ggnvp", "fishervp", "jvp", "vjp", "fd_hvp", "make_hvp", "make_ggnvp",
    "make_fishervp", "operator",
    # linear algebra and analysis
    "spectrum", "layer_spectra", "slq", "slq_density", "hutchinson", "compare",
    # memory guard
    "DenseTooLargeError", "memory_budget", "set_memory_budget",
    # modules
    "analysis", "boltzmann", "damping", "datasets", "engine", "estimators", "landscape",
    "layers", "linalg", "losses", "nn", "objectives", "optim", "perturbation", "units",
]
