"""Training time in the apps, headless: the picker's state is any step of one recorded run
(`cl.dynamics.train`, cached), its weights are that run's, links carry the run's settings and
the step, and a bad step is a message with the app still working."""

import numpy as np
import pytest

import curvlab as cl
from curvlab.dashboards import DampingDashboard, LandscapeDashboard, SpectraDashboard, problems
from curvlab.dashboards.problems import ProblemPicker, problem_and_point, recorded_run


def adam_by_hand(problem, w, steps, lr, b1=0.9, b2=0.999, eps=1e-8):
    """Adam's iterates written out here (Kingma & Ba, bias-corrected), independent of cl.optim."""
    m, v, out = np.zeros_like(w), np.zeros_like(w), [w]
    for t in range(1, steps + 1):
        g = problem.grad(w)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g ** 2
        w = w - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        out.append(w)
    return out


def gd_by_hand(problem, w, steps, lr):
    out = [w]
    for _ in range(steps):
        w = w - lr * problem.grad(w)
        out.append(w)
    return out


def test_a_steps_weights_are_the_recorded_runs_and_the_shortcuts_are_its_steps():
    picker = ProblemPicker(dataset="xor", arch="4-4-4", state="initialisation")
    problem, _ = picker.get()
    ws = adam_by_hand(problem, problem.model.init(seed=0), 400, 0.02)
    run = cl.dynamics.train(problem, problem.model.init(seed=0), "adam", lr=0.02, steps=1000,
                            every=1, track=(), cache=False, progress=False)
    for state, step in (("initialisation", 0), ("part-trained", 40), ("trained", 400)):
        picker.state.value = state
        assert picker.step.value == step
        w = picker.get()[1]
        np.testing.assert_array_equal(w, run.ws[step])
        np.testing.assert_allclose(w, ws[step], rtol=1e-10, atol=1e-12)
    for step in (100, 1000, 7):
        picker.step.value = step
        assert picker.state.value == problems.OTHER
        np.testing.assert_array_equal(picker.get()[1], run.ws[step])
    picker.step.value = 40
    assert picker.state.value == "part-trained"


def test_the_runs_settings_choose_the_run():
    picker = ProblemPicker(dataset="xor", arch="4-4-4", step=25, method="gd", lr=0.3, seed=2,
                           steps=60)
    problem, w = picker.get()
    np.testing.assert_allclose(w, gd_by_hand(problem, problem.model.init(seed=2), 25, 0.3)[25],
                               rtol=1e-10, atol=1e-12)
    picker.seed.value = 3
    np.testing.assert_allclose(picker.get()[1], gd_by_hand(
        problem, problem.model.init(seed=3), 25, 0.3)[25], rtol=1e-10, atol=1e-12)


def test_a_run_is_recorded_once_the_first_view_training_only_up_to_its_step(monkeypatch):
    calls = []
    train = cl.dynamics.train
    monkeypatch.setattr(cl.dynamics, "train", lambda *a, **k: calls.append(k["steps"]) or
                        train(*a, **k))
    settings = ("moons", "4-4-4", "tanh", "cross_entropy", "adam", 0.03, 300, 5)
    problem_and_point(*settings[:4], problems.OTHER, 30, *settings[4:])
    assert calls == [30]                              # the first view: up to its step
    for step in (10, 0, 30):
        problem_and_point(*settings[:4], problems.OTHER, step, *settings[4:])
    assert calls == [30]                              # within the recorded prefix: a look-up
    problem_and_point(*settings[:4], problems.OTHER, 200, *settings[4:])
    for step in (300, 150, 31, 299):
        problem_and_point(*settings[:4], problems.OTHER, step, *settings[4:])
    assert calls == [30, 300]                         # past it: the whole run, once
    assert recorded_run(*settings)[1].n_steps == 300


def test_a_link_carries_the_runs_settings_and_the_step_and_round_trips():
    d = LandscapeDashboard()
    d.picker.lr.value, d.picker.steps.value, d.picker.seed.value = 0.05, 200, 1
    d.picker.step.value = 150
    q = d.link()
    for part in ("step=150", "train-lr=0.05", "train-steps=200", "train-seed=1",
                 "train-method=adam"):
        assert part in q, q
    assert "w=" not in q.replace("view=", "")          # never weights
    e = LandscapeDashboard()
    assert e.apply_query(q) == [] and e.status.error is None
    assert e.picker.value == d.picker.value
    np.testing.assert_array_equal(e.picker.get()[1], d.picker.get()[1])
    np.testing.assert_array_equal(e.line_fig.data[0].y, d.line_fig.data[0].y)
    # a shortcut in a link is its step
    f = LandscapeDashboard()
    assert f.apply_query("?state=trained") == [] and f.picker.step.value == 400


@pytest.mark.parametrize("query,says", [
    ("?step=5000", "step 5000 is not a step of this run: pick a step from 0 to 1000"),
    ("?step=-3", "step -3 is not a step of this run"),
    ("?step=ten", "step takes a whole number, not 'ten'"),
    ("?train-steps=99999", "train-steps goes from 1 to 5000, not 99999"),
])
def test_a_bad_step_is_a_message_and_the_app_keeps_working(query, says):
    d = LandscapeDashboard()
    before = np.array(d.line_fig.data[0].y)
    d.apply_query(query)
    assert says in d.status.error, d.status.error
    d.picker.step.value = 100                          # the app keeps working
    assert d.status.error is None
    assert not np.array_equal(before, d.line_fig.data[0].y)


def test_a_step_after_the_run_diverged_is_a_message():
    d = DampingDashboard(dataset="regression1d", loss="mse")
    d.apply_query("?train-method=gd&train-lr=10&step=300")
    assert "diverged at step" in d.status.error and "smaller train lr" in d.status.error
    d.apply_query("?train-lr=0.05")
    assert d.status.error is None


def test_spectra_and_damping_follow_the_step():
    for cls, fig in ((SpectraDashboard, "spec_fig"), (DampingDashboard, None)):
        d = cls()
        figs = d.figures() if fig is None else [getattr(d, fig)]
        before = [f.to_dict()["data"] for f in figs]
        d.picker.step.value = 1000
        assert d.status.error is None
        assert [f.to_dict()["data"] for f in figs] != before, cls.__name__
        assert "step 1000" in d.settings_text()
