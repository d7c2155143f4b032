"""The picker's modern nets (issue 21): a residual net with LayerNorm on the vector data sets and
a one-block transformer on a token sequence task, shown by the apps like any other net; the
combinations that cannot be built are messages, and the app keeps working."""

import numpy as np
import pytest

import curvlab as cl
from curvlab.dashboards import DampingDashboard, LandscapeDashboard, SpectraDashboard
from curvlab.dashboards.problems import problem_and_point


@pytest.mark.parametrize("dataset,arch,layers", [
    ("sorting", "transformer", ["Embedding", "Residual", "Residual", "LayerNorm", "Dense"]),
    ("spirals", "residual-ln", ["Dense", "Residual", "LayerNorm", "Dense"]),
])
def test_the_picker_builds_the_modern_nets(dataset, arch, layers):
    problem, w = problem_and_point(dataset, arch, "tanh", "cross_entropy", "trained")
    assert [type(m).__name__ for m in problem.model.modules] == layers
    assert problem.n_params <= 2000                 # its dense Hessian builds in about a second
    w0 = problem.model.init(seed=0)
    assert problem.loss(w) < 0.5 * problem.loss(w0)   # 400 steps of Adam have trained it
    if arch == "transformer":
        assert problem.X.dtype.kind == "i" and problem.y.shape == problem.X.shape
        X, y = cl.datasets.sorting(n=96, length=4, vocab=5, seed=0)
        np.testing.assert_array_equal(problem.X, X)
        np.testing.assert_array_equal(problem.y, y)


@pytest.mark.parametrize("dataset,arch", [("sorting", "transformer"), ("xor", "residual-ln")])
def test_landscape_spectra_and_damping_show_them(dataset, arch):
    problem, w = problem_and_point(dataset, arch, "tanh", "cross_entropy", "part-trained")
    top = np.linalg.eigvalsh(cl.hessian(problem, w))[-1]
    for cls in (LandscapeDashboard, SpectraDashboard, DampingDashboard):
        d = cls(dataset=dataset, arch=arch, state="part-trained")
        assert d.status.error is None, (cls.__name__, d.status.error)
        for fig in d.figures():
            for trace in fig.data:
                y = getattr(trace, "y", None)
                if y is not None and len(y) and np.asarray(y).dtype.kind == "f":
                    assert np.all(np.isfinite(np.asarray(y, float)[np.isfinite(
                        np.asarray(y, float)) | ~np.isnan(np.asarray(y, float))])), cls
        if cls is SpectraDashboard:
            d.kinds.value = ("hessian",)
            shown = max(float(np.nanmax(np.asarray(t.y, float))) for t in d.spec_fig.data
                        if t.name == "hessian" and t.y is not None and len(t.y))
            assert abs(shown - top) < 1e-8 * abs(top)


def test_combinations_that_cannot_be_built_are_messages_and_the_app_keeps_working():
    d = LandscapeDashboard()
    d.picker.dataset.value = "sorting"                      # with the MLP "8": impossible
    assert "sorting is a token sequence task: pick the transformer" in d.status.error
    d.picker.arch.value = "transformer"
    assert d.status.error is None
    d.picker.loss.value = "mse"
    assert "pick the cross_entropy loss" in d.status.error
    d.picker.loss.value = "cross_entropy"
    d.picker.dataset.value = "moons"
    assert "the transformer reads token sequences: pick the sorting data" in d.status.error
    before = np.array(d.line_fig.data[0].y)
    d.picker.arch.value = "residual-ln"
    assert d.status.error is None
    assert not np.array_equal(before, d.line_fig.data[0].y)
