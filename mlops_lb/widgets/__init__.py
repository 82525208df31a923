"""ipywidgets panels for notebooks: scale a fleet, load test it, watch cost and a time to live.

ipywidgets (and matplotlib) load only when this package is imported, never with ``import mlops_lb``. Every panel
takes its collaborators as arguments and exposes its controls as attributes, so tests drive them with
``.value =`` and ``.click()``.

Example::

    import mlops_lb as ml
    fleet = ml.open_fleet(ml.FleetSpec.example("demo")); fleet.launch()
    ml.widgets.ScalingPanel(fleet)            # sliders + Apply + live status table
    ml.widgets.LoadTestPanel(fleet)           # profile, Start/Stop, live p50/p99 and throughput, report path
    ml.widgets.FleetCockpit(fleet, ttl_s=900) # both, plus a cost meter and a cancellable time to live
    ml.widgets.RolloutPanel()                 # fleet.rollout(..., on_event=panel): share, state, per variant
"""

from __future__ import annotations

from ._cockpit import CostMeter, FleetCockpit
from ._load import PROFILES, LoadTestPanel, build_profile
from ._rollout import RolloutPanel
from ._scaling import ScalingPanel

__all__ = [
    "PROFILES",
    "CostMeter",
    "FleetCockpit",
    "LoadTestPanel",
    "RolloutPanel",
    "ScalingPanel",
    "build_profile",
]
