"""Curvature kinds in the dashboards: one (colour, line style) per kind, the same in every app,
and the menus, read from the registry's capabilities when a dashboard is built (not at import),
so a kind registered later is listed too."""

from ..curvature import registry

# Each kind's (colour, line style): Okabe & Ito's colour-blind-safe colours (yellow left out:
# too faint on white) with a line style, a pair no other kind has, so two kinds on one plot
# differ in colour or, where they share one, in dash. The classic kinds' pairs are fixed here;
# a kind registered later gets the first free pair in registry order (`kind_style`).
OKABE_ITO = ("#D55E00", "#0072B2", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000")
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
KIND_STYLES = {
    "hessian": ("#D55E00", "solid"), "ggn": ("#0072B2", "solid"), "fisher": ("#56B4E9", "solid"),
    "kfac": ("#E69F00", "solid"), "kflr": ("#009E73", "solid"), "kfra": ("#CC79A7", "solid"),
    "empirical_fisher": ("#56B4E9", "dash"), "diagonal": ("#000000", "dash"),
    "ekfac": ("#009E73", "dash"), "kfoc": ("#0072B2", "dash"), "tnt": ("#CC79A7", "dash"),
    "shampoo": ("#E69F00", "dash"), "unitwise": ("#D55E00", "dash"),
    "diag_hessian": ("#D55E00", "dot"), "diag_ggn_mc": ("#0072B2", "dot"),
    "mc_fisher": ("#56B4E9", "dot"), "yours": ("#000000", "dot"),
}
KIND_COLORS = {k: c for k, (c, _) in KIND_STYLES.items()}    # (the colours alone)
FALLBACK_COLOR = "#444444"     # no pair left (more kinds than pairs)


def kind_style(kind):
    """(colour, dash) of `kind`: its own pair, or for a kind without one the first pair that no
    fixed kind and no kind registered before it holds (registry order)."""
    if kind in KIND_STYLES:
        return KIND_STYLES[kind]
    taken = set(KIND_STYLES.values())
    for name in registry.REGISTRY:
        if name in KIND_STYLES:
            continue
        free = next((p for d in DASHES for c in OKABE_ITO if (p := (c, d)) not in taken), None)
        if name == kind or free is None:
            return free or (FALLBACK_COLOR, "solid")
        taken.add(free)
    return (FALLBACK_COLOR, "solid")


def kind_color(kind):
    return kind_style(kind)[0]


def kind_dash(kind):
    return kind_style(kind)[1]


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


def defined_on(kinds, problem):
    """(kept, left out): the kinds of `kinds` defined on `problem`'s model — a chain-only kind
    (KFRA, KFOC, TNT, Shampoo, unit-wise) is left out on a model that is not a chain (residual
    blocks, norm layers, attention, ...)."""
    chain = getattr(problem.model, "is_chain", True)
    kept = [k for k in kinds if chain or k not in registry.REGISTRY
            or not registry.REGISTRY[k].chains_only]
    return kept, [k for k in kinds if k not in kept]


def left_out_note(left):
    """A status line's note on the kinds `defined_on` left out ('' for none)."""
    return (f" ({', '.join(left)} left out: defined on chains of Dense and conv layers only)"
            if left else "")


def optimizer_color(method):
    """The colour of the first kind (registry order) whose optimiser is `method` (newton: the
    Hessian's, gauss_newton: the GGN's, …), or None."""
    for kind in registry.REGISTRY.values():
        if kind.optimizer == method and kind.name in KIND_COLORS:
            return KIND_COLORS[kind.name]
    return None
