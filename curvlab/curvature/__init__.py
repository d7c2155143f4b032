"""One module per curvature matrix or product; see each module's docstring for the math."""

from .blocks import ggn_blocks, hessian_blocks
from .fisher import fisher
from .ggn import ggn
from .hessian import hessian
from .kfac import KroneckerFactored, kfac, kflr, kfra
from .products import (fd_hvp, fishervp, ggnvp, hvp, jvp, make_fishervp, make_ggnvp, make_hvp,
                       operator, vjp)
