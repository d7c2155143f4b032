"""Students on a real JupyterHub on loopback (a benchmark, not a test).

    .venv/bin/python bench/hub.py [--users 5] [--app landscape]
                                  # writes the "JupyterHub" section of bench/results_class.md

The hub runs deploy/jupyterhub/trial_config.py (the department's configuration with the dummy
login and SimpleLocalProcessSpawner; tests/browser/hub_loopback.py starts it on free ports with
its state in a temporary folder; servers are culled only after 10 min here). The students
arrive one after the other, each in a fresh headless Chromium context with every request off
loopback blocked: the login form, then their own server starting and opening its default URL
(the landing page), then a click on the app's link. Timed per student, from the login page's
request: the landing page with its links; and from the click: the app's first plot drawn and all
its plots drawn (plotly's after-render events, in the page's own clock). Memory per student:
the resident memory (RSS) of their single-user server and its kernels once the app has drawn,
and again when every student has been served; plus the hub, proxy and culler together.
"""

import argparse
import contextlib
import os
import pathlib
import platform
import re
import statistics
import sys
import tempfile
import time

import psutil

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser.conftest import ARGS, CHROMIUM  # noqa: E402
from tests.browser.drive import PLOTS, RENDER_COUNTER, SETTLED, assert_no_errors  # noqa: E402
from tests.browser.hub_loopback import (  # noqa: E402
    LANDING,
    block_outside,
    log_in,
    loopback_hub,
    rss_mb,
    wait_landing,
)

RESULTS = ROOT / "bench" / "results_class.md"
HEADING = "## JupyterHub"
FIRST_PLOT = ("window.__firstPlot = null;"
              " document.addEventListener('plotlywidget-after-render', () => {"
              " if (window.__firstPlot === null) window.__firstPlot = performance.now(); });")


def student(browser, hub, name, app):
    """One student's visit: a dict of timings (s), memory (MB) and what went wrong (None)."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1600})
    page = ctx.new_page()
    page.set_default_timeout(180_000)
    page.add_init_script(RENDER_COUNTER)
    page.add_init_script(FIRST_PLOT)
    outside, errors = [], []
    block_outside(page, outside)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        t0 = time.perf_counter()
        log_in(page, hub, name)
        # the landing page's response begins (Voila streams it): the server is up
        page.wait_for_url(f"**/user/{name}/{LANDING}*", wait_until="commit", timeout=180_000)
        up = time.perf_counter() - t0
        wait_landing(page, name, timeout=180_000)
        landing = time.perf_counter() - t0
        page.locator(f"a[href$='{app}.ipynb']").first.click()
        page.wait_for_url(f"**/{app}.ipynb*")
        page.wait_for_function(SETTLED, arg=PLOTS[app], timeout=180_000, polling=100)
        first, last = page.evaluate("[window.__firstPlot, window.__curvlabLast]")
        assert_no_errors(page)
        procs = hub.processes(name)
        return dict(name=name, up=up, landing=landing, first=first / 1e3, last=last / 1e3,
                    mb=rss_mb(procs), server_mb=rss_mb(procs[:1]), kernels=len(procs) - 1,
                    outside=outside, errors=errors, failed=None)
    except Exception as e:  # noqa: BLE001 — a failed visit is a result here
        return dict(name=name, failed=f"{type(e).__name__}: {str(e).splitlines()[0]}",
                    outside=outside, errors=errors)
    finally:
        ctx.close()


def run(users, app):
    from playwright.sync_api import sync_playwright
    folder = pathlib.Path(tempfile.mkdtemp(prefix="curvlab-hub-bench-"))
    with open(folder / "hub.log", "w") as log, loopback_hub(folder, log, timeout=600, every=60) \
            as hub, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            rows = [student(browser, hub, f"student{i + 1}", app) for i in range(users)]
            time.sleep(5)   # pages closed: what each server keeps until it is culled
            for r in rows:
                r["mb_after"] = rss_mb(hub.processes(r["name"]))
            hub_procs = [psutil.Process(hub.proc.pid)]
            for p in psutil.Process(hub.proc.pid).children():
                with contextlib.suppress(psutil.Error):
                    if "jupyterhub-singleuser" not in " ".join(p.cmdline()):
                        hub_procs.append(p)
            overhead = rss_mb(hub_procs)
        finally:
            browser.close()
    return rows, overhead


def section(rows, overhead, users, app, load):
    ok = [r for r in rows if not r["failed"]]
    lines = [HEADING, "",
             f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()};"
             f" `.venv/bin/python bench/hub.py --users {users} --app {app}`; load average"
             f" {load[0]:.1f} / {load[1]:.1f} when it started (other work shared the 2 cores)."
             " JupyterHub 6.1.1 with configurable-http-proxy 5.3.0 on loopback, the project's"
             " `deploy/jupyterhub/trial_config.py` (department configuration + dummy login +"
             " SimpleLocalProcessSpawner), Voila as each server's extension (no preheated"
             " kernels: each page starts its own). Students arrive one after the other in fresh"
             " headless Chromium contexts, offline. From the login page: server up (the landing"
             " page's response begins: login, spawn, the server's start, OAuth) and landing page"
             " (its links shown); from the click on the app's link: first plot / every plot"
             " drawn. Memory = RSS of the student's server and its kernels (the landing page"
             " starts none: curvlab_jupyter.landing).", "",
             "| student | server up (s) | landing page (s) | app first plot (s) | app all plots (s)"
             " | server + kernels with the app open (MB) | of which the server (MB) | kernels |"
             " after closing the page (MB) | outside requests / console errors |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r["failed"]:
            lines.append(f"| {r['name']} | failed: {r['failed']} | | | | | | | | |")
            continue
        lines.append(f"| {r['name']} | {r['up']:.1f} | {r['landing']:.1f} | {r['first']:.1f} |"
                     f" {r['last']:.1f} | {r['mb']:.0f} | {r['server_mb']:.0f} | {r['kernels']} |"
                     f" {r['mb_after']:.0f} | {len(r['outside'])} / {len(r['errors'])} |")
    if ok:
        med = {k: statistics.median(r[k] for r in ok)
               for k in ("up", "landing", "first", "last", "mb", "server_mb")}
        lines += ["", f"{len(ok)} of {len(rows)} students served with the app and no error."
                  f" Median: server up {med['up']:.1f} s, landing page {med['landing']:.1f} s,"
                  f" app's first plot {med['first']:.1f} s, all plots {med['last']:.1f} s;"
                  f" memory per student {med['mb']:.0f} MB with the app open"
                  f" ({med['server_mb']:.0f} MB the server, the rest the app's kernel; RSS, shared"
                  f" libraries counted in each). The hub, proxy and culler: {overhead:.0f} MB."]
    return "\n".join(lines) + "\n"


def write(text):
    """Put `text` in place of the JupyterHub section of RESULTS (other sections untouched)."""
    old = RESULTS.read_text() if RESULTS.exists() else ""
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _: text + "\n", old) if pattern.search(old) else \
        old.rstrip("\n") + "\n\n" + text
    RESULTS.write_text(new)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=5)
    parser.add_argument("--app", default="landscape", choices=sorted(PLOTS))
    args = parser.parse_args()
    load = os.getloadavg()
    rows, overhead = run(args.users, args.app)
    text = section(rows, overhead, args.users, args.app, load)
    print(text)
    write(text)


if __name__ == "__main__":
    main()
