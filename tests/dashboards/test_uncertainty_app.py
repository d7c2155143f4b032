"""The uncertainty app headless: its first view, each control, bad input, leave-one-out, and every
"try this" item's claim at the view its link opens (read from the figures and the table)."""

import numpy as np
import pytest

import curvlab as cl
from curvlab.dashboards.uncertainty import INFLUENCE_TABLE, UncertaintyDashboard
from curvlab.dashboards.uncertainty_figs import LINE, LOO_CAP, problem_and_point


def arr(v):
    return np.array(v, dtype=float)


def trace(fig, name):
    return next(t for t in fig.data if t.name == name)


def bands(d):
    """{kind: its half-width (2 std) along LINE} as the 1-D plot shows them."""
    out = {"ggn": (arr(d.band_fig.data[1].y) - arr(d.band_fig.data[2].y)) / 2}
    for t in d.band_fig.data[4:]:
        if t.visible:
            y, n = arr(t.y), len(LINE)
            out[t.name] = (y[:n] - y[n + 1:]) / 2
    return out


def table(d):
    title, header, rows = d.tables[id(d.table)]
    assert title == INFLUENCE_TABLE
    return {r[0]: dict(zip(header[1:], r[1:])) for r in rows}


def mean_conf(d):
    """{kind: the mean confidence its map shows}, from the maps themselves (and the titles)."""
    out = {}
    for i, a in enumerate(d.map_fig.layout.annotations):
        heat = d.map_fig.data[2 * i]
        if heat.visible:
            k, shown = a.text.split(" · mean conf. ")
            out[k] = float(arr(heat.z).mean())
            assert float(shown) == pytest.approx(out[k], abs=5e-4)
    return out


def stars(d):
    return {t.name.split()[0]: (t.x[0], t.y[0]) for t in d.evidence_fig.data
            if t.visible and t.name.endswith("optimum")}


@pytest.fixture(scope="module")
def app():
    return UncertaintyDashboard()


def test_first_view(app):
    d = app
    assert d.status.error is None, d.last_traceback
    assert set(bands(d)) == {"ggn", "kflr", "diagonal"}
    half = bands(d)["ggn"]
    assert np.all(half > 0)
    inside = np.abs(LINE) <= 2                 # the band widens outside the data
    assert half[~inside].max() > 2 * half[inside].max()
    for k, h in bands(d).items():
        assert h[~inside].max() > h[inside].min(), k
    assert set(stars(d)) == {"ggn", "kflr", "diagonal"}
    for t in d.evidence_fig.data[::2]:         # each star sits at its curve's maximum (coarse)
        if t.visible:
            best = stars(d)[t.name]
            assert best[1] >= np.nanmax(arr(t.y)) - 1e-6
    assert d.map_box.layout.display == "none" and d.band_box.layout.display is None
    assert "press" in d.table.value and d.current_actions() == []


def test_the_problem_is_at_a_minimum():
    for name in ("regression1d", "moons"):
        problem, w, _ = problem_and_point(name)
        assert np.linalg.norm(problem.grad(w)) <= 1e-8
        H = cl.matrix(problem, w, "hessian").to_dense()       # a minimum, not a saddle
        assert np.linalg.eigvalsh(H).min() > 0


def test_controls_change_the_plots():
    d = UncertaintyDashboard()
    before = bands(d)
    d.delta.value = 100.0                      # a stronger prior: narrower bands
    after = bands(d)
    assert np.all(after["ggn"] < before["ggn"])
    assert d.evidence_fig.layout.shapes[0].x0 == 100.0
    d.kinds.value = ("kfac",)
    assert set(bands(d)) == {"ggn", "kfac"} and set(stars(d)) == {"ggn", "kfac"}
    d.sigma.value = 0.3
    assert not np.allclose(bands(d)["ggn"], after["ggn"])
    d.picker.menu.value = "moons"
    assert d.status.error is None, d.last_traceback
    assert d.band_box.layout.display == "none" and d.sigma.disabled
    assert set(mean_conf(d)) == {"ggn", "kfac"}
    assert d.cache.misses > 0 and "kinds=kfac" in d.link()


def test_an_indefinite_posterior_is_a_message_and_the_app_keeps_working():
    d = UncertaintyDashboard()
    d.apply_query("kinds=hessian,kflr&prior=0.001")
    assert "hessian" in d.status.error and "not positive definite" in d.status.error
    assert "ggn" in d.status.error                       # the message suggests the GGN
    assert set(bands(d)) == {"ggn", "kflr"}               # the other kinds are drawn
    d.delta.value = 1000.0                                # a prior that makes Λ definite
    assert d.status.error is None and set(bands(d)) == {"ggn", "kflr", "hessian"}
    curve = arr(trace(d.evidence_fig, "hessian").y)       # a gap where Λ is indefinite, no star
    assert np.isnan(curve[0]) and np.isfinite(curve[-1])
    assert not trace(d.evidence_fig, "hessian optimum").visible
    d.apply_query("prior=-1")                             # out of range: a message, no change
    assert "prior" in d.status.error and d.delta.value == 1000.0


def test_leave_one_out_on_a_button_capped_and_cached():
    d = UncertaintyDashboard()
    d.loo.click()
    assert d.status.error is None, d.last_traceback
    rows = table(d)
    assert set(rows) == {"hessian", "ggn", "kflr", "diagonal"}
    assert f"{LOO_CAP} removed points" in d.table.value
    assert d.current_actions() == ["loo"] and "run=loo" in d.link()
    misses = d.cache.misses
    d.kinds.value = ("diagonal",)                          # the retraining is not redone
    assert set(table(d)) == {"hessian", "ggn", "diagonal"}
    assert d.cache.misses == misses + 1 and d.cache.hits > 0    # only the new table
    d.picker.menu.value = "moons"                         # another problem: not run yet
    assert "press" in d.table.value and d.current_actions() == []


# ---- each "try this" item at its view -----------------------------------------------------------

def lesson_0(d):
    b, inside = bands(d), np.abs(LINE) <= 2
    assert np.all(b["diagonal"][inside] > b["ggn"][inside])
    ratio = b["kflr"][inside] / b["ggn"][inside]
    assert np.all((ratio > 0.7) & (ratio < 1.3))
    for k in ("kflr", "diagonal"):
        assert np.mean(b[k][~inside] < b["ggn"][~inside]) > 0.5, k


def lesson_1(d):
    c = mean_conf(d)
    assert c["diagonal"] > c["ggn"] + 0.05 and abs(c["kflr"] - c["ggn"]) < 0.01


def lesson_2(d):
    s = stars(d)
    assert s["diagonal"][0] > s["ggn"][0]
    d.picker.menu.value = "regression1d"                   # "on both problems"
    s = stars(d)
    assert s["diagonal"][0] > s["ggn"][0]


def lesson_3(d):
    rows = table(d)
    rank = {k: r["rank corr."] for k, r in rows.items()}
    assert max(rank, key=rank.get) == "hessian"
    assert min(rank, key=rank.get) == "diagonal"
    off = {k: abs(np.log(r["scale"])) for k, r in rows.items()}
    assert max(off, key=off.get) == "diagonal"


LESSONS = [lesson_0, lesson_1, lesson_2, lesson_3]


def test_every_lesson_has_a_check():
    assert len(LESSONS) == len(UncertaintyDashboard.TRY_THIS)
    shown = UncertaintyDashboard().widget.children[-2].value
    for t in UncertaintyDashboard.TRY_THIS:
        assert f'href="?{t.query.replace("&", "&amp;")}"' in shown


@pytest.mark.parametrize("i", range(len(LESSONS)))
def test_the_lesson_holds_at_its_view(i):
    d = UncertaintyDashboard()
    assert d.apply_query(UncertaintyDashboard.TRY_THIS[i].query) == []
    assert d.status.error is None, d.last_traceback
    LESSONS[i](d)
    assert d.status.error is None, d.last_traceback
