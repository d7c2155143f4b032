"""Load test (not a test): a class arriving at once at one app, on loopback.

    .venv/bin/python bench/class_load.py [--students 30] [--app landscape] [--fill-delay 60]
                                           # writes bench/results_class.md

Starts the server as `POOLS=<app>=<students> FILL_DELAY=<fill-delay> ./run apps` does
(curvlab.dashboards.serve): every student gets a preheated kernel. Waits until every pooled
kernel has run the app (asked of each kernel, `has_run_app`), then lets the students arrive at
the same instant. Most are light clients — the page's HTTP GET (with a preheated kernel, Voila
hands over the already-rendered page) and a websocket fetching every widget's state as the
widget manager does —, because students' browsers run on their own laptops and several Chromium
pages on this machine's two cores would measure Chromium, not the server. One student is a real
headless Chromium page whose first plot and control → plot times are timed. Recorded: per-student
time to a served page, whether the page holds its app (a widget view) and no error, the widget
states' time, the browser's first plot and latency, and the memory of the server and kernels.
tests/browser/test_class.py runs it with 5 students.
"""

import argparse
import concurrent.futures
import json
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser.conftest import ARGS, CHROMIUM, serve_voila  # noqa: E402
from tests.browser.test_apps import FIND, RENDER_COUNTER, set_readout  # noqa: E402

PLOTS = {"landscape": 2, "spectra": 3, "damping": 5, "trajectories": 3, "products": 3, "beyond": 2}
CONTROL = {"landscape": ("span", ["0.5", "1.5"], "1-D slice", 0, "x")}
WIDGET = "application/vnd.jupyter.widget-view+json"


def fetch(url, with_widgets=False):
    """(seconds to the whole page, the page holds its app, an error appeared, bytes, seconds to
    the response's headers, (seconds to all widget states, widgets)) for one light client."""
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=120) as r:
            head = time.perf_counter() - t0
            body = r.read().decode("utf-8", "replace")
        ok = WIDGET in body
        err = "Traceback" in body or "application/vnd.jupyter.stderr" in body
        page = time.perf_counter() - t0
        widgets = widget_client(url.split("/voila/")[0], body) if ok and not err and with_widgets else (None, 0)
        return page, ok, err, len(body), head, widgets
    except Exception as e:  # noqa: BLE001 — a failed visit is a result here
        return time.perf_counter() - t0, False, True, repr(e), None, (None, 0)


PROTOCOL = "v1.kernel.websocket.jupyter.org"


def _message(channel, msg_type, content, session, metadata=None):
    """(msg_id, frame): a kernel message in Jupyter's v1 websocket framing — a count and 8-byte
    offsets, then the channel and the JSON parts — as JupyterLab's client sends it. (Voila 0.5's
    websocket handler reads every binary frame it sends as v1: a client on the legacy protocol
    makes it parse a legacy frame's first bytes as a count of billions, which hangs the whole
    server. Browsers speak v1; so must this client.)"""
    header = dict(msg_id=uuid.uuid4().hex, username="student", session=session, msg_type=msg_type,
                  version="5.3", date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    parts = [json.dumps(x).encode() for x in (header, {}, metadata or {}, content)]
    offsets = [8 * (len(parts) + 3), 8 * (len(parts) + 3) + len(channel)]
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    frame = b"".join([len(offsets).to_bytes(8, "little"), *(o.to_bytes(8, "little") for o in offsets),
                      channel.encode(), *parts])
    return header["msg_id"], frame


def _decode(frame):
    """A kernel message (header, parent_header, content) from a v1 websocket frame."""
    n = int.from_bytes(frame[:8], "little")
    offsets = [int.from_bytes(frame[8 * (i + 1):8 * (i + 2)], "little") for i in range(n)]
    header, parent, _, content = (json.loads(frame[offsets[i]:offsets[i + 1]]) for i in range(1, 5))
    return dict(msg_type=header["msg_type"], parent_header=parent, content=content)


def widget_client(url, body, timeout=120):
    """What a student's browser asks of the server after the page, as ipywidgets 8's widget
    manager does it: connect to the page's kernel, open the widget control comm and ask for every
    widget's state in one message (request_states → update_states). Seconds taken and the number
    of widgets."""
    import websocket
    kernel = re.search(r'"kernelId": "([^"]+)"', body).group(1)
    session = uuid.uuid4().hex
    ws = websocket.create_connection(f"{url.replace('http', 'ws', 1)}/api/kernels/{kernel}/channels"
                                     f"?session_id={session}", timeout=timeout, subprotocols=[PROTOCOL])
    try:
        t0 = time.perf_counter()
        comm = uuid.uuid4().hex
        ws.send_binary(_message("shell", "comm_open", {"comm_id": comm, "target_name": "jupyter.widget.control",
                                                       "data": {}}, session, {"version": "1.0.0"})[1])
        ws.send_binary(_message("shell", "comm_msg", {"comm_id": comm, "data": {"method": "request_states"}},
                                session)[1])
        while True:
            reply = _decode(ws.recv())
            if reply["msg_type"] == "comm_msg" and reply["content"].get("comm_id") == comm \
                    and reply["content"]["data"].get("method") == "update_states":
                return time.perf_counter() - t0, len(reply["content"]["data"]["states"])
    finally:
        ws.close()


def find_process(match, what):
    """(pid, argument list) of the first process whose argument list satisfies `match`."""
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if match(args):
            return int(proc.name), args
    raise LookupError(f"no process for {what}")


def server_pid(port):
    """The Voila server listening on `port` (its command line names the port)."""
    return find_process(lambda args: any(a.endswith("voila") for a in args) and f"--port={port}" in args,
                        f"a Voila server on port {port}")[0]


def memory_mb(pid):
    """Resident memory of a process tree (the server and its kernels), in MB."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,rss="], capture_output=True, text=True).stdout
    rows = [tuple(int(x) for x in line.split()) for line in out.splitlines() if line.strip()]
    children = {}
    for p, pp, _ in rows:
        children.setdefault(pp, []).append(p)
    rss = {p: r for p, _, r in rows}
    todo, total = [pid], 0
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += children.get(p, [])
    return total / 1024


PROBE = ("(lambda m: m is not None and m.waiting)"
         "(__import__('sys').modules.get('curvlab.dashboards.links'))")


def ask_kernel(connection_file, expression, timeout=1.0):
    """The repr of `expression` evaluated in the kernel of `connection_file`, asked over the
    control channel (which ipykernel serves while the shell is busy); None if no answer."""
    import jupyter_client
    kc = jupyter_client.BlockingKernelClient(connection_file=str(connection_file))
    kc.load_connection_file()
    kc.start_channels(shell=False, iopub=False, stdin=False, hb=False, control=True)
    try:
        msg = kc.session.msg("execute_request", dict(code="", silent=True, store_history=False, allow_stdin=False,
                                                     stop_on_error=False, user_expressions={"x": expression}))
        kc.control_channel.send(msg)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                reply = kc.control_channel.get_msg(timeout=max(deadline - time.time(), 0.01))
            except Exception:   # queue.Empty: not started yet
                return None
            if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                return reply["content"].get("user_expressions", {}).get("x", {}).get("data", {}).get("text/plain")
        return None
    finally:
        kc.stop_channels()


APP_OF = "type(__import__('__main__').app).__name__"      # every app's notebook names its dashboard `app`
# what an app kernel should not hold at start (issue 24): plotly's nbformat (for fig.show()), Voila's
# server side (its query-string helper's module), torch
HEAVY = ("nbformat", "jsonschema", "voila", "jupyter_server", "torch")
HEAVY_LOADED = f"' '.join(m for m in {HEAVY!r} if m in __import__('sys').modules) or 'none'"


def kernel_memory(apps, log_name="class_memory_voila.log", timeout=300):
    """{app: (RSS MB, USS MB)} of one preheated kernel per app (it has run its app and waits for
    its visitor), and the server's own RSS: served as `./run apps` does with a pool of one for
    each of `apps`. USS (memory only that kernel holds) is what each further kernel adds; RSS
    also counts shared library pages. An app whose kernel has not run it after `timeout` s (it
    failed: see the log) is left out."""
    import psutil
    log_path = ROOT / "test-output" / log_name
    log_path.parent.mkdir(exist_ok=True)
    with open(log_path, "w") as log, serve_voila(ROOT / "apps", log, pool=0, pools={a: 1 for a in apps}) as url:
        server = server_pid(int(re.search(r":(\d+)$", url).group(1)))
        t0, ready = time.time(), {}
        while len(ready) < len(apps) and time.time() - t0 < timeout:
            time.sleep(2)
            text = log_path.read_text(errors="replace")
            found = re.search(r"Storing connection files in (\S+?)\.?$", text, re.M)
            for kid in set(re.findall(r"Kernel started: ([0-9a-f-]{36})", text)) - set(ready):
                conn = pathlib.Path(found.group(1)) / f"kernel-{kid}.json"
                if has_run_app(conn):
                    ready[kid] = conn
        out = {}
        for kid, conn in ready.items():
            name = (ask_kernel(conn, APP_OF, timeout=5) or "?").strip("'")
            pid = find_process(lambda a: str(conn) in a, f"kernel {kid}")[0]
            info = psutil.Process(pid).memory_full_info()
            heavy = (ask_kernel(conn, HEAVY_LOADED, timeout=5) or "'?'").strip("'")
            out[name] = (info.rss / 2 ** 20, info.uss / 2 ** 20, heavy)
        out["server"] = (psutil.Process(server).memory_info().rss / 2 ** 20, None, "")
    return out


def has_run_app(connection_file, timeout=1.0):
    """Whether the kernel of `connection_file` has run its app and waits for its visitor: every
    app builds its dashboard in one cell, then waits in `query_string()` for the request, which
    sets `curvlab.dashboards.links.waiting`. The probe goes through the control channel, which
    ipykernel serves while the shell is busy. False while the kernel is still starting or
    building the app."""
    return ask_kernel(connection_file, PROBE, timeout) == "True"


def wait_for_pool(log_path, pools, timeout=900):
    """Until every app's pool in `pools` ({app: size}) has started its kernels and every one of
    them has run its app (asked of each kernel directly, `has_run_app`). Seconds waited."""
    t0 = time.time()
    for app, size in pools.items():
        pattern = f"Kernel pool of {app}.ipynb is filled with {size} kernel"
        while pattern not in pathlib.Path(log_path).read_text():
            if time.time() - t0 > timeout:
                raise RuntimeError(f"the pool of {app} did not fill with {size} kernels in {timeout} s")
            time.sleep(1)
    text = pathlib.Path(log_path).read_text()
    folder = pathlib.Path(re.search(r"Storing connection files in (\S+?)\.?$", text, re.M).group(1))
    kernels = set(re.findall(r"Kernel started: ([0-9a-f-]{36})", text))
    waiting = set(kernels)
    while time.time() - t0 < timeout:
        waiting = {k for k in waiting if not has_run_app(folder / f"kernel-{k}.json")}
        if not waiting:
            return time.time() - t0
        time.sleep(1)
    raise RuntimeError(f"{len(waiting)} of {len(kernels)} preheated kernels had not run their app after {timeout} s")


def say(message):
    print(f"[class_load {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def browser_student(url, app, result):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        page.add_init_script(RENDER_COUNTER)
        t0 = time.perf_counter()
        page.goto(f"{url}/voila/render/{app}.ipynb", wait_until="commit")
        page.wait_for_function("(n) => window.__curvlabRenders >= n", arg=PLOTS[app], polling=50, timeout=180_000)
        result["first plot"] = time.perf_counter() - t0
        lat = []
        if app in CONTROL:
            label, values, title, trace, key = CONTROL[app]
            page.wait_for_timeout(500)
            for i in range(6):
                before = page.evaluate(f"([p, t, k]) => {{ {FIND} return snap; }}", [title, trace, key])
                t1 = time.perf_counter()
                set_readout(page, label, values[i % 2])
                page.wait_for_function(f"([p, t, k, b]) => {{ {FIND} return snap !== null && snap !== b; }}",
                                       arg=[title, trace, key, before], polling="raf", timeout=60_000)
                lat.append(time.perf_counter() - t1)
        result["latency"] = lat
        b.close()


def run(students=30, app="landscape", quiet=False, fill_delay=5.0, browser=True, env=None, arrivals=None):
    """Serve, fill the pools, let `students` arrive at once; a result dict.

    `env` is `./run apps`' environment (e.g. {} as shipped, {"CLASS": "30", "APPS": "landscape"});
    the server's pools, caps and fill delay are then what curvlab.dashboards.serve chooses. Without
    `env`: POOLS=<app>=<students> with `fill_delay` (tests/browser/test_class.py). Students go to
    the apps of `arrivals` in turn (default: all to `app`); the browser student to the first."""
    from curvlab.dashboards import serve
    arrivals = arrivals or [app]
    log_path = ROOT / "test-output" / "class_load_voila.log"
    log_path.parent.mkdir(exist_ok=True)
    if env is None:
        settings, pools, caps = dict(pool=0, pools={app: students}, fill_delay=fill_delay), {app: students}, None
    else:
        s = serve.settings(env)
        apps = sorted(p.stem for p in (ROOT / "apps").glob("*.ipynb") if p.name != "index.ipynb")
        chosen = serve.plan(apps, **s)
        if not chosen["fits"]:
            raise RuntimeError(serve.refusal(apps, s, chosen))
        pools, caps = chosen["pools"], chosen["caps"]
        settings = dict(pool=s["pool"], pools=pools, caps=caps, fill_delay=s["fill_delay"], cull=s["cull"])
    with open(log_path, "w") as log, serve_voila(ROOT / "apps", log, **settings) as url:
        server = int(re.search(r":(\d+)$", url).group(1))
        pid = server_pid(server)
        say(f"server up at {url}; filling the pools {pools}")
        warm = wait_for_pool(log_path, {a: n for a, n in pools.items() if n})
        say(f"every pooled kernel had run its app after {warm:.0f} s; the teacher opens the landing page")
        # the teacher opens the landing page first (through the server's root URL): the server's
        # first render compiles its templates (~2.7 s here), which no student should pay
        fetch(f"{url}/")
        time.sleep(5)                   # the landing page's kernel settles
        load = os.getloadavg()
        mem_before = memory_mb(pid)
        say(f"{students} students arrive (load average {load[0]:.1f})")
        result = {}
        # everyone at once: students − 1 light clients and one real browser
        barrier = threading.Barrier(students)
        with concurrent.futures.ThreadPoolExecutor(students) as pool:
            def light(i):
                barrier.wait()
                return fetch(f"{url}/voila/render/{arrivals[(i + 1) % len(arrivals)]}.ipynb", with_widgets=True)

            def real(_):
                barrier.wait()
                browser_student(url, arrivals[0], result)
            futures = [pool.submit(light, i) for i in range(students - 1)] + [pool.submit(real if browser else light, 0)]
            results = [f.result() for f in futures[:-1]]
            last = futures[-1].result()
            if not browser:
                results.append(last)
        mem_after = memory_mb(pid)
        time.sleep(2)
        kernels = len(re.findall(r"Kernel started", log_path.read_text()))
    times = [r[0] for r in results]
    out = dict(students=students, app=app, warm=warm, times=times, heads=[r[4] for r in results],
               sizes=[r[3] for r in results], widgets=[r[5] for r in results], ok=sum(r[1] for r in results),
               errors=sum(r[2] for r in results), first_plot=result.get("first plot"),
               latency=result.get("latency", []), mem_before=mem_before, mem_after=mem_after,
               pools=pools, caps=caps, load=load, kernels=kernels, arrivals=arrivals)
    if not quiet:
        print(out)
    return out


def write_section(title, text, path=ROOT / "bench" / "results_class.md"):
    """Replace the section `## title` of the results file (or add it), keeping the others (the
    JupyterHub section is bench/hub.py's)."""
    old = path.read_text() if path.exists() else "# A class at once\n"
    parts = re.split(r"(?m)^(?=## )", old)
    body = f"## {title}\n\n{text.strip()}\n\n"
    for n, part in enumerate(parts):
        if part.startswith(f"## {title}\n"):
            parts[n] = body
            break
    else:
        parts.insert(1, body)
    path.write_text("".join(parts))


def table(r, command, what):
    lat, ws = r["latency"], [w[0] for w in r["widgets"] if w[0] is not None]
    counts = sorted({w[1] for w in r["widgets"] if w[0] is not None})
    t = sorted(r["times"])
    return "\n".join([
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; `{command}`; "
        f"load average {r['load'][0]:.1f} / {r['load'][1]:.1f} / {r['load'][2]:.1f} when the students arrived "
        f"(other work shared the 2 cores). {what} Pools: {r['pools']}" + (f", caps {r['caps']}" if r["caps"] else "")
        + f". Every pooled kernel had run its app {r['warm']:.0f} s after the server started; the teacher "
        f"then opened the landing page (the root URL), and {r['students'] - 1} light clients and one headless "
        "Chromium page arrived at the same instant (light client: the page's GET, then a websocket fetching every "
        "widget's state as ipywidgets 8's manager does; students' browsers run on their own laptops).", "",
        "| measure | value |", "|---|---:|",
        f"| pages served with their app (a widget view, no error output) | {r['ok']} of {len(t)} light clients |",
        f"| pages or widget states with an error or a timeout | {r['errors']} |",
        f"| time to a served page: median / max | {statistics.median(t):.2f} s / {max(t):.2f} s |",
        "| widget states fetched after the page: median / max | "
        + (f"{statistics.median(ws):.2f} s / {max(ws):.2f} s ({', '.join(map(str, counts))} widgets) |" if ws else "– |"),
        f"| browser ({r['arrivals'][0]}): first plot drawn, from the page request | "
        + (f"{r['first_plot']:.2f} s |" if r["first_plot"] else "– |"),
        "| browser: control → plot median / max (6 changes) | "
        + (f"{statistics.median(lat) * 1e3:.0f} ms / {max(lat) * 1e3:.0f} ms |" if lat else "– |"),
        f"| server + kernels memory before / after the arrival | {r['mem_before']:.0f} MB / {r['mem_after']:.0f} MB |",
        f"| kernels started in all (pools, replacements, landing page) | {r['kernels']} |", ""])


def memory_section(mem, load=None):
    rows = [(k.removesuffix("Dashboard").lower(), v) for k, v in mem.items() if k != "server"]
    load = os.getloadavg() if load is None else load
    lines = [f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
             f"{time.strftime('%Y-%m-%d %H:%M')}, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
             "after the measurement. Resident memory of one preheated kernel per app (it has run its app and "
             "waits for its visitor), served as `./run apps` serves it; `.venv/bin/python bench/class_load.py "
             "--memory`. RSS counts the shared libraries in each kernel; USS is what each further kernel adds. "
             "`curvlab.dashboards.serve.KERNEL_MB` holds these RSS figures for the class knob's memory estimate. "
             f"Last column: which of {', '.join(HEAVY)} the kernel holds (none should be; what was brought down "
             "and how: the next section).", "",
             "| app | RSS (MB) | USS (MB) | heavy modules held |", "|---|---:|---:|---|"]
    lines += [f"| {a} | {rss:.0f} | {uss:.0f} | {heavy} |" for a, (rss, uss, heavy) in sorted(rows)]
    lines.append(f"| the Voila server | {mem['server'][0]:.0f} | | |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--app", default="landscape", choices=sorted(PLOTS))
    parser.add_argument("--fill-delay", type=float, default=60.0,
                        help="seconds before taken kernels are replaced (the class recipe's FILL_DELAY)")
    parser.add_argument("--shipped", action="store_true",
                        help="`./run apps` as shipped, 8 students across five apps")
    parser.add_argument("--class-env", default=None,
                        help='the class knob, e.g. "CLASS=30 APPS=landscape": students arrive at --app')
    parser.add_argument("--memory", action="store_true", help="each app's preheated kernel's memory")
    a = parser.parse_args()
    if a.memory:
        mem = kernel_memory(sorted(p.stem for p in (ROOT / "apps").glob("*.ipynb") if p.name != "index.ipynb"))
        text = memory_section(mem)
        print(text)
        write_section("Memory per kernel", text)
        return
    if a.shipped:
        arrivals = ["landscape", "spectra", "damping", "trajectories", "products"]
        r = run(8, arrivals[0], env={}, arrivals=arrivals)
        text = table(r, ".venv/bin/python bench/class_load.py --shipped",
                     "The server runs as `./run apps` starts it with no setting; 8 students arrive across five "
                     f"apps in turn ({', '.join(arrivals)}).")
        print(text)
        write_section("`./run apps` as shipped: 8 students at once", text)
        return
    if a.class_env:
        env = dict(x.split("=", 1) for x in a.class_env.split())
        r = run(a.students, a.app, env=env)
        text = table(r, f".venv/bin/python bench/class_load.py --class-env '{a.class_env}' --students "
                        f"{a.students} --app {a.app}",
                     f"The server runs as `{a.class_env} ./run apps` starts it; {a.students} students arrive at "
                     f"{a.app}.")
        print(text)
        write_section(f"The class knob: {a.students} students at once", text)
        return
    r = run(a.students, a.app, fill_delay=a.fill_delay)
    text = table(r, f".venv/bin/python bench/class_load.py --students {a.students} --app {a.app} --fill-delay "
                    f"{a.fill_delay:g}", f"The server runs as `POOLS={a.app}={a.students} FILL_DELAY="
                    f"{a.fill_delay:g} ./run apps` would start it.")
    print(text)
    write_section(f"POOLS={a.app}={a.students}: {a.students} students at once", text)


if __name__ == "__main__":
    main()
