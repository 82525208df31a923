"""The local fleet: HAProxy plays the ALB, model-server processes on 127.0.0.1 play the instances.

Example::

    from mlops_lb.local import LocalFleet
    with LocalFleet(FleetSpec.example()) as fleet:
        fleet.launch(on_output=print)
"""

from __future__ import annotations

from ..errors import BalancerDown, PortInUse  # the errors this backend adds, also here for convenience
from .fleet import LocalFleet

__all__ = ["BalancerDown", "LocalFleet", "PortInUse"]
