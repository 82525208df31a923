"""LoadResult: per-request records and per-interval HDR summaries of one load run.

Percentiles come from HDR histograms (microseconds, 3 significant figures) and are reported in seconds.
*Corrected* latency runs from the intended send time, *uncorrected* (service time) from the actual send.
Percentiles cover requests that got an HTTP response (any status); requests that failed without one (timeout,
connect, reset) are counted in the error columns instead. An interval holds the requests that *completed* in it.

Example::

    result = run_load(url, constant(100, 10), payloads=[b"{}"])
    result                      # LoadResult(constant 100 rps for 10 s: 1,000 sent, 0 errors, p99 3.1 ms …)
    result.intervals()[["interval_start", "achieved_rps", "p99_s", "p99_uncorrected_s"]]
    result.summary()["p99_s"]
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from ._engine import ERROR_KINDS, new_histogram

if TYPE_CHECKING:
    import pandas as pd

    from .profiles import LoadProfile

__all__ = ["INTERVAL_COLUMNS", "REQUEST_COLUMNS", "LoadResult", "hist_percentiles"]

REQUEST_COLUMNS = (
    "intended_at", "sent_at", "done_at", "latency_s", "service_s", "lag_s", "status", "error", "bytes", "target",
    "worker",
)  # fmt: skip
_PCTS = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))
INTERVAL_COLUMNS = (
    "interval_start", "offered_rps", "achieved_rps", "sent", "ok", "errors",
    *(f"err_{k}" for k in ERROR_KINDS[1:]),
    *(f"{p}_s" for p, _ in _PCTS), "max_s",
    *(f"{p}_uncorrected_s" for p, _ in _PCTS), "max_uncorrected_s",
    "lag_p99_s", "step_rps",
)  # fmt: skip


def hist_percentiles(hist: Any, suffix: str = "") -> dict[str, float]:
    """p50/p90/p99/p99.9/max of a µs histogram, in seconds (NaN when empty), keyed ``p50_s`` … ``max_s``."""
    out: dict[str, float] = {}
    empty = hist.get_total_count() == 0
    for name, p in _PCTS:
        out[f"{name}{suffix}_s"] = math.nan if empty else hist.get_value_at_percentile(p) / 1e6
    out[f"max{suffix}_s"] = math.nan if empty else hist.get_max_value() / 1e6
    return out


def _fmt_s(v: float) -> str:
    if v != v:
        return "–"
    return f"{v * 1e3:.1f} ms" if v < 1 else f"{v:.2f} s"


class LoadResult:
    """The outcome of :func:`mlops_lb.load.run_load`: records, interval summaries, histograms and validity.

    Attributes: ``profile``, ``url``, ``started_at`` (UTC datetime of schedule offset 0), ``stopped`` (Stop,
    KeyboardInterrupt or a sweep bound ended the run early), ``stop_reason``, ``valid``, ``invalid_reasons``,
    ``lost_workers`` (worker id -> requests of its share that never came back), ``loop`` ("open").

    Example::

        r = run_load(url, ramp(10, 200, 30))
        if not r.valid:
            print(r.invalid_reasons)
        r.requests().groupby("target").size()
    """

    loop = "open"

    def __init__(
        self,
        *,
        url: str,
        profile: LoadProfile,
        epoch: float,
        records: Mapping[str, np.ndarray],
        intervals: Sequence[Mapping[str, Any]],
        hists: tuple[Any, Any, Any],
        scheduled: int,
        due: int,
        duration_s: float,
        stopped: bool,
        stop_reason: str,
        max_lag_p99_s: float,
        steps: Sequence[Mapping[str, Any]] = (),
        lost_workers: Mapping[int, int] | None = None,
        workers: int = 1,
    ) -> None:
        self.url = url
        self.profile = profile
        self.epoch = epoch
        self.started_at = datetime.fromtimestamp(epoch, tz=timezone.utc)
        self._rec = dict(records)
        self._intervals = [dict(r) for r in intervals]
        self._hist_corr, self._hist_unc, self._hist_lag = hists
        self.scheduled = scheduled
        self.due = due
        self.duration_s = duration_s
        self.stopped = stopped
        self.stop_reason = stop_reason
        self.max_lag_p99_s = max_lag_p99_s
        self._steps = [dict(s) for s in steps]
        self.lost_workers = dict(lost_workers or {})
        self.workers = workers
        sent = self._rec["sent"]
        self.sent = int(np.count_nonzero(~np.isnan(sent)))
        reasons: list[str] = []
        if due and self.sent < 0.99 * due:
            reasons.append(
                f"sent {self.sent:,} of {due:,} scheduled requests ({self.sent / due:.1%} < 99%): the generator "
                "could not keep its schedule (more connections or workers?)"
            )
        lag_p99 = self.lag_p99_s
        if lag_p99 == lag_p99 and lag_p99 > max_lag_p99_s:
            reasons.append(
                f"schedule lag p99 {lag_p99 * 1e3:.1f} ms > {max_lag_p99_s * 1e3:g} ms: sends were late, the "
                "generator (not only the server) limited the rate"
            )
        for w, n in sorted(self.lost_workers.items()):
            reasons.append(f"worker {w} died; {n:,} requests of its share are missing")
        self.invalid_reasons = reasons
        self.valid = not reasons

    # ---------------------------------------------------------------- accessors
    @property
    def lag_p99_s(self) -> float:
        """p99 of schedule lag (actual minus intended send time), seconds."""
        if self._hist_lag.get_total_count() == 0:
            return math.nan
        return float(self._hist_lag.get_value_at_percentile(99.0) / 1e6)

    def requests(self) -> pd.DataFrame:
        """One row per scheduled request (columns :data:`REQUEST_COLUMNS`), sorted by intended time."""
        return records_frame(self._rec, self.epoch)

    def intervals(self) -> pd.DataFrame:
        """One row per interval (columns :data:`INTERVAL_COLUMNS`), times in UTC, latencies in seconds."""
        import pandas as pd

        df = pd.DataFrame(self._intervals, columns=list(INTERVAL_COLUMNS))
        df["interval_start"] = pd.to_datetime(df["interval_start"], utc=True).astype("datetime64[ns, UTC]")
        for c in INTERVAL_COLUMNS[1:]:
            if c in ("sent", "ok", "errors") or c.startswith("err_"):
                df[c] = df[c].astype("int64")
            else:
                df[c] = df[c].astype("float64")
        df.attrs["loop"] = "open"
        return df

    def histogram(self, corrected: bool = True) -> Any:
        """The merged HdrHistogram of the whole run (µs); corrected (from intended send) unless told otherwise."""
        return self._hist_corr if corrected else self._hist_unc

    def percentile_spectrum(self, corrected: bool = True) -> pd.DataFrame:
        """(percentile, latency_s) pairs from p0 to p99.999 on a log scale of 1/(1-p), for an HDR plot."""
        import pandas as pd

        hist = self.histogram(corrected)
        ks = np.linspace(0, 5, 101)
        pcts = 100 * (1 - 10.0**-ks)
        if hist.get_total_count() == 0:
            return pd.DataFrame({"percentile": pcts, "latency_s": np.nan})
        vals = [hist.get_value_at_percentile(float(p)) / 1e6 for p in pcts]
        pcts = np.append(pcts, 100.0)
        vals.append(hist.get_max_value() / 1e6)
        return pd.DataFrame({"percentile": pcts, "latency_s": vals})

    def steps(self) -> pd.DataFrame:
        """Sweep steps: ``rate``, ``p99_s``, ``error_rate``, ``passed`` (empty for other profiles)."""
        import pandas as pd

        return pd.DataFrame(self._steps, columns=["rate", "p99_s", "error_rate", "passed"])

    def _last_done_s(self) -> float:
        done = np.asarray(self._rec["done"], dtype=float)
        done = done[np.isfinite(done)]
        return float(done.max()) if done.size else 0.0

    def summary(self) -> dict[str, Any]:
        """Headline numbers as a dict (see DESIGN §2); latencies in seconds, corrected and uncorrected."""
        err = self._rec["err"]
        counts = (
            np.bincount(err.astype(np.int64), minlength=len(ERROR_KINDS)) if len(err) else np.zeros(7, int)
        )
        by_kind = {k: int(counts[i]) for i, k in enumerate(ERROR_KINDS) if i}
        responses = int(np.count_nonzero(self._rec["status"] > 0))
        dur = self.duration_s if self.duration_s > 0 else math.nan
        out: dict[str, Any] = {
            "requests": self.sent,
            "scheduled": self.scheduled,
            "responses": responses,
            "errors": int(sum(by_kind.values())),
            "errors_by_kind": by_kind,
            "offered_rps": self.due / dur if dur == dur else math.nan,
            # Over the time the responses really took: a generator or server that fell behind finishes late.
            "achieved_rps": responses / max(dur, self._last_done_s()) if dur == dur else math.nan,
            "valid": self.valid,
            "invalid_reasons": list(self.invalid_reasons),
            "stopped": self.stopped,
            "stop_reason": self.stop_reason,
            "duration_s": self.duration_s,
            "lag_p99_s": self.lag_p99_s,
        }
        out.update(hist_percentiles(self._hist_corr))
        out.update(hist_percentiles(self._hist_unc, "_uncorrected"))
        return out

    # ---------------------------------------------------------------- display
    def __repr__(self) -> str:
        from ..summary import summary_rows  # the rows every view shows (terminal, panel, report)

        head = "LoadResult" if self.valid else "LoadResult *** INVALID ***"
        rows = [f"{k} {v}" for k, v in summary_rows(self.summary()) if k != "verdict"]
        return f"{head}({self.profile.describe()}: {'; '.join(rows)})"

    def _repr_html_(self) -> str:
        s = self.summary()
        rows = [
            ("profile", self.profile.describe()),
            ("url", self.url),
            ("requests sent / scheduled", f"{s['requests']:,} / {s['scheduled']:,}"),
            ("offered / achieved rps", f"{s['offered_rps']:.1f} / {s['achieved_rps']:.1f}"),
            ("errors", ", ".join(f"{k} {v:,}" for k, v in s["errors_by_kind"].items() if v) or "0"),
            *(
                (f"{p} corrected / uncorrected", f"{_fmt_s(s[f'{p}_s'])} / {_fmt_s(s[f'{p}_uncorrected_s'])}")
                for p in ("p50", "p90", "p99", "p999", "max")
            ),
            ("schedule lag p99", _fmt_s(s["lag_p99_s"])),
        ]
        if self.stopped:
            rows.append(("stopped", self.stop_reason))
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                       for k, v in rows)  # fmt: skip
        banner = ""
        if not self.valid:
            reasons = "<br>".join(html.escape(r) for r in self.invalid_reasons)
            banner = f"<p style='color:#b00;font-weight:bold'>INVALID RUN: {reasons}</p>"
        return f"<div>{banner}<table>{body}</table></div>"


def records_frame(rec: Mapping[str, np.ndarray], epoch: float) -> pd.DataFrame:
    """Per-request arrays (offsets in seconds from ``epoch``) -> the ``requests()`` DataFrame."""
    import pandas as pd

    base = pd.Timestamp(epoch, unit="s", tz="UTC")

    def at(offsets: np.ndarray) -> pd.Series:
        return base + pd.to_timedelta(offsets, unit="s")

    intended, sent, done = rec["intended"], rec["sent"], rec["done"]
    df = pd.DataFrame(
        {
            "intended_at": at(intended),
            "sent_at": at(sent),
            "done_at": at(done),
            "latency_s": done - intended,
            "service_s": done - sent,
            "lag_s": sent - intended,
            "status": rec["status"].astype("int64"),
            "error": np.asarray(ERROR_KINDS, dtype=object)[rec["err"].astype(np.int64)],
            "bytes": rec["bytes"].astype("int64"),
            "target": rec["target"].astype(str) if len(rec["target"]) else rec["target"].astype(object),
            "worker": rec["worker"].astype("int64"),
        }
    )
    return df


def empty_hists() -> tuple[Any, Any, Any]:
    """Three empty µs histograms: corrected latency, uncorrected latency, schedule lag."""
    return new_histogram(), new_histogram(), new_histogram()
