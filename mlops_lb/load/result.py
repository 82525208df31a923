"""LoadResult: per-request records and per-interval HDR summaries of one load run.

(Over 500 lines on purpose: LoadResult, its on-disk record store and the percentile folding are one data
contract, shared by the runner, the Ray shards, the bundle and the report.)

Percentiles come from HDR histograms (microseconds, 3 significant figures) and are reported in seconds.
Per-request records are written to disk while the run goes (a :class:`RecordStore` of Arrow parts) and read back
by ``requests()``, whole or for a time range; memory keeps the interval rows, the histograms and running totals.
*Corrected* latency runs from the intended send time, *uncorrected* (service time) from the actual send.
Percentiles cover requests that got an HTTP response (any status); requests that failed without one (timeout,
connect, reset) are counted in the error columns instead. An interval holds the requests that *completed* in it.

Example::

    result = run_load(url, constant(100, 10), payloads=[b"{}"])
    result                      # LoadResult(constant 100 rps for 10 s: 1,000 sent, 0 errors, p99 3.1 ms …)
    result.intervals()[["interval_start", "achieved_rps", "p99_s", "p99_uncorrected_s"]]
    result.summary()["p99_s"]
    result.requests(start=60, end=120)   # the requests intended between 60 s and 120 s into the run
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._owner import RECORDS_PREFIX, write_owner
from ._engine import ERROR_KINDS, new_histogram

if TYPE_CHECKING:
    import pandas as pd

    from .profiles import LoadProfile

log = logging.getLogger(__name__)

__all__ = ["INTERVAL_COLUMNS", "REQUEST_COLUMNS", "SLO_KEYS", "LoadResult", "hist_percentiles"]

REQUEST_COLUMNS = (
    "intended_at", "sent_at", "done_at", "latency_s", "service_s", "lag_s", "status", "error", "bytes", "target",
    "worker", "ttft_s", "ttft_uncorrected_s", "output_tokens", "itl_mean_s", "itl_max_s", "tpot_s",
)  # fmt: skip
_PCTS = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))
# Streaming metrics (DESIGN §9), NaN for runs or intervals without a streamed response.
STREAM_METRICS = ("ttft", "ttft_uncorrected", "itl", "tpot")


def _pct_names(prefix: str = "", suffix: str = "") -> tuple[str, ...]:
    return (*(f"{prefix}{p}{suffix}_s" for p, _ in _PCTS), f"{prefix}max{suffix}_s")


def _stream_names() -> tuple[str, ...]:
    out: list[str] = []
    for m in STREAM_METRICS:
        base, _, unc = m.partition("_")
        out += _pct_names(f"{base}_", "_uncorrected" if unc else "")
    return tuple(out)


INTERVAL_COLUMNS = (
    "interval_start", "offered_rps", "achieved_rps", "sent", "ok", "errors",
    *(f"err_{k}" for k in ERROR_KINDS[1:]),
    *_pct_names(), *_pct_names(suffix="_uncorrected"),
    "lag_p99_s", "step_rps",
    *_stream_names(), "output_tokens", "output_tokens_per_s",
)  # fmt: skip
_INT_COLUMNS = {"sent", "ok", "errors", "output_tokens"}
SLO_KEYS = ("ttft_s", "tpot_s", "latency_s")


def hist_percentiles(hist: Any, suffix: str = "", prefix: str = "") -> dict[str, float]:
    """p50/p90/p99/p99.9/max of a µs histogram, in seconds (NaN when empty or None), keyed ``p50_s`` … ``max_s``.

    ``prefix`` and ``suffix`` frame the names: ``prefix="ttft_", suffix="_uncorrected"`` gives
    ``ttft_p50_uncorrected_s`` … ``ttft_max_uncorrected_s``.
    """
    out: dict[str, float] = {}
    empty = hist is None or hist.get_total_count() == 0
    for name, p in _PCTS:
        out[f"{prefix}{name}{suffix}_s"] = math.nan if empty else hist.get_value_at_percentile(p) / 1e6
    out[f"{prefix}max{suffix}_s"] = math.nan if empty else hist.get_max_value() / 1e6
    return out


def stream_percentiles(hists: Sequence[Any]) -> dict[str, float]:
    """The streaming percentile columns from (ttft, ttft uncorrected, itl, tpot) histograms (None: empty)."""
    out: dict[str, float] = {}
    for m, h in zip(STREAM_METRICS, hists, strict=True):
        base, _, unc = m.partition("_")
        out.update(hist_percentiles(h, "_uncorrected" if unc else "", f"{base}_"))
    return out


def _fmt_s(v: float) -> str:
    if v != v:
        return "–"
    return f"{v * 1e3:.1f} ms" if v < 1 else f"{v:.2f} s"


def record_stats(rec: Mapping[str, np.ndarray], slo: Mapping[str, float]) -> dict[str, Any]:
    """The per-request totals the summary needs, from one chunk of records (added up chunk by chunk)."""
    err = rec["err"].astype(np.int64)
    ok = err == 0
    d = derived_columns(rec)
    meeting = ok.copy()
    for key, bound in slo.items():
        meeting &= d[key] <= bound  # NaN (e.g. no TTFT on a non-streamed response) fails the bound
    done = rec["done"]
    finite = done[np.isfinite(done)]
    return {
        "rows": len(err),
        "err": np.bincount(err, minlength=len(ERROR_KINDS)),
        "responses": int(np.count_nonzero(rec["status"] > 0)),
        "sent": int(np.count_nonzero(~np.isnan(rec["sent"]))),
        "last_done": float(finite.max()) if finite.size else 0.0,
        "tokens": int(d["output_tokens"][ok].sum()),
        "meeting": int(np.count_nonzero(meeting)),
    }


def add_stats(a: dict[str, Any] | None, b: dict[str, Any]) -> dict[str, Any]:
    if a is None:
        return dict(b)
    return {
        "rows": a["rows"] + b["rows"],
        "err": a["err"] + b["err"],
        "responses": a["responses"] + b["responses"],
        "sent": a["sent"] + b["sent"],
        "last_done": max(a["last_done"], b["last_done"]),
        "tokens": a["tokens"] + b["tokens"],
        "meeting": a["meeting"] + b["meeting"],
    }


class RecordStore:
    """Per-request records of a run kept on disk as they arrive (Arrow IPC parts in a temporary folder).

    The process keeps only interval rows and histograms; :meth:`frame` reads the parts back (a pyarrow dataset,
    filtered by intended time before anything is loaded). A part that cannot be written (a full disk) stays in
    memory instead, so nothing is lost. The folder is removed with the store (or at interpreter exit).

    Example::

        store = RecordStore(epoch)
        store.add(records_frame(rec, epoch))
        store.frame(start=60.0, end=120.0)     # seconds after epoch, or UTC timestamps
    """

    def __init__(self, epoch: float) -> None:
        self.epoch = epoch
        self.folder: Path | None = None
        self.parts: list[Path] = []
        self.memory: list[pd.DataFrame] = []
        self._finalizer: Any = None
        self._warned = False

    def add(self, df: pd.DataFrame) -> None:
        if not len(df):
            return
        try:
            import pyarrow as pa
            import pyarrow.feather as feather

            if self.folder is None:
                self.folder = Path(tempfile.mkdtemp(prefix=RECORDS_PREFIX))
                write_owner(self.folder)  # a killed process's folder is swept by the next session
                self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.folder), True)
            path = self.folder / f"part-{len(self.parts):06d}.arrow"
            feather.write_feather(
                pa.Table.from_pandas(df, preserve_index=False), path, compression="uncompressed"
            )
            self.parts.append(path)
        except OSError as exc:
            if not self._warned:
                log.warning("records kept in memory: cannot write %s (%s)", self.folder, exc)
                self._warned = True
            self.memory.append(df)

    def frame(self, start: Any = None, end: Any = None) -> pd.DataFrame:
        """Records with ``start <= intended_at < end`` (seconds after the epoch or timestamps), by intended time."""
        import pandas as pd

        lo, hi = self._bound(start), self._bound(end)
        frames: list[pd.DataFrame] = []
        if self.parts:
            import pyarrow as pa
            import pyarrow.dataset as ds

            flt = None
            ts = pa.timestamp("ns", "UTC")
            if lo is not None:
                flt = ds.field("intended_at") >= pa.scalar(lo.value, ts)
            if hi is not None:
                f2 = ds.field("intended_at") < pa.scalar(hi.value, ts)
                flt = f2 if flt is None else flt & f2
            table = ds.dataset([str(p) for p in self.parts], format="feather").to_table(filter=flt)
            frames.append(table.to_pandas(coerce_temporal_nanoseconds=True))
        for df in self.memory:
            m = np.ones(len(df), bool)
            if lo is not None:
                m &= (df["intended_at"] >= lo).to_numpy()
            if hi is not None:
                m &= (df["intended_at"] < hi).to_numpy()
            frames.append(df[m])
        frames = [f for f in frames if len(f)]
        if not frames:
            return records_frame(_empty_records(), self.epoch)
        out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        for c in ("intended_at", "sent_at", "done_at"):
            out[c] = out[c].astype("datetime64[ns, UTC]")
        return out.sort_values("intended_at", kind="stable").reset_index(drop=True)[list(REQUEST_COLUMNS)]

    def _bound(self, v: Any) -> Any:
        import pandas as pd

        if v is None:
            return None
        if isinstance(v, (int, float, np.integer, np.floating)):
            # the same arithmetic as records_frame, so a bound equal to an intended time selects it exactly
            return pd.Timestamp(self.epoch, unit="s", tz="UTC") + pd.to_timedelta(float(v), unit="s")
        t = pd.Timestamp(v)
        return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")

    def close(self) -> None:
        """Remove the folder now (the result's requests() is empty afterwards)."""
        if self._finalizer is not None:
            self._finalizer()
        self.parts = []
        with contextlib.suppress(Exception):
            self.memory = []


def _empty_records() -> dict[str, np.ndarray]:
    return {
        "index": np.zeros(0, np.int64), "intended": np.zeros(0), "sent": np.zeros(0), "done": np.zeros(0),
        "status": np.zeros(0, np.int16), "err": np.zeros(0, np.int8), "bytes": np.zeros(0, np.int64),
        "target": np.zeros(0, dtype=object), "worker": np.zeros(0, np.int16),
    }  # fmt: skip


class LoadResult:
    """The outcome of :func:`mlops_lb.load.run_load`: records, interval summaries, histograms and validity.

    Attributes: ``profile``, ``url``, ``started_at`` (UTC datetime of schedule offset 0), ``stopped`` (Stop,
    KeyboardInterrupt or a sweep bound ended the run early), ``stop_reason``, ``valid``, ``invalid_reasons``
    and the parallel ``invalid_kinds`` (``generator_lag``, ``connections_exhausted``, ``server_not_answering``,
    ``server_errors``, ``under_sent``), ``lost_workers`` (worker id -> requests of its share that never came
    back), ``bundle_error`` (the :class:`~mlops_lb.errors.StorageError` that stopped the run bundle, or None:
    the result itself is whole either way), ``slo``, ``loop`` ("open").

    Example::

        r = run_load(url, ramp(10, 200, 30))
        if not r.valid:
            print(r.invalid_kinds, r.invalid_reasons)
        r.requests().groupby("target").size()
    """

    loop = "open"
    #: One row per Ray shard of a ``cluster=`` run (node, pid, state, scheduled, received, lost, sent, late,
    #: lag_p99_s; see :mod:`mlops_lb.load.distributed`); None for a run on this machine.
    shards: pd.DataFrame | None = None

    def __init__(
        self,
        *,
        url: str,
        profile: LoadProfile,
        epoch: float,
        records: Mapping[str, np.ndarray] | None = None,
        intervals: Sequence[Mapping[str, Any]],
        hists: Sequence[Any],
        scheduled: int,
        due: int,
        duration_s: float,
        stopped: bool,
        stop_reason: str,
        max_lag_p99_s: float,
        steps: Sequence[Mapping[str, Any]] = (),
        lost_workers: Mapping[int, int] | None = None,
        workers: int = 1,
        connections: int | None = None,
        timeout_s: float | None = None,
        starved: int = 0,
        slo: Mapping[str, float] | None = None,
        bundle_error: Exception | None = None,
        store: RecordStore | None = None,
        stats: Mapping[str, Any] | None = None,
        cluster: str | None = None,
    ) -> None:
        self.url = url
        self.cluster = cluster
        self.profile = profile
        self.epoch = epoch
        self.started_at = datetime.fromtimestamp(epoch, tz=timezone.utc)
        # records either in memory (``records``) or on disk (``store`` with the ``stats`` of what it holds)
        self._rec = dict(records) if records is not None else None
        self._store = store
        self.slo = dict(slo or {})
        if stats is None:
            stats = record_stats(self._rec if self._rec is not None else _empty_records(), self.slo)
        self._stats = dict(stats)
        self._intervals = [dict(r) for r in intervals]
        hists = tuple(hists) + (None,) * (7 - len(hists))
        self._hist_corr, self._hist_unc, self._hist_lag = hists[:3]
        self._stream_hists = hists[3:7]
        self.scheduled = scheduled
        self.due = due
        self.duration_s = duration_s
        self.stopped = stopped
        self.stop_reason = stop_reason
        self.max_lag_p99_s = max_lag_p99_s
        self._steps = [dict(s) for s in steps]
        self.lost_workers = dict(lost_workers or {})
        self.workers = workers
        self.connections = connections
        self.timeout_s = timeout_s
        self.starved = starved
        self.bundle_error = bundle_error
        self.sent = int(self._stats["sent"])
        self.invalid_kinds, self.invalid_reasons = self._diagnose()
        self.valid = not self.invalid_reasons

    def _error_counts(self) -> dict[str, int]:
        counts = self._stats["err"]
        return {k: int(counts[i]) for i, k in enumerate(ERROR_KINDS) if i}

    def _diagnose(self) -> tuple[list[str], list[str]]:
        """Why the run is not a clean measurement, each reason naming its fix; kinds parallel the reasons.

        Server-side starvation (the server does not answer, or answers so slowly that every connection is
        busy) is told apart from generator lag (sends were late while connections were free).
        """
        kinds: list[str] = []
        reasons: list[str] = []
        by = self._error_counts()
        due, sent = self.due, self.sent
        conns = f"{self.connections}" if self.connections is not None else "?"
        tmo = f"{self.timeout_s:g}" if self.timeout_s is not None else "?"
        unanswered = by["timeout"] + by["no_connection"] + by["connect"]
        responses = int(self._stats["responses"])
        hung = by["timeout"] + by["connect"]
        if unanswered and (responses == 0 or hung > 0.01 * max(due, 1)):
            kinds.append("server_not_answering")
            reasons.append(
                f"the server did not answer {unanswered:,} of {due:,} requests ({by['timeout']:,} timed out "
                f"after timeout_s={tmo}, {by['no_connection']:,} waited timeout_s for a connection, "
                f"{by['connect']:,} could not connect): check that the target is up and accepting; this is the "
                "server's side, not the generator"
            )
        lag_p99 = self.lag_p99_s
        lagged = lag_p99 == lag_p99 and lag_p99 > self.max_lag_p99_s
        starved_share = self.starved / sent if sent else 0.0
        if (lagged or by["no_connection"]) and "server_not_answering" not in kinds:
            if starved_share >= 0.1 or by["no_connection"]:
                kinds.append("connections_exhausted")
                lag_txt = f"{lag_p99 * 1e3:.1f} ms" if lag_p99 == lag_p99 else "–"
                reasons.append(
                    f"schedule lag p99 {lag_txt} (bound {self.max_lag_p99_s * 1e3:g} ms) with every connection "
                    f"busy ({self.starved:,} of {sent:,} sends waited for one, {by['no_connection']:,} requests "
                    f"waited timeout_s={tmo} and were given up): fleet saturated; to keep offering the rate "
                    f"raise connections= (now {conns}), or offer less"
                )
            else:
                kinds.append("generator_lag")
                reasons.append(
                    f"schedule lag p99 {lag_p99 * 1e3:.1f} ms > {self.max_lag_p99_s * 1e3:g} ms while connections "
                    "were free: the generator (this machine), not the server, limited the rate; raise "
                    f"{self._generators()}, lower the rate or use a less loaded machine"
                )
        server_err = by["http_5xx"] + by["reset"]
        if server_err > 0.01 * max(sent, 1):
            kinds.append("server_errors")
            reasons.append(
                f"the fleet failed {server_err:,} of {sent:,} requests ({by['http_5xx']:,} 5xx, "
                f"{by['reset']:,} connection resets): the measured latencies describe a failing fleet; check "
                "the targets' health and logs, or scale out"
            )
        if due and sent < 0.99 * due and not {"server_not_answering", "connections_exhausted"} & set(kinds):
            kinds.append("under_sent")
            reasons.append(
                f"sent {sent:,} of {due:,} scheduled requests ({sent / due:.1%} < 99%): the generator could not "
                f"keep its schedule; raise {self._generators()} or connections= (now {conns})"
            )
        for w, n in sorted(self.lost_workers.items()):
            kinds.append("under_sent")
            reasons.append(f"worker {w} died; {n:,} requests of its share are missing: rerun the load")
        return kinds, reasons

    def _generators(self) -> str:
        """The knob that adds generators: Ray shards for a run on a cluster, worker processes otherwise."""
        if self.cluster is not None:
            return f"shards= (now {self.workers}; add nodes to the Ray cluster for more)"
        return f"workers= (now {self.workers})"

    # ---------------------------------------------------------------- accessors
    @property
    def lag_p99_s(self) -> float:
        """p99 of schedule lag (actual minus intended send time), seconds."""
        if self._hist_lag.get_total_count() == 0:
            return math.nan
        return float(self._hist_lag.get_value_at_percentile(99.0) / 1e6)

    def requests(self, start: Any = None, end: Any = None) -> pd.DataFrame:
        """One row per scheduled request (columns :data:`REQUEST_COLUMNS`), sorted by intended time.

        ``start``/``end`` (seconds after ``started_at``, or timestamps) keep ``start <= intended_at < end``;
        the records of a run live on disk and only the rows asked for are read.
        """
        if self._store is not None:
            return self._store.frame(start, end)
        assert self._rec is not None
        df = records_frame(self._rec, self.epoch)
        if start is None and end is None:
            return df
        store = RecordStore(self.epoch)
        store.memory.append(df)
        return store.frame(start, end)

    def intervals(self) -> pd.DataFrame:
        """One row per interval (columns :data:`INTERVAL_COLUMNS`), times in UTC, latencies in seconds."""
        import pandas as pd

        df = pd.DataFrame(self._intervals, columns=list(INTERVAL_COLUMNS))
        df["interval_start"] = pd.to_datetime(df["interval_start"], utc=True).astype("datetime64[ns, UTC]")
        for c in INTERVAL_COLUMNS[1:]:
            if c in _INT_COLUMNS or c.startswith("err_"):
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
        return float(self._stats["last_done"])

    def summary(self) -> dict[str, Any]:
        """Headline numbers as a dict (see DESIGN §2); latencies in seconds, corrected and uncorrected.

        Streaming keys (NaN without streamed responses): ``ttft_p50_s`` … ``ttft_max_s``,
        ``ttft_p50_uncorrected_s`` …, ``itl_p50_s`` …, ``tpot_p50_s`` …, ``output_tokens``,
        ``output_tokens_per_s``. ``requests_meeting_slo`` / ``goodput_rps``: successful requests meeting every
        bound of ``slo`` (all successful requests when no SLO was given) and their rate over the run.
        """
        by_kind = self._error_counts()
        responses = int(self._stats["responses"])
        dur = self.duration_s if self.duration_s > 0 else math.nan
        tokens = int(self._stats["tokens"])
        n_meet = int(self._stats["meeting"])
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
            "invalid_kinds": list(self.invalid_kinds),
            "stopped": self.stopped,
            "stop_reason": self.stop_reason,
            "duration_s": self.duration_s,
            "lag_p99_s": self.lag_p99_s,
            "bundle_error": str(self.bundle_error) if self.bundle_error is not None else None,
        }
        out.update(hist_percentiles(self._hist_corr))
        out.update(hist_percentiles(self._hist_unc, "_uncorrected"))
        out.update(stream_percentiles(self._stream_hists))
        out["output_tokens"] = tokens
        out["output_tokens_per_s"] = tokens / dur if dur == dur else math.nan
        out["slo"] = dict(self.slo)
        out["requests_meeting_slo"] = n_meet
        out["goodput_rps"] = n_meet / dur if dur == dur else math.nan
        return out

    def stream_histogram(self, metric: str = "ttft") -> Any:
        """The merged HdrHistogram (µs) of ``ttft``, ``ttft_uncorrected``, ``itl`` or ``tpot`` (None if no stream)."""
        return self._stream_hists[STREAM_METRICS.index(metric)]

    # ---------------------------------------------------------------- display
    def __repr__(self) -> str:
        from ..summary import summary_rows  # the rows every view shows (terminal, panel, report)

        head = "LoadResult" if self.valid else "LoadResult *** INVALID ***"
        rows = [f"{k} {v}" for k, v in summary_rows(self.summary()) if k != "verdict"]
        return f"{head}({self.profile.describe()}: {'; '.join(rows)})"

    def _repr_html_(self) -> str:
        from ..summary import html_table, summary_rows  # the rows every view shows (terminal, panel, report)

        rows = [("profile", self.profile.describe()), ("url", self.url), *summary_rows(self.summary())]
        return f"<div>{html_table(rows)}</div>"


def derived_columns(rec: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-request latency and streaming columns (seconds) from the raw record arrays (offsets from epoch).

    TTFT runs from the intended send (``ttft_uncorrected_s`` from the actual send) to the first token-bearing
    event; ``output_tokens`` is ``usage.completion_tokens`` when the server sent it, else the count of
    token-bearing events; ITL is the gap between token events (mean and max per request); TPOT is
    ``(e2e - ttft) / (output_tokens - 1)`` (DESIGN §9). Requests that did not stream get NaN and 0 tokens.
    """
    intended, sent, done = rec["intended"], rec["sent"], rec["done"]
    out = {"latency_s": done - intended}
    n = len(intended)
    if "tok_first" not in rec:
        nan = np.full(n, math.nan)
        out.update(ttft_s=nan, ttft_uncorrected_s=nan, output_tokens=np.zeros(n, np.int64), itl_mean_s=nan,
                   itl_max_s=nan, tpot_s=nan)  # fmt: skip
        return out
    first, last = rec["tok_first"], rec["tok_last"]
    events = rec["tok_events"].astype(np.int64)
    usage = rec["tok_usage"].astype(np.int64)
    tokens = np.where(usage >= 0, usage, events)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["ttft_s"] = first - intended
        out["ttft_uncorrected_s"] = first - sent
        out["output_tokens"] = tokens
        out["itl_mean_s"] = np.where(events > 1, (last - first) / (events - 1), math.nan)
        out["itl_max_s"] = rec["itl_max"].astype(np.float64)
        out["tpot_s"] = np.where(tokens > 1, (done - first) / (tokens - 1), math.nan)
    return out


def records_frame(rec: Mapping[str, np.ndarray], epoch: float) -> pd.DataFrame:
    """Per-request arrays (offsets in seconds from ``epoch``) -> the ``requests()`` DataFrame."""
    import pandas as pd

    base = pd.Timestamp(epoch, unit="s", tz="UTC")

    def at(offsets: np.ndarray) -> pd.Series:
        return base + pd.to_timedelta(offsets, unit="s")

    intended, sent, done = rec["intended"], rec["sent"], rec["done"]
    d = derived_columns(rec)
    df = pd.DataFrame(
        {
            "intended_at": at(intended),
            "sent_at": at(sent),
            "done_at": at(done),
            "latency_s": d["latency_s"],
            "service_s": done - sent,
            "lag_s": sent - intended,
            "status": rec["status"].astype("int64"),
            "error": np.asarray(ERROR_KINDS, dtype=object)[rec["err"].astype(np.int64)],
            "bytes": rec["bytes"].astype("int64"),
            "target": rec["target"].astype(str) if len(rec["target"]) else rec["target"].astype(object),
            "worker": rec["worker"].astype("int64"),
            "ttft_s": d["ttft_s"],
            "ttft_uncorrected_s": d["ttft_uncorrected_s"],
            "output_tokens": d["output_tokens"].astype("int64"),
            "itl_mean_s": d["itl_mean_s"],
            "itl_max_s": d["itl_max_s"],
            "tpot_s": d["tpot_s"],
        }
    )
    return df


def empty_hists() -> tuple[Any, ...]:
    """Seven empty µs histograms: corrected and uncorrected latency, schedule lag, then TTFT (corrected and
    uncorrected), ITL and TPOT."""
    return tuple(new_histogram() for _ in range(7))
