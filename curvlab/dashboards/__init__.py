"""Interactive dashboards (ipywidgets + plotly FigureWidget), one module per app.

Each class builds its widgets and figures once; `.widget` is the thing to display. The logic
lives here so headless tests can drive it; the Voila apps in apps/ only build and show one,
then apply the view in the page's link (`app.apply_query(query_string())`, see `links`).
"""

from .beyond import BeyondDashboard
from .damping import DampingDashboard
from .dynamics import DynamicsDashboard
from .landscape import LandscapeDashboard
from .links import query_string  # noqa: F401 — the apps' second cell uses it
from .products import ProductsDashboard
from .spectra import SpectraDashboard
from .trajectories import TrajectoriesDashboard
from .uncertainty import UncertaintyDashboard

APPS = {
    "landscape": LandscapeDashboard,
    "spectra": SpectraDashboard,
    "damping": DampingDashboard,
    "trajectories": TrajectoriesDashboard,
    "products": ProductsDashboard,
    "beyond": BeyondDashboard,
    "dynamics": DynamicsDashboard,
    "uncertainty": UncertaintyDashboard,
}
