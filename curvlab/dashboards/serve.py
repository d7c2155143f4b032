"""Serve the apps with Voila the way `./run apps` does (the browser tests and the load test
start the same server):

    python -m curvlab.dashboards.serve apps/ --port 8866 --host 127.0.0.1 [voila options]

- preheated kernels: each app's pool (POOL, default 2; POOLS="landscape=30,spectra=2" sizes
  single apps' pools) has already run the app when a visitor arrives; each taken kernel is
  replaced FILL_DELAY seconds later (default 30, so refills do not compete with the first
  renders of visitors arriving together), and at once when another visitor takes that
  replacement while it waits (curvlab_jupyter.pool); the landing page takes no kernel from a
  pool and is what the root URL opens;
- a class: CLASS=30 APPS=landscape,damping gives each named app (every app without APPS) a pool
  of 30 and a cap of 30 + max(2, 30 // 10) live kernels, the others POOL=1, and FILL_DELAY=60;
  `plan` prints the pools and the memory they will take (KERNEL_MB, measured per app) and
  `./run apps` refuses, with the numbers and the largest class that fits, a setting that needs
  more than 85 % of the memory available;
- every kernel websocket closes on a frame that does not parse (curvlab_jupyter.guard);
- kernels talk over IPC sockets, so kernels started together cannot race for a TCP port, and
  a preheating kernel's outputs are awaited up to 60 s after its cell ends (a full pool
  starting at once makes them lag; Voila's 4 s default then served pages without the app);
- kernels idle for CULL seconds (default 1800) are stopped;
- Voila runs with curvlab_jupyter's handler (curvlab_jupyter.voila), which serves plotly's
  patched widget code at /curvlab/plotly-widget.js: every figure imports it from there
  (curvlab.dashboards.bundle) instead of receiving it through the widget channel (5 MB per
  visit), and curvlab's Voila template (which each app chooses in its notebook metadata; the
  checkout's copy comes first on JUPYTER_PATH) loads it while the page connects; the template
  also drops Voila's Font Awesome CDN links, so the apps need no network; and it shows a
  banner with a Reload button when a page comes without its app or its kernel dies, restarts
  or is shut down;
- plotly's JupyterLab renderer extension (a second copy of plotly.js, for non-widget figures)
  is not loaded.
"""

import json
import os
import pathlib
import sys

TEMPLATES = pathlib.Path(__file__).resolve().parents[2] / "share" / "jupyter"


# Resident memory (RSS, MB) of one preheated kernel per app — it has run its app and waits for
# its visitor — and of the Voila server: measured on this project's machine kind with
# `.venv/bin/python bench/class_load.py --memory` (bench/results_class.md). A kernel a student
# has used holds a little more (its caches), hence the margin in `plan`.
KERNEL_MB = {"landscape": 142, "spectra": 135, "damping": 144, "trajectories": 134,
             "products": 132, "beyond": 136, "dynamics": 142, "uncertainty": 148}
UNMEASURED_MB = 200         # an app not in the table
SERVER_MB = 120
USED_MARGIN = 1.15          # a used kernel's memory over a preheated one's
SHARE = 0.85                # of the memory available when the server starts
DEFAULT_POOL = 2            # as shipped: two visitors at once per app get a ready kernel


def parse_pools(text):
    """'landscape=30,spectra=2' -> {'landscape': 30, 'spectra': 2} (pool sizes of single apps)."""
    pools = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, size = item.partition("=")
        if not name.strip() or not size.strip().isdigit():
            raise ValueError(f"POOLS entry {item!r} is not app=size; write e.g. "
                             "POOLS=landscape=30,spectra=2")
        pools[name.strip().removesuffix(".ipynb")] = int(size)
    return pools


def settings(env=os.environ):
    """The serving settings from the environment (POOL, POOLS, FILL_DELAY, CULL, CLASS, APPS),
    checked. CLASS=N sizes a class (see `plan`): then FILL_DELAY defaults to 60 s (refills wait
    until the class has settled; a visitor who takes a kernel still starting cuts the wait)."""
    klass = int(env.get("CLASS", 0))
    out = dict(pool=int(env.get("POOL", 1 if klass else DEFAULT_POOL)),
               pools=parse_pools(env.get("POOLS", "")),
               fill_delay=float(env.get("FILL_DELAY", 60 if klass else 30)),
               cull=int(env.get("CULL", 1800)), klass=klass,
               class_apps=[a.strip().removesuffix(".ipynb") for a in env.get("APPS", "").split(",")
                     if a.strip()])
    if min(out["pool"], out["fill_delay"], out["cull"], klass) < 0:
        raise ValueError(f"POOL, FILL_DELAY, CULL and CLASS must be >= 0, got {out}")
    if out["class_apps"] and not klass:
        raise ValueError("APPS names the apps a class will open; give the class size too, "
                         "e.g. CLASS=30 APPS=landscape,damping")
    return out


def available_mb(meminfo="/proc/meminfo"):
    """The memory available to new processes now (MemAvailable), in MB."""
    text = pathlib.Path(meminfo).read_text()
    return int(text.split("MemAvailable:")[1].split()[0]) / 1024


def plan(apps, pool=DEFAULT_POOL, pools=None, klass=0, class_apps=(), available=None, **_):
    """Pool sizes, kernel caps and memory for serving `apps` (the folder's app names, landing
    page excluded), as a dict: pools {app: size}, caps {app: most live kernels}, mb (what the
    kernels and server will hold at most, MB), available (MB), fits, and lines (what was chosen,
    for the teacher).

    Without a class every app keeps `pool` ready kernels (`pools` overrides single apps); a
    visit takes one and a replacement starts, so memory grows with visitors beyond the pools:
    the estimate is the pools'. With a class of `klass` students, each app in `class_apps` (all
    apps if none) gets a pool of `klass` and a cap of `klass` + spares live kernels (the spares,
    max(2, klass // 10), serve reloads and latecomers; curvlab_jupyter.pool.cap_kernels keeps a
    refill from starting a second class's worth as the first arrives); the other apps keep
    `pool`. Memory: Σ_app cap_app (pool_app without a cap) × kernel MB × USED_MARGIN + the
    server; it fits when under SHARE of the available memory. Cost O(number of apps)."""
    pools = dict(pools or {})
    unknown = sorted((set(pools) | set(class_apps)) - set(apps))
    if unknown:
        raise ValueError(f"no such app: {unknown}; the apps are {sorted(apps)}")
    caps = {}
    if klass:
        spares = max(2, klass // 10)
        for app in class_apps or apps:
            pools[app] = klass
            caps[app] = klass + spares
    sizes = {app: pools.get(app, pool) for app in apps}
    per = {app: KERNEL_MB.get(app, UNMEASURED_MB) * USED_MARGIN for app in apps}
    mb = SERVER_MB + sum(caps.get(app, sizes[app]) * per[app] for app in apps)
    available = available_mb() if available is None else available
    lines = [f"{app}: {sizes[app]} preheated kernel(s)"
             + (f", at most {caps[app]} live" if app in caps else "")
             + f" × {per[app]:.0f} MB (a used kernel)" for app in sorted(apps)]
    lines.append(f"memory: {mb / 1024:.1f} GB at most (kernels + server) of "
                 f"{available / 1024:.1f} GB available now (limit {SHARE:.0%}: "
                 f"{SHARE * available / 1024:.1f} GB)")
    return dict(pools=sizes, caps=caps, mb=mb, available=available,
                fits=mb <= SHARE * available, lines=lines)


def command(folder, port, host="127.0.0.1", pool=1, pools=None, fill_delay=5.0, cull=1800,
            extra=(), caps=None):
    """(argv, environment additions) to run Voila on `folder` as described above; `pools` maps an
    app's name to its own pool size, `caps` to the most live kernels it may hold."""
    missing = sorted(set(pools or {}) - {p.stem for p in pathlib.Path(folder).glob("*.ipynb")})
    if missing:
        raise ValueError(f"POOLS names apps that {folder} does not hold: {missing}")
    env = {}
    args = [sys.executable, "-m", "curvlab_jupyter.voila", str(folder), "--no-browser",
            f"--port={port}",
            f"--Voila.ip={host}", "--Voila.port_retries=0",
            "--preheat_kernel=True", f"--pool_size={pool}",
            f"--VoilaKernelManager.fill_delay={fill_delay}",
            '--VoilaKernelManager.preheat_denylist=["index.ipynb"]',
            "--KernelManager.transport=ipc",
            f"--MappingKernelManager.cull_idle_timeout={cull}",
            "--MappingKernelManager.cull_interval=60",
            "--VoilaConfiguration.file_allowlist=.*[.](png|jpg|gif|svg)",
            "--VoilaConfiguration.extension_denylist=jupyterlab-plotly",
            # after a cell's reply, wait for its last outputs: with a whole class's pool filling
            # at once the kernels' IOPub lags, and nbclient's 4 s default dropped the app's view
            "--VoilaExecutor.iopub_timeout=60"]
    if pools:
        # a pools config replaces Voila's default entry, which --pool_size would have set
        config = {"default": {"pool_size": pool},
                  **{f"{name}.ipynb": {"pool_size": size} for name, size in pools.items()}}
        args.append(f"--VoilaKernelManager.kernel_pools_config={json.dumps(config)}")
    if caps:
        args.append("--CurvlabVoila.kernel_caps="
                    + json.dumps({f"{name}.ipynb": size for name, size in caps.items()}))
    # the checkout's template before an installed copy (an editable install has none)
    env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(TEMPLATES),
                                                        os.environ.get("JUPYTER_PATH")]))
    return args + list(extra), env


def refusal(apps, s, chosen):
    """The message that refuses a setting the machine cannot hold, with the numbers and what
    would fit (the largest class for the same apps, found by trying smaller ones)."""
    what = (f"CLASS={s['klass']} for {', '.join(s['class_apps']) or f'all {len(apps)} apps'}"
            if s["klass"] else f"pools {chosen['pools']}")
    text = (f"[curvlab] refused: {what} needs {chosen['mb'] / 1024:.1f} GB, more than "
            f"{SHARE:.0%} of the {chosen['available'] / 1024:.1f} GB this machine has available.")
    if s["klass"]:
        fits = [n for n in range(s["klass"] - 1, 0, -1)
                if plan(apps, **{**s, "klass": n}, available=chosen["available"])["fits"]]
        text += (f" The largest class that fits for these apps is CLASS={fits[0]}; or name fewer "
                 "apps (APPS=landscape,damping)." if fits else " Name fewer apps (APPS=...).")
    else:
        text += " Give smaller pools (POOL=1) or fewer (POOLS=...)."
    return text


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--port", type=int, default=8866)
    parser.add_argument("--host", default="127.0.0.1")
    known, extra = parser.parse_known_args(argv)
    s = settings()
    apps = sorted(p.stem for p in pathlib.Path(known.folder).glob("*.ipynb")
                  if p.name != "index.ipynb")
    chosen = plan(apps, **s)
    for line in chosen["lines"]:
        print(f"[curvlab] {line}", file=sys.stderr)
    if not chosen["fits"]:
        sys.exit(refusal(apps, s, chosen))
    pools = {app: n for app, n in chosen["pools"].items() if n != s["pool"]}
    args, env = command(known.folder, known.port, known.host, pool=s["pool"], pools=pools,
                        fill_delay=s["fill_delay"], cull=s["cull"], extra=extra,
                        caps=chosen["caps"])
    os.environ.update(env)
    os.execv(args[0], args)


if __name__ == "__main__":
    main()
