"""Token economics: what a run's instance-hours cost per million output tokens, per million *good* tokens, and
per million tokens under GKE's definition, beside the request-priced figure.

Definitions (each figure says which one it is):

* **$ per 1M output tokens** = instance $ ÷ output tokens × 1e6, over the run's instance-hours.
* **$ per 1M good output tokens** = instance $ ÷ output tokens of the requests that met every SLO bound × 1e6
  (a token the user waited too long for is paid for but is not worth anything).
* **GKE's definition** (GKE Inference Quickstart / GKE Recommender ``Cost.cost_per_million_output_tokens``:
  "$/output token = GPU $/s / (1/output-to-input-cost-ratio * input tokens/s + output tokens/s)", ratio 4 unless
  told; https://cloud.google.com/python/docs/reference/google-cloud-gkerecommender/latest/google.cloud.gkerecommender_v1.types.Cost)
  = instance $ ÷ (input tokens / 4 + output tokens) × 1e6. It is lower than ours because input tokens share the cost.
* **$ per 1M requests** for request-priced fleets (a classic model server has no tokens).

A local fleet has no price: its figures are "as if priced at" the instance type named (never a recommendation of
that type; a local run says nothing about how fast that type is).

Example::

    from mlops_lb.analysis.economics import token_cost, good_tokens
    n_good, good = good_tokens(result.requests(), {"ttft_s": 1.0, "tpot_s": 0.1})
    c = token_cost(instance_type="g5.xlarge", region="us-east-1", instance_seconds=2 * 60,
                   output_tokens=result.summary()["output_tokens"], good_output_tokens=good,
                   input_tokens=12_800, requests=result.sent, good_requests=n_good, local=True)
    c.usd_per_million_good_output_tokens, c.label
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import SpecError
from .pricing import _lookup

__all__ = ["GKE_COST_DOC", "TokenCost", "good_tokens", "token_cost"]

GKE_COST_DOC = (
    "https://cloud.google.com/python/docs/reference/google-cloud-gkerecommender/latest/"
    "google.cloud.gkerecommender_v1.types.Cost"
)

# SLO keys and the per-request column each bounds (the names run_load's ``slo=`` takes).
_SLO_COLUMNS = {"ttft_s": "ttft_s", "tpot_s": "tpot_s", "latency_s": "latency_s"}


def _per_million(usd: float, n: float) -> float:
    return usd / n * 1e6 if n and n > 0 and math.isfinite(usd) else math.nan


@dataclass(frozen=True, kw_only=True)
class TokenCost:
    """A run's cost per million tokens (three definitions) and per million requests; see the module docstring.

    Example::

        c = token_cost(usd_per_hour=1.006, instance_seconds=3600, output_tokens=2_000_000,
                       good_output_tokens=1_500_000, requests=10_000, good_requests=7_500)
        c.usd_per_million_output_tokens, c.usd_per_million_good_output_tokens   # 0.503, 0.6707
    """

    instance_type: str | None
    region: str | None
    usd_per_hour: float
    price_source: str
    price_as_of: str
    instance_seconds: float
    output_tokens: int
    good_output_tokens: int | None
    input_tokens: int | None
    requests: int
    good_requests: int | None
    local: bool
    output_input_cost_ratio: float = 4.0

    @property
    def usd(self) -> float:
        """Instance dollars of the run (instance-hours × hourly price; the load balancer is not included)."""
        return self.instance_seconds / 3600.0 * self.usd_per_hour

    @property
    def usd_per_million_output_tokens(self) -> float:
        """Instance $ ÷ output tokens × 1e6 (NaN without tokens)."""
        return _per_million(self.usd, self.output_tokens)

    @property
    def usd_per_million_good_output_tokens(self) -> float:
        """Instance $ ÷ output tokens of requests that met the SLO × 1e6 (NaN without an SLO count)."""
        return _per_million(self.usd, self.good_output_tokens or 0)

    @property
    def usd_per_million_tokens_gke(self) -> float:
        """GKE's definition: $ ÷ (input tokens / ratio + output tokens) × 1e6 (NaN without input tokens)."""
        if self.input_tokens is None:
            return math.nan
        return _per_million(self.usd, self.input_tokens / self.output_input_cost_ratio + self.output_tokens)

    @property
    def usd_per_million_requests(self) -> float:
        """Instance $ ÷ requests × 1e6, for request-priced fleets."""
        return _per_million(self.usd, self.requests)

    @property
    def label(self) -> str:
        """Where the price came from, e.g. ``as if priced at g5.xlarge (us-east-1, 1.006 $/h, as of 2026-12-06)``."""
        what = self.instance_type or "a given price"
        where = f"{self.region}, " if self.region else ""
        head = "as if priced at" if self.local else "priced at"
        return f"{head} {what} ({where}{self.usd_per_hour:g} $/h, as of {self.price_as_of})"

    def to_dict(self) -> dict[str, Any]:
        """Inputs plus every derived figure, for a frame or a report."""
        d = asdict(self)
        for k in (
            "usd",
            "usd_per_million_output_tokens",
            "usd_per_million_good_output_tokens",
            "usd_per_million_tokens_gke",
            "usd_per_million_requests",
            "label",
        ):
            d[k] = getattr(self, k)
        return d

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) rows for a summary or report table; token rows only when the run had tokens."""
        rows = [("cost basis", self.label), ("instance $", f"{self.usd:.6f}")]
        if self.output_tokens > 0:
            rows += [
                ("$ / 1M output tokens", f"{self.usd_per_million_output_tokens:.4f}"),
                ("$ / 1M good output tokens (met SLO)", f"{self.usd_per_million_good_output_tokens:.4f}"),
            ]
            if self.input_tokens is not None:  # GKE's definition needs the input tokens
                rows.append(
                    (
                        f"$ / 1M tokens, GKE (input/{self.output_input_cost_ratio:g} + output)",
                        f"{self.usd_per_million_tokens_gke:.4f}",
                    )
                )
        rows.append(("$ / 1M requests", f"{self.usd_per_million_requests:.4f}"))
        return rows

    def __repr__(self) -> str:
        return "TokenCost(" + "; ".join(f"{k} {v}" for k, v in self.rows()) + ")"


def token_cost(
    *,
    instance_seconds: float,
    output_tokens: int,
    requests: int,
    instance_type: str | None = None,
    region: str = "us-east-1",
    usd_per_hour: float | None = None,
    good_output_tokens: int | None = None,
    good_requests: int | None = None,
    input_tokens: int | None = None,
    local: bool = False,
    output_input_cost_ratio: float = 4.0,
) -> TokenCost:
    """Price a run's instance-seconds and tokens. Give ``instance_type`` (looked up, with its source and date) or
    ``usd_per_hour``; a local fleet passes ``local=True`` so every figure reads "as if priced at <type>".

    Raises :class:`SpecError` naming the field for a negative count or an unknown type.

    Example::

        token_cost(instance_type="g6.xlarge", instance_seconds=120, output_tokens=40_000, requests=800,
                   good_output_tokens=36_000, good_requests=720, local=True).usd_per_million_good_output_tokens
    """
    for name, v in (
        ("instance_seconds", instance_seconds),
        ("output_tokens", output_tokens),
        ("requests", requests),
    ):
        if not (isinstance(v, (int, float)) and v >= 0 and math.isfinite(v)):
            raise SpecError(name, f"must be a finite number >= 0 (got {v!r})")
    if not (output_input_cost_ratio > 0):
        raise SpecError("output_input_cost_ratio", f"must be > 0 (got {output_input_cost_ratio!r})")
    if usd_per_hour is None:
        if instance_type is None:
            raise SpecError("instance_type", "give an instance type to price (or usd_per_hour=)")
        price = _lookup(instance_type, region)
        usd_h, source, as_of = price.usd_per_hour, price.source, price.as_of
    else:
        if not (usd_per_hour >= 0 and math.isfinite(usd_per_hour)):
            raise SpecError("usd_per_hour", f"must be a finite number >= 0 (got {usd_per_hour!r})")
        usd_h, source, as_of = float(usd_per_hour), "given", "given"
    return TokenCost(
        instance_type=instance_type,
        region=region if instance_type else None,
        usd_per_hour=usd_h,
        price_source=source,
        price_as_of=as_of,
        instance_seconds=float(instance_seconds),
        output_tokens=int(output_tokens),
        good_output_tokens=None if good_output_tokens is None else int(good_output_tokens),
        input_tokens=None if input_tokens is None else int(input_tokens),
        requests=int(requests),
        good_requests=None if good_requests is None else int(good_requests),
        local=local,
        output_input_cost_ratio=float(output_input_cost_ratio),
    )


def good_tokens(requests: Any, slo: Mapping[str, float] | None) -> tuple[int, int]:
    """(requests, output tokens) of the successful requests that met every bound of ``slo``.

    ``slo`` keys are those ``run_load(slo=)`` takes: ``ttft_s``, ``tpot_s``, ``latency_s`` (checked against the
    per-request columns of the same names). As in the load engine's own goodput count, a missing value (NaN, e.g.
    no TPOT for a one-token answer) fails its bound, so these counts equal ``summary()["requests_meeting_slo"]``.
    Without an SLO every successful request is good.

    Example::

        good_tokens(result.requests(), {"ttft_s": 0.5, "tpot_s": 0.05})   # (712, 30412)
    """
    import numpy as np

    df = requests
    if df is None or len(df) == 0:
        return 0, 0
    if "error" in df.columns:
        err = df["error"]
        ok = np.array(err.isna() | (err.astype(str).isin(["", "None", "ok"])), dtype=bool)
    else:
        ok = np.ones(len(df), dtype=bool)
    for key, bound in (slo or {}).items():
        col = _SLO_COLUMNS.get(key)
        if col is None:
            raise SpecError("slo", f"has unknown key {key!r} (known: {', '.join(sorted(_SLO_COLUMNS))})")
        if col not in df.columns:
            raise SpecError("slo", f"bounds {key!r} but the run has no {col!r} column (was it streamed?)")
        ok &= df[col].to_numpy(dtype=float) <= float(bound)  # NaN compares False: it fails, as in the engine
    tokens = df["output_tokens"].to_numpy() if "output_tokens" in df.columns else np.zeros(len(df))
    return int(ok.sum()), int(np.asarray(tokens)[ok].sum())
