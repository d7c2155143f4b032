"""The registry of curvature kinds and what each can do.

Every curvature module registers its own kinds (`register`) with their **capabilities**, and
every consumer reads them instead of keeping its own list of names: `cl.matrix` (building),
`cl.spectrum` (factored kinds from their factors, diagonal kinds as diagonals, matrix-free
kinds by Lanczos), `cl.operator` and the landscapes' quadratic models (matrix-free products),
`cl.compare`, the optimisers (`optimizer`) and the dashboards' menus. Kinds are listed in
registration order, which `curvlab.curvature`'s package file fixes by the order it imports the
curvature modules in.

Capabilities of a kind (the fields of `Kind`):

    structure      'dense'      a (P, P) matrix (built whole, or from P products)
                   'kronecker'  ⊕_l S_l ⊗ A_l (`.factors`): products, solves and eigenvalues
                                from the factors, never P × P
                   'diagonal'   diag(d): eigenvalues are the entries
                   'blocks'     block-diagonal with small dense or eigen-factored blocks
    product        None, or `make(objective, w) -> (V (P, Q) -> C V)`: a matrix-free product
                   (Pearlmutter's Hv, Lin's Gv, Fv) that never builds the matrix
    needs_problem  False when a generic objective (a function of a flat vector) has the kind
    sampled        Monte-Carlo: depends on `samples` and `seed`
    optimizer      the `cl.optim` method that steps with this kind as its curvature, or None
    references     what the tests check the kind against (an independent oracle or a peer
                   library after the stated mapping)
    layer_blocks   None, or `blocks(problem, w) -> [(size_l, size_l)]`: the exact diagonal
                   layer blocks without the whole matrix (Botev's recursion)
    chains_only    defined (so far) on chains of Dense, conv, pooling and Flatten layers only
                   (`model.is_chain`); refused by name on Residual, MeanPool, cl.Function, ...
                   (`require_chain`)
"""

import inspect
from dataclasses import dataclass, field

STRUCTURES = ("dense", "kronecker", "diagonal", "blocks")
REGISTRY = {}
KINDS = REGISTRY.keys()          # a live view of the names, in registration order


@dataclass(frozen=True)
class Kind:
    """One registered curvature kind: how to build it and what it can do (module docstring)."""

    name: str
    build: object = field(repr=False)
    summary: str
    source: str = ""
    structure: str = "dense"
    product: object = field(default=None, repr=False)
    needs_problem: bool = True
    sampled: bool = False
    optimizer: str = None
    references: tuple = ()
    layer_blocks: object = field(default=None, repr=False)
    chains_only: bool = False

    @property
    def matrix_free(self):
        """Whether the kind has a product C v that never builds the matrix."""
        return self.product is not None

    def row(self):
        """The kind as one row of `kind_table`."""
        return (self.name, self.summary, self.source, self.structure, self.matrix_free,
                self.needs_problem, self.sampled, self.optimizer, self.references,
                self.chains_only)


COLUMNS = ("name", "summary", "source", "structure", "matrix_free", "needs_problem", "sampled",
           "optimizer", "references", "chains_only")


def register(name, build, summary, source="", *, structure="dense", product=None,
             needs_problem=True, sampled=False, optimizer=None, references=(), layer_blocks=None,
             chains_only=False):
    """Add the curvature kind `name` (its capabilities: module docstring) and return its `Kind`.

    build(problem, w, **options) returns a curvature object (a `cl.curvature.Curvature`:
    `to_dense`, `@`, `solve`, `blocks`, `eigvalsh`); the options it takes by name among
    `samples`, `seed`, `flavor` and its own are passed on by `cl.matrix`. summary: one line for
    menus and tables; source: where the kind comes from. Registering a name again replaces it.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a kind's name is an identifier-like string such as 'kflr', got {name!r}")
    if not callable(build):
        raise TypeError(f"build for kind {name!r} must be callable (problem, w, **options) -> "
                        f"curvature object, got {type(build).__name__}")
    if structure not in STRUCTURES:
        raise ValueError(
            f"structure of kind {name!r} must be one of {STRUCTURES}, got {structure!r}"
        )
    if product is not None and not callable(product):
        raise TypeError(
            f"product for kind {name!r} must be a builder make(objective, w) -> (V -> C V), or None"
        )
    kind = Kind(
        name,
        build,
        str(summary),
        str(source),
        structure,
        product,
        bool(needs_problem),
        bool(sampled),
        optimizer,
        tuple(references),
        layer_blocks,
        bool(chains_only),
    )
    REGISTRY[name] = kind
    return kind


def unregister(name):
    """Remove a registered kind (e.g. a toy kind after a test) and return it."""
    if name not in REGISTRY:
        raise KeyError(f"no curvature kind {name!r} is registered; registered: {list(REGISTRY)}")
    return REGISTRY.pop(name)


def kinds(**where):
    """Names of the registered kinds whose capabilities equal the given values, in registration
    order: `kinds(structure='kronecker')`, `kinds(sampled=False, needs_problem=True)`,
    `kinds(matrix_free=True)`; `kinds()` is every name."""
    unknown = set(where) - set(COLUMNS) - {"product", "build", "layer_blocks"}
    if unknown:
        raise TypeError(
            f"kinds() filters by capability {sorted(unknown)}, which a kind does not "
            f"have; capabilities: {list(COLUMNS[3:])}"
        )
    return [k.name for k in REGISTRY.values() if all(getattr(k, f) == v for f, v in where.items())]


def get(name):
    """The `Kind` registered as `name`, or a ValueError that lists the registered names."""
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(
            f"unknown curvature kind {name!r}; choose one of {sorted(REGISTRY)} "
            "(cl.kind_table() lists them with what each can do)"
        )
    return REGISTRY[name]


class KindTable(list):
    """The rows of `kind_table()` (tuples, COLUMNS order), shown as a readable table."""

    columns = COLUMNS

    def __str__(self):
        head = ("kind", "structure", "matrix-free", "sampled", "optimiser", "summary", "source")
        rows = [
            (r[0], r[3], "yes" if r[4] else "", "yes" if r[6] else "", r[7] or "", r[1], r[2])
            for r in self
        ]
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        widths[-1] = 0  # the last column runs to the line's end
        line = lambda cells: "  ".join(f"{c!s:<{w}}" for c, w in zip(cells, widths)).rstrip()
        return "\n".join(
            [line(head), line(["-" * w for w in widths[:-1]] + ["------"])]
            + [line(r) for r in rows]
        )

    __repr__ = __str__

    def _repr_html_(self):
        import html

        cells = lambda r, tag: "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in r)
        return (
            "<table><tr>"
            + cells(self.columns, "th")
            + "</tr>"
            + "".join("<tr>" + cells(r, "td") + "</tr>" for r in self)
            + "</table>"
        )


def call(fn, *args, **options):
    """fn(*args, **options), passing only the options fn takes by name (all of them when it
    takes **kwargs): builders and products declare the options that concern them."""
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return fn(*args, **options)
    return fn(*args, **{k: v for k, v in options.items() if k in params})


def require_chain(problem, name):
    """Refuse a `chains_only` kind on a model that is not a chain, by name (what is not
    supported yet, and what works); every other kind passes."""
    if name in REGISTRY and REGISTRY[name].chains_only:
        problem.require_chain(name)


def kind_table():
    """Every registered kind as a row (name, summary, source, structure, matrix_free,
    needs_problem, sampled, optimizer, references), in registration order; prints as a table."""
    return KindTable(k.row() for k in REGISTRY.values())
