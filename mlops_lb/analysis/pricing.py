"""On-demand prices: a small dated table shipped in the package, optionally refreshed from the AWS Pricing API.

The table (``mlops_lb/data/prices.csv``: region, instance_type, usd_per_hour, as_of, market, zone, source) holds
Linux on-demand list prices for t3 and the GPU/accelerator families people serve on (g4dn, g5, g6, g6e, inf1) in
us-east-1, us-west-2 and eu-west-1 where a cited figure exists, a few *spot* rows as a dated snapshot for one zone
each, and the Application Load Balancer rows ``alb`` (per load balancer hour) and ``alb_lcu`` (per LCU-hour). Every
row carries its source URL and the date it was read (a test enforces both); a type without a cited price is left
out rather than guessed. Prices change: :func:`prices` (``ml.aws.prices``) refreshes on-demand prices from the
Price List API and spot prices from ``DescribeSpotPriceHistory`` and says where each figure came from.

Example::

    from mlops_lb.analysis import hourly_price
    hourly_price("t3.small", "us-east-1")          # 0.0208
    alb_hourly_cost(rps=200, region="us-east-1")    # ALB hour + LCU estimate, USD per hour
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from ..errors import MetricsError, SpecError

__all__ = [
    "ALB_HOUR",
    "ALB_LCU_HOUR",
    "Price",
    "RunCost",
    "alb_hourly_cost",
    "estimate_lcu",
    "hourly_price",
    "price_table",
    "prices",
    "refresh_prices_from_aws",
    "refresh_spot_prices_from_aws",
    "register_price",
    "run_cost",
    "spot_snapshot",
]

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

ALB_HOUR = "alb"
ALB_LCU_HOUR = "alb_lcu"

# The Pricing API's human-readable location names for the regions we refresh (its `location` attribute).
_LOCATIONS: Mapping[str, str] = {
    "us-east-1": "US East (N. Virginia)",
    "us-east-2": "US East (Ohio)",
    "us-west-2": "US West (Oregon)",
    "eu-west-1": "EU (Ireland)",
    "eu-central-1": "EU (Frankfurt)",
    "ap-south-1": "Asia Pacific (Mumbai)",
}


@dataclass(frozen=True)
class Price:
    """One row of the price table.

    Example::

        Price("us-east-1", "t3.small", 0.0208, "2026-12-06", source="https://...")
    """

    region: str
    instance_type: str
    usd_per_hour: float
    as_of: str
    source: str = ""
    market: str = "on_demand"
    zone: str = ""


# Prices added at run time (register_price / refresh_prices_from_aws) win over the shipped table.
_overrides: dict[tuple[str, str], Price] = {}


@lru_cache(maxsize=1)
def _shipped_rows() -> tuple[Price, ...]:
    text = files("mlops_lb").joinpath("data").joinpath("prices.csv").read_text()
    rows = csv.DictReader(line for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return tuple(
        Price(
            r["region"],
            r["instance_type"],
            float(r["usd_per_hour"]),
            r["as_of"],
            source=r.get("source") or "",
            market=r.get("market") or "on_demand",
            zone=r.get("zone") or "",
        )
        for r in rows
    )


def _shipped() -> dict[tuple[str, str], Price]:
    return {(p.region, p.instance_type): p for p in _shipped_rows() if p.market == "on_demand"}


def spot_snapshot() -> list[Price]:
    """The shipped spot rows: a dated, cited snapshot for one zone each (never a live price).

    Spot prices move with supply and demand; use :func:`prices` with ``spot=True`` for current ones.

    Example::

        [(p.zone, p.usd_per_hour, p.as_of) for p in spot_snapshot() if p.instance_type == "g5.xlarge"]
    """
    return [p for p in _shipped_rows() if p.market == "spot"]


def price_table() -> list[Price]:
    """Every known price (shipped table plus registered/refreshed ones), sorted by region and type.

    Example::

        [p for p in price_table() if p.region == "eu-west-1"]
    """
    merged = {**_shipped(), **_overrides}
    return sorted(merged.values(), key=lambda p: (p.region, p.instance_type))


def register_price(
    instance_type: str, region: str, usd_per_hour: float, *, as_of: str = "user", source: str = "user"
) -> Price:
    """Add or replace a price for this process (e.g. a type the shipped table lacks).

    Example::

        register_price("p5.48xlarge", "us-east-1", 98.32, as_of="2026-12-01", source="my invoice")
    """
    if not (isinstance(usd_per_hour, (int, float)) and usd_per_hour >= 0 and math.isfinite(usd_per_hour)):
        raise SpecError("usd_per_hour", f"must be a finite number >= 0 (got {usd_per_hour!r})")
    p = Price(region, instance_type, float(usd_per_hour), as_of, source=source)
    _overrides[(region, instance_type)] = p
    return p


def _lookup(instance_type: str, region: str) -> Price:
    key = (region, instance_type)
    if key in _overrides:
        return _overrides[key]
    table = _shipped()
    if key in table:
        return table[key]
    known = sorted({t for (r, t) in table if r == region and t not in (ALB_HOUR, ALB_LCU_HOUR)})
    regions = sorted({r for (r, _) in table})
    where = (
        f"known types in {region}: {', '.join(known)}" if known else f"known regions: {', '.join(regions)}"
    )
    raise SpecError(
        "instance_type",
        f"has no price for {instance_type!r} in {region!r} ({where}). Add one with "
        f"mlops_lb.analysis.pricing.register_price({instance_type!r}, {region!r}, usd_per_hour), "
        "fetch it with refresh_prices_from_aws(...), or add a row to mlops_lb/data/prices.csv",
    )


def hourly_price(instance_type: str, region: str = "us-east-1") -> float:
    """On-demand USD per hour of ``instance_type`` in ``region``; SpecError naming how to add a missing one.

    Example::

        hourly_price("g5.xlarge", "eu-west-1")   # 1.123
    """
    return _lookup(instance_type, region).usd_per_hour


def estimate_lcu(
    rps: float,
    *,
    bytes_per_request: float = 2_000.0,
    requests_per_connection: float = 100.0,
    connection_duration_s: float = 60.0,
    rule_evaluations_per_request: float = 1.0,
) -> float:
    """ALB Load Balancer Capacity Units used at a steady ``rps``: the largest of AWS's four dimensions.

    One LCU is 25 new connections/s, 3,000 active connections/min, 1 GB processed/hour (EC2 targets), or
    1,000 rule evaluations/s beyond the 10 free rules. Defaults assume keep-alive clients (100 requests per
    connection, connections held 60 s) and small JSON bodies (2 kB request + response); one listener rule.

    Example::

        estimate_lcu(1000)   # max(0.4, 0.2, 7.2, 0.0) = 7.2 (processed bytes dominate)
    """
    if rps < 0:
        raise SpecError("rps", f"must be >= 0 (got {rps!r})")
    new_conn_per_s = rps / max(requests_per_connection, 1.0)
    active_per_min = new_conn_per_s * connection_duration_s
    gb_per_hour = rps * bytes_per_request * 3600 / 1e9
    # The first 10 rule evaluations per request are free.
    rules_per_s = rps * max(0.0, rule_evaluations_per_request - 10)
    return max(new_conn_per_s / 25.0, active_per_min / 3000.0, gb_per_hour / 1.0, rules_per_s / 1000.0)


def alb_hourly_cost(rps: float, region: str = "us-east-1", **lcu_options: Any) -> float:
    """USD per hour of one ALB carrying ``rps``: the hourly charge plus the estimated LCU-hours (AWS bills the
    busiest LCU dimension each hour, fractionally).

    Example::

        alb_hourly_cost(1000, "us-east-1")   # 0.0225 + 7.2 * 0.008 = 0.0801
    """
    return hourly_price(ALB_HOUR, region) + estimate_lcu(rps, **lcu_options) * hourly_price(
        ALB_LCU_HOUR, region
    )


def _product_filters(instance_type: str, location: str) -> list[dict[str, str]]:
    pairs = {
        "instanceType": instance_type,
        "location": location,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
    }
    return [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in pairs.items()]


def _on_demand_usd(price_item: str) -> float | None:
    doc = json.loads(price_item)
    for term in doc.get("terms", {}).get("OnDemand", {}).values():
        for dim in term.get("priceDimensions", {}).values():
            if dim.get("unit") == "Hrs":
                usd = float(dim.get("pricePerUnit", {}).get("USD", "nan"))
                if math.isfinite(usd) and usd > 0:
                    return usd
    return None


def _client(client: Any, session: Any, service: str, region: str) -> Any:
    """``client`` when given, else a boto3 client of ``service`` in ``region`` from ``session`` (or a new one)."""
    if client is None:
        import boto3

        client = (session or boto3.Session()).client(service, region_name=region)
    return client


def _pages(call: Callable[..., Any], kwargs: Mapping[str, Any], failed: str, hint: str) -> Iterator[Any]:
    """The pages of an AWS API call, following ``NextToken`` while the caller reads on (a ``break`` asks no more).

    A botocore error becomes a MetricsError with the message ``failed``, AWS's error code and ``hint``.
    """
    kwargs = dict(kwargs)
    while True:
        try:
            page = call(**kwargs)
        except Exception as exc:  # botocore ClientError / BotoCoreError
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            raise MetricsError(failed, code=code, hint=hint) from exc
        yield page
        token = page.get("NextToken")
        if not token:
            return
        kwargs["NextToken"] = token


def refresh_prices_from_aws(
    instance_types: Iterable[str],
    regions: Iterable[str] = ("us-east-1",),
    *,
    session: Any = None,
    client: Any = None,
    as_of: str | None = None,
) -> list[Price]:
    """Fetch current on-demand Linux prices with the AWS Pricing API and register them for this process.

    Needs ``pricing:GetProducts``. The Pricing API lives in us-east-1 (also eu-central-1, ap-south-1); pass a
    ``client`` (e.g. one wrapped in botocore's Stubber) or a boto3 ``session``. Returns the prices it found; types
    with no match are logged and skipped.

    Example::

        refresh_prices_from_aws(["t3.small", "g5.xlarge"], ["us-east-1", "eu-west-1"])
    """
    import datetime as _dt

    client = _client(client, session, "pricing", "us-east-1")
    stamp = as_of or _dt.date.today().isoformat()
    found: list[Price] = []
    for region in regions:
        location = _LOCATIONS.get(region)
        if location is None:
            raise SpecError(
                "regions", f"has no Pricing API location for {region!r} (known: {', '.join(_LOCATIONS)})"
            )
        for itype in instance_types:
            kwargs: dict[str, Any] = {
                "ServiceCode": "AmazonEC2",
                "Filters": _product_filters(itype, location),
                "FormatVersion": "aws_v1",
                "MaxResults": 100,
            }
            usd: float | None = None
            for page in _pages(
                client.get_products,
                kwargs,
                f"Pricing GetProducts failed for {itype} in {region}",
                "allow pricing:GetProducts and call it in us-east-1",
            ):
                for item in page.get("PriceList", []):
                    usd = usd or _on_demand_usd(item)
                if usd is not None:
                    break
            if usd is None:
                logger.warning("no on-demand price found for %s in %s", itype, region)
                continue
            logger.info("price %s %s = %s USD/h", region, itype, usd)
            found.append(register_price(itype, region, usd, as_of=stamp, source=PRICE_LIST_SOURCE))
    return found


# Where refreshed figures come from (stored in Price.source so a report can say it).
PRICE_LIST_SOURCE = "aws:pricing:GetProducts (AmazonEC2, Linux, Shared, OnDemand)"
SPOT_SOURCE = "aws:ec2:DescribeSpotPriceHistory (Linux/UNIX)"


def refresh_spot_prices_from_aws(
    instance_types: Iterable[str],
    region: str = "us-east-1",
    *,
    session: Any = None,
    client: Any = None,
) -> list[Price]:
    """Current spot prices per zone from ``DescribeSpotPriceHistory`` (``ec2:DescribeSpotPriceHistory``).

    Asks for Linux/UNIX prices with ``StartTime`` now, which AWS answers with the price in effect per zone
    (documented: "If you specify a start time but not an end time, the response includes prices from the start
    time"; https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeSpotPriceHistory.html). Follows
    ``NextToken``; keeps the newest price per (type, zone). Each Price has market ``spot``, the zone, the timestamp
    AWS gave as ``as_of``, and the API as source. Spot prices are never registered for on-demand lookups.

    Example::

        refresh_spot_prices_from_aws(["g5.xlarge"], "us-east-1")
    """
    import datetime as _dt

    types = list(instance_types)
    client = _client(client, session, "ec2", region)
    kwargs: dict[str, Any] = {
        "InstanceTypes": types,
        "ProductDescriptions": ["Linux/UNIX"],
        "StartTime": _dt.datetime.now(_dt.timezone.utc),
    }
    newest: dict[tuple[str, str], tuple[Any, float]] = {}
    for page in _pages(
        client.describe_spot_price_history,
        kwargs,
        f"DescribeSpotPriceHistory failed in {region}",
        "allow ec2:DescribeSpotPriceHistory for this region",
    ):
        for item in page.get("SpotPriceHistory", []):
            key = (item["InstanceType"], item["AvailabilityZone"])
            stamp = item.get("Timestamp")
            usd = float(item["SpotPrice"])  # the API returns the price as a string
            if key not in newest or (stamp is not None and stamp > newest[key][0]):
                newest[key] = (stamp, usd)
    out = []
    for (itype, zone), (stamp, usd) in sorted(newest.items()):
        as_of = stamp.isoformat() if hasattr(stamp, "isoformat") else str(stamp)
        out.append(Price(region, itype, usd, as_of, source=SPOT_SOURCE, market="spot", zone=zone))
    logger.info("spot prices %s: %d zone prices for %s", region, len(out), ", ".join(types))
    return out


def prices(
    instance_types: Iterable[str],
    regions: Iterable[str] = ("us-east-1",),
    *,
    spot: bool = False,
    refresh: bool = True,
    session: Any = None,
    pricing_client: Any = None,
    ec2_clients: Mapping[str, Any] | None = None,
    as_of: str | None = None,
) -> pd.DataFrame:
    """Prices of ``instance_types`` in ``regions``, each row saying which source and date it came from.

    With ``refresh`` (the default) on-demand prices come from the AWS Price List API (``pricing:GetProducts``, its
    us-east-1 endpoint) and, with ``spot=True``, spot prices per zone from ``DescribeSpotPriceHistory``; types the
    API does not return fall back to the shipped, cited table (``source`` says which). ``refresh=False`` reads only
    the shipped table. Columns: region, instance_type, market, zone, usd_per_hour, as_of, source.

    Example::

        import mlops_lb as ml
        ml.aws.prices(["g5.xlarge", "g6e.xlarge"], ["us-east-1", "us-west-2"], spot=True)
    """
    import pandas as pd

    types, regs = list(instance_types), list(regions)
    rows: list[Price] = []
    fresh: dict[tuple[str, str], Price] = {}
    if refresh:
        for p in refresh_prices_from_aws(types, regs, session=session, client=pricing_client, as_of=as_of):
            fresh[(p.region, p.instance_type)] = p
    for r in regs:
        for t in types:
            if (r, t) in fresh:
                rows.append(fresh[(r, t)])
                continue
            shipped = _shipped().get((r, t))
            if shipped is not None:
                rows.append(shipped)
            else:
                logger.warning("no on-demand price for %s in %s (not in the API answer nor the table)", t, r)
    if spot:
        for r in regs:
            if refresh:
                client = (ec2_clients or {}).get(r)
                rows.extend(refresh_spot_prices_from_aws(types, r, session=session, client=client))
            else:
                rows.extend(p for p in spot_snapshot() if p.region == r and p.instance_type in types)
    cols = ["region", "instance_type", "market", "zone", "usd_per_hour", "as_of", "source"]
    return pd.DataFrame([{c: getattr(p, c) for c in cols} for p in rows], columns=cols)


@dataclass(frozen=True)
class RunCost:
    """What one run cost at list prices: instance-seconds from the in-service capacity over the run's window.

    Example::

        c = run_cost(bundle.in_window().metrics, instance_type="t3.small", duration_s=30, achieved_rps=80)
        c.usd, c.instance_hours
    """

    instance_type: str
    region: str
    usd_per_hour: float
    instance_seconds: float
    peak_instances: float
    duration_s: float
    achieved_rps: float

    @property
    def instance_hours(self) -> float:
        """Instance-hours of the run."""
        return self.instance_seconds / 3600.0

    @property
    def usd(self) -> float:
        """Instances plus the ALB hour and its LCU estimate, for the run's duration."""
        alb = alb_hourly_cost(self.achieved_rps, self.region)
        return self.instance_hours * self.usd_per_hour + self.duration_s / 3600.0 * alb

    @property
    def usd_per_hour_at_peak(self) -> float:
        """Hourly cost of the peak capacity with the ALB at the run's rate."""
        return self.peak_instances * self.usd_per_hour + alb_hourly_cost(self.achieved_rps, self.region)

    @property
    def usd_per_million_requests(self) -> float:
        """Cost of a million requests at the peak capacity and the achieved rate (NaN without traffic)."""
        if self.achieved_rps <= 0:
            return math.nan
        return self.usd_per_hour_at_peak / (self.achieved_rps * 3600.0) * 1e6


def run_cost(
    metrics: Any,
    *,
    instance_type: str,
    region: str = "us-east-1",
    duration_s: float,
    achieved_rps: float,
) -> RunCost:
    """Price a run from its MetricFrame (already cut to the run's window): in-service capacity x period.

    Falls back to desired capacity, then healthy hosts, then one instance for the run's duration. Raises
    :class:`SpecError` for an instance type the price table does not know.

    Example::

        run_cost(metrics, instance_type="t3.small", duration_s=60, achieved_rps=120).usd
    """
    import pandas as pd

    price = hourly_price(instance_type, region)
    cap = pd.DataFrame()
    if metrics is not None and len(metrics):
        target = (
            metrics["target"].astype(str)
            if "target" in metrics.columns
            else pd.Series("", index=metrics.index)
        )
        for name in ("GroupInServiceInstances", "GroupDesiredCapacity", "HealthyHostCount"):
            cap = metrics[(metrics["metric"] == name) & (target == "")]
            if len(cap):
                break
    if len(cap) > 1:
        cap = cap.sort_values("timestamp")
        step = pd.to_datetime(cap["timestamp"], utc=True).diff().dt.total_seconds().median()
        inst_s = float((cap["value"] * step).sum())
        peak = float(cap["value"].max())
    elif len(cap) == 1:
        peak = float(cap["value"].iloc[0])
        inst_s = peak * duration_s
    else:
        peak, inst_s = 1.0, duration_s
    return RunCost(instance_type, region, price, inst_s, peak, duration_s, achieved_rps)
