"""Serving a class on one machine, headless: the class knob's pools, caps, memory and refusal
(curvlab.dashboards.serve); the websocket guard's frame checks against frames serialised by
jupyter_server itself (curvlab_jupyter.guard); uploads refused by their arrays' headers before
they are decompressed (curvlab.dashboards.uploads), with the spectra app still working after."""

import io
import json
import tracemalloc
import uuid
import zipfile

import numpy as np
import pytest
from jupyter_server.services.kernels.connection.base import (
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)

from curvlab.dashboards import serve
from curvlab.dashboards.uploads import MAX_UPLOAD_BYTES, MatrixUpload, array_headers, read_matrix
from curvlab_jupyter import guard

APPS = ["beyond", "damping", "dynamics", "landscape", "products", "spectra", "trajectories",
        "uncertainty"]


# --- the class knob ----------------------------------------------------------------------------

def test_a_class_sizes_the_pools_and_caps_of_its_apps_and_counts_their_memory():
    s = serve.settings({"CLASS": "30", "APPS": "landscape, damping.ipynb"})
    assert s["klass"] == 30 and s["class_apps"] == ["landscape", "damping"]
    assert s["pool"] == 1 and s["fill_delay"] == 60      # a class's defaults
    p = serve.plan(APPS, available=24 * 1024, **s)
    assert p["pools"]["landscape"] == p["pools"]["damping"] == 30
    assert all(p["pools"][a] == 1 for a in APPS if a not in ("landscape", "damping"))
    assert p["caps"] == {"landscape": 33, "damping": 33}          # 30 + max(2, 30 // 10)
    per = {a: serve.KERNEL_MB.get(a, serve.UNMEASURED_MB) * serve.USED_MARGIN for a in APPS}
    expected = serve.SERVER_MB + 33 * (per["landscape"] + per["damping"]) \
        + sum(per[a] for a in APPS if a not in ("landscape", "damping"))
    assert p["mb"] == pytest.approx(expected, rel=1e-12)
    assert p["fits"] and any("landscape: 30 preheated kernel(s), at most 33 live" in x
                             for x in p["lines"])


def test_a_class_at_every_app_is_refused_with_the_numbers_and_what_would_fit():
    s = serve.settings({"CLASS": "30"})
    p = serve.plan(APPS, available=24 * 1024, **s)
    assert p["pools"] == {a: 30 for a in APPS} and not p["fits"]
    assert p["mb"] > 0.85 * 24 * 1024
    text = serve.refusal(APPS, s, p)
    assert f"needs {p['mb'] / 1024:.1f} GB" in text and "24.0 GB" in text
    largest = int(text.split("CLASS=")[-1].split(";")[0])
    # the largest class that fits does, and one more student does not
    assert serve.plan(APPS, **{**s, "klass": largest}, available=24 * 1024)["fits"]
    assert not serve.plan(APPS, **{**s, "klass": largest + 1}, available=24 * 1024)["fits"]


def test_as_shipped_every_app_keeps_two_ready_kernels_and_errors_name_the_fix():
    s = serve.settings({})
    assert (s["pool"], s["fill_delay"], s["klass"]) == (2, 30.0, 0)
    p = serve.plan(APPS, available=24 * 1024, **s)
    assert p["pools"] == {a: 2 for a in APPS} and p["caps"] == {} and p["fits"]
    with pytest.raises(ValueError, match="give the class size too"):
        serve.settings({"APPS": "landscape"})
    with pytest.raises(ValueError, match="no such app.*lanscape"):
        serve.plan(APPS, klass=30, class_apps=["lanscape"], available=24 * 1024)
    with pytest.raises(ValueError, match=">= 0"):
        serve.settings({"CLASS": "-3"})


def test_the_command_passes_the_caps_and_run_apps_refuses_what_the_machine_cannot_hold(
        tmp_path, monkeypatch, capsys):
    for name in ("landscape.ipynb", "damping.ipynb", "index.ipynb"):
        (tmp_path / name).write_text("{}")
    argv, _ = serve.command(tmp_path, 9999, pool=1, pools={"landscape": 30},
                            caps={"landscape": 33})
    caps = json.loads(next(a for a in argv if "kernel_caps" in a).split("=", 1)[1])
    assert caps == {"landscape.ipynb": 33} and argv[2] == "curvlab_jupyter.voila"
    # a class far beyond any machine's memory: refused before Voila starts
    monkeypatch.setenv("CLASS", "100000")
    monkeypatch.setattr(serve.os, "execv", lambda *a: pytest.fail("Voila was started"))
    with pytest.raises(SystemExit) as stop:
        serve.main([str(tmp_path), "--port=9"])
    assert str(stop.value).startswith("[curvlab] refused: CLASS=100000 for all 2 apps needs")
    assert "landscape: 100000 preheated kernel(s)" in capsys.readouterr().err


# --- the websocket guard -----------------------------------------------------------------------

def _parts():
    header = {"msg_id": uuid.uuid4().hex, "msg_type": "comm_msg", "session": "s",
              "username": "u", "version": "5.3", "date": "2026-01-01T00:00:00Z"}
    return [json.dumps(x).encode() for x in (header, {}, {}, {"comm_id": "c", "data": {}})]


def test_the_guard_passes_the_frames_jupyter_server_writes_and_refuses_the_others():
    v1 = serialize_msg_to_ws_v1(_parts() + [b"\x00" * 7], "shell")
    guard.check_v1(v1)                                        # as a browser sends it
    msg = {"header": json.loads(_parts()[0]), "parent_header": {}, "metadata": {},
           "content": {}, "buffers": [b"abc"], "channel": "shell"}
    legacy = serialize_binary_message(msg)
    guard.check_legacy(legacy)                                 # as a legacy client sends it
    guard.check_legacy(json.dumps({k: v for k, v in msg.items() if k != "buffers"}))
    # the legacy frame on a v1 socket: its first 8 bytes read as a count of ~10^17
    assert int.from_bytes(legacy[:8], "little") > 10 ** 15
    with pytest.raises(ValueError, match="does not fit"):
        guard.check_v1(legacy)
    with pytest.raises(ValueError, match="does not fit"):
        guard.check_legacy(v1)                                 # and the other way round
    for bad in (b"", b"\x01" + b"\x00" * 7, v1[:40], "{}"):
        with pytest.raises(ValueError):
            guard.check_v1(bad)
    broken = bytearray(v1)
    broken[16:24] = (10 ** 6).to_bytes(8, "little")            # an offset past the frame's end
    with pytest.raises(ValueError, match="in order inside"):
        guard.check_v1(bytes(broken))
    with pytest.raises(ValueError, match="unknown channel"):
        guard.check_v1(serialize_msg_to_ws_v1(_parts(), "nowhere"))
    with pytest.raises(ValueError):
        guard.check_legacy("not json")


# --- uploads -----------------------------------------------------------------------------------

def _npy_header_only(shape, dtype="<f8"):
    """A .npy file whose header claims `shape` and whose data is 64 bytes: what a bomb looks
    like before it is inflated."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue() + b"\x00" * 64


def _npz(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_an_npz_is_checked_by_its_headers_before_it_is_decompressed():
    # a member that would inflate to 80 GB: refused from its header, with no large allocation
    bomb = _npz({"M.npy": _npy_header_only((100_000, 100_000))})
    tracemalloc.start()
    with pytest.raises(ValueError, match="100000 × 100000 float64 array is 76,294 MB"):
        read_matrix("bomb.npz", bomb)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2 ** 20, peak
    assert array_headers("bomb.npz", bomb) == [("bomb.npz:M.npy", (100_000, 100_000),
                                                np.dtype("<f8"))]
    # the same claim in a bare .npy, an object array, a 3-D array, a member that is no array
    with pytest.raises(ValueError, match="MB unpacked"):
        read_matrix("big.npy", _npy_header_only((4000, 4000)))
    with pytest.raises(ValueError, match="Python objects"):
        read_matrix("obj.npz", _npz({"M.npy": _npy_header_only((2, 2), "|O")}))
    with pytest.raises(ValueError, match="3-D"):
        read_matrix("cube.npy", _npy_header_only((2, 2, 2)))
    with pytest.raises(ValueError, match="is not a .npy array"):
        read_matrix("odd.npz", _npz({"M": b"\x00" * 10}))
    with pytest.raises(ValueError, match="not a .npy or .npz file"):
        read_matrix("text.npy", b"hello")
    # a real file is read back as written (its own bytes: an independent oracle)
    M = np.arange(12.0).reshape(3, 4)
    buf = io.BytesIO()
    np.savez_compressed(buf, other=np.ones(2), M=M)
    assert np.array_equal(read_matrix("mine.npz", buf.getvalue()), M)
    # the limit is the widget message's: 1000 × 1000 float64 passes, 1100 × 1100 does not
    assert MAX_UPLOAD_BYTES >= 8 * 1000 ** 2 and MAX_UPLOAD_BYTES < 8 * 1100 ** 2


def test_the_spectra_app_refuses_a_bomb_with_a_message_and_keeps_working():
    from curvlab.dashboards import SpectraDashboard
    d = SpectraDashboard()
    assert isinstance(d.upload, MatrixUpload)
    problem, _ = d.picker.get()
    P = problem.n_params
    # the page sends the file as one custom message with one buffer
    d.upload._on_msg(d.upload, {"event": "file", "name": "bomb.npz"},
                     [_npz({"M.npy": _npy_header_only((50_000, 50_000))})])
    assert "MB unpacked" in d.status.error and d.uploaded is None
    # the page refused a file by its size: the app says so too, and again the second time
    for _ in range(2):
        d.upload.refused = "huge.npy: 42.0 MB is larger than the 9.0 MB the app takes"
        assert d.status.error.startswith("huge.npy: 42.0 MB") and d.upload.refused == ""
    # then a good matrix works
    M = np.diag(np.arange(1.0, P + 1))
    buf = io.BytesIO()
    np.save(buf, M)
    d.upload._on_msg(d.upload, {"event": "file", "name": "mine.npy"}, [buf.getvalue()])
    assert d.status.error is None, d.status.error
    assert d.uploaded is not None and d.uploaded[0] == "mine.npy"
    assert np.allclose(d.uploaded[1].to_dense(), M)


# --- the pools' refill ---------------------------------------------------------------------------

def test_a_visitor_cuts_a_waiting_refill_short_and_a_class_holds_its_cap():
    import asyncio
    import logging

    from curvlab_jupyter import pool

    async def race():
        started = []

        async def start():
            started.append(asyncio.get_running_loop().time())
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        entry = loop.create_task(pool.wait_before(30.0, start()))   # Voila's refill, 30 s off
        await asyncio.sleep(0.05)
        assert not started and pool.wake(entry)                     # a visitor takes it
        await asyncio.wait_for(entry, 5)
        assert started and started[0] - t0 < 5                      # it started at once
        assert not pool.wake(entry)                                 # nothing left to wake
    # on a thread of its own: an earlier test in this process (the browser tests' Playwright)
    # may leave an event loop running on the main thread, where asyncio.run refuses to start
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(1) as ex:
        ex.submit(asyncio.run, race()).result()

    class Done:
        def __init__(self, done):
            self._done = done

        def done(self):
            return self._done

    class Manager:                      # what cap_kernels reads of Voila's kernel manager
        log = logging.getLogger("test")

        def __init__(self, running, entries):
            self.running, self.calls = running, []
            self._pools = {"a.ipynb": entries}
            self.kernel_pools_config = {"a.ipynb": {"pool_size": 4}}

        def list_kernel_ids(self):
            return list(self.running)

        def _get_notebook_from_kernel(self, kid):
            return "a.ipynb"

        def fill_if_needed(self, delay=None, notebook_name=None, **kwargs):
            self.calls.append(self.kernel_pools_config[notebook_name]["pool_size"])

    # 3 taken + 2 ready kernels running, 1 entry still starting: 6 live; cap 7, pool of 3 of 4:
    # room = min(4 - 3, 7 - 6) = 1 refill, the pool to 4
    m = Manager(running=["k1", "k2", "k3", "k4", "k5"],
                entries=[Done(True), Done(True), Done(False)])
    pool.cap_kernels(m, {"a.ipynb": 7})
    m.fill_if_needed(notebook_name="a.ipynb")
    assert m.calls == [4] and m.kernel_pools_config["a.ipynb"]["pool_size"] == 4
    # at the cap: no refill at all
    m = Manager(running=["k1", "k2", "k3", "k4", "k5", "k6"], entries=[Done(True), Done(False)])
    pool.cap_kernels(m, {"a.ipynb": 7})
    m.fill_if_needed(notebook_name="a.ipynb")
    assert m.calls == []
    # two under the cap with a pool short by three: two refills (pool of 1 + 2)
    m = Manager(running=["k1", "k2", "k3", "k4", "k5"], entries=[Done(True)])
    pool.cap_kernels(m, {"a.ipynb": 7})
    m.fill_if_needed(notebook_name="a.ipynb")
    assert m.calls == [3]
    # an app without a cap keeps Voila's refill
    m = Manager(running=["k1"] * 20, entries=[])
    pool.cap_kernels(m, {})
    m.fill_if_needed(notebook_name="a.ipynb")
    assert m.calls == [4]
