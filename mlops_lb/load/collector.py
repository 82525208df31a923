"""The collector of a load run: the one reader of the engines' messages, and the builder of its LoadResult.

(Over 500 lines on purpose: one object holds a run's interval, step, record, Stop and deadline state, fed by every
executor — a thread, worker processes, Ray shards — through the EngineHost protocol.)

The public API (:mod:`mlops_lb.load.runner`) builds the request bytes and the settings and hands them here;
:meth:`Collector.execute` picks the executor by name (:mod:`mlops_lb.load.executors`), collects until every
engine is done or lost, and returns the :class:`~mlops_lb.load.LoadResult`.

Example::

    c = Collector(url, profile, settings, target=("127.0.0.1", 8080), requests=[raw_request], request_fn=None,
                  on_interval=None, stop=None, bundle=None)
    result = c.execute()
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue as queue_mod
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._redact import REDACTED
from ..errors import LoadTestError, StorageError
from . import distributed  # noqa: F401 - registers the "ray" executor
from ._codes import ERROR_KINDS
from ._engine import EngineConfig
from ._hdr import new_histogram
from ._messages import Done, Failed, Interval, Message, Ready, Records, SendEnd
from ._profile_base import LoadProfile
from .executors import get_executor
from .result import (
    LoadResult,
    RecordStore,
    add_stats,
    empty_hists,
    hist_percentiles,
    record_stats,
    records_frame,
    stream_percentiles,
)
from .settings import LoadSettings
from .sharding import ScheduleShare, due_before
from .validity import MIN_LATE_AFTER_S, DeliveryLog

if TYPE_CHECKING:
    import pandas as pd

    from ..bundle import RunBundle
    from .shadow import ShadowSender

__all__ = ["COLLECT_GRACE_S", "Collector"]

log = logging.getLogger(__name__)


# How long the collector waits past an engine's own end (last intended send + timeout_s) for its last messages
# before reporting it lost: the final interval and the records of a whole run's tail must cross a pipe (or Ray)
# on a busy machine.
COLLECT_GRACE_S = 3.0


class Collector:
    """One load run: runs its engines on an executor, alone reads their messages, builds the LoadResult.

    It is the :class:`~mlops_lb.load.executors.EngineHost` an executor talks to, and the only reader of the
    engines' :mod:`~mlops_lb.load._messages`: it merges each interval's histograms, calls ``on_interval``,
    advances the progress bar, appends records and intervals to the bundle, feeds the validity rule's
    :class:`~mlops_lb.load.validity.DeliveryLog`, watches for Stop and its own deadline, and builds the
    :class:`~mlops_lb.load.LoadResult` (which holds the run's :class:`~mlops_lb.load.LoadSettings`).
    """

    def __init__(
        self,
        url: str,
        profile: LoadProfile,
        settings: LoadSettings,
        *,
        target: tuple[str, int],
        requests: list[bytes] | None,
        request_fn: Callable[[int], bytes] | None,
        on_interval: Callable[[dict[str, Any]], None] | None,
        stop: threading.Event | None,
        bundle: RunBundle | None,
        on_records: Callable[[pd.DataFrame], None] | None = None,
        shadow: ShadowSender | None = None,
    ) -> None:
        self.settings = settings
        self.connections = settings.connections
        self.timeout_s = settings.timeout_s
        self.interval_s = settings.interval_s
        self.workers = settings.workers
        # the late bound the Ray shard table counts with while the run goes (the verdict uses the final one)
        self.max_lag_p99_s = settings.late_after_s if settings.late_after_s is not None else MIN_LATE_AFTER_S
        self.delivery = DeliveryLog(settings.interval_s)
        self.connect_timeout_s = (
            min(self.timeout_s, 3.0) if settings.connect_timeout_s is None else settings.connect_timeout_s
        )
        self.slo = dict(settings.slo or {})
        self.cluster, self.shards, self.placement = settings.cluster, settings.shards, settings.placement
        self.shard_sizes: dict[int, int] = {}  # shard -> its share of the schedule (Ray shards)
        self.shard_table: pd.DataFrame | None = None
        self.url = url
        self.host, self.port = target
        self.profile = profile
        # the request bytes, built by the public API (runner.py) from the url, the headers and the payloads
        self.requests = requests
        self.request_fn = request_fn
        self.on_interval = on_interval
        self.on_records = on_records
        self.shadow = shadow  # started with the schedule (set_epoch), finished after the run
        self.progress = settings.progress
        self.user_stop = stop
        self.bundle = bundle
        self.bundle_error: StorageError | None = None
        self._starved = 0
        # Counted in one pass over the lazily drawn schedule; the engines draw their shares themselves.
        self.scheduled = ScheduleShare(profile).sizes()[0]
        self.epoch = 0.0
        self.stop_reason = ""
        self.rows: list[dict[str, Any]] = []
        self.rows_lock = threading.Lock()
        self.worker_pids: list[int] = []
        # collector state
        self._pending: dict[int, dict[int, tuple[dict[str, Any], tuple[Any, ...]]]] = {}
        self._next_k = 0
        # records go to disk as they arrive (RecordStore); memory keeps only their running totals
        self._store: RecordStore | None = None
        self._stats: dict[str, Any] | None = None
        self._received: dict[int, int] = {}
        self._done: dict[int, dict[str, Any]] = {}
        self._dead: dict[int, str] = {}
        self._ready: set[int] = set()
        self._send_ends: dict[int, float] = {}  # worker -> offset its sending ended (SendEnd)
        self._totals = empty_hists()
        self._steps: list[dict[str, Any]] = []
        self._step_acc: dict[int, list[Any]] = {}
        # (start_s, end_s, rate) of each step the profile wants judged by its stop_rule; empty: none.
        self._step_plan: list[tuple[float, float, float]] = []
        t = 0.0
        for d, r in profile.steps() or ():
            self._step_plan.append((t, t + d, r))
            t += d
        self._bar: Any = None
        self._internal_stop: Any = None

    # ---------------------------------------------------------------- engine configs
    def _config(self, w: int, encode: bool) -> EngineConfig:
        n = self.workers
        per_worker = max(1, self.connections // n + (1 if w < self.connections % n else 0))
        return EngineConfig(
            host=self.host,
            port=self.port,
            share=ScheduleShare(self.profile, w, n),
            requests=self.requests,
            request_fn=self.request_fn,
            connections=per_worker,
            timeout_s=self.timeout_s,
            interval_s=self.interval_s,
            worker=w,
            encode_hists=encode,
            connect_timeout_s=self.connect_timeout_s,
            body_hash=self.shadow is not None and self.shadow.compare == "body",
        )

    # ---------------------------------------------------------------- main
    def execute(self) -> LoadResult:
        log.info("load run: %s against %s (%d workers)", self.profile.describe(), self.url, self.workers)
        # Import now what the collector needs later: a first import mid-run holds the GIL for a few hundred ms
        # and would show up as schedule lag of the engine thread.
        import hdrh.histogram  # noqa: F401
        import pandas  # noqa: F401

        self._to_bundle("write_json", "load.json", self._spec_dict())
        if self.progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.scheduled, unit="req", desc="load", leave=True)
        try:
            get_executor(self._executor_name())(self)
            result = self._result()
            result.shards = self.shard_table
            if self.shadow is not None:
                result.shadow = self.shadow.finish(0.0 if self.stop_requested() else None)
                self._to_bundle("write_json", "shadow.json", result.shadow.summary(result))
        except BaseException:
            if self.shadow is not None:
                self.shadow.stop()
            # Ctrl-C (or a failure) outside the collector, e.g. while joining the engine: stop the engine and
            # still merge what was appended, so the bundle on disk is whole.
            if self._internal_stop is not None:
                self._internal_stop.set()
            if self.bundle is not None:
                with contextlib.suppress(Exception):
                    self.bundle.finalize()
            raise
        finally:
            if self._bar is not None:
                self._bar.close()
        if self.bundle is not None:
            # after a storage failure these are still tried (a part may have failed for want of space that is
            # free again), but only the first failure is reported
            self._to_bundle("write_json", "summary.json", result.summary(), retry=True)
            self._to_bundle("finalize", retry=True)
            result.bundle_error = self.bundle_error
        failed = {w: t for w, t in self._dead.items() if t and t not in ("killed", "silent")}
        if failed and not self._chunks_have_records():
            raise LoadTestError(f"load engine failed:\n{next(iter(failed.values()))}")
        return result

    def _to_bundle(self, method: str, *args: Any, retry: bool = False) -> None:
        """Write to the bundle; the first failure is kept as ``bundle_error`` and logged once, never raised.

        After it, appends stop (each would fail the same way and the run must not slow down), but what reached
        disk stays loadable: every part is written atomically.
        """
        if self.bundle is None or (self.bundle_error is not None and not retry):
            return
        try:
            getattr(self.bundle, method)(*args)
        except Exception as exc:
            if self.bundle_error is not None:
                log.debug("run bundle write failed again: %s", exc)
                return
            err = exc if isinstance(exc, StorageError) else StorageError(self.bundle.path, exc)
            self.bundle_error = err
            log.warning("run bundle stopped, the result in memory is whole: %s", err)

    def _chunks_have_records(self) -> bool:
        return bool(self._stats and self._stats["rows"])

    def _spec_dict(self) -> dict[str, Any]:
        # Header values stay out of the bundle: they are often credentials (Authorization, API keys).
        knobs = self.settings.to_dict()
        knobs["headers"] = dict.fromkeys(knobs["headers"], REDACTED)
        return {
            "url": self.url,
            "profile": self.profile.to_dict(),
            **knobs,
            "slo": self.slo,
            "connect_timeout_s": self.connect_timeout_s,
            "scheduled": self.scheduled,
        }

    # ---------------------------------------------------------------- the EngineHost protocol (executors.py)
    def engine_config(self, worker: int, *, encode: bool) -> EngineConfig:
        """The engine configuration of ``worker`` (of :attr:`workers`), histograms encoded across processes."""
        return self._config(worker, encode)

    def begin(self, workers: int, stop: Any) -> None:
        """The executor runs ``workers`` engines, all watching ``stop`` (an Event of its kind)."""
        self.workers = workers
        self._internal_stop = stop

    def given_up(self, worker: int) -> bool:
        """True when the collector's deadline reported ``worker`` lost for going silent."""
        return self._dead.get(worker) == "silent"

    def set_epoch(self, epoch: float) -> None:
        """Wall-clock time of schedule offset 0, decided by the executor once every engine is ready."""
        self.epoch = epoch
        if self.shadow is not None:
            self.shadow.start(epoch)

    def stop_requested(self) -> bool:
        """True once the run must end (Stop, Ctrl-C, a stop rule, the collector's deadline)."""
        return self._internal_stop is not None and self._internal_stop.is_set()

    @property
    def late_after_s(self) -> float:
        """The late bound for per-engine counts while the run goes (the verdict's own may come later)."""
        return self.max_lag_p99_s

    def record(
        self,
        *,
        worker_pids: Sequence[int] | None = None,
        shard_sizes: Mapping[int, int] | None = None,
        shard_table: pd.DataFrame | None = None,
    ) -> None:
        """What the executor learned: its engines' process ids, each engine's share size, a per-shard table."""
        if worker_pids is not None:
            self.worker_pids = list(worker_pids)
        if shard_sizes is not None:
            self.shard_sizes = dict(shard_sizes)
        if shard_table is not None:
            self.shard_table = shard_table

    def collect(
        self,
        get: Callable[..., Message],
        alive: Callable[[int], bool],
        on_all_ready: Callable[[], None] | None = None,
    ) -> None:
        """Handle engine messages until every engine is done or dead; Ctrl-C and Stop end the run gracefully.

        The collector has a deadline of its own (issue 25): an engine ends by itself at its last intended send
        plus ``timeout_s`` (a Stop: at the Stop plus ``min(timeout_s, 1 s)``); the collector waits
        :data:`COLLECT_GRACE_S` (or two intervals) more for its last messages, then reports every engine not done
        by then as lost ("silent": a stopped process, a hung thread, an unreachable Ray shard) and returns.
        """
        suspect: dict[int, float] = {}
        started = time.monotonic()
        grace = max(COLLECT_GRACE_S, 2 * self.interval_s)
        stop_wall = math.inf
        while len(self._done) + len(self._dead) < self.workers:
            try:
                if self.epoch and on_all_ready is None:
                    deadline = self.epoch + self.profile.duration_s + self.timeout_s + grace
                    if self._internal_stop.is_set():
                        stop_wall = min(stop_wall, time.time())
                        deadline = min(deadline, stop_wall + min(self.timeout_s, 1.0) + grace)
                    if time.time() > deadline:
                        self._give_up_silent()
                        break
                try:
                    msg = get(timeout=0.1)
                except queue_mod.Empty:
                    msg = None
                if msg is not None:
                    self._handle(msg)
                    if on_all_ready is not None and len(self._ready) + len(self._dead) == self.workers:
                        on_all_ready()
                        on_all_ready = None
                    continue
                if (
                    self.user_stop is not None
                    and self.user_stop.is_set()
                    and not self._internal_stop.is_set()
                ):
                    self.stop_reason = self.stop_reason or "stop requested"
                    self._internal_stop.set()
                if on_all_ready is not None and time.monotonic() - started > 120:
                    raise LoadTestError("load workers did not start within 120 s")
                now = time.monotonic()
                for w in range(self.workers):
                    if w in self._done or w in self._dead or alive(w):
                        continue
                    # A finished worker's last messages may still be in the pipe: give them a moment.
                    if now - suspect.setdefault(w, now) > 1.0:
                        log.warning("load worker %d died; its unreported share is lost", w)
                        self._dead[w] = "killed"
                        if on_all_ready is not None and len(self._ready) + len(self._dead) == self.workers:
                            on_all_ready()
                            on_all_ready = None
                self._flush()
            except KeyboardInterrupt:
                log.warning("load run interrupted: stopping and keeping the partial result")
                self.stop_reason = "KeyboardInterrupt"
                self._internal_stop.set()
        self._flush(final=True)

    def _executor_name(self) -> str:
        if self.cluster is not None:
            return "ray"
        if self.settings.executor != "auto":
            return self.settings.executor
        return "thread" if self.workers == 1 else "process"

    def _give_up_silent(self) -> None:
        """Past the collector's deadline: every engine not done is lost (its process is killed by the caller)."""
        for w in range(self.workers):
            if w in self._done or w in self._dead:
                continue
            log.warning(
                "load worker %d sent nothing by the run's deadline (last send + timeout_s + grace): reported lost",
                w,
            )
            self._dead[w] = "silent"
        if self._internal_stop is not None:
            self._internal_stop.set()

    # ---------------------------------------------------------------- messages
    def _handle(self, msg: Message) -> None:
        w = msg.worker
        if isinstance(msg, Ready):
            self._ready.add(w)
        elif isinstance(msg, Interval):
            self._pending.setdefault(msg.k, {})[w] = (msg.counts, msg.hists)
            self._add_records(w, msg.records)
            self._flush()
        elif isinstance(msg, SendEnd):
            self._send_ends[w] = msg.offset
        elif isinstance(msg, Records):
            self._add_records(w, msg.records)
        elif isinstance(msg, Done):
            self._add_records(w, msg.records)
            self._send_ends.setdefault(w, msg.info["send_end"])
            self._done[w] = msg.info
            self._flush()
        elif isinstance(msg, Failed):
            log.error("load engine %d failed:\n%s", w, msg.text)
            self._dead[w] = msg.text

    def _add_records(self, w: int, rec: dict[str, Any]) -> None:
        self.delivery.add_records(rec["intended"], rec["sent"], rec["done"], rec["err"])
        # The engine sends target codes: naming them here keeps object arrays out of its loop.
        names = np.array([*rec.pop("target_names", ()), ""], dtype=object)
        rec["target"] = names[rec["target"]]  # -1 picks the trailing ""
        n = len(rec["index"])
        self._received[w] = self._received.get(w, 0) + n
        if not n:
            return
        body_hash = rec.pop("body_hash", None)  # only a shadow run comparing bodies asks for it
        if body_hash is not None and self.shadow is not None:
            self.shadow.add_primary_hashes(rec["index"], body_hash)
        self._stats = add_stats(self._stats, record_stats(rec, self.slo))
        frame = records_frame(rec, self.epoch)
        if self._store is None:
            self._store = RecordStore(self.epoch)
        self._store.add(frame)
        if self.bundle is not None and self.bundle_error is None:
            self._to_bundle("append_requests", frame)
        if self.on_records is not None:
            try:
                self.on_records(frame)
            except Exception:
                log.exception("on_records callback failed (the run continues)")

    def _complete(self, k: int) -> bool:
        have = self._pending.get(k, {})
        for w in range(self.workers):
            if w in have or w in self._dead:
                continue
            info = self._done.get(w)
            if info is not None and info["last_k"] < k:
                continue
            return False
        return bool(have)

    def _flush(self, final: bool = False) -> None:
        while self._next_k in self._pending and (self._complete(self._next_k) or final):
            k = self._next_k
            parts = self._pending.pop(k)
            self._next_k += 1
            self._interval_row(k, parts)
        if final:
            for k in sorted(self._pending):
                self._interval_row(k, self._pending.pop(k))

    def _interval_row(self, k: int, parts: Mapping[int, tuple[dict[str, Any], tuple[Any, ...]]]) -> None:
        from hdrh.histogram import HdrHistogram

        corr, unc, lag = new_histogram(), new_histogram(), new_histogram()
        shists: list[Any] = [None, None, None, None]  # ttft, ttft uncorrected, itl, tpot: only if streams
        offered = sent = responses = ok = tokens = starved = 0
        stalls: list[Any] = []
        err = np.zeros(len(ERROR_KINDS), dtype=np.int64)
        for counts, hists in parts.values():
            for total, h in zip((corr, unc, lag), hists[:3], strict=True):
                total.add(HdrHistogram.decode(h) if isinstance(h, (bytes, str)) else h)
            for m, h in enumerate(hists[3:]):
                if h is None:
                    continue
                if shists[m] is None:
                    shists[m] = new_histogram()
                shists[m].add(HdrHistogram.decode(h) if isinstance(h, (bytes, str)) else h)
            offered += counts["offered"]
            sent += counts["sent"]
            responses += counts["responses"]
            ok += counts["ok"]
            tokens += counts.get("tokens", 0)
            starved += counts.get("starved", 0)
            stalls.extend(counts.get("stalls", ()))
            err += np.asarray(counts["err"], dtype=np.int64)
        self._starved += starved
        self.delivery.add_interval(k, sent=sent, starved=starved, stalls=stalls)
        for total, h in zip(self._totals, (corr, unc, lag, *shists), strict=True):
            if h is not None:
                total.add(h)
        length = self.interval_s
        ends = [d["end"] for d in self._done.values() if d["last_k"] == k]
        if ends:  # the final, partial interval
            length = max(min(max(ends) - k * self.interval_s, self.interval_s), 1e-3)
        import pandas as pd

        start_off = k * self.interval_s
        row: dict[str, Any] = {
            "interval_start": pd.Timestamp(self.epoch + start_off, unit="s", tz="UTC"),
            "offered_rps": offered / length,
            "achieved_rps": responses / length,
            "sent": sent,
            "ok": ok,
            "errors": int(err[1:].sum()),
        }
        for i, name in enumerate(ERROR_KINDS[1:], start=1):
            row[f"err_{name}"] = int(err[i])
        row.update(hist_percentiles(corr))
        row.update(hist_percentiles(unc, "_uncorrected"))
        row["lag_p99_s"] = lag.get_value_at_percentile(99.0) / 1e6 if lag.get_total_count() else math.nan
        row["step_rps"] = math.nan
        row.update(stream_percentiles(shists))
        row["output_tokens"] = tokens
        row["output_tokens_per_s"] = tokens / length
        if self._step_plan:
            self._step_account(k, row, corr, ok, int(err[1:].sum()))
        with self.rows_lock:
            self.rows.append(row)
        if self.bundle is not None and self.bundle_error is None:
            self._to_bundle("append_intervals", pd.DataFrame([row]))
        if self._bar is not None:
            self._bar.update(min(sent, self._bar.total - self._bar.n))
            self._bar.set_postfix_str(
                f"p99 {row['p99_s'] * 1e3:.1f} ms, errors {row['errors']}", refresh=False
            )
        if self.on_interval is not None:
            try:
                self.on_interval(dict(row))
            except Exception:
                log.exception("on_interval callback failed (the run continues)")

    def _step_account(self, k: int, row: dict[str, Any], corr: Any, ok: int, errors: int) -> None:
        """Fold interval ``k`` into its step; at a step's last interval, ask the profile's stop_rule."""
        import bisect

        starts = [s for s, _, _ in self._step_plan]
        j = bisect.bisect_right(starts, k * self.interval_s + 1e-9) - 1
        if not 0 <= j < len(self._step_plan):
            return
        _, end, rate = self._step_plan[j]
        if k * self.interval_s >= end - 1e-9:
            return  # past the last step
        row["step_rps"] = rate
        acc = self._step_acc.setdefault(j, [new_histogram(), 0, 0])
        acc[0].add(corr)
        acc[1] += ok
        acc[2] += errors
        last_k_of_step = math.ceil(end / self.interval_s - 1e-9) - 1
        if k != last_k_of_step:
            return
        hist, n_ok, n_err = acc
        p99 = hist.get_value_at_percentile(99.0) / 1e6 if hist.get_total_count() else math.nan
        error_rate = n_err / (n_ok + n_err) if n_ok + n_err else 0.0
        summary = {
            "step": j,
            "rate": rate,
            "p99_s": p99,
            "error_rate": error_rate,
            "ok": n_ok,
            "errors": n_err,
        }
        verdict = self.profile.stop_rule(summary)
        self._steps.append({"rate": rate, "p99_s": p99, "error_rate": error_rate, "passed": not verdict})
        if verdict and not self._internal_stop.is_set():
            self.stop_reason = (
                verdict if isinstance(verdict, str) else f"{self.profile.kind} stop rule met at {rate:g} rps"
            )
            log.info("%s", self.stop_reason)
            self._internal_stop.set()

    # ---------------------------------------------------------------- result
    def _result(self) -> LoadResult:
        stopped = any(d.get("stopped") for d in self._done.values())
        send_ends = [d["send_end"] for d in self._done.values()]
        if stopped and send_ends:
            horizon = max(send_ends)
            due = due_before(self.profile, horizon)
            duration = horizon
            self.delivery.horizon = horizon
        else:
            due = self.scheduled
            duration = self.profile.duration_s
        if not stopped and not self.stop_reason:
            self.stop_reason = self.profile.done_reason(self._steps)
        lost: dict[int, int] = {}
        if self._dead and not self.shard_sizes:
            self.shard_sizes = dict(enumerate(ScheduleShare(self.profile, 0, self.workers).sizes()))
        for w in self._dead:
            lost[w] = self.shard_sizes[w] - self._received.get(w, 0)
        if self._dead and not self.stop_reason:
            self.stop_reason = "a worker died"
        return LoadResult(
            url=self.url,
            profile=self.profile,
            epoch=self.epoch,
            store=self._store if self._store is not None else RecordStore(self.epoch),
            stats=self._stats,
            intervals=self.rows,
            hists=self._totals,
            scheduled=self.scheduled,
            due=due,
            duration_s=float(duration),
            stopped=bool(stopped),
            stop_reason=self.stop_reason,
            settings=self.settings,
            delivery=self.delivery,
            steps=self._steps,
            lost_workers=lost,
            workers=self.workers,
            cluster=self.cluster,
            connections=self.connections,
            timeout_s=self.timeout_s,
            starved=self._starved,
            slo=self.slo,
            bundle_error=self.bundle_error,
        )
