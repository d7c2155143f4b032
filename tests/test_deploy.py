"""The serving set-ups, checked statically (no container engine or hub runs here): Binder's
files, the JupyterHub configuration, and the Voila command `./run apps` and the tests share."""

import os
import pathlib
import stat

from traitlets.config import Config

from curvlab.dashboards.serve import command

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
