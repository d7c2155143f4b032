"""The serving set-ups, checked statically (no container engine or hub runs here): Binder's
files, the JupyterHub configuration, and the Voila command `./run apps` and the tests share."""

import json
import os
import pathlib
import stat

import pytest
from traitlets.config import Config

from curvlab.dashboards.serve import command, settings

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_binder_files_install_the_app_stack_and_the_link_opens_the_landing_page():
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"
    post = ROOT / "binder" / "postBuild"
    assert post.stat().st_mode & stat.S_IXUSR and 'pip install --no-cache-dir ".[apps]"' in post.read_text()
    readme = (ROOT / "deploy" / "README.md").read_text()
    assert "urlpath=voila%2Frender%2Fapps%2Findex.ipynb" in readme and (ROOT / "apps" / "index.ipynb").exists()


def test_jupyterhub_config_opens_the_landing_page_and_culls():
    c = Config()
    code = (ROOT / "deploy" / "jupyterhub" / "jupyterhub_config.py").read_text()
    exec(compile(code, "jupyterhub_config.py", "exec"), {"get_config": lambda: c, "__name__": "config"})
    assert c.Spawner.default_url == "/voila/render/apps/index.ipynb"
    assert any("cull_idle_timeout" in a for a in c.Spawner.args)
    culler = c.JupyterHub.services[0]
    assert culler["name"] == "idle-culler" and "jupyterhub_idle_culler" in culler["command"]
    assert c.JupyterHub.load_roles[0]["services"] == ["idle-culler"]


def test_the_served_command_preheats_uses_ipc_culls_and_needs_no_cdn(tmp_path):
    for name in ("a.ipynb", "index.ipynb"):
        (tmp_path / name).write_text("{}")
    argv, env = command(tmp_path, 9999, pool=3, fill_delay=7, cull=600)
    joined = " ".join(argv)
    for flag in ("--preheat_kernel=True", "--pool_size=3", "fill_delay=7", "--KernelManager.transport=ipc",
                 "cull_idle_timeout=600", 'preheat_denylist=["index.ipynb"]', "extension_denylist=jupyterlab-plotly",
                 "--template=curvlab"):
        assert flag in joined, flag
    assert env["CURVLAB_STATIC_PLOTLY"] == "1" and (tmp_path / "_static" / "plotly-widget.js").stat().st_size > 10 ** 6
    template = (ROOT / "share" / "jupyter" / "voila" / "templates" / "curvlab" / "index.html.j2").read_text()
    assert "https://" not in template and "plotly-widget.js" in template
    assert env["JUPYTER_PATH"].split(os.pathsep)[0] == str(ROOT / "share" / "jupyter")


def test_pools_size_single_apps_and_keep_the_default_for_the_others(tmp_path):
    for name in ("landscape.ipynb", "spectra.ipynb", "index.ipynb"):
        (tmp_path / name).write_text("{}")
    assert settings({"POOLS": "landscape=30, spectra.ipynb=2"})["pools"] == {"landscape": 30, "spectra": 2}
    argv, _ = command(tmp_path, 9999, pool=1, pools={"landscape": 30})
    config = json.loads(next(a for a in argv if "kernel_pools_config" in a).split("=", 1)[1])
    assert config == {"default": {"pool_size": 1}, "landscape.ipynb": {"pool_size": 30}}
    with pytest.raises(ValueError, match="app=size"):
        settings({"POOLS": "landscape:30"})
    with pytest.raises(ValueError, match="does not hold.*lanscape"):
        command(tmp_path, 9999, pools={"lanscape": 30})
    with pytest.raises(ValueError, match=">= 0"):
        settings({"FILL_DELAY": "-1"})
