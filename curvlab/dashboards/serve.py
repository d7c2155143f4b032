"""Serve the apps with Voila the way `./run apps` does (the browser tests and the load test
start the same server):

    python -m curvlab.dashboards.serve apps/ --port 8866 --host 127.0.0.1 [voila options]

- preheated kernels: each app's pool (POOL, default 1; POOLS="landscape=30,spectra=2" sizes
  single apps' pools, for a class working on one app) has already run the app when a visitor
  arrives; a taken kernel is replaced FILL_DELAY seconds later (default 5, so the refill does not
  compete with the visitor's own first render); the landing page takes no kernel from a pool;
- kernels talk over IPC sockets, so kernels started together cannot race for a TCP port, and
  a preheating kernel's outputs are awaited up to 60 s after its cell ends (a full pool
  starting at once makes them lag; Voila's 4 s default then served pages without the app);
- kernels idle for CULL seconds (default 1800) are stopped;
- plotly's widget code is written beside the apps (apps/_static) and loaded by curvlab's Voila
  template as a module while the page connects, instead of travelling through the widget
  channel (5 MB per visit); the template also drops Voila's Font Awesome CDN links, so the
  apps need no network; and it shows a banner with a Reload button when a page comes without its
  app or its kernel dies, restarts or is shut down;
- plotly's JupyterLab renderer extension (a second copy of plotly.js, for non-widget figures)
  is not loaded.
"""

import json
import os
import pathlib
import sys

from .bundle import write_static_bundle

TEMPLATES = pathlib.Path(__file__).resolve().parents[2] / "share" / "jupyter"


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
    """The serving settings from the environment (POOL, POOLS, FILL_DELAY, CULL), checked."""
    out = dict(pool=int(env.get("POOL", 1)), pools=parse_pools(env.get("POOLS", "")),
               fill_delay=float(env.get("FILL_DELAY", 5)), cull=int(env.get("CULL", 1800)))
    if out["pool"] < 0 or out["fill_delay"] < 0 or out["cull"] < 0:
        raise ValueError(f"POOL, FILL_DELAY and CULL must be >= 0, got {out}")
    return out


def command(folder, port, host="127.0.0.1", pool=1, pools=None, fill_delay=5.0, cull=1800,
            extra=()):
    """(argv, environment additions) to run Voila on `folder` as described above; `pools` maps an
    app's name to its own pool size."""
    missing = sorted(set(pools or {}) - {p.stem for p in pathlib.Path(folder).glob("*.ipynb")})
    if missing:
        raise ValueError(f"POOLS names apps that {folder} does not hold: {missing}")
    env = {}
    args = [sys.executable, "-m", "voila", str(folder), "--no-browser", f"--port={port}",
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
    if (TEMPLATES / "voila" / "templates" / "curvlab").is_dir() and write_static_bundle(folder):
        env["CURVLAB_STATIC_PLOTLY"] = "1"
        env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(TEMPLATES),
                                                            os.environ.get("JUPYTER_PATH")]))
        args += ["--template=curvlab",
                 "--VoilaConfiguration.file_allowlist=_static/plotly-widget[.]js"]
    return args + list(extra), env


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--port", type=int, default=8866)
    parser.add_argument("--host", default="127.0.0.1")
    known, extra = parser.parse_known_args(argv)
    args, env = command(known.folder, known.port, known.host, extra=extra, **settings())
    os.environ.update(env)
    os.execv(args[0], args)


if __name__ == "__main__":
    main()
