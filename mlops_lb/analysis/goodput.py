"""Goodput per step of a sweep or step run: the share of each step's requests that met every SLO bound.

A function of data (the plots draw it; the report and notebooks read it as a table).

Example::

    from mlops_lb.analysis import goodput_steps
    goodput_steps(result.requests(), result.intervals(), {"ttft_s": 0.5})
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["goodput_steps"]


def _frame(obj: Any, name: str) -> pd.DataFrame:
    """A DataFrame itself, or ``obj.<name>`` (attribute of a bundle, or method of a LoadResult)."""
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        return obj
    val = getattr(obj, name, None)
    if callable(val):
        val = val()
    if isinstance(val, pd.DataFrame):
        return val
    raise TypeError(f"expected a DataFrame or an object with .{name} (got {type(obj).__name__})")


def _utc(s: pd.Series) -> pd.Series:
    import pandas as pd

    return pd.to_datetime(s, utc=True)


def goodput_steps(requests: Any, intervals: Any, slo: Any = None) -> pd.DataFrame:
    """Per step of a sweep or step run: ``rate`` offered, ``requests``, ``meeting_slo`` and ``goodput_rps``.

    A request belongs to the step it was scheduled in (its intended send time); goodput is the step's rate times
    the share of its requests that succeeded and met every bound of ``slo`` (``ttft_s``, ``tpot_s``,
    ``latency_s``; None: success alone). Empty without ``step_rps`` in the intervals.

    Example::

        goodput_steps(result.requests(), result.intervals(), {"ttft_s": 0.5})
    """
    import numpy as np
    import pandas as pd

    req, iv = _frame(requests, "requests"), _frame(intervals, "intervals")
    cols = ["rate", "requests", "meeting_slo", "goodput_rps"]
    if "step_rps" not in iv.columns or not iv["step_rps"].notna().any() or not len(req):
        return pd.DataFrame(columns=cols)
    iv = iv.assign(_at=_utc(iv["interval_start"]).astype("datetime64[ns, UTC]")).sort_values("_at")
    at = _utc(req["intended_at"]).astype("datetime64[ns, UTC]")
    # the interval each request was scheduled in: the last one starting at or before its intended send
    k = np.searchsorted(iv["_at"].to_numpy(dtype="int64"), at.to_numpy(dtype="int64"), side="right") - 1
    rates = iv["step_rps"].to_numpy(dtype=float)
    r = req.assign(step_rps=np.where(k >= 0, rates[np.clip(k, 0, None)], math.nan), _at=at).sort_values("_at")
    r = r[r["step_rps"].notna()]
    err = r["error"].astype(str) if "error" in r.columns else pd.Series("", index=r.index)
    ok = r["error"].isna() | (err == "") if "error" in r.columns else pd.Series(True, index=r.index)
    meet = ok.to_numpy(dtype=bool).copy()
    for key, bound in dict(slo or {}).items():
        meet &= np.nan_to_num(r[key].to_numpy(dtype=float), nan=math.inf) <= float(bound)
    r = r.assign(_meet=meet)
    # Consecutive steps can share a rate (a step profile that comes back to it): group by the run of equal rates.
    run = (r["step_rps"] != r["step_rps"].shift()).cumsum()
    g = r.groupby(run)
    out = pd.DataFrame(
        {
            "rate": g["step_rps"].first().astype(float),
            "requests": g.size().astype(int),
            "meeting_slo": g["_meet"].sum().astype(int),
        }
    )
    out["goodput_rps"] = out["rate"] * out["meeting_slo"] / out["requests"]
    return out.reset_index(drop=True)[cols]
