"""JupyterHub on one machine without Unix accounts: the department's configuration
(jupyterhub_config.py beside this file) with JupyterHub's built-in dummy login (any name, any
password) and SimpleLocalProcessSpawner (each user's server is a process of the hub's own user,
with /tmp/NAME as its home). For a teacher trying the route, a workshop on loopback, and the
loopback tests (tests/browser/test_hub.py, bench/hub.py, which add their ports and timeouts).

    ./run hub                     # or: jupyterhub -f deploy/jupyterhub/trial_config.py
    # then open http://127.0.0.1:8000 and log in with any name

Not for a server others can reach: every user can read every other user's files.
"""

import os
import pathlib

c = get_config()  # noqa: F821 — provided by JupyterHub when it loads this file

DEPARTMENT = pathlib.Path(__file__).resolve().parent / "jupyterhub_config.py"
if not DEPARTMENT.exists():   # load_subconfig would skip a missing file without a word
    raise FileNotFoundError(f"{DEPARTMENT} is missing: trial_config.py extends it; restore it "
                            "from the curvlab checkout")
load_subconfig(str(DEPARTMENT))  # noqa: F821 — provided by JupyterHub (traitlets) as well

c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.spawner_class = "simple"
c.JupyterHub.bind_url = "http://127.0.0.1:8000"
c.JupyterHub.hub_ip = "127.0.0.1"
if os.geteuid() == 0:   # the servers run as the hub's user; Jupyter refuses root unless told
    c.Spawner.args = [*c.Spawner.args, "--allow-root"]
