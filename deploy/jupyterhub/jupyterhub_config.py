"""JupyterHub for a department: every student logs in and gets a server of their own that opens
curvlab's landing page in Voila.

    pip install "curvlab[hub]"     # curvlab's apps, jupyterhub 6.1.1, jupyterhub-idle-culler 2.0.0
    npm install configurable-http-proxy@5.3.0     # or ./run hub / ./run test: into .venv/node
    jupyterhub -f deploy/jupyterhub/jupyterhub_config.py

as root, on a machine whose students have Unix accounts (JupyterHub's default PAM login and
local-process spawner: each server runs as its student). To try it on one machine without Unix
accounts, use trial_config.py beside this file (any name logs in), or `./run hub`.

What each student gets: a single-user server from the environment that runs the hub, serving
the checkout this file belongs to (read-only is enough: the apps write nothing), with
`/voila/render/apps/index.ipynb` as its default URL; each app page they open is a Voila
render with its own kernel (a student with one app open: 350-400 MB, the server ~180 of it;
bench/results_class.md). Idle kernels are stopped after 30 min, idle servers after an hour
(jupyterhub-idle-culler). Tested on loopback by tests/browser/test_hub.py.
"""

import pathlib
import sys

c = get_config()  # noqa: F821 — provided by JupyterHub when it loads this file

HERE = pathlib.Path(__file__).resolve().parent
CHECKOUT = HERE.parents[1]                      # the curvlab checkout this file is part of
BIN = pathlib.Path(sys.executable).parent       # the environment that runs the hub
IDLE_SERVER = 3600                              # s without activity before a server is stopped

# Each student's server: the checkout's apps, Voila's landing page first.
c.Spawner.cmd = [str(BIN / "jupyterhub-singleuser")]
c.Spawner.notebook_dir = str(CHECKOUT)
c.Spawner.default_url = "/voila/render/apps/index.ipynb"
c.Spawner.args = [
    "--MappingKernelManager.cull_idle_timeout=1800",   # an app's kernel idle for 30 min is stopped
    "--MappingKernelManager.cull_interval=120",
    # Kernels on TCP, not IPC as ./run apps does: an IPC socket lives under the student's
    # ~/.local/share/jupyter/runtime, and past ~107 bytes of path (a long home or user name)
    # zmq refuses it and no app page opens ("File name too long", seen here).
    "--VoilaConfiguration.show_tracebacks=False",
    # Jupyter Server's default contents manager is async, and Voila 0.5's markdown renderer
    # calls it without awaiting: the landing page's pictures then fail it with a TypeError
    # ('coroutine' object is not subscriptable) and the page never arrives. The synchronous one
    # (what Voila's own app uses) serves the same files.
    "--ServerApp.contents_manager_class="
    "jupyter_server.services.contents.largefilemanager.LargeFileManager",
    # plotly's JupyterLab renderer (a second copy of plotly.js) is not needed by the widgets;
    # a list as JSON: Jupyter Server parses the bare word for Voila's trait as no list at all,
    # and Voila's page then fails with a 500 (TypeError in filter_extension)
    '--VoilaConfiguration.extension_denylist=["jupyterlab-plotly"]',
]
# numpy's BLAS settings of the machine (some processors need them) reach the kernels too
c.Spawner.env_keep.extend(["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"])   # added to the defaults
# A server's start (importing JupyterLab, Voila and their extensions) took over 30 s on a busy
# 2-core machine, JupyterHub's default wait before it gives up ("never showed up"): a class
# logging in at once needs longer.
c.Spawner.http_timeout = 120
c.Spawner.start_timeout = 120
c.Spawner.mem_limit = "2G"   # honoured by spawners that enforce it (systemd, Docker, Kubernetes)

# Servers idle for an hour are stopped (jupyterhub-idle-culler as a hub-managed service).
c.JupyterHub.services = [{
    "name": "idle-culler",
    "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={IDLE_SERVER}"],
}]
c.JupyterHub.load_roles = [{
    "name": "idle-culler",
    "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    "services": ["idle-culler"],
}]

# The HTTP proxy: the project's pinned copy when `./run` has installed it, else the
# configurable-http-proxy on PATH (npm install -g configurable-http-proxy@5.3.0).
PROXY = CHECKOUT / ".venv" / "node" / "node_modules" / ".bin" / "configurable-http-proxy"
if PROXY.exists():
    c.ConfigurableHTTPProxy.command = [str(PROXY)]

# Login: the machine's Unix accounts (PAM). An institution's single sign-on replaces it, e.g.
# oauthenticator's GenericOAuthenticator; name who may log in (allowed_users, or allow_all).
c.JupyterHub.authenticator_class = "pam"
c.JupyterHub.bind_url = "http://127.0.0.1:8000"   # behind the department's HTTPS reverse proxy
