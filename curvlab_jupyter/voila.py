"""Standalone Voila with curvlab's handler (`python -m curvlab_jupyter.voila apps/ [voila options]`,
what `./run apps` runs): Voila's own application, which loads no Jupyter server extension, plus
the route that serves plotly's patched widget bundle (curvlab_jupyter.PlotlyWidgetHandler), the
root URL sent to the landing page, and that page served with no kernel when it is markdown only
(curvlab_jupyter.landing)."""

from pathlib import Path

from tornado.web import RedirectHandler
from traitlets import Dict, Unicode, default
from voila.app import Voila

from . import handlers, landing, pool
from .guard import GuardedConnection


class CurvlabVoila(Voila):
    """Voila, serving {base_url}curvlab/plotly-widget.js too. Its configuration is Voila's own
    (traitlets reads the `Voila` section for a subclass), its options are Voila's."""

    landing = Unicode("index.ipynb", config=True,
                      help="the notebook that the server's root URL opens (its landing page)")
    kernel_caps = Dict(config=True, help="notebook -> the most live kernels it may hold "
                       "(curvlab_jupyter.pool.cap_kernels; CLASS in curvlab.dashboards.serve)")

    @default("kernel_websocket_connection_class")
    def _guarded(self):     # a frame that does not parse closes its socket (curvlab_jupyter.guard)
        return GuardedConnection

    def init_settings(self):
        pool.patch_delay()          # before Voila's kernel manager starts filling its pools
        settings = super().init_settings()      # creates the kernel manager
        if hasattr(self.kernel_manager, "_pools"):      # preheated kernels
            pool.wake_on_take(self.kernel_manager)
            pool.cap_kernels(self.kernel_manager, self.kernel_caps)
        return settings

    def init_handlers(self):
        from jupyter_server.utils import url_path_join
        root = []
        path = Path(self.root_dir) / self.landing
        if not self.notebook_path and path.is_file():
            page = url_path_join(self.server_url, "voila/render", self.landing)
            # the root URL opens the landing page, not Voila's file list (still at /voila/tree)
            root = [(self.server_url, RedirectHandler,
                     {"url": page, "permanent": False})]   # browsers would keep a 301 for good
            # markdown only: served with no kernel (landing)
            root += landing.routes(self.server_url, path, self.landing, self.log)
        return root + handlers(self.server_url) + super().init_handlers()


main = CurvlabVoila.launch_instance

if __name__ == "__main__":
    main()
