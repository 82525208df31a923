"""Spot arithmetic for the planner and the report: prices side by side, the expected saving of a spec's mix, and
what a run with interruptions actually cost and how many client-visible errors each interruption caused.

Prices come from ``mlops_lb/data/prices.csv`` through :mod:`mlops_lb.analysis.pricing`: on-demand list prices, and
spot rows that are dated snapshots for one zone each (never live; the median over the snapshot's zones is used
here and the zones, date and source are shown with it).

Example::

    import mlops_lb as ml
    from mlops_lb.analysis.spot import spot_prices, expected_mix_cost
    spec = ml.FleetSpec(name="s", target_group={"deregistration_delay_s": 60},
                        capacity={"min": 2, "desired": 4, "max": 8, "spot": {"on_demand_base": 1}})
    spot_prices(spec, region="us-east-1")      # one row per type: on-demand vs spot, saving %
    expected_mix_cost(spec, region="us-east-1").saving_share
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import SpecError
from .pricing import hourly_price, spot_snapshot

if TYPE_CHECKING:
    import pandas as pd

    from ..spec import FleetSpec

__all__ = [
    "MixCost",
    "RunSpotCost",
    "expected_mix_cost",
    "interruption_errors",
    "ledger_cost",
    "mix_counts",
    "run_spot_cost",
    "spot_price",
    "spot_prices",
]


def spot_price(instance_type: str, region: str = "us-east-1") -> dict[str, Any] | None:
    """The shipped spot snapshot for a type: median USD/h over its zones, the zones, date and source; None if
    the table has no spot row for it.

    Example::

        spot_price("t3.small", "us-east-1")["usd_per_hour"]
    """
    rows = [p for p in spot_snapshot() if p.instance_type == instance_type and p.region == region]
    if not rows:
        return None
    return {
        "usd_per_hour": statistics.median(p.usd_per_hour for p in rows),
        "zones": ",".join(sorted(p.zone for p in rows)),
        "as_of": max(p.as_of for p in rows),
        "source": rows[0].source,
    }


def spot_prices(spec: FleetSpec, region: str | None = None) -> pd.DataFrame:
    """One row per instance type of ``capacity.spot`` (or ``instance.type``): on-demand and spot USD per hour
    (per instance and per weight unit), the saving, and where the spot figure comes from.

    Example::

        spot_prices(spec)[["instance_type", "on_demand_usd_per_hour", "spot_usd_per_hour", "saving_pct"]]
    """
    import pandas as pd

    region = region or spec.region or "us-east-1"
    spot = spec.capacity.spot
    types = spot.types_for(spec.instance.type) if spot is not None else ()
    if not types:
        from ..spec import SpotInstanceType

        types = (SpotInstanceType(type=spec.instance.type),)
    rows = []
    for t in types:
        od = hourly_price(t.type, region)
        sp = spot_price(t.type, region)
        w = t.weight or 1
        rows.append(
            {
                "instance_type": t.type,
                "weight": w,
                "on_demand_usd_per_hour": od,
                "spot_usd_per_hour": sp["usd_per_hour"] if sp else math.nan,
                "on_demand_usd_per_unit_hour": od / w,
                "spot_usd_per_unit_hour": sp["usd_per_hour"] / w if sp else math.nan,
                "saving_pct": 100.0 * (1 - sp["usd_per_hour"] / od) if sp and od else math.nan,
                "spot_zones": sp["zones"] if sp else "",
                "spot_as_of": sp["as_of"] if sp else "",
                "spot_source": sp["source"] if sp else "no spot row in mlops_lb/data/prices.csv",
            }
        )
    return pd.DataFrame(rows)


def mix_counts(capacity: int, on_demand_base: int, on_demand_percent: int) -> tuple[int, int]:
    """(on-demand, spot) units for ``capacity`` under an InstancesDistribution: the base first, then
    ``on_demand_percent`` % of the rest on-demand (rounded up here: an estimate of the split, not AWS's exact rounding).

    Example::

        mix_counts(5, 1, 50)   # (3, 2)
    """
    base = min(on_demand_base, capacity)
    above = capacity - base
    od_above = math.ceil(above * on_demand_percent / 100)
    return base + od_above, above - od_above


@dataclass(frozen=True)
class MixCost:
    """Expected hourly cost of ``capacity`` units under the spec's mix, against all on-demand."""

    capacity: int
    on_demand_units: int
    spot_units: int
    usd_per_hour: float
    all_on_demand_usd_per_hour: float
    spot_basis: str

    @property
    def saving_share(self) -> float:
        """Fraction saved against all on-demand (0.4 = 40 %)."""
        a = self.all_on_demand_usd_per_hour
        return 1.0 - self.usd_per_hour / a if a else math.nan


def expected_mix_cost(spec: FleetSpec, region: str | None = None, capacity: int | None = None) -> MixCost:
    """Hourly cost of ``capacity`` (default ``capacity.desired``) units with the spec's spot mix: on-demand
    units at the first type's price (AWS's ``prioritized`` on-demand order), spot units at the cheapest per
    unit of the snapshot (what ``price-capacity-optimized`` leans to; an estimate, not a quote).

    Example::

        expected_mix_cost(spec).saving_share
    """
    spot = spec.capacity.spot
    if spot is None:
        raise SpecError("capacity.spot", "is not set: there is no spot mix to price")
    cap = spec.capacity.desired if capacity is None else capacity
    df = spot_prices(spec, region)
    od_unit = float(df["on_demand_usd_per_unit_hour"].iloc[0])
    priced = df.dropna(subset=["spot_usd_per_unit_hour"])
    if priced.empty:
        raise SpecError(
            "capacity.spot.instance_types",
            "have no spot price in mlops_lb/data/prices.csv for this region; add a dated spot row with its source",
        )
    best = priced.sort_values("spot_usd_per_unit_hour").iloc[0]
    n_od, n_spot = mix_counts(cap, spot.on_demand_base, spot.on_demand_percent)
    usd = n_od * od_unit + n_spot * float(best["spot_usd_per_unit_hour"])
    basis = f"{best['instance_type']} spot {best['spot_usd_per_hour']:g} USD/h ({best['spot_zones']}, {best['spot_as_of']})"
    return MixCost(cap, n_od, n_spot, usd, cap * od_unit, basis)


@dataclass(frozen=True)
class RunSpotCost:
    """What a run with spot capacity cost (instance-hours at list/snapshot prices, AWS time) and what its
    interruptions cost the clients."""

    usd: float
    all_on_demand_usd: float
    spot_instance_hours: float
    on_demand_instance_hours: float
    interruptions: int
    client_errors: int

    @property
    def saving_share(self) -> float:
        return 1.0 - self.usd / self.all_on_demand_usd if self.all_on_demand_usd else math.nan

    @property
    def errors_per_interruption(self) -> float:
        return self.client_errors / self.interruptions if self.interruptions else math.nan


def run_spot_cost(
    ledger: Iterable[Mapping[str, Any]],
    *,
    end_s: float,
    time_scale: float,
    region: str = "us-east-1",
    interruptions: int = 0,
    client_errors: int = 0,
    start_s: float = 0.0,
) -> RunSpotCost:
    """Price each instance's life inside ``[start_s, end_s]`` (local seconds, turned into AWS seconds by
    ``time_scale``) at its purchase option's price; compare with the same instance-hours all on-demand.

    ``ledger`` is ``fleet.spot_interruptions().attrs["ledger"]`` (target, lifecycle, instance_type, launched_s,
    ended_s). Spot lives are priced at the snapshot's median (see :func:`spot_price`).

    Example::

        df = fleet.spot_interruptions()
        run_spot_cost(df.attrs["ledger"], end_s=300, time_scale=df.attrs["time_scale"], interruptions=len(df))
    """
    usd = all_od = spot_h = od_h = 0.0
    for row in ledger:
        a = max(float(row["launched_s"]), start_s)
        b = min(end_s if row.get("ended_s") is None else float(row["ended_s"]), end_s)
        if b <= a:
            continue
        hours = (b - a) / time_scale / 3600.0
        od = hourly_price(str(row["instance_type"]), region)
        all_od += hours * od
        if row["lifecycle"] == "spot":
            sp = spot_price(str(row["instance_type"]), region)
            if sp is None:
                raise SpecError(
                    "instance_type",
                    f"has no spot price for {row['instance_type']!r} in {region!r} (prices.csv)",
                )
            usd += hours * sp["usd_per_hour"]
            spot_h += hours
        else:
            usd += hours * od
            od_h += hours
    return RunSpotCost(usd, all_od, spot_h, od_h, interruptions, client_errors)


# An error is what the client saw fail: any error kind but "cancelled" (a request the run's own stop never sent).
_NOT_CLIENT_ERRORS = ("", "cancelled")


def _client_errors(requests: pd.DataFrame) -> pd.Series:
    """True for each request the client saw fail (errors column; old records without it: status >= 400 or none)."""
    if "error" in requests.columns:
        return ~requests["error"].fillna("").astype(str).isin(_NOT_CLIENT_ERRORS)
    status = requests["status"] if "status" in requests.columns else None
    if status is None:
        import pandas as pd

        return pd.Series(False, index=requests.index)
    return (status.fillna(0) >= 400) | (status.fillna(0) == 0)


def _first(requests: pd.DataFrame, cols: tuple[str, ...]) -> pd.Series:
    """Per request, the first of ``cols`` that is set (UTC)."""
    import pandas as pd

    out = pd.Series(pd.NaT, index=requests.index, dtype="datetime64[ns, UTC]")
    for col in reversed(cols):
        if col in requests.columns:
            t = pd.to_datetime(requests[col], utc=True)
            out = t.where(t.notna(), out)
    return out


# Events after which the balancer sends a target nothing new: HAProxy marked it down, the group terminated it, or
# it was deregistered (mlops_lb/local/asg.py emits them; AWS's target health gives the same kinds).
_OUT_OF_SERVICE = ("unhealthy", "terminate", "deregistered")


def interruption_errors(
    interruptions: pd.DataFrame,
    requests: pd.DataFrame,
    *,
    events: pd.DataFrame | None = None,
    detect_s: float = 0.0,
) -> pd.DataFrame:
    """Client-visible errors attributed to each spot interruption of a run.

    ``interruptions`` is a ``fleet.spot_interruptions()`` frame (or a bundle's ``spot_interruptions``) with UTC
    ``<moment>_at`` columns; ``requests`` the run's load records. A failed request belongs to an interruption
    when the interrupted target answered it (``target``, from ``X-Target-Id``) after the interruption began, or,
    without that target (a refused or reset connection, a balancer's 503), when it was **sent** inside the
    interruption's window: from the notice until the balancer stopped routing to the reclaimed target, i.e. its
    first ``unhealthy``/``terminate``/``deregistered`` event at or after the reclaim in ``events``, else the
    reclaim plus ``detect_s`` (the health checks' time to mark a dead target down); with no reclaim yet, the end
    of the run. Overlapping windows give an error to the earliest. ``attrs["unattributed"]`` counts the run's
    other errors.

    Columns: target, notice_at, notice_to_deregistered_s, notice_to_replacement_healthy_s, sent_after_notice
    (requests the target was sent after its notice; the agent's deregistration makes it ~0), client_errors.

    Example::

        interruption_errors(bundle.spot_interruptions, bundle.requests, events=bundle.events)["client_errors"]
    """
    import pandas as pd

    cols = ["target", "notice_at", "notice_to_deregistered_s", "notice_to_replacement_healthy_s",
            "sent_after_notice", "client_errors"]  # fmt: skip
    if not len(interruptions):
        out = pd.DataFrame(columns=cols)
        out.attrs["unattributed"] = int(_client_errors(requests).sum()) if len(requests) else 0
        return out
    rows = interruptions.reset_index(drop=True)

    def utc(col: str) -> pd.Series:
        if col not in rows.columns:
            return pd.Series(pd.NaT, index=rows.index, dtype="datetime64[ns, UTC]")
        return pd.to_datetime(rows[col], utc=True)

    targets = rows["target"].astype(str)
    began = utc("triggered_at").fillna(utc("rebalance_at")).fillna(utc("notice_at"))
    starts = utc("notice_at").fillna(began)
    reclaimed = utc("terminated_at")
    ends = reclaimed + pd.Timedelta(seconds=max(float(detect_s), 0.0))
    if events is not None and len(events) and {"timestamp", "kind", "target"} <= set(events.columns):
        out_ev = events[events["kind"].isin(_OUT_OF_SERVICE)]
        ev_t = pd.to_datetime(out_ev["timestamp"], utc=True)
        ev_target = out_ev["target"].astype(str)
        for i, (tgt, t) in enumerate(zip(targets, reclaimed, strict=True)):
            if pd.notna(t):
                later = ev_t[(ev_target == tgt) & (ev_t >= t)]
                if len(later):
                    ends[i] = later.min()
    errors = [0] * len(rows)
    sent_after = [0] * len(rows)
    unattributed = 0
    if len(requests):
        req_target = (
            requests["target"].fillna("").astype(str)
            if "target" in requests.columns
            else pd.Series("", index=requests.index)
        )
        answered = _first(requests, ("done_at", "sent_at", "intended_at"))
        sent = _first(requests, ("sent_at", "intended_at"))
        failed = _client_errors(requests)
        for i, (tgt, notice) in enumerate(zip(targets, starts, strict=True)):
            if pd.notna(notice):
                sent_after[i] = int(((req_target == tgt) & (sent >= notice)).sum())
        index_of = {t: i for i, t in enumerate(targets)}
        order = sorted(range(len(rows)), key=lambda i: (pd.isna(starts[i]), starts[i]))
        for tgt, done, t in zip(req_target[failed], answered[failed], sent[failed], strict=True):
            own = index_of.get(tgt)
            if own is not None and pd.notna(done) and (pd.isna(began[own]) or done >= began[own]):
                errors[own] += 1
                continue
            for j in order:
                if (
                    pd.notna(t)
                    and pd.notna(starts[j])
                    and t >= starts[j]
                    and (pd.isna(ends[j]) or t <= ends[j])
                ):
                    errors[j] += 1
                    break
            else:
                unattributed += 1

    def num(col: str) -> list[float]:
        if col not in rows.columns:
            return [math.nan] * len(rows)
        return [float(v) if v is not None and v == v else math.nan for v in rows[col]]

    out = pd.DataFrame(
        {
            "target": targets,
            "notice_at": starts,
            "notice_to_deregistered_s": num("notice_to_deregistered_s"),
            "notice_to_replacement_healthy_s": num("notice_to_replacement_healthy_s"),
            "sent_after_notice": sent_after,
            "client_errors": errors,
        }
    )
    out.attrs["unattributed"] = unattributed
    return out


def ledger_cost(
    ledger: pd.DataFrame,
    *,
    start: Any,
    end: Any,
    region: str = "us-east-1",
    interruptions: int = 0,
    client_errors: int = 0,
) -> RunSpotCost:
    """:func:`run_spot_cost` of a bundle's ``spot_ledger`` over the run's window ``[start, end]`` (UTC).

    The ledger's rows carry local seconds (``launched_s``/``ended_s``), their UTC ``launched_at`` and the
    fleet's ``time_scale``: the window is turned into the ledger's local seconds, lives still open when the
    ledger was saved end at ``end``.

    Example::

        ledger_cost(bundle.spot_ledger, start=bundle.window[0], end=bundle.window[1]).saving_share
    """
    import pandas as pd

    if not len(ledger):
        return RunSpotCost(0.0, 0.0, 0.0, 0.0, interruptions, client_errors)
    first = ledger.iloc[0]
    t0 = pd.to_datetime(first["launched_at"], utc=True) - pd.Timedelta(seconds=float(first["launched_s"]))

    def utc(t: Any) -> pd.Timestamp:
        ts = pd.Timestamp(t)
        return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")

    start_s = (utc(start) - t0).total_seconds()
    end_s = (utc(end) - t0).total_seconds()
    rows: list[dict[str, Any]] = [
        {
            **{str(k): v for k, v in r.items()},
            "ended_s": None if r.get("ended_s") is None or r["ended_s"] != r["ended_s"] else r["ended_s"],
        }
        for r in ledger.to_dict("records")
    ]
    return run_spot_cost(
        rows,
        end_s=end_s,
        start_s=start_s,
        time_scale=float(first.get("time_scale") or 1.0),
        region=region,
        interruptions=interruptions,
        client_errors=client_errors,
    )
