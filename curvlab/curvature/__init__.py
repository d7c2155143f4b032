"""One module per curvature matrix or product; see each module's docstring for the math.

Each module registers its kinds (`registry.register`) when it is imported; the order of the
imports below is the order of `cl.kind_table()` and of every menu. A new module is found and
imported after these (so adding a kind touches its own module and nothing else).
"""

import importlib
import pkgutil

from . import registry
from .base import BlockDiagonal, Curvature, Dense, Operator
# registration order: exact dense kinds, the Kronecker family, diagonals, the zoo
from .hessian import hessian
from .ggn import ggn
from .fisher import fisher
from .kfac import KroneckerFactored, kfac, kflr, kfra
from .diagonal import Diagonal, diag_ggn, diag_ggn_mc, diag_hessian
from .ekfac import EigenCorrected, ekfac
from .kfoc import kfoc, tnt
from .shampoo import shampoo
from .unitwise import UnitBlocks, unitwise
from .blocks import ggn_blocks, hessian_blocks
from .persample import batch_stats, ntk, per_sample_grads, sqrt_ggn, vivit
from .products import (fd_hvp, fishervp, ggnvp, hvp, jvp, make_fishervp, make_ggnvp, make_hvp,
                       operator, vjp)

for _module in pkgutil.iter_modules(__path__):           # kinds in modules added later
    importlib.import_module(f"{__name__}.{_module.name}")

from .kinds import as_matrix, matrix
# last: the function `kinds` over the module of that name (importing it bound the module here)
from .registry import KINDS, kind_table, kinds, register, unregister

__all__ = ["BlockDiagonal", "Curvature", "Dense", "Diagonal", "EigenCorrected", "KINDS",
           "KroneckerFactored", "Operator", "UnitBlocks", "as_matrix", "batch_stats",
           "diag_ggn", "diag_ggn_mc", "diag_hessian", "ekfac", "fd_hvp", "fisher", "fishervp",
           "ggn", "ggn_blocks", "ggnvp", "hessian", "hessian_blocks", "hvp", "jvp", "kfac",
           "kflr", "kfoc", "kfra", "kind_table", "kinds", "make_fishervp", "make_ggnvp",
           "make_hvp", "matrix", "ntk", "operator", "per_sample_grads", "register", "registry",
           "shampoo", "sqrt_ggn", "tnt", "unitwise", "unregister", "vivit", "vjp"]
