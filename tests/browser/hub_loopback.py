"""A real JupyterHub on loopback for tests/browser/test_hub.py and bench/hub.py: the project's
trial configuration (deploy/jupyterhub/trial_config.py, which extends the department's
jupyterhub_config.py with the dummy login and SimpleLocalProcessSpawner) on free ports, with the
hub's state and the users' homes in a temporary folder, jupyterhub-idle-culler's timeouts and
the servers' activity reports made short, and an API token for the caller. Every process it
starts (hub, proxy, culler, users' servers and their kernels) is stopped by pid on exit."""

import contextlib
import json
import os
import pathlib
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import psutil

from .conftest import _free_port
from .drive import block_outside  # noqa: F401  (test_hub and bench/hub.py use it from here)

ROOT = pathlib.Path(__file__).resolve().parents[2]
TRIAL = ROOT / "deploy" / "jupyterhub" / "trial_config.py"
PROXY = ROOT / ".venv" / "node" / "node_modules" / ".bin" / "configurable-http-proxy"
LANDING = "voila/render/apps/index.ipynb"

# The caller's settings on top of the trial configuration (the shipped files stay as they are).
CONFIG = """\
load_subconfig({trial!r})
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.pid_file = {folder!r} + "/proxy.pid"
c.JupyterHub.pid_file = {folder!r} + "/hub.pid"
c.JupyterHub.db_url = "sqlite:///" + {folder!r} + "/hub.sqlite"
c.JupyterHub.cookie_secret_file = {folder!r} + "/cookie_secret"
c.SimpleLocalProcessSpawner.home_dir_template = {folder!r} + "/home/{{username}}"
# The hub learns of activity every few seconds, not every 5 minutes, so that a short culling
# timeout stops idle servers only: from the servers (kernel messages, API requests) and from the
# proxy (any request to a server, e.g. a page still loading its scripts).
c.Spawner.environment = {{"JUPYTERHUB_ACTIVITY_INTERVAL": "{activity}"}}
c.JupyterHub.last_activity_interval = {activity}
services = []
for service in c.JupyterHub.services:
    if service["name"] == "idle-culler":
        kept = [a for a in service["command"] if not a.startswith(("--timeout", "--cull-every"))]
        service = dict(service, command=[*kept, "--timeout={timeout}", "--cull-every={every}"])
    services.append(service)
c.JupyterHub.services = services + [{{"name": "caller", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [*c.JupyterHub.load_roles, {{
    "name": "caller", "services": ["caller"],
    "scopes": ["list:users", "read:users", "read:servers", "admin:users", "servers"]}}]
"""


@dataclass
class Hub:
    url: str
    token: str
    proc: subprocess.Popen

    def api(self, path, method="GET"):
        """The hub's REST API answer to `method` `path` (after /hub/api), as JSON or None."""
        req = urllib.request.Request(f"{self.url}/hub/api{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body else None

    def server(self, name):
        """`name`'s default server as the hub sees it (a dict with 'ready', 'last_activity'...),
        or None when it has none (never started, stopped or culled)."""
        try:
            return self.api(f"/users/{name}")["servers"].get("")
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def processes(self, name):
        """`name`'s single-user server process and everything it started (its kernels)."""
        for p in psutil.Process(self.proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "jupyterhub-singleuser" in " ".join(p.cmdline()) and \
                        p.environ().get("JUPYTERHUB_USER") == name:
                    return [p, *p.children(recursive=True)]
        return []


def rss_mb(processes):
    """Resident memory of `processes` together, in MB (shared pages counted in each)."""
    total = 0
    for p in processes:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total / 2 ** 20


@contextlib.contextmanager
def loopback_hub(folder, log, timeout=10, every=5, activity=2):
    """JupyterHub on free loopback ports with its state in `folder` (its output to the file
    `log`), idle servers culled after `timeout` s (checked every `every` s); yields a Hub once
    it answers. Raises RuntimeError naming the fix if the proxy is not installed or the hub
    does not come up."""
    if not PROXY.exists():
        raise RuntimeError(f"configurable-http-proxy is not at {PROXY}: `./run test` installs it "
                           "(npm install --prefix .venv/node configurable-http-proxy@5.3.0)")
    folder = pathlib.Path(folder)
    token = secrets.token_hex(16)
    port = _free_port()
    (folder / "config.py").write_text(CONFIG.format(
        trial=str(TRIAL), port=port, hub_port=_free_port(), api_port=_free_port(),
        folder=str(folder), activity=activity, timeout=timeout, every=every, token=token))
    hub_bin = pathlib.Path(sys.executable).with_name("jupyterhub")
    proc = subprocess.Popen([str(hub_bin), "-f", str(folder / "config.py")], cwd=folder,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    hub = Hub(f"http://127.0.0.1:{port}", token, proc)
    started = []
    try:
        _wait_up(hub)
        yield hub
    finally:
        with contextlib.suppress(psutil.Error):
            started = psutil.Process(proc.pid).children(recursive=True)
        stop(proc, started)


def _wait_up(hub, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if hub.proc.poll() is not None:
            raise RuntimeError(f"jupyterhub exited with {hub.proc.returncode}; see its log")
        try:
            hub.api("/")
            return
        except (OSError, urllib.error.URLError):
            time.sleep(0.3)
    raise RuntimeError(f"jupyterhub did not answer within {seconds} s; see its log")


def stop(proc, started):
    """Stop the hub (it stops the proxy, its services and the users' servers), then end by pid
    whatever it left: `started`, its descendants as they were just before."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    _, alive = psutil.wait_procs(started, timeout=10)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=10)


def log_in(page, hub, name):
    """Log `name` in through the hub's login form (the dummy login takes any password)."""
    page.goto(f"{hub.url}/hub/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", "any")
    page.click("[type=submit]")


def wait_landing(page, name, timeout=120_000):
    """Wait until `name`'s server has opened its default URL, the landing page, with its links
    and its picture (inline: curvlab_jupyter.landing serves the page with no kernel)."""
    page.wait_for_url(f"**/user/{name}/{LANDING}*", timeout=timeout)
    page.wait_for_selector("a[href$='landscape.ipynb']", timeout=timeout)
    page.wait_for_selector("img[src^='data:image/png;base64,']", timeout=timeout)
