"""The app as Binder, JupyterHub and a user's own Jupyter serve it: curvlab built as a wheel and
installed (`--no-deps`) into a second environment that reuses .venv's packages (nothing is
downloaded), `jupyter server` from that environment with Voila as a server extension under a
JupyterHub-like base URL, and an app opened at /voila/render/apps/<app>.ipynb in headless Chromium
with every request that leaves loopback blocked. The page has curvlab's template (chosen by the
notebook's metadata, installed with the wheel), plotly's widget code comes once over HTTP from
curvlab_jupyter (enabled by the config file the wheel installs), not through the widget channel,
and the app's figures are drawn with no console error and no outside request."""

import gzip
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request

import pytest

from .conftest import ROOT, _free_port, running
from .drive import PLOTS, RENDER_COUNTER, assert_no_errors, block_outside, wait_rendered

BASE = "/user/student-1/"        # a prefix as JupyterHub gives each user's server
APP = "landscape"
SOURCES = ["curvlab", "curvlab_jupyter", "share", "jupyter-config", "pyproject.toml", "README.md"]


def _run(argv, **kw):
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)
    assert out.returncode == 0, (argv, out.stdout[-2000:], out.stderr[-3000:])
    return out


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    """(python, prefix) of a fresh environment holding curvlab's wheel, and .venv's packages
    behind it. The wheel is built from a copy of the sources, so no build/ or stale file of the
    checkout enters it."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        from_, to = ROOT / name, src / name
        if from_.is_dir():
            shutil.copytree(from_, to, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(from_, to)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          str(src), "-w", str(tmp / "dist")])
    wheel, = (tmp / "dist").glob("curvlab-*.whl")
    env = tmp / "env"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env)])
    python = env / "bin" / "python"
    site = pathlib.Path(_run([str(python), "-c", "import sysconfig; "
                                                 "print(sysconfig.get_paths()['purelib'])"]
                             ).stdout.strip())
    # --ignore-installed: without it, pip uninstalls the curvlab it finds in .venv, whose pip runs
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--ignore-installed",
          "-q", "--prefix", str(env), str(wheel)])
    assert _run([sys.executable, "-m", "pip", "show", "-q", "curvlab"]).returncode == 0
    # .venv's packages after the wheel's (a path in a .pth is appended to sys.path; the .pth
    # files in that directory, e.g. the editable curvlab's finder, are not run)
    (site / "zz_dotvenv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python, env


def test_the_wheel_holds_the_template_the_extension_and_its_config(wheel_env):
    python, env = wheel_env
    where = _run([str(python), "-c", "import curvlab, curvlab_jupyter; "
                  "print(curvlab.__file__); print(curvlab_jupyter.__file__)"],
                 cwd=env).stdout.split()
    assert all(pathlib.Path(p).is_relative_to(env) for p in where), where    # not the checkout
    template = env / "share" / "jupyter" / "voila" / "templates" / "curvlab"
    assert (template / "index.html.j2").read_text() == (
        ROOT / "share" / "jupyter" / "voila" / "templates" / "curvlab" / "index.html.j2"
    ).read_text()
    assert (template / "conf.json").is_file()
    config = env / "etc" / "jupyter" / "jupyter_server_config.d" / "curvlab_jupyter.json"
    assert '"curvlab_jupyter": true' in config.read_text()


@pytest.fixture(scope="module")
def server(wheel_env, tmp_path_factory):
    """`jupyter server` from the wheel's environment, with Voila's server extension (enabled by
    Voila's config file, as pip installs it) and curvlab_jupyter (enabled by the wheel's), under
    BASE; yields its URL up to BASE's end."""
    python, env = wheel_env
    venv_prefix = pathlib.Path(sys.prefix)
    port = _free_port()
    home = tmp_path_factory.mktemp("home")
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("JUPYTER", "CURVLAB_PLOTLY"))}
    # Voila's extension enabled as its wheel enables it, and nothing else of .venv's config
    voila_conf = home / "voila-config" / "jupyter_server_config.d"
    voila_conf.mkdir(parents=True)
    shutil.copy(venv_prefix / "etc" / "jupyter" / "jupyter_server_config.d" / "voila.json",
                voila_conf)
    environ.update(
        HOME=str(home), JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTER_DATA_DIR=str(home / "data"),
        # the wheel's share/jupyter first (its template), then .venv's (Voila's own templates,
        # the widget front ends); the wheel's config (it enables curvlab_jupyter) and Voila's
        JUPYTER_PATH=os.pathsep.join([str(env / "share" / "jupyter"),
                                      str(venv_prefix / "share" / "jupyter")]),
        JUPYTER_CONFIG_PATH=os.pathsep.join([str(env / "etc" / "jupyter"),
                                             str(voila_conf.parent)]))
    (ROOT / "test-output").mkdir(exist_ok=True)
    argv = [str(python), "-m", "jupyter_server", "--no-browser", "--allow-root", f"--port={port}",
            "--ServerApp.ip=127.0.0.1", "--ServerApp.port_retries=0",
            f"--ServerApp.base_url={BASE}", "--IdentityProvider.token=",
            f"--ServerApp.root_dir={ROOT}", "--VoilaConfiguration.show_tracebacks=True",
            "--VoilaExecutor.timeout=180", "--ServerApp.log_level=INFO"]
    url = f"http://127.0.0.1:{port}{BASE}"
    with open(ROOT / "test-output" / "extension-server.log", "w") as log:
        try:
            with running(argv, url + "api/status", "jupyter server", log, cwd=home, env=environ):
                yield url
        except RuntimeError as e:
            pytest.fail(str(e))


def test_the_handler_serves_the_patched_bundle_compressed_and_revalidated(server, wheel_env):
    python, _ = wheel_env
    # the patched bundle with the partial plotly.js (its vendored file in the wheel)
    expected = _run([str(python), "-c", "import sys; from curvlab_jupyter.plotly_widget import "
                     "patch, split; sys.stdout.write(split(patch()))"]).stdout
    assert len(expected) > 10 ** 6 and "__curvlabPlotlyWidget" in expected
    ask = urllib.request.Request(server + "curvlab/plotly-widget.js",
                                 headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(ask, timeout=30) as r:
        assert r.headers["Content-Encoding"] == "gzip"
        assert r.headers["Content-Type"].startswith("text/javascript")
        packed, etag = r.read(), r.headers["ETag"]
    assert gzip.decompress(packed).decode() == expected and len(packed) < len(expected) / 2
    again = urllib.request.Request(server + "curvlab/plotly-widget.js",
                                   headers={"Accept-Encoding": "gzip", "If-None-Match": etag})
    with pytest.raises(urllib.error.HTTPError) as not_modified:
        urllib.request.urlopen(again, timeout=30)
    assert not_modified.value.code == 304


def _kernel_ids(server):
    with urllib.request.urlopen(server + "api/kernels", timeout=30) as r:
        return {k["id"] for k in json.load(r)}


def test_the_landing_page_through_the_extension_starts_no_kernel(server):
    """JupyterHub's and Binder's default URL, the markdown-only landing notebook: served by
    curvlab_jupyter.landing before Voila's route, so no visit starts a kernel; its links open
    the apps through Voila (relative to the page)."""
    before = _kernel_ids(server)
    for _ in range(2):
        with urllib.request.urlopen(server + "voila/render/apps/index.ipynb", timeout=60) as r:
            page = r.read().decode()
        assert 'href="landscape.ipynb"' in page and "jupyter-config-data" not in page
    time.sleep(1)
    assert _kernel_ids(server) - before == set()


def test_an_app_through_voila_as_a_server_extension_is_curvlabs_app_offline(server, browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1600})
    page = ctx.new_page()
    page.set_default_timeout(120_000)
    outside, errors, bundles, ws_bytes = [], [], [], [0]
    origin = server.split(BASE)[0]

    def count_frames(ws):
        ws.on("framereceived", lambda payload: ws_bytes.__setitem__(0, ws_bytes[0] + len(
            payload if isinstance(payload, (bytes, str)) else b"")))
    block_outside(page, outside)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", lambda r: bundles.append((r.url, r.status))
            if "plotly-widget" in r.url else None)
    page.on("websocket", count_frames)
    page.add_init_script(RENDER_COUNTER)
    try:
        response = page.goto(f"{server}voila/render/apps/{APP}.ipynb")
        html = response.text()
        # curvlab's template, chosen by the notebook's metadata (no --template anywhere)
        assert f'src="{BASE}curvlab/plotly-widget.js"' in html
        assert "curvlab-kernel-lost" in html
        assert not re.search(r'(src|href)="https?://', html), "a page resource from outside"
        wait_rendered(page, APP)
        assert_no_errors(page)
        drawn = page.evaluate("() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
                              ".map(e => e.data.length)")
        assert len(drawn) == PLOTS[APP] and all(n > 0 for n in drawn), drawn
        page.wait_for_timeout(500)
        scripts = page.evaluate("() => Array.from(document.scripts).map(s => s.src)")
        assert not [s for s in scripts if "jupyterlab-plotly" in s], scripts   # no 2nd plotly.js
        # plotly's widget code came once, over HTTP, from curvlab_jupyter under the base URL
        assert bundles == [(f"{origin}{BASE}curvlab/plotly-widget.js", 200)], bundles
        # ... not through the widget channel: everything the kernel sent is far below its 5 MB
        assert 0 < ws_bytes[0] < 10 ** 6, ws_bytes
        assert outside == [], outside
        assert errors == [], errors
    finally:
        ctx.close()
