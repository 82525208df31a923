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
