"""One module per curvature matrix or product; see each module's docstring for the math."""

from .blocks import ggn_blocks, hessian_blocks
from .fisher import fisher
from .ggn import ggn
from .hessian import hessian
from .kfac import KroneckerFactored, kfac, kflr, kfra
from .products import (fd_hvp, fishervp, ggnvp, hvp, jvp, make_fishervp, make_ggnvp, make_hvp,
                       operator, vjp)
from .diagonal import diag_ggn, diag_ggn_mc, diag_hessian
from .ekfac import EigenCorrected, ekfac
from .kfoc import kfoc, tnt
from .persample import batch_stats, ntk, per_sample_grads, sqrt_ggn, vivit
from .shampoo import shampoo
from .unitwise import UnitBlocks, unitwise
from .kinds import KINDS, kind_table, matrix  # noqa: E402  (after every module has registered its kinds)
