"""Curvature kinds in the dashboards: one colour per kind, the same in every app, and the menus,
read from the registry's capabilities when a dashboard is built (not at import), so a kind
registered later is listed too."""

from ..curvature import registry

# Okabe & Ito's colour-blind-safe set first, then Paul Tol's muted set for the rest.
KIND_COLORS = {
    "hessian": "#D55E00", "ggn": "#0072B2", "fisher": "#56B4E9", "kfac": "#E69F00",
    "kflr": "#009E73", "kfra": "#CC79A7", "empirical_fisher": "#999999", "diagonal": "#882255",
    "ekfac": "#117733", "kfoc": "#332288", "tnt": "#44AA99", "shampoo": "#AA4499",
    "unitwise": "#DDCC77", "diag_hessian": "#661100", "diag_ggn_mc": "#6699CC",
    "mc_fisher": "#88CCEE", "yours": "#000000",
}
FALLBACK_COLOR = "#444444"     # a kind without a colour of its own


def kind_color(kind):
    return KIND_COLORS.get(kind, FALLBACK_COLOR)


def _one_draw_of_a_dense_matrix(name):
    """A sampled kind stored dense (mc_fisher): one random draw of a dense matrix that the apps
    already show exactly (the Fisher, as "fisher"), so the menus leave it out. Sampled kinds of
    another structure (kfac, diag_ggn_mc) stay: their sampling noise beside the exact
    counterpart (kflr, the diagonal) is what they teach."""
    kind = registry.REGISTRY[name]
    return kind.sampled and kind.structure == "dense"


def kind_menu(**where):
    """The registered kinds whose capabilities equal `where` (see `registry.kinds`), less the
    single draws of dense matrices, for a menu: in KIND_COLORS' order, then the others in
    registry order (new kinds last). Call it when a dashboard is built."""
    names = registry.kinds(**where)
    order = [k for k in KIND_COLORS if k in names] + [k for k in names if k not in KIND_COLORS]
    return [k for k in order if not _one_draw_of_a_dense_matrix(k)]


def optimizer_color(method):
    """The colour of the first kind (registry order) whose optimiser is `method` (newton: the
    Hessian's, gauss_newton: the GGN's, …), or None."""
    for kind in registry.REGISTRY.values():
        if kind.optimizer == method and kind.name in KIND_COLORS:
            return KIND_COLORS[kind.name]
    return None
