"""One bad client cannot stop a class (curvlab_jupyter.guard), against a real server started as
`./run apps` starts it: a binary frame in Jupyter's legacy websocket framing sent over a v1
kernel websocket — which Voila 0.5 / jupyter_server 2 read as a count of ~10^17 offsets, pinning
the server — closes that socket; the server stays idle and another student's page and widgets
still come. And a legacy client that receives a binary message (a widget with bytes) gets it
intact instead of hanging the server. And the server's root URL opens the landing page, and a
visitor who takes a replacement kernel still in its refill delay has it start at once."""

import http.client
import json
import re
import sys
import time
import urllib.request
import uuid

import nbformat
import psutil
import websocket
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    serialize_binary_message,
)

from .conftest import ROOT, serve_voila

sys.path.insert(0, str(ROOT / "bench"))
from class_load import PROTOCOL, WIDGET, server_pid, widget_client  # noqa: E402

APP = ("import ipywidgets as W\n"
       "W.VBox([W.IntSlider(3), W.Image(value=b'\\x89PNG-not-really', format='png')])")


def _page(url):
    """(body, kernel id) of the app's page, as a student's GET receives it."""
    with urllib.request.urlopen(f"{url}/voila/render/app.ipynb", timeout=120) as r:
        body = r.read().decode()
    return body, re.search(r'"kernelId": "([^"]+)"', body).group(1)


def _socket(url, kernel, subprotocols):
    return websocket.create_connection(
        f"{url.replace('http', 'ws', 1)}/api/kernels/{kernel}/channels"
        f"?session_id={uuid.uuid4().hex}",
        timeout=30, subprotocols=subprotocols)


def _legacy(msg_type, content, channel="shell", buffers=(), metadata=None):
    header = {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "username": "student",
              "session": uuid.uuid4().hex, "version": "5.3", "date": "2026-12-07T00:00:00Z"}
    return {"header": header, "parent_header": {}, "metadata": metadata or {}, "content": content,
            "channel": channel, "buffers": list(buffers)}


def _cpu_seconds(pid, window=3.0):
    """CPU seconds the process used over `window` wall seconds."""
    p = psutil.Process(pid)
    before = sum(p.cpu_times()[:2])
    time.sleep(window)
    return sum(p.cpu_times()[:2]) - before


def test_a_legacy_frame_closes_its_socket_and_the_class_goes_on(tmp_path):
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": kernel})
    nb.cells = [nbformat.v4.new_code_cell(APP)]
    nbformat.write(nb, tmp_path / "app.ipynb")
    landing = nbformat.v4.new_notebook(metadata={"kernelspec": kernel})
    nbformat.write(landing, tmp_path / "index.ipynb")
    (ROOT / "test-output").mkdir(exist_ok=True)
    with open(ROOT / "test-output" / "voila_guard.log", "w") as log, \
            serve_voila(tmp_path, log, pool=2, fill_delay=60) as url:
        server = server_pid(int(url.rsplit(":", 1)[1]))
        # the root URL opens the landing page (not Voila's file list)
        root = http.client.HTTPConnection(url.split("//")[1], timeout=30)
        root.request("GET", "/")
        reply = root.getresponse()
        assert reply.status == 302 and reply.getheader("Location") == "/voila/render/index.ipynb"
        root.close()
        body, kid = _page(url)
        assert WIDGET in body
        # 1. the bad client: a v1 socket, then a frame in the legacy framing
        bad = serialize_binary_message(_legacy("comm_info_request", {}, buffers=[b"\x00" * 16]))
        ws = _socket(url, kid, [PROTOCOL])
        ws.send_binary(bad)
        code = None
        for _ in range(50):                     # kernel status messages may come first
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(data[:2], "big")
                break
        assert code == 1007, code               # closed: invalid payload
        ws.close()
        rss = psutil.Process(server).memory_info().rss
        assert _cpu_seconds(server) < 1.0       # idle, not spinning on the frame
        assert psutil.Process(server).memory_info().rss - rss < 50 * 2 ** 20
        # 2. a legacy client that receives a binary message (the Image's bytes) gets it whole
        body2, kid2 = _page(url)
        ws = _socket(url, kid2, None)
        assert ws.getsubprotocol() is None
        comm = uuid.uuid4().hex
        ws.send(json.dumps(_legacy("comm_open", {"comm_id": comm, "data": {},
                                                 "target_name": "jupyter.widget.control"},
                                   metadata={"version": "1.0.0"})))
        ws.send(json.dumps(_legacy("comm_msg", {"comm_id": comm,
                                                "data": {"method": "request_states"}})))
        states, deadline = None, time.time() + 60
        while time.time() < deadline:
            frame = ws.recv()
            msg = (deserialize_binary_message(frame) if isinstance(frame, bytes)
                   else json.loads(frame))
            if msg["header"]["msg_type"] == "comm_msg" and \
                    msg["content"]["data"].get("method") == "update_states":
                states, buffers = msg["content"]["data"]["states"], msg["buffers"]
                break
        ws.close()
        assert states and any(b"PNG-not-really" in bytes(b) for b in buffers)
        assert _cpu_seconds(server) < 1.0
        # 3. another student's page and widgets still come: the pool's two kernels are taken, so
        # this visit takes a replacement still in its 60 s delay, which starts at once for it
        # (curvlab_jupyter.pool.wake_on_take)
        body3, _ = _page(url)
        assert WIDGET in body3 and "Traceback" not in body3
        seconds, widgets = widget_client(url, body3, timeout=60)
        assert widgets >= 3, widgets            # the slider, the image, their box (and layouts)
    log = (ROOT / "test-output" / "voila_guard.log").read_text()
    assert "a frame that does not parse as v1" in log
    assert "a visitor takes app.ipynb's next kernel; it starts now" in log
