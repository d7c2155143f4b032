"""Storms and faults, in a real browser against the served apps: 500 rapid slider moves leave the
kernel's memory where it was and the plot at the last value; a kernel killed under a page shows a
message, and a reload gets a fresh working app; a computation that raises shows its message and
the next control change works."""

import os
import pathlib
import re
import signal
import sys
import time

import jupyter_client

from .conftest import ROOT
from .drive import (
    Plot,
    assert_no_errors,
    changes,
    control,
    expect_message,
    open_app,
    readout,
    set_and_wait,
    set_control,
    wait_rendered,
    x_max,
)

sys.path.insert(0, str(ROOT / "bench"))
from class_load import find_process  # noqa: E402


def kernel_id(page):
    """The id of the kernel behind a Voila page (Voila writes it into the page)."""
    return re.search(r'"kernelId": "([0-9a-f-]{36})"', page.content()).group(1)


def kernel_process(kid):
    """(pid, connection file) of kernel `kid` (its command line names its connection file)."""
    pid, args = find_process(lambda a: any(x.endswith(f"kernel-{kid}.json") for x in a),
                             f"kernel {kid}")
    return pid, next(x for x in args if x.endswith(f"kernel-{kid}.json"))


def kernel_pid(kid):
    return kernel_process(kid)[0]


def rss_mb(pid):
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def run_in_kernel(kid, code, expression="None"):
    """Execute `code` in kernel `kid` through its connection file (a second client, as a console
    would attach: the way a test looks into or injects a fault into a live app); the value of
    `expression` afterwards, as its repr."""
    kc = jupyter_client.BlockingKernelClient(connection_file=kernel_process(kid)[1])
    kc.load_connection_file()
    kc.start_channels()
    try:
        reply = kc.execute_interactive(code, timeout=60, output_hook=lambda msg: None,
                                       user_expressions={"value": expression})
        assert reply["content"]["status"] == "ok", reply["content"]
        return reply["content"]["user_expressions"]["value"]["data"]["text/plain"]
    finally:
        kc.stop_channels()


FIND_APP = ("import gc\n"
            "app = next(o for o in gc.get_objects() if type(o).__name__ == 'LandscapeDashboard')\n")
SLICE = Plot("1-D slice", 0, "x")          # the a's of the 1-D slice: the largest is the span


def test_a_storm_of_500_slider_moves_keeps_memory_and_ends_at_the_last_value(page, voila_url):
    open_app(page, voila_url, "landscape")
    kid = kernel_id(page)
    pid = kernel_pid(kid)
    # one move first, so lazily built state (caches' first entries, plotly's validators) exists
    lookups = "app.cache.hits + app.cache.misses"
    seen = int(run_in_kernel(kid, FIND_APP, lookups))
    control(page, "span")[1].locator(".noUi-handle").focus()
    with changes(page, SLICE):
        page.keyboard.press("ArrowRight")
    page.wait_for_timeout(500)
    start = rss_mb(pid)
    per_move = int(run_in_kernel(kid, FIND_APP, lookups)) - seen   # cache lookups one move makes
    seen += per_move
    # 500 moves as fast as the keyboard goes: up and down the slider's range, ending off-centre
    keys = (["ArrowRight"] * 60 + ["ArrowLeft"] * 60) * 4 + ["ArrowRight"] * 20
    assert len(keys) == 500
    t0 = time.perf_counter()
    for key in keys:
        page.keyboard.press(key)
    typed = time.perf_counter() - t0
    last = float(readout(page, "span"))
    assert abs(last - (1.05 + 20 * 0.05)) < 1e-9, last     # the slider is where the keys left it
    # the plot ends at the last value, after the kernel has worked through the queue
    page.wait_for_function(
        "(s) => { const el = Array.from(document.querySelectorAll('.js-plotly-plot'))"
        ".find(e => e.layout && e.layout.title"
        " && (e.layout.title.text || '').includes('1-D slice'));"
        " return el && el.data[0].x && Math.abs(Math.max(...el.data[0].x) - s) < 1e-9; }",
        arg=last, timeout=180_000, polling=200)
    page.wait_for_timeout(1000)
    assert abs(x_max(page, "1-D slice") - last) < 1e-9
    # the storm reached the kernel, but not as 500 computations: while the kernel is busy the
    # widget's front end holds back changes and sends only the latest (ipywidgets' throttling)
    moves = (int(run_in_kernel(kid, FIND_APP, lookups)) - seen) / per_move
    assert 5 <= moves <= 500, f"{moves:.0f} of 500 moves reached the kernel"
    end = rss_mb(pid)
    print(f"storm: 500 moves typed in {typed:.1f} s, settled {time.perf_counter() - t0:.1f} s "
          f"after the first; {moves:.0f} reached the kernel; kernel {start:.0f} MB -> {end:.0f} MB")
    assert end <= 1.10 * start, (f"kernel memory {start:.0f} MB -> {end:.0f} MB after 500 moves "
                                 f"({typed:.1f} s of typing)")
    assert_no_errors(page)


def test_a_killed_kernel_shows_a_message_and_a_reload_brings_a_working_app(page, voila_url):
    open_app(page, voila_url, "landscape")
    kid = kernel_id(page)
    os.kill(kernel_pid(kid), signal.SIGKILL)
    page.wait_for_selector("text=/kernel .*(stopped|died|dead)/i", timeout=60_000)
    assert "Reload" in page.inner_text("body")
    page.reload()
    wait_rendered(page, "landscape")
    assert kernel_id(page) != kid
    assert_no_errors(page)
    set_and_wait(page, "span", "2.5", SLICE)


def test_a_computation_that_raises_shows_its_message_and_the_next_change_works(page, voila_url):
    open_app(page, voila_url, "landscape")
    kid = kernel_id(page)
    # a fault inside the math, injected into the live kernel: the next slice computation raises
    run_in_kernel(kid, "import curvlab.landscape as L\n"
                       "_grid = L.grid\n"
                       "def _broken(*a, **k):\n"
                       "    L.grid = _grid\n"
                       "    raise FloatingPointError('injected fault: the grid overflowed')\n"
                       "L.grid = _broken\n")
    set_control(page, "span", "3.3")
    expect_message(page, "injected fault: the grid overflowed")
    set_and_wait(page, "span", "3.7", SLICE)           # the fault was one-off: this one works
    assert abs(x_max(page, "1-D slice") - 3.7) < 1e-9
    assert "injected fault" not in page.inner_text("body")
