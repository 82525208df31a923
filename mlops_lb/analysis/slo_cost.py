"""Scale-out's price in missed SLOs: for each scale-out, the requests (and output tokens) that missed the SLO before
the decision, between the decision and the new target's first passing check, and after it — measured — plus what a
warm pool or an earlier decision would have saved under a stated latency model.

Phases of scale-out *k* (decision at ``D``, new target healthy at ``H``, from :func:`scale_out_waterfall`), by each
request's *intended* send time:

* ``before``: from the previous scale-out's healthy time (or the run's first request) up to ``D``;
* ``decision_to_healthy``: ``[D, H)``;
* ``after``: from ``H`` to the next scale-out's decision (or the run's end).

**Latency model of the estimates** (an assumption, stated with every number): a request intended while the capacity
the decision asked for was not yet serving misses the SLO *because of* that gap, and would have met it had the
capacity been there. So a warm pool whose instances become healthy ``warm_healthy_s`` after the decision saves the
misses intended in ``[D + warm_healthy_s, H)``; a decision ``earlier_s`` sooner (a lower target) also saves the
misses intended in ``[D - earlier_s, D)``. Misses with the capacity already there (``after``) are not attributed to
the scale-out. The model ignores the backlog a late target leaves behind, so savings are a lower bound when queues
drain slowly and an upper bound when misses had other causes.

Example::

    from mlops_lb.analysis.slo_cost import scale_out_slo_cost
    scale_out_slo_cost(bundle.events, bundle.requests, slo={"ttft_s": 1.0}, warm_healthy_s=10)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import SpecError
from .waterfall import scale_out_waterfall

__all__ = ["LATENCY_MODEL", "scale_out_slo_cost"]

LATENCY_MODEL = (
    "a request intended while the decided capacity was not yet serving misses because of that gap and would have met "
    "the SLO with the capacity in place; backlog left behind is ignored"
)


def _missed(requests: Any, slo: Mapping[str, float]) -> Any:
    import numpy as np

    err = requests["error"].astype(str) if "error" in requests.columns else None
    ok = np.ones(len(requests), bool) if err is None else np.isin(err.to_numpy(), ["", "None", "nan"])
    met = ok.copy()
    for key, bound in slo.items():
        if key not in requests.columns:
            raise SpecError("slo", f"bounds {key!r} but the requests have no such column")
        met &= requests[key].to_numpy(dtype=float) <= float(bound)
    return ~met


def scale_out_slo_cost(
    events: Any,
    requests: Any,
    *,
    slo: Mapping[str, float],
    warm_healthy_s: float | None = None,
    earlier_s: float | None = None,
) -> Any:
    """One row per scale-out: missed requests and tokens per phase, and the estimated savings (see module doc).

    Columns: ``scale_out_at``, ``target``, ``missed_before``, ``missed_decision_to_healthy``, ``missed_after`` (and
    the same with ``_tokens``: output tokens of the missed requests), ``requests_decision_to_healthy``,
    ``saved_by_warm_pool``, ``saved_by_earlier_decision`` (NaN when not asked), ``latency_model``.

    Example::

        scale_out_slo_cost(fleet.events(), result.requests(), slo={"ttft_s": 1.0}, warm_healthy_s=15, earlier_s=60)
    """
    import numpy as np
    import pandas as pd

    if not slo:
        raise SpecError("slo", "must bound at least one of ttft_s, tpot_s, latency_s")
    wf = scale_out_waterfall(events, requests)
    if wf.empty or requests is None or len(requests) == 0:
        return pd.DataFrame()
    t = pd.to_datetime(requests["intended_at"], utc=True)
    missed = _missed(requests, slo)
    tokens = requests["output_tokens"].to_numpy() if "output_tokens" in requests.columns else np.zeros(len(t))
    wf = wf.sort_values("scale_out_at").drop_duplicates("scale_out_at").reset_index(drop=True)
    start, end = t.min(), t.max() + pd.Timedelta(seconds=1e-6)
    rows = []
    for i, r in wf.iterrows():
        d = pd.Timestamp(r["scale_out_at"])
        h = pd.Timestamp(r["healthy_at"]) if pd.notna(r["healthy_at"]) else end
        prev_h = (
            pd.Timestamp(wf.loc[i - 1, "healthy_at"])
            if i > 0 and pd.notna(wf.loc[i - 1, "healthy_at"])
            else start
        )
        nxt = pd.Timestamp(wf.loc[i + 1, "scale_out_at"]) if i + 1 < len(wf) else end

        def count(a: Any, b: Any) -> tuple[int, int, int]:
            m = ((t >= a) & (t < b)).to_numpy()
            return int((m & missed).sum()), int(tokens[m & missed].sum()), int(m.sum())

        mb, tb, _ = count(prev_h, d)
        md, td, nd = count(d, h)
        ma, ta, _ = count(h, nxt)
        row = {
            "scale_out_at": d, "target": r["target"], "missed_before": mb, "missed_before_tokens": tb,
            "missed_decision_to_healthy": md, "missed_decision_to_healthy_tokens": td,
            "requests_decision_to_healthy": nd, "missed_after": ma, "missed_after_tokens": ta,
        }  # fmt: skip
        row["saved_by_warm_pool"] = (
            count(d + pd.Timedelta(seconds=warm_healthy_s), h)[0] if warm_healthy_s is not None else np.nan
        )
        row["saved_by_earlier_decision"] = (
            count(max(prev_h, d - pd.Timedelta(seconds=earlier_s)), d)[0] if earlier_s is not None else np.nan
        )
        row["latency_model"] = LATENCY_MODEL
        rows.append(row)
    return pd.DataFrame(rows)
