"""A real JupyterHub on loopback (deploy/jupyterhub/trial_config.py: the department's
configuration with the dummy login and SimpleLocalProcessSpawner), driven as two students would:
each logs in through the hub's form, gets the landing page as their server's default URL, opens
an app from it and sees its plots and controls with no error, offline (every request that
leaves loopback is blocked); then jupyterhub-idle-culler stops the idle servers and their
kernels (timeout 10 s, checked every 5 s). bench/hub.py times five students on the same hub."""

import contextlib
import json
import pathlib
import time
from dataclasses import dataclass, field

import psutil
import pytest

from .drive import PLOTS, RENDER_COUNTER, assert_no_errors, wait_rendered
from .hub_loopback import ROOT, block_outside, log_in, loopback_hub, wait_landing

APP = "landscape"
# The Voila template the apps choose in their notebook metadata, once they do; until then the
# server extension serves Voila's default template, whose Font Awesome link points at a CDN.
CHOSEN = json.loads((ROOT / "apps" / f"{APP}.ipynb").read_text())["metadata"].get(
    "voila", {}).get("template")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    (ROOT / "test-output").mkdir(exist_ok=True)
    with open(ROOT / "test-output" / "hub.log", "w") as log:
        try:
            with loopback_hub(tmp_path_factory.mktemp("hub"), log, timeout=10, every=5) as h:
                yield h
        except RuntimeError as e:
            pytest.fail(f"{e} (test-output/hub.log)")


@dataclass
class Student:
    """A student's browser page, with what it saw: requests that left loopback (blocked) and
    console errors with the URL they concern."""
    name: str
    page: object
    outside: list = field(default_factory=list)
    errors: list = field(default_factory=list)


def student(browser, name):
    page = browser.new_context(viewport={"width": 1400, "height": 1600}).new_page()
    page.set_default_timeout(120_000)
    page.add_init_script(RENDER_COUNTER)
    s = Student(name, page)
    block_outside(page, s.outside)
    page.on("console", lambda m: s.errors.append((m.text, m.location.get("url", "")))
            if m.type == "error" else None)
    page.on("pageerror", lambda e: s.errors.append((str(e), "")))
    return s


def check_app(s):
    """The app's page: every plot drawn, its controls there, no error, curvlab's template (once
    the apps choose it), nothing fetched from outside and no console error."""
    wait_rendered(s.page, APP)
    assert_no_errors(s.page)
    assert s.page.locator(".js-plotly-plot").count() >= PLOTS[APP]
    assert s.page.locator(".widget-slider").count() > 0 and s.page.locator("select").count() > 0
    s.page.wait_for_timeout(500)
    if CHOSEN:
        assert "curvlab-kernel-lost" in s.page.content(), f"not the {CHOSEN!r} template"
        assert s.outside == [] and s.errors == [], (s.outside, s.errors)
    else:   # Voila's default template: only its CDN links may fail, nothing else
        assert all(u.startswith("https://cdn") for u in s.outside), s.outside
        assert [e for e in s.errors if e[1] not in s.outside] == [], s.errors


def test_two_students_log_in_get_the_landing_page_and_an_app_then_idle_servers_are_culled(
        browser, hub):
    students = [student(browser, name) for name in ("ada", "grace")]
    pids = {}
    try:
        # side by side, as a class arrives: both log in (their servers start together), both
        # land on the landing page, both open the app from its link (both kernels run it)
        for s in students:
            log_in(s.page, hub, s.name)
        for s in students:
            wait_landing(s.page, s.name)
        for s in students:
            s.page.locator(f"a[href$='{APP}.ipynb']").first.click()
        for s in students:
            s.page.wait_for_url(f"**/user/{s.name}/voila/render/apps/{APP}.ipynb*")
            check_app(s)
            # the server and the app's kernel, taken now: once idle for 10 s it may be culled
            assert hub.server(s.name)["ready"]
            pids[s.name] = hub.processes(s.name)
            assert len(pids[s.name]) >= 2, f"{s.name}'s server and kernel: {pids[s.name]}"
    except Exception:
        out = ROOT / "test-output" / "failures"
        out.mkdir(parents=True, exist_ok=True)
        for s in students:
            with contextlib.suppress(Exception):   # the failure, not a screenshot's timeout
                s.page.screenshot(path=str(out / f"test_hub-{s.name}.png"), full_page=True,
                                  timeout=10_000)
        raise
    finally:
        for s in students:
            s.page.context.close()
    names = [s.name for s in students]

    # Both pages are closed: the servers are idle and the culler stops them (and their kernels).
    deadline = time.monotonic() + 60
    while any(hub.server(n) for n in names) and time.monotonic() < deadline:
        time.sleep(1)
    assert [n for n in names if hub.server(n)] == [], "idle servers not culled within 60 s"
    for name in names:
        _, alive = psutil.wait_procs(pids[name], timeout=15)
        assert alive == [], f"{name}'s server or kernels still run after culling: {alive}"
    assert "Culling server ada" in (ROOT / "test-output" / "hub.log").read_text()


def test_the_department_configuration_is_what_the_trial_extends():
    """The trial keeps the department's settings and changes only login, spawner and address."""
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    trial = PyFileConfigLoader("trial_config.py", str(ROOT / "deploy" / "jupyterhub")).load_config()
    c = Config()
    department = ROOT / "deploy" / "jupyterhub" / "jupyterhub_config.py"
    namespace = {"get_config": lambda: c, "__file__": str(department)}
    exec(compile(department.read_text(), str(department), "exec"), namespace)
    assert c.JupyterHub.authenticator_class == "pam" and "spawner_class" not in c.JupyterHub
    assert (trial.JupyterHub.authenticator_class, trial.JupyterHub.spawner_class) == \
        ("dummy", "simple")
    assert trial.Spawner.default_url == c.Spawner.default_url == "/voila/render/apps/index.ipynb"
    assert pathlib.Path(trial.Spawner.notebook_dir, "apps", "index.ipynb").exists()
    assert set(c.Spawner.args) <= set(trial.Spawner.args)
    assert trial.JupyterHub.services == c.JupyterHub.services
