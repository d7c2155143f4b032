"""Input validation shared by the package: every user error is raised here, early, by name."""

import dataclasses

import numpy as np

_BUDGET = {"bytes": 4 * 2**30}


class DenseTooLargeError(MemoryError):
    """A dense matrix (or its build) would exceed the memory budget."""


def set_memory_budget(nbytes):
    """Set the largest peak memory (bytes) a dense build may use; returns the old budget."""
    nbytes = int(nbytes)
    if nbytes <= 0:
        raise ValueError(f"memory budget must be positive, got {nbytes} bytes")
    old, _BUDGET["bytes"] = _BUDGET["bytes"], nbytes
    return old


def memory_budget():
    """The current memory budget for dense builds, in bytes (default 4 GiB)."""
    return _BUDGET["bytes"]


def _gib(nbytes):
    return f"{nbytes / 2**30:.3g} GiB"


def check_dense(name, P, extra_bytes=0, alternative=None):
    """Refuse, before allocating, a dense (P, P) float64 build whose peak exceeds the budget."""
    need = 8 * P * P + int(extra_bytes)
    if need > _BUDGET["bytes"]:
        alt = alternative or f"cl.operator(problem, w, {name!r}) (a matrix-free LinearOperator)"
        raise DenseTooLargeError(
            f"{name}: a dense {P} x {P} float64 build needs about {_gib(need)}, over the memory "
            f"budget of {_gib(_BUDGET['bytes'])}. Use {alt} instead, or raise the budget with "
            f"cl.set_memory_budget(nbytes)."
        )


def as_numpy(a):
    """A torch tensor (any device, with or without an autograd graph) as a numpy array, so
    tensors are accepted wherever arrays go; anything else (arrays, lists, autograd's boxes)
    unchanged. The one place tensors are converted."""
    if type(a).__module__.startswith("torch") and hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    return a


def finite_array(name, a, ndim=None, dtype=np.float64):
    """Return `a` as a float64 array (a torch tensor converted), checking dimensions and that
    every entry is finite."""
    a = np.asarray(as_numpy(a), dtype=dtype)
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise ValueError(
            f"{name} contains {bad} NaN or infinite entries; clean or impute them first"
        )
    return a


def flat_vector(name, v, P):
    """Check a flat parameter-space vector of length P (or a (P, Q) block of vectors)."""
    v = np.asarray(as_numpy(v), dtype=np.float64)
    if v.ndim not in (1, 2) or v.shape[0] != P:
        raise ValueError(
            f"{name} must have shape ({P},) or ({P}, Q) in the flat layout, got {v.shape}"
        )
    return finite_array(name, v)


def nonnegative(name, x):
    x = float(x)
    if not np.isfinite(x) or x < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {x}")
    return x


def choice(name, value, options):
    if value not in options:
        raise ValueError(f"unknown {name} {value!r}; choose one of {sorted(options)}")
    return value


def short_repr(obj):
    """ClassName(field=value, ...) for a result dataclass, with arrays shown by shape and long
    lists by length, so printing a result never floods a notebook."""
    parts = []
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, np.ndarray) and v.size > 6:
            text = f"<array {v.shape}>"
        elif isinstance(v, (list, tuple)) and len(v) > 6:
            text = f"<{type(v).__name__} of {len(v)}>"
        elif isinstance(v, (float, np.floating)):
            text = f"{v:.6g}"
        else:
            text = repr(v)
        parts.append(f"{f.name}={text}")
    return f"{type(obj).__name__}({', '.join(parts)})"
