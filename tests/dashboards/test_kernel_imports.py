"""Headless: what an app kernel imports at start (issue 24, memory per preheated kernel), and
that what it no longer imports still works when asked for: plotly's FigureWidget without
nbformat (curvlab.dashboards.figure), the visitor's request without Voila's server side
(curvlab.dashboards.visit), plotly's bundle checked without keeping its text (bundle.adapted)."""

import asyncio
import json
import os
import subprocess
import sys
import threading
import uuid

import pytest

from curvlab.dashboards import bundle, visit

# what an app's kernel imports at start must leave out: nbformat with jsonschema (~7 MB), and
# Voila's server side (~40 MB: jupyter_server, jupyterlab_server, nbconvert)
HEAVY = ("nbformat", "jsonschema", "rfc3987_syntax", "voila", "jupyter_server",
         "jupyterlab_server", "nbconvert", "torch")

# An app notebook's code (apps/products.ipynb: build, display, read the query string), then a
# figure created, updated and its state read; then plotly's fig.show(), which needs nbformat
APP = """
import json, sys
from curvlab.dashboards import ProductsDashboard, query_string
app = ProductsDashboard()
app.widget
assert query_string() == ""
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
from curvlab.dashboards.figure import FigureWidget
import plotly.graph_objects as go
fig = FigureWidget(data=[go.Scatter(x=[0, 1, 2], y=[1.0, 0.0, 1.0])])
with fig.batch_update():
    fig.data[0].y = [2.0, 3.0, 5.0]
    fig.layout.title.text = "updated"
state = fig.get_state()
after_figure = sorted(m for m in {heavy!r} if m in sys.modules)
go.Figure(data=[go.Scatter(y=[1, 2])]).show(renderer="json")
from _plotly_utils.optional_imports import get_module
print(json.dumps(dict(heavy=heavy, after_figure=after_figure,
                      y=list(state["_widget_data"][0]["y"]),
                      title=state["_widget_layout"]["title"]["text"],
                      nbformat=get_module("nbformat") is sys.modules.get("nbformat") is not None)))
"""


def test_an_app_kernels_start_imports_neither_nbformat_nor_voila_and_figures_still_work():
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOILA_")}
    env.pop("QUERY_STRING", None)
    out = subprocess.run([sys.executable, "-c", APP.format(heavy=HEAVY)], capture_output=True,
                         text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["heavy"] == [] and got["after_figure"] == []
    assert got["y"] == [2.0, 3.0, 5.0] and got["title"] == "updated"
    assert got["nbformat"]             # fig.show() imported nbformat, as plotly would at start


@pytest.fixture
def voila_query_server():
    """Voila's own request-info websocket handler on a free loopback port, under base URL
    /base/ (as voila/app.py routes it): yields (port, send) where send(kernel_id, info) hands
    `info` to that kernel as Voila's page handler does."""
    import tornado.httpserver
    import tornado.netutil
    import tornado.web
    from voila.request_info_handler import RequestInfoSocketHandler
    ready, box = threading.Event(), {}

    def run():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = tornado.web.Application(
            [(r"/base/voila/query/(?P<kernel_id>\w+-\w+-\w+-\w+-\w+)", RequestInfoSocketHandler)])
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets(sockets)
        box.update(loop=loop, port=sockets[0].getsockname()[1])
        ready.set()
        loop.run_forever()
        server.stop()
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)

    def send(kernel_id, info):
        box["loop"].call_soon_threadsafe(RequestInfoSocketHandler.send_updates,
                                         {"kernel_id": kernel_id, "payload": json.dumps(info)})
    try:
        yield box["port"], send
    finally:
        box["loop"].call_soon_threadsafe(box["loop"].stop)
        thread.join(10)
        RequestInfoSocketHandler._cache.clear()


def test_the_visitors_request_is_read_as_voilas_own_helper_reads_it(voila_query_server,
                                                                    monkeypatch):
    from voila.utils import ENV_VARIABLE
    from voila.utils import get_query_string as voilas
    names = {visit.PREHEAT, visit.KERNEL_ID, visit.WS_PROTOCOL, visit.APP_IP, visit.APP_PORT,
             visit.WS_BASE_URL, visit.SERVER_URL, visit.QUERY_STRING}
    assert names <= {e.value for e in ENV_VARIABLE}
    port, send = voila_query_server
    info = {"QUERY_STRING": "data=moons&hidden=8-8", "SCRIPT_NAME": "/base/voila/render/x.ipynb"}
    ours, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    base = {"VOILA_PREHEAT": "True", "VOILA_APP_PORT": str(port), "VOILA_SERVER_URL": "/base/"}
    env = {**base, "VOILA_KERNEL_ID": ours}
    sent = threading.Timer(0.5, send, (ours, info))       # the visitor arrives while we wait
    sent.start()
    assert visit.get_query_string(env) == "data=moons&hidden=8-8"
    assert env["SCRIPT_NAME"] == info["SCRIPT_NAME"]
    sent.join()
    # the oracle: Voila's own helper, on the same server, with the same environment
    for k, v in {**base, "VOILA_KERNEL_ID": theirs}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("QUERY_STRING", raising=False)
    monkeypatch.delenv("SCRIPT_NAME", raising=False)
    send(theirs, info)
    assert voilas() == "data=moons&hidden=8-8" and os.environ["SCRIPT_NAME"] == info["SCRIPT_NAME"]


def test_without_preheating_the_request_is_in_the_environment_already():
    assert visit.get_query_string({}) is None
    assert visit.get_query_string({"VOILA_PREHEAT": "False", "QUERY_STRING": "a=1"}) == "a=1"
    env = {"VOILA_PREHEAT": "True", "VOILA_APP_PORT": "1", "VOILA_KERNEL_ID": "k"}
    with pytest.warns(UserWarning, match="Failed to read the visitor.s request from ws://127.0.0.1:1/voila/query/k"):
        assert visit.get_query_string(env) is None            # nothing listens on port 1


def test_the_bundle_gate_without_the_text_agrees_with_patch(tmp_path):
    src = bundle.plotly_source()
    assert bundle.adapted() is (bundle.patch(src) is not None) is True
    old = bundle.PATCHES["freeze"][0][0]
    for name, text in [("missing", src.replace(old, "/* rebuilt */")), ("twice", src + old)]:
        path = tmp_path / f"{name}.js"
        path.write_text(text)
        with pytest.warns(RuntimeWarning, match="not the one curvlab adapts"):
            assert bundle.adapted(path) is False
        with pytest.warns(RuntimeWarning, match="not the one curvlab adapts"):
            assert bundle.patch(text) is None
