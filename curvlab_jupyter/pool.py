"""Preheated kernels for `./run apps`: a taken kernel's replacement that a visitor waits for starts
at once.

Voila 0.5's pools (voila.voila_kernel_manager) refill per kernel: each visit that takes a kernel
schedules one replacement, `fill_delay` seconds later, whatever the rest of the pool holds (it
does not wait for the pool to drain). The scheduled replacement is already in the pool, and the
next visitor takes it in turn: when a class has taken every ready kernel, that visitor waited for
the rest of the delay (60 s with the class recipe's FILL_DELAY) before the kernel even started.

`wait_before` replaces Voila's delay by one that a visitor cuts short: `wake_on_take` makes the
kernel manager wake the pool entry it hands out, so the delay only spares the cores while nobody
waits (its purpose: a refill runs the whole app, and should not compete with the page the
visitor who took the kernel is loading).
"""

import asyncio

import voila.voila_kernel_manager as _vkm

_waiting = {}      # pool entry (the asyncio task) -> the event that ends its delay


async def wait_before(delay, aw):
    """Await `aw` after `delay` seconds, or as soon as a visitor takes this pool entry."""
    task = asyncio.current_task()
    woken = asyncio.Event()
    _waiting[task] = woken
    try:
        if delay:
            try:
                await asyncio.wait_for(woken.wait(), delay)
            except TimeoutError:
                pass
    finally:
        _waiting.pop(task, None)
    return await aw


def wake(entry):
    """End the delay of a pool entry (a task from Voila's pool); True if it was waiting."""
    woken = _waiting.get(entry)
    if woken is not None:
        woken.set()
    return woken is not None


def patch_delay():
    """Voila's pools use `wait_before` (looked up when a refill is scheduled)."""
    _vkm.wait_before = wait_before


def wake_on_take(kernel_manager):
    """Wrap a VoilaKernelManager's `get_rendered_notebook` so that the entry it hands out (the
    pool's first) starts now if it is still in its delay."""
    original = kernel_manager.get_rendered_notebook

    async def get_rendered_notebook(notebook_name=None, **kwargs):
        pool = kernel_manager._pools.get(notebook_name) or []
        if pool and wake(pool[0]):
            kernel_manager.log.info("curvlab: a visitor takes %s's next kernel; it starts now",
                                    notebook_name)
        return await original(notebook_name=notebook_name, **kwargs)
    kernel_manager.get_rendered_notebook = get_rendered_notebook


def cap_kernels(kernel_manager, caps):
    """Hold each capped app to `caps[notebook]` live kernels (taken by visitors, preheated or
    starting): a refill after a take starts only while the app is under its cap. For a class
    (`CLASS=30 ./run apps`) the cap is the class plus a few spares: Voila's refill-per-take would
    otherwise start a second class worth of kernels as the first one arrives, doubling the
    memory the server was sized for. A kernel shut down (a page closed, an idle kernel culled)
    makes room again. Pools fill to their size at start-up whatever the caps."""
    original = kernel_manager.fill_if_needed

    def fill_if_needed(delay=None, notebook_name=None, **kwargs):
        cap = caps.get(notebook_name)
        if cap is None or delay == 0:       # start-up fills (delay 0) are the pools' sizes
            return original(delay=delay, notebook_name=notebook_name, **kwargs)
        pool = kernel_manager._pools.get(notebook_name, [])
        size = kernel_manager.kernel_pools_config.get(notebook_name, {}).get("pool_size", 0)
        live = _live_kernels(kernel_manager, notebook_name)
        room = min(size - len(pool), cap - live)
        if room <= 0:
            kernel_manager.log.info("curvlab: %s holds %d live kernels (cap %d): no refill",
                                    notebook_name, live, cap)
            return None
        config = kernel_manager.kernel_pools_config
        kernel_manager.kernel_pools_config = {**config, notebook_name: {
            **config.get(notebook_name, {}), "pool_size": len(pool) + room}}
        try:
            return original(delay=delay, notebook_name=notebook_name, **kwargs)
        finally:
            kernel_manager.kernel_pools_config = config
    kernel_manager.fill_if_needed = fill_if_needed


def _live_kernels(kernel_manager, notebook_name):
    """Kernels of `notebook_name` that are running (taken or preheated) or about to start."""
    running = {k for k in kernel_manager.list_kernel_ids()
               if kernel_manager._get_notebook_from_kernel(k) == notebook_name}
    starting = sum(not entry.done() for entry in kernel_manager._pools.get(notebook_name, []))
    return len(running) + starting
