"""The Fleet protocol both backends implement, and :func:`open_fleet`.

Example::

    import mlops_lb as ml
    with ml.open_fleet(ml.FleetSpec(name="demo"), backend="local") as fleet:
        fleet.launch(on_output=print)      # blocks until `desired` targets are healthy
        print(fleet.url)                   # the load balancer's address
        fleet.scale(desired=3)
        fleet.status()                     # one row per target
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from .errors import SpecError
from .spec import FleetSpec

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["BACKENDS", "Fleet", "open_fleet"]

BACKENDS = ("local", "aws")


@runtime_checkable
class Fleet(Protocol):
    """What a notebook can do with a fleet, whichever backend runs it.

    ``status()`` columns: target, address, state, health, launched_at (+ pid locally); ``metrics()`` returns a
    MetricFrame and ``events()`` an events frame (see :mod:`mlops_lb.frames`); ``logs(target, tail)`` the last
    ``tail`` lines a target's server wrote (stdout and stderr).
    """

    spec: FleetSpec

    @property
    def url(self) -> str: ...

    def launch(self, *, on_output: Callable[[str], Any] | None = None) -> str: ...

    def scale(
        self,
        *,
        min: int | None = None,
        desired: int | None = None,
        max: int | None = None,
        target_rps_per_target: float | None = None,
    ) -> None: ...

    def status(self) -> pd.DataFrame: ...

    def metrics(
        self, start: datetime | None = None, end: datetime | None = None, period_s: float | None = None
    ) -> pd.DataFrame: ...

    def events(self, start: datetime | None = None, end: datetime | None = None) -> pd.DataFrame: ...

    def logs(self, target: str, *, tail: int = 200) -> str: ...

    def close(self) -> None: ...

    def __enter__(self) -> Fleet: ...

    def __exit__(self, *exc: object) -> None: ...


def open_fleet(
    spec: FleetSpec | str | dict[str, Any], backend: Literal["local", "aws"] = "local", **options: Any
) -> Fleet:
    """Open (not yet launch) a fleet for ``spec`` on ``backend``.

    ``spec`` may be a FleetSpec, a path to a YAML file or a dict. Options go to the backend's constructor
    (``LocalFleet`` or ``AwsFleet``).
    """
    if isinstance(spec, str):
        spec = FleetSpec.from_yaml(spec)
    elif isinstance(spec, dict):
        spec = FleetSpec.from_dict(spec)
    elif not isinstance(spec, FleetSpec):
        raise SpecError("spec", f"must be a FleetSpec, a YAML path or a dict (got {type(spec).__name__})")
    if backend == "local":
        from .local import LocalFleet

        return LocalFleet(spec, **options)
    if backend == "aws":
        from .aws import AwsFleet

        return AwsFleet(spec, **options)
    raise SpecError("backend", f"must be one of {', '.join(BACKENDS)} (got {backend!r})")
