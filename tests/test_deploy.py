"""The serving set-ups, checked statically (no container engine or hub runs here): Binder's
files, the JupyterHub configuration, and the Voila command `./run apps` and the tests share."""

import fnmatch
import json
import os
import pathlib
import stat
import subprocess
import sys
import tomllib

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
    exec(compile(code, "jupyterhub_config.py", "exec"), {"get_config": lambda: c, "__name__": "config",
                                                         "__file__": str(ROOT / "deploy" / "jupyterhub" / "jupyterhub_config.py")})
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
                 "cull_idle_timeout=600", 'preheat_denylist=["index.ipynb"]', "extension_denylist=jupyterlab-plotly"):
        assert flag in joined, flag
    # Voila with curvlab_jupyter's handler; the template is each app's choice (metadata), and
    # nothing is written beside the apps
    assert argv[1:3] == ["-m", "curvlab_jupyter.voila"] and "--template" not in joined
    assert "CURVLAB_PLOTLY_BUNDLE" not in env and not (tmp_path / "_static").exists()
    template = (ROOT / "share" / "jupyter" / "voila" / "templates" / "curvlab" / "index.html.j2").read_text()
    assert "https://" not in template and "{{ resources.base_url }}curvlab/plotly-widget.js" in template
    assert env["JUPYTER_PATH"].split(os.pathsep)[0] == str(ROOT / "share" / "jupyter")


def test_every_app_chooses_curvlabs_template_which_the_package_installs():
    for app in sorted((ROOT / "apps").glob("*.ipynb")):
        assert json.loads(app.read_text())["metadata"]["voila"] == {"template": "curvlab"}, app.name
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    data = project["data-files"]
    assert data["share/jupyter/voila/templates/curvlab"] == ["share/jupyter/voila/templates/curvlab/*"]
    config, = data["etc/jupyter/jupyter_server_config.d"]
    assert json.loads((ROOT / config).read_text()) == {
        "ServerApp": {"jpserver_extensions": {"curvlab_jupyter": True}}}
    assert all(any(fnmatch.fnmatch(p, pattern) for pattern in project["packages"]["find"]["include"])
               for p in ("curvlab", "curvlab_jupyter"))
    # the extension is light: the Jupyter server imports it without curvlab's numerics
    out = subprocess.run([sys.executable, "-c", "import sys, curvlab_jupyter, curvlab_jupyter.plotly_widget; "
                          "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                          "('curvlab', 'numpy', 'plotly')))"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "[]", (out.stdout, out.stderr)


# What a figure's widget sends when it opens (the comm's first message, whose state carries its
# front-end module `_esm`), with a comm that records instead of sending, in a fresh interpreter
# (the mode is read at import).
_COMM_OPENS = """
import json, comm
sent = []
class Recorder(comm.base_comm.BaseComm):
    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        sent.append((msg_type, json.dumps(data, default=str), sum(len(b) for b in buffers or ())))
comm.create_comm = lambda **kw: Recorder(**kw)
import plotly.graph_objects as go
from curvlab.dashboards.figure import FigureWidget
figures = [FigureWidget(data=[go.Scatter(x=[0, 1], y=[1, 0])]) for _ in range(3)]
print(json.dumps(sent))
"""


def _comm_messages(mode):
    env = {**os.environ, "CURVLAB_PLOTLY_BUNDLE": mode}
    out = subprocess.run([sys.executable, "-c", _COMM_OPENS], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.splitlines()[-1])


def test_a_figures_widget_opens_without_plotly_js_and_sends_it_once_per_kernel_at_most():
    from curvlab_jupyter.plotly_widget import plotly_source
    bundle_size = len(plotly_source())                   # plotly's own, ~5 MB
    # server (the default): no message carries plotly.js; each figure's module is the loader
    sent = _comm_messages("server")
    opens = [json.loads(data) for kind, data, _ in sent if kind == "comm_open"]
    assert len(opens) == 3
    for data in opens:
        esm = data["state"]["_esm"]
        assert len(esm) < 2000 and "import(url)" in esm and "curvlab/plotly-widget.js" in esm
        assert data["state"]["_model_name"] == "AnyModel"
    assert sum(len(data) + size for _, data, size in sent) < bundle_size / 20
    # kernel: the first figure carries the patched bundle, once; the others wait for it
    sent = _comm_messages("kernel")
    carriers = [data for _, data, _ in sent if len(data) > bundle_size / 2]
    assert len(carriers) == 1 and "__curvlabPlotlyWidget" in carriers[0]
    assert sum(len(data) for _, data, _ in sent) < bundle_size * 1.2
    with pytest.raises(ValueError, match="CURVLAB_PLOTLY_BUNDLE='lab'.*'server'.*'kernel'"):
        from curvlab.dashboards import bundle
        bundle.mode({"CURVLAB_PLOTLY_BUNDLE": "lab"})


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
