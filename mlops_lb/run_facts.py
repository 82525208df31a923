"""The facts a run knows about itself, written once into its bundle's ``run.json`` by the session that ran it.

The window, the report, its figures and the replay read them instead of guessing again (before, one report render
parsed every request four times to find the window, and the metric period was guessed three ways). A bundle
without ``run.json`` (older, or a crash before it was written) derives them once from its records on load.

Example::

    from mlops_lb.run_facts import RunFacts
    RunBundle.load(path).facts.window        # (start, end) in UTC
    RunFacts.from_dict({"metric_period_s": 60, "backend": "aws"}).metric_period_s
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RunFacts", "derive_facts"]


@dataclass(frozen=True)
class RunFacts:
    """What the run knew about itself, written once into ``run.json`` by the session that ran it.

    ``start`` is schedule offset 0, ``send_end`` the end of sending (the schedule's end, or the Stop), ``end``
    when the load returned its last response; ``metric_period_s`` is the seconds one fleet metric datapoint
    covers (``spec.local.period_s`` locally, 60 on AWS); ``backend`` the fleet's backend name (None for a bare
    URL). ``derived`` is True when some fact was derived from the records on load (a bundle without
    ``run.json``, an older one, or a session killed before its end was written): the window then runs from the
    first intended send to the last response.

    Example::

        f = RunBundle.load(path).facts
        f.window, f.metric_period_s, f.backend
    """

    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    send_end: pd.Timestamp | None = None
    metric_period_s: float | None = None
    backend: str | None = None
    derived: bool = False

    @property
    def window(self) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """(start, end) of the run in UTC, or None when nothing is known."""
        if self.start is None:
            return None
        return self.start, max(self.end if self.end is not None else self.start, self.start)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready facts (times as ISO strings)."""
        return {
            "start": _iso(self.start),
            "end": _iso(self.end),
            "send_end": _iso(self.send_end),
            "metric_period_s": self.metric_period_s,
            "backend": self.backend,
        }

    @classmethod
    def from_dict(cls, data: Any) -> RunFacts:
        """Facts from ``run.json``'s content; a field that does not parse is left unknown (None), never raised."""
        data = data if isinstance(data, dict) else {}
        period = data.get("metric_period_s")
        try:
            period_s = float(period) if period is not None else None
        except (TypeError, ValueError):
            period_s = None
        if period_s is not None and not (math.isfinite(period_s) and period_s > 0):
            period_s = None
        backend = data.get("backend")
        return cls(
            start=_ts(data.get("start")),
            end=_ts(data.get("end")),
            send_end=_ts(data.get("send_end")),
            metric_period_s=period_s,
            backend=str(backend) if isinstance(backend, str) and backend else None,
        )

    def merged(self, other: RunFacts) -> RunFacts:
        """These facts with each unknown field taken from ``other`` (a derivation)."""
        import dataclasses

        filled = {
            f.name: getattr(other, f.name)
            for f in dataclasses.fields(self)
            if f.name != "derived" and getattr(self, f.name) is None
        }
        return dataclasses.replace(self, **filled, derived=self.derived or bool(filled))


def _iso(t: Any) -> str | None:
    return None if t is None else t.isoformat()


def _ts(v: Any) -> pd.Timestamp | None:
    """A UTC timestamp from an ISO string (None for anything else)."""
    import pandas as pd

    if not isinstance(v, str):
        return None
    try:
        t = pd.Timestamp(v)
    except (ValueError, TypeError):
        return None
    if pd.isna(t):
        return None
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def derive_facts(requests: pd.DataFrame, intervals: pd.DataFrame, metrics: pd.DataFrame) -> RunFacts:
    """Facts of a bundle without ``run.json``, from its records: first intended send (or interval) to the last
    response, the last intended send, and the metrics' own spacing as their period. Read once per load.

    Example::

        derive_facts(b.requests, b.intervals, b.metrics).window
    """
    import pandas as pd

    starts: list[pd.Timestamp] = []
    ends: list[pd.Timestamp] = []
    send_end = None
    req = requests
    if len(req) and "intended_at" in req.columns:
        intended = pd.to_datetime(req["intended_at"], utc=True)
        starts.append(intended.min())
        send_end = intended.max()
        done = pd.to_datetime(req["done_at"], utc=True) if "done_at" in req.columns else None
        ends.append(done.max() if done is not None and done.notna().any() else starts[-1])
        ends.append(send_end)
    iv = intervals
    if len(iv) and "interval_start" in iv.columns:
        ts = pd.to_datetime(iv["interval_start"], utc=True)
        step = ts.sort_values().diff().dt.total_seconds().median() if len(ts) > 1 else 1.0
        starts.append(ts.min())
        ends.append(ts.max() + pd.Timedelta(seconds=float(step if step == step else 1.0)))
    starts = [t for t in starts if not pd.isna(t)]
    ends = [t for t in ends if not pd.isna(t)]
    period = None
    if len(metrics) and "timestamp" in metrics.columns:
        stamps = pd.to_datetime(metrics["timestamp"], utc=True).drop_duplicates().sort_values()
        d = stamps.diff().dt.total_seconds().dropna()
        period = float(d[d > 0].median()) if len(d[d > 0]) else None
    start = min(starts) if starts else None
    return RunFacts(
        start=start,
        end=max([*ends, start]) if start is not None else None,
        send_end=send_end if send_end is not None and not pd.isna(send_end) else None,
        metric_period_s=period,
        derived=True,
    )
