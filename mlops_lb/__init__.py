"""mlops_lb: launch, load test and plot a load-balanced inference fleet, on AWS or on this machine.

Importing is cheap and has no side effects: pulumi, boto3, matplotlib and ipywidgets load only when used.

Example::

    import mlops_lb as ml
    with ml.open_fleet(ml.FleetSpec(name="demo")) as fleet:
        fleet.launch()
        result = ml.run_load(fleet.url + "/predict", ml.load.ramp(start_rps=10, end_rps=200, duration_s=30))
        result.summary()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    BackendUnavailable,
    BalancerDown,
    BundleError,
    LoadTestError,
    MetricsError,
    MlopsLbError,
    PortInUse,
    ProvisionError,
    SpecError,
    StorageError,
)
from .fleet import Fleet, open_fleet
from .spec import (
    AwsSpec,
    CapacitySpec,
    FleetSpec,
    HealthCheckSpec,
    InstanceSpec,
    LocalSpec,
    ModelSpec,
    NetworkSpec,
    RouterTierSpec,
    RoutingSpec,
    ScalingPolicySpec,
    ServerSpec,
    SpotSpec,
    TargetGroupSpec,
    WarmPoolSpec,
)

if TYPE_CHECKING:
    from . import analysis, aws, load, plots, report, widgets
    from .analysis.compare import compare
    from .bundle import RunBundle
    from .experiments import capacity_search, sweep_configs
    from .load import LoadResult, run_load, start_load
    from .routing_ab import compare_routing
    from .session import RunSession, run_session

__version__ = "0.1.0"

# Names resolved on first use, so `import mlops_lb` stays light.
_LAZY = {
    "run_load": ("mlops_lb.load", "run_load"),
    "start_load": ("mlops_lb.load", "start_load"),
    "LoadResult": ("mlops_lb.load", "LoadResult"),
    "RunBundle": ("mlops_lb.bundle", "RunBundle"),
    "RunSession": ("mlops_lb.session", "RunSession"),
    "run_session": ("mlops_lb.session", "run_session"),
    "load": ("mlops_lb.load", None),
    "aws": ("mlops_lb.aws", None),
    "plots": ("mlops_lb.plots", None),
    "report": ("mlops_lb.report", None),
    "analysis": ("mlops_lb.analysis", None),
    "widgets": ("mlops_lb.widgets", None),
    "capacity_search": ("mlops_lb.experiments", "capacity_search"),
    "sweep_configs": ("mlops_lb.experiments", "sweep_configs"),
    "compare": ("mlops_lb.analysis.compare", "compare"),
    "compare_routing": ("mlops_lb.routing_ab", "compare_routing"),
}

__all__ = [
    "AwsSpec",
    "BackendUnavailable",
    "BalancerDown",
    "BundleError",
    "CapacitySpec",
    "Fleet",
    "FleetSpec",
    "HealthCheckSpec",
    "InstanceSpec",
    "LoadResult",
    "LoadTestError",
    "LocalSpec",
    "MetricsError",
    "MlopsLbError",
    "ModelSpec",
    "NetworkSpec",
    "PortInUse",
    "ProvisionError",
    "RouterTierSpec",
    "RoutingSpec",
    "RunBundle",
    "RunSession",
    "ScalingPolicySpec",
    "ServerSpec",
    "SpecError",
    "SpotSpec",
    "StorageError",
    "TargetGroupSpec",
    "WarmPoolSpec",
    "__version__",
    "analysis",
    "aws",
    "capacity_search",
    "compare",
    "compare_routing",
    "load",
    "open_fleet",
    "plots",
    "report",
    "run_load",
    "run_session",
    "start_load",
    "sweep_configs",
    "widgets",
]


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'mlops_lb' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
