"""JupyterHub for a class: every student's server opens curvlab's landing page in Voila.

    pip install jupyterhub jupyterhub-idle-culler "curvlab[apps]"   # plus: npm install -g configurable-http-proxy
    jupyterhub -f deploy/jupyterhub/jupyterhub_config.py

Each user gets their own single-user server (their own kernels: ~200 MB per open app), Voila as
its default URL, and idle servers and kernels are culled. Clone curvlab into each user's home
(or set notebook_dir below to a shared read-only checkout).
"""

import sys

c = get_config()  # noqa: F821 — provided by JupyterHub when it loads this file

# Each student's server: Voila's landing page of the apps, from a checkout of curvlab.
c.Spawner.notebook_dir = "~/curvlab"
c.Spawner.default_url = "/voila/render/apps/index.ipynb"
c.Spawner.args = [
    "--MappingKernelManager.cull_idle_timeout=1800",   # an app's kernel idle for 30 min is stopped
    "--MappingKernelManager.cull_interval=120",
    "--VoilaConfiguration.show_tracebacks=False",
]
c.Spawner.mem_limit = "2G"          # honoured by spawners that enforce limits (Docker, Kubernetes, systemd)

# Servers idle for an hour are stopped (jupyterhub-idle-culler as a hub service).
c.JupyterHub.services = [{
    "name": "idle-culler",
    "command": [sys.executable, "-m", "jupyterhub_idle_culler", "--timeout=3600"],
}]
c.JupyterHub.load_roles = [{
    "name": "idle-culler",
    "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    "services": ["idle-culler"],
}]

# Authentication: replace with the institution's (e.g. oauthenticator); for a trial on one
# machine the dummy authenticator lets anyone in with any name.
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.bind_url = "http://127.0.0.1:8000"
