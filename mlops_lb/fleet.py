"""The Fleet protocol both backends implement, the backend registry, and :func:`open_fleet`.

Example::

    import mlops_lb as ml
    with ml.open_fleet(ml.FleetSpec(name="demo"), backend="local") as fleet:
        fleet.launch(on_output=print)      # blocks until `desired` targets are healthy
        print(fleet.url)                   # the load balancer's address
        fleet.scale(desired=3)
        fleet.capacity                     # Capacity(min=1, desired=3, max=4)
        fleet.status()                     # one row per target
        fleet.decisions()                  # what the scaling policy decided, and why

A backend is one entry in the registry (``register_backend``): ``open_fleet`` and the CLI's ``--backend`` choices
both read it, so adding one touches its own module and one ``register_backend`` call.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from .errors import SpecError
from .spec import FleetSpec, register_spec_check

if TYPE_CHECKING:
    import pandas as pd
    from typing_extensions import Unpack

    from .spec import ScaleChange

__all__ = [
    "BACKENDS",
    "Backend",
    "Capacity",
    "Fleet",
    "OnFleetEvent",
    "OnOutput",
    "backend_names",
    "get_backend",
    "open_fleet",
    "register_backend",
]

OnOutput = Callable[[str], Any]
"""Progress callback: receives one line of human-readable output (``print`` works)."""
OnFleetEvent = Callable[[dict[str, Any]], Any]
"""Event callback: receives each event as a dict with the events-frame columns (timestamp, kind, target, detail)."""


class Capacity(NamedTuple):
    """The group's ``(min, desired, max)``, plain ints. Example: ``lo, want, hi = fleet.capacity``."""

    min: int
    desired: int
    max: int


@runtime_checkable
class Fleet(Protocol):
    """What a notebook can do with a fleet, whichever backend runs it.

    **Required** (``isinstance(x, Fleet)`` checks every one): ``spec``, ``url``, ``capacity``, ``closed``,
    ``metric_period_s``, ``launch``, ``scale``, ``status``, ``metrics``, ``events``, ``decisions``, ``logs``,
    ``close`` and the context manager. A backend without a capability still answers: ``decisions()`` an empty
    decisions frame (nothing decided where this fleet can see it), ``logs()`` ``""`` (no output reachable).
    **Optional**: everything else a backend offers (``AwsFleet.destroy``, ``preflight``, ``LocalFleet.work_dir``…)
    is its own; backend-neutral code (session, report, widgets, CLI) never reads it.

    ``metric_period_s``: seconds between two datapoints of ``metrics()`` at its finest (local: the sampler's
    ``spec.local.period_s``; AWS: 60), what readers use instead of guessing from the frame's spacing.
    ``status()`` columns: target, address, state, health, launched_at (+ pid locally); ``metrics()`` returns a
    MetricFrame and ``events()`` an events frame (see :mod:`mlops_lb.frames`); ``decisions()`` one row per scaling
    decision with at least timestamp, action, desired_before, desired_after and reason; ``logs(target, tail)`` the
    last ``tail`` lines a target's server wrote (stdout and stderr). ``scale()`` takes the keywords of
    :class:`~mlops_lb.spec.ScaleChange` (min, desired, max, target_rps_per_target), validates and clamps them
    through :meth:`FleetSpec.rescaled` and applies only what changed.
    """

    spec: FleetSpec

    @property
    def url(self) -> str: ...

    @property
    def capacity(self) -> Capacity: ...

    @property
    def closed(self) -> bool: ...

    @property
    def metric_period_s(self) -> float: ...

    def launch(self, *, on_output: OnOutput | None = None) -> str: ...

    def scale(self, **changes: Unpack[ScaleChange]) -> None: ...

    def status(self) -> pd.DataFrame: ...

    def metrics(
        self, start: datetime | None = None, end: datetime | None = None, period_s: float | None = None
    ) -> pd.DataFrame: ...

    def events(self, start: datetime | None = None, end: datetime | None = None) -> pd.DataFrame: ...

    def decisions(self) -> pd.DataFrame: ...

    def logs(self, target: str, *, tail: int = 200) -> str: ...

    def close(self) -> None: ...

    def __enter__(self) -> Fleet: ...

    def __exit__(self, *exc: object) -> None: ...


@dataclass(frozen=True)
class Backend:
    """One registered backend. ``target`` is ``"module:Class"``, imported on first use (``import mlops_lb`` stays
    cheap); ``check_spec`` is ``"module:function"``, the backend's own spec rules (names, regions, instance types
    it refuses; None: none), which ``open_fleet`` and ``FleetSpec.check`` run first; ``in_process`` means the fleet lives inside the process that launched it, so another process
    (``mlops-lb status/scale/down``) cannot reach it.

    Example::

        get_backend("local").load()        # <class 'mlops_lb.local.fleet.LocalFleet'>
    """

    name: str
    target: str
    in_process: bool
    description: str = ""
    check_spec: str | None = None

    def load(self) -> Callable[..., Fleet]:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


_REGISTRY: dict[str, Backend] = {}


def register_backend(
    name: str, target: str, *, in_process: bool, description: str = "", check_spec: str | None = None
) -> Backend:
    """Add (or replace) a backend, with its spec rules if it has any.

    Example::

        register_backend("k8s", "mypkg.k8s:K8sFleet", in_process=False, check_spec="mypkg.k8s:check_spec")
    """
    backend = Backend(
        name=name, target=target, in_process=in_process, description=description, check_spec=check_spec
    )
    _REGISTRY[name] = backend
    register_spec_check(name, check_spec)
    return backend


def backend_names() -> tuple[str, ...]:
    """The registered backend names, in registration order (the CLI's ``--backend`` choices)."""
    return tuple(_REGISTRY)


def get_backend(name: str) -> Backend:
    """The backend called ``name``, or a SpecError listing the registered ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SpecError("backend", f"must be one of {', '.join(_REGISTRY)} (got {name!r}){hint}") from None


register_backend(
    "local", "mlops_lb.local:LocalFleet", in_process=True, description="HAProxy and worker processes here"
)
register_backend(
    "aws",
    "mlops_lb.aws:AwsFleet",
    in_process=False,
    description="ALB + ASG through Pulumi",
    check_spec="mlops_lb.aws.spec_rules:check_spec",
)
BACKENDS = backend_names()  # the built-in names; backend_names() also lists ones registered later


def open_fleet(spec: FleetSpec | str | dict[str, Any], backend: str = "local", **options: Any) -> Fleet:
    """Open (not yet launch) a fleet for ``spec`` on ``backend`` (a name from ``backend_names()``).

    ``spec`` may be a FleetSpec, a path to a YAML file or a dict; the backend's own rules
    (:meth:`FleetSpec.check`) run before its constructor, so nothing starts for a spec it would refuse. Options go
    to the backend's constructor (``LocalFleet`` or ``AwsFleet``).
    """
    chosen = get_backend(backend)  # before reading the spec: a typo'd backend is named first
    if isinstance(spec, str):
        spec = FleetSpec.from_yaml(spec)
    elif isinstance(spec, dict):
        spec = FleetSpec.from_dict(spec)
    elif not isinstance(spec, FleetSpec):
        raise SpecError("spec", f"must be a FleetSpec, a YAML path or a dict (got {type(spec).__name__})")
    spec.check(backend=chosen.name)
    return chosen.load()(spec, **options)
