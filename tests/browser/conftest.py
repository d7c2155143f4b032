"""Serve apps/ with Voila on a free loopback port and drive it with Debian's Chromium through
Playwright (the set-up of shared/recipes/browser-tests.md)."""

import contextlib
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from .drive import open_app

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CURVLAB_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(argv, probe, what, log, **popen):
    """Run `argv` in a process group of its own (output to `log`), yield once `probe` (a URL)
    answers, and stop the whole group on exit. Raises RuntimeError if it exits early or does not
    answer within 60 s."""
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            **popen)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(probe, timeout=1)
                break
            except Exception:
                if proc.poll() is not None:
                    where = getattr(log, "name", "its output")
                    raise RuntimeError(f"{what} exited early; see {where}")
                time.sleep(0.2)
        else:
            raise RuntimeError(f"{what} did not answer within 60 s")
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def serve_voila(folder, log=subprocess.DEVNULL, args=(), **settings):
    """Voila serving `folder` on a free loopback port as `./run apps` does (preheated kernels,
    curvlab's template: curvlab.dashboards.serve; settings: pool, fill_delay, cull): yields its
    URL once it answers, and stops it (the whole process group) on exit. Raises RuntimeError if
    it never comes up."""
    from curvlab.dashboards.serve import command
    port = _free_port()
    argv, env = command(folder, port, extra=args, **settings)
    url = f"http://127.0.0.1:{port}"
    # Voila's file list: "/" redirects to the landing page
    with running(argv, url + "/voila/tree", "voila", log, cwd=ROOT, env={**os.environ, **env}):
        yield url


@pytest.fixture(scope="session")
def voila_url():
    (ROOT / "test-output").mkdir(exist_ok=True)
    with open(ROOT / "test-output" / "voila.log", "w") as log:
        try:
            # No cell timeout (as `./run apps` has none): a preheated kernel's second cell waits
            # for its visitor (links.query_string), and that wait counted against it, so any
            # app opened over 180 s after its kernel was preheated showed "Cell execution timed
            # out". A build that hangs still fails the test at open_app's own 180 s wait.
            args = ["--show_tracebacks=True"]
            with serve_voila(ROOT / "apps", log, args) as url:
                yield url
        except RuntimeError as e:
            pytest.fail(str(e))


@pytest.fixture(scope="session")
def browser():
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: `./run test` installs Debian's chromium; "
                    "or set CURVLAB_CHROMIUM")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.failed_call = report.failed
    return report


def new_page(browser):
    p = browser.new_context(viewport={"width": 1400, "height": 1600}).new_page()
    p.set_default_timeout(120_000)
    return p


def keep_failure(p, request):
    """Save what the page showed when the test failed."""
    out = ROOT / "test-output" / "failures"
    out.mkdir(parents=True, exist_ok=True)
    p.screenshot(path=str(out / f"{request.node.name}.png"), full_page=True)


@pytest.fixture
def page(browser, request):
    p = new_page(browser)
    yield p
    if getattr(request.node, "failed_call", False):
        keep_failure(p, request)
    p.context.close()


@pytest.fixture(scope="module")
def _shared(browser):
    pages = {}
    yield pages
    for p in pages.values():
        p.context.close()


@pytest.fixture
def app_page(_shared, browser, voila_url, request):
    """`app_page(app)`: `app`'s page, opened once and shared by consecutive tests that each make
    one move in it (an app opens once, as in a test that made all those moves in turn). Opening
    another app closes it; a failed test's page is saved as a screenshot and closed, so the next
    test gets a fresh one."""
    used = []

    def get(app):
        for other in [a for a in _shared if a != app]:
            _shared.pop(other).context.close()
        used.append(app)
        if app not in _shared:
            _shared[app] = new_page(browser)
            open_app(_shared[app], voila_url, app)
        return _shared[app]
    yield get
    if getattr(request.node, "failed_call", False):
        for app in used:
            if app in _shared:
                keep_failure(_shared[app], request)
                _shared.pop(app).context.close()
