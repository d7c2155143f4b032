"""The dynamics app headless: it draws a run on its first frame, the step slider and ▶ move
every panel without training again, bad input is a message and the app keeps working, links
round-trip, and every "try this" item holds at its view (read from the panels it shows)."""

import numpy as np
import pytest

import curvlab as cl
from curvlab.dashboards.dynamics import DynamicsDashboard
from curvlab.dashboards.dynamics_figs import now_step


def arr(v):
    return np.array(v, dtype=float)


def ok(d):
    assert d.status.error is None, (d.status.html.value, d.last_traceback)


def series(fig, i=0):
    return arr(fig.data[i].x), arr(fig.data[i].y)


@pytest.fixture(scope="module")
def app():
    return DynamicsDashboard()


def test_first_frame_draws_a_run(app):
    ok(app)
    assert "300 steps, 31 recorded" in app.status.html.value
    x, L = series(app.loss_fig)
    assert len(x) == 301 and np.all(L > 0)
    s, lam = series(app.sharp_fig)
    assert list(s[:3]) == [0, 10, 20] and len(lam) == 31
    assert arr(app.sharp_fig.data[1].y)[0] == pytest.approx(2.0)          # 2/η at η = 1
    z = arr(app.spec_fig.data[0].z)
    assert z.shape == (len(app.spec_fig.data[0].y), 31) and np.isfinite(z).all()
    _, ov = series(app.overlap_fig)
    assert np.all((ov >= 0) & (ov <= 1 + 1e-12))
    assert arr(app.plane_fig.data[0].z).shape == (25, 25)
    for name in app.named_figures():
        assert app.caption(name)


def test_the_status_line_shows_progress_during_a_run():
    # (how fast the first frame and the slider are: bench/dynamics.py, not a test)
    d = DynamicsDashboard()
    seen = []
    d.status.html.observe(lambda c: seen.append(c["new"]), names="value")
    d.status.bar.observe(lambda c: seen.append((d.status.bar.max, c["new"])), names="value")
    d.steps.value = 100
    d.run_button.click()
    ok(d)
    lines = [v for v in seen if isinstance(v, str) and "step " in v and " of 100" in v]
    # once per recorded step (every 100 // 30 = 3 steps) and at the end
    assert [int(v.split("step ")[1].split(" of")[0]) for v in lines] == [*range(3, 100, 3), 100]
    bars = [v for v in seen if isinstance(v, tuple)]
    # the bar (after its reset to 0 for this run): the same 34 points, out of 100
    assert bars[-34:] == [(100, b) for b in (*range(3, 100, 3), 100)]
    assert "100 steps, 35 recorded" in d.status.html.value          # and the run's summary
    assert d.status.bar.layout.visibility == "hidden"
    seen.clear()
    d.steps.value = 300
    d.run_button.click()                      # a run already made: from the cache, no progress
    assert not [v for v in seen if isinstance(v, str) and " of 300" in v]


def test_the_step_slider_is_a_view_change(app):
    app.step.value = 0
    misses, runs = app.cache.misses, cl.dynamics.cache_info()["misses"]
    z0, star0 = arr(app.plane_fig.data[0].z), app.plane_fig.data[2].text
    app.step.value = 150
    ok(app)
    assert now_step(app.sharp_fig) == now_step(app.loss_fig) == 150
    assert app.plane_fig.data[2].text == ("step 150",) and star0 == ("step 0",)
    assert not np.allclose(arr(app.plane_fig.data[0].z), z0, equal_nan=True)
    assert "step <b>150</b>" in app.readout.value
    app.step.value = 0                        # back: the slice is cached too
    np.testing.assert_array_equal(arr(app.plane_fig.data[0].z), z0)
    # only the slice at step 150 was new; training never ran again
    assert app.cache.misses == misses + 1
    assert cl.dynamics.cache_info()["misses"] == runs
    assert "run" not in [k[0] for k in list(app.cache.data)[-1:]]


def test_play_steps_through_the_recorded_steps(app):
    app.step.value = 280
    assert app.player.play.step == 10
    app.player.play.value += app.player.play.step              # one tick of ▶, as the page does
    assert app.step.value == 290 and now_step(app.overlap_fig) == 290
    ok(app)


def test_settings_need_the_run_button_and_a_diverging_eta_is_a_message():
    d = DynamicsDashboard()
    before = series(d.sharp_fig)[1]
    d.eta.value = 10.0
    assert "press “run”" in d.status.html.value
    np.testing.assert_array_equal(series(d.sharp_fig)[1], before)      # nothing recomputed
    d.run_button.click()
    assert "diverged at step" in d.status.error and "threshold of gd is 0.2" in d.status.error
    assert d.last_traceback is None
    x, L = series(d.loss_fig)
    assert x[-1] < 10 and np.isfinite(L).all()
    d.step.value = d.step.max
    d.eta.value = 0.5                          # and the app keeps working
    d.run_button.click()
    ok(d)
    assert arr(d.sharp_fig.data[1].y)[0] == pytest.approx(4.0)


def test_a_problem_the_picker_cannot_build_is_a_message():
    d = DynamicsDashboard()
    d.picker.dataset.value = "regression1d"
    d.picker.loss.value = "cross_entropy"
    d.run_training()
    assert "pick the mse loss" in d.status.error
    d.picker.loss.value = "mse"
    d.run_training()
    ok(d)


def test_adam_shows_the_preconditioned_sharpness():
    d = DynamicsDashboard()
    assert d.apply_query("optimiser=adam&eta=0.01&run=train") == []
    ok(d)
    assert "preconditioned" in d.sharp_fig.layout.title.text
    assert arr(d.sharp_fig.data[1].y)[0] == pytest.approx(38 / 0.01)
    run = d.shown[2]
    np.testing.assert_allclose(series(d.sharp_fig)[1], run.preconditioned_sharpness)


def test_slq_density():
    d = DynamicsDashboard()
    d.apply_query("slq-density=1&run=train")
    ok(d)
    assert "SLQ" in d.spec_fig.layout.title.text


def test_a_link_opens_the_same_view():
    d = DynamicsDashboard()
    d.apply_query("optimiser=momentum&eta=0.5&run=train&step=120")
    q = d.link()
    assert "run=train" in q and "step=120" in q
    e = DynamicsDashboard()
    assert e.apply_query(q) == []
    ok(e)
    np.testing.assert_array_equal(series(e.sharp_fig)[1], series(d.sharp_fig)[1])
    assert e.plane_fig.data[2].text == ("step 120",)
    assert "run=" not in DynamicsDashboard().link()          # the first view needs no run


# ---- every "try this" item at its view ------------------------------------------------------
# CHECKS[i](d) asserts item i's claims on a fresh app `d` with the item's query applied (as
# tests/dashboards/test_lessons.py runs every app's items), read from the panels it shows.

CHECKS = {}


def lesson(i):
    def register(fn):
        CHECKS[i] = fn
        return fn
    return register


def shown(d):
    """(recorded steps, λ₁ or Adam's preconditioned λ₁, its threshold, the loss) as drawn."""
    s, lam = series(d.sharp_fig)
    return s, lam, arr(d.sharp_fig.data[1].y)[0], series(d.loss_fig)[1]


@lesson(0)
def _(d):
    s, lam, t, L = shown(d)
    assert t == pytest.approx(2.0) and lam[0] == pytest.approx(1.6, abs=0.01)
    assert lam[s == 30][0] >= t and abs(np.median(lam[s >= 30]) / t - 1) < 0.05
    assert lam[s >= 30].min() >= 1.6 and lam[s >= 30].max() <= 2.85
    assert L[-1] < L[0] / 4 and np.sum(np.diff(L) > 0) > 10           # falls, non-monotonically
    assert L[30:].max() > 2 * L[-1]                                        # spikes
    assert now_step(d.loss_fig) == 300


@lesson(1)
def _(d):
    s, lam, t, L = shown(d)
    assert t == pytest.approx(2 / 1.5) and lam[0] > t and round(lam[0], 1) == 1.6
    assert abs(lam[s <= 100].min() / t - 1) < 0.10
    assert "diverged" not in d.status.html.value and L[-1] < L[0]


@lesson(2)
def _(d):
    s, lam, t, L = shown(d)
    assert t == pytest.approx(3.8)
    assert lam.max() > 1.5 * 2.0 and abs(lam.max() / t - 1) < 0.1
    problem, w0 = d.picker.get()                # GD at the same η: the run the default view shows
    gd = cl.dynamics.train(problem, w0, "gd", lr=1.0, steps=300, every=10,
                           track=d.shown[2].track, progress=False)
    assert L[-1] < gd.losses[-1]


@lesson(3)
def _(d):
    s, lam, t, L = shown(d)
    run = d.shown[2]
    i = list(s).index(100)
    assert now_step(d.spec_fig) == 100
    top = arr(d.spec_fig.data[1].y)                       # λ₁ as the panel draws it
    np.testing.assert_allclose(top, run.top_eigs[:, 0])
    med0, med = (np.median(np.abs(run.eigvals[j])) for j in (0, i))
    assert top[0] < 5 * med0
    assert arr(d.spec_fig.data[3].y)[i] > 30 * med                    # λ₃ at step 100


@lesson(4)
def _(d):
    s, lam, t, L = shown(d)
    peak = int(np.argmax(lam))
    assert t == pytest.approx(2.0) and 0.8 * t < lam[peak] <= 1.05 * t
    assert s[peak] >= 100 and lam[-1] < 0.8 * lam[peak]
    assert L[-1] < L[int(s[peak])]


@pytest.mark.parametrize("i", range(len(DynamicsDashboard.TRY_THIS)))
def test_the_lesson_holds_at_its_view(i):
    d = DynamicsDashboard()
    assert d.apply_query(DynamicsDashboard.TRY_THIS[i].query) == []
    ok(d)
    CHECKS[i](d)
    ok(d)


def test_every_lesson_is_a_link_with_a_check():
    assert set(CHECKS) == set(range(len(DynamicsDashboard.TRY_THIS)))
    shown = DynamicsDashboard().widget.children[-2].value
    for t in DynamicsDashboard.TRY_THIS:
        assert f'href="?{t.query.replace("&", "&amp;")}"' in shown


def test_your_own_problem():
    X, y = cl.datasets.moons(n=40, seed=1)
    d = DynamicsDashboard(problem=cl.Problem(cl.MLP([2, 4, 2]), "cross_entropy", X, y))
    ok(d)
    assert len(series(d.sharp_fig)[1]) == 31 and "your problem" in d.picker.widget.value


@pytest.mark.parametrize("state", ["initialisation", "trained"])
def test_the_slice_plane_by_lanczos_is_the_dense_top_two_eigenvectors(state):
    from curvlab.dashboards.dynamics_figs import top_two
    from curvlab.dashboards.problems import problem_and_point
    problem, w = problem_and_point("xor", "4-4-4", "tanh", "cross_entropy", state)
    lam, V = np.linalg.eigh(cl.hessian(problem, w))              # the dense reference
    assert lam[-1] - lam[-2] > 1e-3 * lam[-1] and lam[-2] - lam[-3] > 1e-3 * lam[-1]
    lanczos = top_two(problem, w, dense_limit=0)                 # P = 62 > 0: eigsh on Hv
    dense = top_two(problem, w, dense_limit=10**6)
    for u, v, d in zip(lanczos, (V[:, -1], V[:, -2]), dense):
        assert abs(abs(u @ v) - 1) < 1e-8 and abs(np.linalg.norm(u) - 1) < 1e-12
        np.testing.assert_allclose(u, d, atol=1e-6)              # the same sign convention
        assert u @ np.random.default_rng(0).standard_normal(len(u)) > 0
