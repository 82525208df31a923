"""LoadResult: per-request records and per-interval HDR summaries of one load run.

(Over 500 lines on purpose: LoadResult, its on-disk record store and the percentile folding are one data
contract, shared by the runner, the Ray shards, the bundle and the report.)

Percentiles come from HDR histograms (microseconds, 3 significant figures) and are reported in seconds.
Per-request records are written to disk while the run goes (a :class:`RecordStore` of Arrow parts) and read back
by ``requests()``, whole or for a time range; memory keeps the interval rows, the histograms and running totals.
*Corrected* latency runs from the intended send time, *uncorrected* (service time) from the actual send.
Percentiles cover the fleet's answers: successful responses and 5xx (the fleet failing after doing work); 4xx
(the request refused: a wrong path, a bad payload, 429 shedding) and requests that failed without a response
(timeout, connect, reset) are counted in the error columns instead. Whether the run is valid is decided by
:mod:`mlops_lb.load.validity`. An interval holds the requests that *completed* in it.

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
from ._codes import ERROR_KINDS
from ._hdr import new_histogram
from .settings import SLO_KEYS, LoadSettings
from .validity import Delivery, DeliveryLog, auto_late_after_s, judge

if TYPE_CHECKING:
    import pandas as pd

    from ._profile_base import LoadProfile
    from .shadow import ShadowResult

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
    status = rec["status"].astype(np.int64)
    # an unsent request (after a Stop) has no error code either: only an answered one can succeed
    ok = (err == 0) & (status > 0)
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
        # HTTP statuses of the failed answers (4xx and 5xx), counted by code: the verdict names them
        "statuses": np.bincount(np.clip(status[status >= 400], 0, 599), minlength=600),
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
        "statuses": a["statuses"] + b["statuses"],
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
    ``server_errors``, ``client_errors``, ``fleet_shedding``, ``generator_lost``, ``under_sent``; the rule is
    :mod:`mlops_lb.load.validity`'s), ``delivery`` (late share, held-back windows, notes), ``late_after_s`` (the
    late bound used), ``settings`` (:class:`~mlops_lb.load.LoadSettings`), ``lost_workers`` (worker id ->
    requests of its share that never came back), ``bundle_error`` (the :class:`~mlops_lb.errors.StorageError` that stopped the run bundle, or None:
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
    #: What the shadow fleet did with the copies of a ``shadow=`` run (:class:`~mlops_lb.load.shadow.ShadowResult`);
    #: None without one. Never part of this result's records, summary or verdict.
    shadow: ShadowResult | None = None

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
        settings: LoadSettings | None = None,
        delivery: DeliveryLog | None = None,
        max_lag_p99_s: float | None = None,
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
        if settings is None:
            knobs: dict[str, Any] = {"workers": workers, "progress": False}
            if connections is not None:
                knobs["connections"] = max(connections, workers)
            if timeout_s is not None:
                knobs["timeout_s"] = timeout_s
            if max_lag_p99_s is not None:
                knobs["late_after_s"] = max_lag_p99_s
            if slo:
                knobs["slo"] = dict(slo)
            settings = LoadSettings(**knobs)
        #: The knobs the run was made with (:class:`~mlops_lb.load.LoadSettings`).
        self.settings = settings
        self.slo = dict(slo or settings.slo or {})
        if stats is None:
            stats = record_stats(self._rec if self._rec is not None else _empty_records(), self.slo)
        self._stats = dict(stats)
        self._stats.setdefault("statuses", np.zeros(600, np.int64))
        self._intervals = [dict(r) for r in intervals]
        hists = tuple(hists) + (None,) * (7 - len(hists))
        self._hist_corr, self._hist_unc, self._hist_lag = hists[:3]
        self._stream_hists = hists[3:7]
        self.scheduled = scheduled
        self.due = due
        self.duration_s = duration_s
        self.stopped = stopped
        self.stop_reason = stop_reason
        self._steps = [dict(s) for s in steps]
        self.lost_workers = dict(lost_workers or {})
        self.workers = workers
        self.connections = connections if connections is not None else settings.connections
        self.timeout_s = timeout_s if timeout_s is not None else settings.timeout_s
        self.starved = starved
        self.bundle_error = bundle_error
        self.sent = int(self._stats["sent"])
        if delivery is None:  # a result built from records (tests, tools): the log from them
            delivery = DeliveryLog(settings.interval_s)
            if self._rec is not None:
                r = self._rec
                delivery.add_records(r["intended"], r["sent"], r["done"], r["err"])
            delivery.add_interval(0, sent=self.sent, starved=starved, stalls=())
        self._delivery_log = delivery
        late_after = settings.late_after_s
        if late_after is None:
            late_after = auto_late_after_s(self._service_p50())
        #: The late bound the verdict used (seconds): ``late_after_s``, or the automatic one.
        self.late_after_s = float(late_after)
        self.max_lag_p99_s = self.late_after_s  # the old name
        #: The arrival process as the verdict saw it: late share, held-back windows and their causes, notes.
        self.delivery: Delivery = judge(
            delivery,
            late_after_s=self.late_after_s,
            max_late_share=settings.max_late_share,
            connections=int(self.connections),
        )
        self.invalid_kinds, self.invalid_reasons = self._diagnose()
        self.valid = not self.invalid_reasons

    def _service_p50(self) -> float:
        h = self._hist_unc
        if h is None or h.get_total_count() == 0:
            return math.nan
        return float(h.get_value_at_percentile(50.0) / 1e6)

    def _error_counts(self) -> dict[str, int]:
        counts = self._stats["err"]
        return {k: int(counts[i]) for i, k in enumerate(ERROR_KINDS) if i}

    def _request_line(self) -> str:
        """``POST /predict`` (the url's path and query, never its credentials)."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return f"{self.settings.method} {path}"

    def _statuses(self, lo: int, hi: int, skip: int = -1) -> str:
        counts = self._stats["statuses"]
        codes = [c for c in range(lo, hi) if counts[c] and c != skip]
        codes.sort(key=lambda c: -int(counts[c]))
        return ", ".join(f"{c} ×{int(counts[c]):,}" for c in codes[:5])

    def _diagnose(self) -> tuple[list[str], list[str]]:
        """Why the run is not a clean measurement (the rule of :mod:`mlops_lb.load.validity`), each reason
        naming its fix; ``kinds`` parallel the reasons."""
        kinds: list[str] = []
        reasons: list[str] = []
        by = self._error_counts()
        sent = self.sent
        share_of = (lambda n: n / sent) if sent else (lambda n: 1.0 if n else 0.0)
        conns = f"{self.connections}"
        tmo = f"{self.timeout_s:g}"
        line = self._request_line()
        lost = sum(self.lost_workers.values())

        # (a) and (c): was the arrival process delivered, and if not, which side held it back
        by_cause: dict[str, list[Any]] = {}
        for w in self.delivery.windows:
            by_cause.setdefault(w.cause, []).append(w)
        bound = f"{self.late_after_s * 1e3:.1f} ms"
        for cause in ("connections_exhausted", "generator_lag"):
            ws = by_cause.get(cause)
            if not ws:
                continue
            off, late = sum(w.offered for w in ws), sum(w.late for w in ws)
            spans = ", ".join(f"{w.start_s:g}-{w.end_s:g} s" for w in ws[:4]) + (" …" if len(ws) > 4 else "")
            worst = max(ws, key=lambda w: w.late)
            head = (
                f"in {spans} {late:,} of {off:,} requests ({late / off:.0%}) went out more than {bound} late and "
                f"the rate fell below {95}% of the offered one"
            )
            kinds.append(cause)
            if cause == "connections_exhausted":
                reasons.append(
                    f"fleet saturated: {head}; {worst.why}: the fleet, not the generator, held the schedule back. "
                    f"Fix: scale out or offer less; to measure the fleet under this load anyway raise connections= "
                    f"(now {conns}) so the requests queue at the fleet instead of in the generator"
                )
            else:
                reasons.append(
                    f"generator lag: {head}; {worst.why}: the generator (this machine), not the fleet, held "
                    f"the schedule back. Fix: raise {self._generators()}, lower the rate or use a less loaded machine"
                )

        # (b): did the fleet answer
        hung = by["timeout"] + by["connect"]
        client = by["http_4xx"]
        shed = int(self._stats["statuses"][429])
        client -= shed
        server = by["http_5xx"] + by["reset"] + by["other"] + by["stream_truncated"] + by["bad_event"]
        server += by["no_tokens"]
        failed = hung + client + shed + server
        responses = int(self._stats["responses"])
        if failed and (failed > self.settings.max_error_share * max(sent, 1) or responses == 0):
            limit = f"max_error_share={self.settings.max_error_share:g}"
            families: list[tuple[int, str, str]] = []
            if hung:
                families.append((hung, "server_not_answering", (
                    f"the fleet did not answer {hung:,} of {sent:,} requests ({share_of(hung):.1%}; "
                    f"{by['timeout']:,} timed out after timeout_s={tmo}, {by['connect']:,} could not connect) "
                    f"to {line}. Fix: check that the targets are up and accepting; this is the fleet's side, not the "
                    "generator"
                )))  # fmt: skip
            if client:
                hint = (
                    "check the url's path (for the model server: /predict)"
                    if self._stats["statuses"][404] or self._stats["statuses"][405]
                    else "check the payload, the method and the headers"
                )
                families.append((client, "client_errors", (
                    f"the fleet refused {client:,} of {sent:,} requests ({share_of(client):.1%}, above {limit}) "
                    f"with {self._statuses(400, 500, skip=429)} at {line}: nothing of the model was measured. "
                    f"Fix: {hint}"
                )))  # fmt: skip
            if shed:
                families.append((shed, "fleet_shedding", (
                    f"the fleet shed {shed:,} of {sent:,} requests ({share_of(shed):.1%}, above {limit}) with "
                    f"429 Too Many Requests at {line}: it is over its limit at this rate. Fix: offer less or scale out"
                )))  # fmt: skip
            if server:
                parts = [self._statuses(500, 600)] if by["http_5xx"] else []
                parts += [f"{by[k]:,} {k.replace('_', ' ')}" for k in ("reset", "other", "stream_truncated",
                          "bad_event", "no_tokens") if by[k]]  # fmt: skip
                families.append((server, "server_errors", (
                    f"the fleet failed {server:,} of {sent:,} requests ({share_of(server):.1%}, above {limit}: "
                    f"{', '.join(parts)}) at {line}: the measured latencies describe a failing fleet. Fix: check the "
                    "targets' health and logs, or scale out"
                )))  # fmt: skip
            for _, kind, reason in sorted(families, key=lambda f: -f[0]):
                kinds.append(kind)
                reasons.append(reason)

        # a generator that died is named once; its missing share is not counted again below
        if self.lost_workers:
            who = "shard" if self.cluster is not None else "worker"
            ids = ", ".join(str(w) for w in sorted(self.lost_workers))
            kinds.append("generator_lost")
            reasons.append(
                f"load {who}{'s' if len(self.lost_workers) > 1 else ''} {ids} died or went silent; {lost:,} "
                "requests of its share were never sent or never reported. Fix: rerun the load"
            )
        alive_due = self.due - lost - by["cancelled"]
        if (
            alive_due > 0
            and sent < 0.99 * alive_due
            and not self.delivery.windows
            and "server_not_answering" not in kinds
        ):
            kinds.append("under_sent")
            reasons.append(
                f"sent {sent:,} of {alive_due:,} scheduled requests ({sent / alive_due:.1%} < 99%): the "
                f"generator could not keep its schedule. Fix: raise {self._generators()} or connections= (now {conns})"
            )
        return kinds, reasons

    def _generators(self) -> str:
        """The knob that adds generators: Ray shards for a run on a cluster, worker processes otherwise."""
        if self.cluster is not None:
            return f"shards= (now {self.workers}; add nodes to the Ray cluster for more)"
        return f"workers= (now {self.workers})"

    def verdict(self) -> Any:
        """The :class:`mlops_lb.summary.Verdict`: ``word`` (VALID/INVALID), ``causes``, ``reasons``, ``fixes``.

        Example::

            v = result.verdict(); print(v.headline); v.fixes
        """
        from ..summary import verdict  # the bottom layer's reading of a summary: one wording everywhere

        return verdict(self.summary())

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
        # over the same span as achieved_rps: goodput counts a subset of those responses, so it never exceeds it
        out["goodput_rps"] = n_meet / max(dur, self._last_done_s()) if dur == dur else math.nan
        d = self.delivery
        out["late_after_s"] = self.late_after_s
        out["late_share"] = d.late_share
        out["held_back"] = [
            {"start_s": w.start_s, "end_s": w.end_s, "cause": w.cause, "late_share": w.late_share}
            for w in d.windows
        ]
        out["notes"] = list(d.notes)
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
