"""LoadSettings: the knobs of a load run in one frozen, validated value (what ``load.json`` records of them).

``run_load(url, profile, payloads, settings=LoadSettings(...))`` takes them in one piece; the old keywords
(``connections=…``, ``timeout_s=…``) still work, and giving one both ways with different values is an error rather
than a silent choice.

Example::

    from mlops_lb.load import LoadSettings, run_load, constant
    fast = LoadSettings(connections=64, timeout_s=2.0, progress=False)
    run_load("http://127.0.0.1:8080/predict", constant(200, 30), settings=fast)
    fast.to_dict()        # {'method': 'POST', 'headers': {}, 'connections': 64, 'timeout_s': 2.0, ...}
    fast.replace(workers=2)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._redact import redact_headers
from .._validate import check_bool, check_int, check_num, check_str, fail, show, unknown_field
from ._ray_options import check_options

__all__ = ["SLO_KEYS", "LoadSettings"]

# The per-request bounds ``slo=`` may set (see LoadResult's requests_meeting_slo and goodput_rps).
SLO_KEYS = ("ttft_s", "tpot_s", "latency_s")


@dataclass(frozen=True, kw_only=True)
class LoadSettings:
    """How a run sends and is judged: method and headers, connections, timeouts, interval, worker processes or
    Ray shards, progress bar, the bounds of the validity rule (``late_after_s``, ``max_late_share``,
    ``max_error_share``; see :mod:`mlops_lb.load.validity`) and the streaming SLO. Defaults are
    ``run_load``'s.

    Example::

        LoadSettings(connections=8, headers={"Authorization": "Bearer …"}, interval_s=0.5)
        LoadSettings(connections=256, cluster="ray://10.0.1.9:10001", shards="auto")
    """

    method: str = "POST"
    headers: Mapping[str, str] = field(default_factory=dict)
    connections: int = 32
    timeout_s: float = 10.0
    interval_s: float = 1.0
    workers: int = 1
    executor: str = "auto"
    progress: bool = True
    late_after_s: float | None = None
    max_late_share: float = 0.01
    max_error_share: float = 0.01
    max_lag_p99_s: float | None = None
    slo: Mapping[str, float] | None = None
    connect_timeout_s: float | None = None
    cluster: str | None = None
    shards: int | str | None = None
    placement: str = "spread"

    def __post_init__(self) -> None:
        check_str("method", self.method)
        if not self.method.isalpha() or not self.method.isupper():
            fail("method", f"must be an HTTP method such as POST or GET (got {show(self.method)})")
        if not isinstance(self.headers, Mapping):
            fail("headers", f"must be a mapping of header names to values (got {show(self.headers)})")
        for k, v in self.headers.items():
            check_str(f"headers[{k!r}]", k)
            if not isinstance(v, str):  # not shown: header values are often credentials (a bytes token...)
                fail(f"headers[{k!r}]", f"must be a string (got a {type(v).__name__})")
        object.__setattr__(self, "headers", dict(self.headers))  # a private copy: the settings stay frozen
        # The same ranges run_load checks, so a bad value fails where the settings are written.
        check_int("connections", self.connections, 1, 100_000)
        check_num("timeout_s", self.timeout_s, 0.001, 3600)
        check_num("interval_s", self.interval_s, 0.05, 3600)
        check_int("workers", self.workers, 1, 256)
        # Where the engines run: "auto" (a thread for one worker, spawned processes for more, Ray shards with
        # cluster=), or "process" to put even one engine in its own process (the GIL stays free, and a test can
        # SIGSTOP the generator alone); "thread" only for one worker.
        if self.executor not in ("auto", "thread", "process"):
            fail("executor", f"must be 'auto', 'thread' or 'process' (got {show(self.executor)})")
        if self.executor == "thread" and self.workers > 1:
            fail("executor", f"'thread' runs one engine; use 'process' for workers={self.workers}")
        if self.executor != "auto" and self.cluster is not None:
            fail("executor", f"is chosen by cluster={self.cluster!r} (Ray shards); leave it 'auto'")
        # The validity rule's knobs (mlops_lb.load.validity): a send is late when it goes out more than
        # late_after_s after its intended time (None: max(5 ms, 10 % of the run's service-time p50)).
        if self.max_lag_p99_s is not None:
            # the old name of the bound (it judged a lag p99): kept so old notebooks run, meaning late_after_s
            check_num("max_lag_p99_s", self.max_lag_p99_s, 0, 3600)
            if self.late_after_s is None:
                object.__setattr__(self, "late_after_s", self.max_lag_p99_s)
            elif self.late_after_s != self.max_lag_p99_s:
                fail(
                    "max_lag_p99_s",
                    f"is the old name of late_after_s; give one of them (got {show(self.max_lag_p99_s)} and "
                    f"late_after_s={show(self.late_after_s)})",
                )
        if self.late_after_s is not None:
            check_num("late_after_s", self.late_after_s, 0, 3600)
        check_num("max_late_share", self.max_late_share, 0, 1)
        check_num("max_error_share", self.max_error_share, 0, 1)
        check_bool("progress", self.progress)
        if self.connect_timeout_s is not None:
            check_num("connect_timeout_s", self.connect_timeout_s, 0.001, 3600)
        if self.slo is not None:
            if not isinstance(self.slo, Mapping):
                fail(
                    "slo", f"must be a dict such as {{'ttft_s': 0.5, 'tpot_s': 0.05}} (got {show(self.slo)})"
                )
            for key, bound in self.slo.items():
                if key not in SLO_KEYS:
                    fail(f"slo.{key}", f"is not an SLO bound; allowed: {', '.join(SLO_KEYS)}")
                check_num(f"slo.{key}", bound, 1e-6, 3600)
            object.__setattr__(self, "slo", dict(self.slo))
        if self.workers > self.connections:
            fail("workers", f"must be <= connections ({self.connections}) (got {self.workers})")
        check_options(self.cluster, self.shards, self.placement, self.workers, self.connections)

    def __repr__(self) -> str:
        # Header values are often credentials (Authorization, X-Api-Key): shown as *** (mlops_lb._redact).
        shown = {f.name: getattr(self, f.name) for f in _FIELDS}
        shown["headers"] = redact_headers(self.headers)
        return f"LoadSettings({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; :meth:`from_dict` inverts it."""
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), Mapping) else v) for f in _FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoadSettings:
        """Rebuild from :meth:`to_dict` (or load.json: keys that are not settings, such as ``url``, are ignored)."""
        names = {f.name for f in _FIELDS}
        return cls(**{k: v for k, v in data.items() if k in names})

    def replace(self, **changes: Any) -> LoadSettings:
        """A copy with ``changes`` (validated again)."""
        for key in changes:
            if key not in {f.name for f in _FIELDS}:
                unknown_field("settings", key, [f.name for f in _FIELDS])
        return dataclasses.replace(self, **changes)

    def resolve(self, **given: Any) -> LoadSettings:
        """These settings, once ``run_load``'s keywords ``given`` are checked against them.

        A keyword left at its default takes the setting; one given with another value than the setting is a
        SpecError (two answers to one question).
        """
        for f in _FIELDS:
            mine = getattr(self, f.name)
            if f.name not in given:
                continue
            theirs = given[f.name]
            default = _DEFAULTS[f.name]
            if f.name == "headers":
                theirs = dict(theirs or {})
            if f.name == "slo" and theirs is not None:
                theirs = dict(theirs)
            if theirs != default and theirs != mine:
                fail(
                    f"settings.{f.name}",
                    f"is {show(mine)} but the {f.name}= keyword says {show(theirs)}: give it in one place",
                )
        return self


_FIELDS = dataclasses.fields(LoadSettings)
_DEFAULTS: dict[str, Any] = {
    f.name: f.default if f.default_factory is dataclasses.MISSING else f.default_factory() for f in _FIELDS
}  # type: ignore[misc]
