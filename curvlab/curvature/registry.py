"""The registry of curvature kinds: every curvature module adds its own (`register`), so
`cl.matrix`, `cl.compare`, the spectra and the dashboards' menus list whatever exists."""

from collections import namedtuple

Kind = namedtuple("Kind", "name build summary source")
REGISTRY = {}
KINDS = REGISTRY.keys()          # a live view of the names


def register(name, build, summary, source=""):
    """Add a kind: build(problem, w, **options) returns a curvature object (`to_dense`, `@`,
    `solve`, `blocks`, `eigvalsh`); options it takes by name among samples, seed, flavor and its
    own. summary: one line for menus and tables; source: where the kind comes from."""
    REGISTRY[name] = Kind(name, build, summary, source)
    return build


def kind_table():
    """[(name, summary, source)] of every registered kind, in registration order."""
    return [(k.name, k.summary, k.source) for k in REGISTRY.values()]
