"""run_load / start_load: drive the engine (a thread, or N worker processes) and collect a LoadResult.

(Over 500 lines on purpose: one collector that every transport — a thread, worker processes, Ray shards —
feeds; its interval, step, record and Stop state is one object.)

The engine always runs on its own thread with its own (uv)loop, or in worker processes; the calling thread
only collects: it merges each interval's histograms, calls ``on_interval``, advances the progress bar, appends
records to the run bundle and watches for Stop. That is why ``run_load`` also works in a Jupyter cell (an
event loop is already running there) and why a slow ``on_interval`` (a plot redraw) never delays a send.

Interrupting ``run_load`` (Ctrl-C, or Jupyter's interrupt) stops sending, waits briefly for requests in
flight, and *returns* the partial result with ``stopped=True`` and ``stop_reason="KeyboardInterrupt"``; the
bundle, if any, is finalized first. A Stop (``stop`` event, :meth:`LoadRun.stop`) ends the run the same way.

Example::

    from mlops_lb.load import run_load, start_load, constant
    result = run_load("http://127.0.0.1:8080/predict", constant(200, 30), payloads=[{"rows": [[1, 2]]}])
    run = start_load(url, constant(200, 300), progress=False)     # returns at once
    run.latest_intervals(); run.stop(); run.result()
"""

from __future__ import annotations

import base64
import contextlib
import inspect
import json
import logging
import math
import queue as queue_mod
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec
from urllib.parse import unquote, urlsplit

import numpy as np

from .._redact import REDACTED, is_secret_name, redact_url
from ..errors import LoadTestError, SpecError, StorageError
from ._engine import ERROR_KINDS, EngineConfig, run_engine, worker_main
from .profiles import LoadProfile, ScheduleShare, due_before
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

if TYPE_CHECKING:
    import pandas as pd

    from ..bundle import RunBundle

__all__ = ["LoadRun", "run_load", "start_load"]

log = logging.getLogger(__name__)
P = ParamSpec("P")

Payloads = Sequence[bytes | str | Mapping[str, Any] | list[Any]] | Callable[[int], bytes] | None


# --------------------------------------------------------------------------- request bytes
def _body(p: Any) -> bytes:
    if isinstance(p, bytes):
        return p
    if isinstance(p, str):
        return p.encode()
    if isinstance(p, (Mapping, list)):
        return json.dumps(p).encode()
    raise LoadTestError(f"payloads must be bytes, str or JSON-serialisable dicts (got {type(p).__name__})")


class _RequestBuilder:
    """Picklable ``i -> request bytes`` around a user callable (used in worker processes too)."""

    def __init__(self, head: bytes, fn: Callable[[int], Any]) -> None:
        self.head = head
        self.fn = fn

    def __call__(self, i: int) -> bytes:
        body = _body(self.fn(i))
        return b"%sContent-Length: %d\r\n\r\n%s" % (self.head, len(body), body)


def _parse_url(url: str) -> tuple[str, int, str, str]:
    # Errors show the URL without its credentials (userinfo, api_key=...): error messages reach logs and reports.
    if not isinstance(url, str):
        raise LoadTestError(
            f"url must be a string such as http://127.0.0.1:8080/predict (got {type(url).__name__})"
        )
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise LoadTestError(
            f"url must be http://host[:port]/path (got {redact_url(url)!r}); https is not supported by the engine"
        )
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise LoadTestError(f"url has an invalid port: {redact_url(url)!r}") from None if "@" in url else exc
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    hostport = parts.netloc.rsplit("@", 1)[-1]
    return parts.hostname, port, path, hostport


def _url_credentials(url: str, headers: Mapping[str, str] | None) -> dict[str, str]:
    """``Authorization: Basic ...`` from a URL's ``user:password@`` (RFC 9110 §4.2.4 deprecates userinfo in http
    URIs, but clients such as curl send it as Basic credentials, RFC 7617 §2; dropping it silently gave 401s).

    Refused when ``headers=`` has its own Authorization: two credentials, one place to give them.
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return {}
    if any(k.lower() == "authorization" for k in headers or {}):
        raise LoadTestError(
            f"url {redact_url(url)!r} has credentials and headers= has an Authorization header: give them in one "
            "place, e.g. headers={'Authorization': 'Basic ...'} and a url without user:password@"
        )
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}"}


# RFC 9110 §5.6.2 (https://www.rfc-editor.org/rfc/rfc9110#section-5.6.2): methods and field names are tokens;
# §5.5: a field value must not contain CR, LF or NUL (they would split the request: header injection).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _check_request_line(method: Any, headers: Mapping[str, str] | None) -> None:
    if not isinstance(method, str) or not _TOKEN.fullmatch(method):
        raise LoadTestError(
            f"method must be an HTTP token such as POST or GET, without spaces (got {method!r})"
        )
    if headers is None:
        return
    if not isinstance(headers, Mapping):
        raise LoadTestError(f"headers must be a mapping of name -> value (got {type(headers).__name__})")
    for k, v in headers.items():
        if not isinstance(k, str) or not _TOKEN.fullmatch(k):
            raise LoadTestError(f"headers: name {k!r} is not a valid HTTP field name (letters, digits, -)")
        if not isinstance(v, str):
            raise LoadTestError(f"headers[{k!r}] must be a string (got {type(v).__name__})")
        bad = [name for c, name in (("\r", "CR"), ("\n", "LF"), ("\0", "NUL")) if c in v]
        if bad:
            # Never the value itself: a key read from a file keeps its trailing newline, and the message is logged.
            hint = ": strip() a value read from a file" if v.rstrip() != v else ""
            raise LoadTestError(
                f"headers[{k!r}] must not contain CR, LF or NUL (got a value of {len(v)} characters with "
                f"{' and '.join(bad)}{hint})"
            )
        try:
            v.encode("latin-1")
        except UnicodeEncodeError:
            shown = REDACTED if is_secret_name(k) else repr(v)
            raise LoadTestError(f"headers[{k!r}] must be latin-1 text (got {shown})") from None


def _resolve(host: str, port: int) -> str:
    """Check that ``host`` resolves before any request (a clear error if not); returns its first address.

    The engine still connects by name, so every address of the name is tried, as a browser would.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise LoadTestError(
            f"url host {host!r} does not resolve ({exc}): check the host name in the url"
        ) from exc
    return str(infos[0][4][0])


def _head(method: str, path: str, hostport: str, headers: Mapping[str, str] | None) -> bytes:
    h = {
        "Host": hostport,
        "User-Agent": "mlops-lb",
        "Content-Type": "application/json",
        "Connection": "keep-alive",
    }
    for k, v in (headers or {}).items():
        h = {kk: vv for kk, vv in h.items() if kk.lower() != k.lower()}
        h[k] = v
    lines = "".join(f"{k}: {v}\r\n" for k, v in h.items())
    return f"{method} {path} HTTP/1.1\r\n{lines}".encode("latin-1")


def _default_payloads() -> list[bytes]:
    try:
        from ..serving import demo_payloads  # type: ignore[attr-defined]
    except ImportError as exc:
        raise LoadTestError(
            "no payloads: pass payloads=[...] (mlops_lb.serving.demo_payloads is unavailable)"
        ) from exc
    return list(demo_payloads())


# --------------------------------------------------------------------------- GIL hand-over
# The engine thread shares the GIL with the collector (interval rows, percentiles, bundle writes, callbacks) and
# any other thread of the process. When it wakes to send, it waits for the GIL up to the switch interval
# (5 ms by default) while another thread runs Python code: that wait is schedule lag, and it broke the 3 ms lag
# bound at every rate. While a threaded run goes, the interval is lowered; the last run to end restores it.
GIL_SWITCH_INTERVAL_S = 0.0002
_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved = 0.0


@contextlib.contextmanager
def _short_gil_switch() -> Iterator[None]:
    global _switch_users, _switch_saved
    with _switch_lock:
        if _switch_users == 0:
            _switch_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_saved, GIL_SWITCH_INTERVAL_S))
        _switch_users += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch_users -= 1
            if _switch_users == 0:
                sys.setswitchinterval(_switch_saved)


# --------------------------------------------------------------------------- validation
# --------------------------------------------------------------------------- the run
class _Run:
    """One load run: launches engines, collects their messages, builds the LoadResult."""

    def __init__(
        self,
        url: str,
        profile: LoadProfile,
        payloads: Payloads,
        settings: LoadSettings,
        *,
        on_interval: Callable[[dict[str, Any]], None] | None,
        stop: threading.Event | None,
        bundle: RunBundle | None,
    ) -> None:
        if not isinstance(profile, LoadProfile):
            raise SpecError(
                "profile", f"must be a LoadProfile such as load.constant(100, 30) (got {profile!r})"
            )
        self.settings = settings
        self.connections = settings.connections
        self.timeout_s = settings.timeout_s
        self.interval_s = settings.interval_s
        self.workers = settings.workers
        self.max_lag_p99_s = settings.max_lag_p99_s
        self.connect_timeout_s = (
            min(self.timeout_s, 3.0) if settings.connect_timeout_s is None else settings.connect_timeout_s
        )
        self.slo = dict(settings.slo or {})
        self.cluster, self.shards, self.placement = settings.cluster, settings.shards, settings.placement
        self.shard_sizes: dict[int, int] = {}  # shard -> its share of the schedule (Ray shards)
        self.shard_table: pd.DataFrame | None = None
        # The URL as shown (logs, load.json, the result, the report): without credentials (mlops_lb._redact).
        self.url = redact_url(url)
        self.host, self.port, path, hostport = _parse_url(url)
        self.address = _resolve(self.host, self.port)
        self.profile = profile
        head = _head(
            settings.method, path, hostport, {**_url_credentials(url, settings.headers), **settings.headers}
        )
        self.requests: list[bytes] | None = None
        self.request_fn: Callable[[int], bytes] | None = None
        if payloads is None:
            payloads = _default_payloads()
        if callable(payloads):
            self.request_fn = _RequestBuilder(head, payloads)
        else:
            if isinstance(payloads, (str, bytes)) or not len(payloads):
                raise LoadTestError("payloads must be a non-empty list of bodies or a callable i -> bytes")
            self.requests = []
            for p in payloads:
                b = _body(p)
                self.requests.append(b"%sContent-Length: %d\r\n\r\n%s" % (head, len(b), b))
        self.on_interval = on_interval
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
            if self.cluster is not None:
                from .distributed import execute_shards

                execute_shards(self)
            elif self.workers == 1:
                self._execute_thread()
            else:
                self._execute_processes()
            result = self._result()
            result.shards = self.shard_table
        except BaseException:
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
        failed = {w: t for w, t in self._dead.items() if t and t != "killed"}
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

    def _execute_thread(self) -> None:
        q: queue_mod.Queue[tuple] = queue_mod.Queue()
        self._internal_stop = threading.Event()

        def start_at() -> float:
            self.epoch = time.time() + 0.01
            return self.epoch

        def target() -> None:
            # a failure is reported through the queue as ("error", ...)
            with contextlib.suppress(BaseException):
                run_engine(self._config(0, encode=False), q.put, self._internal_stop, start_at)

        th = threading.Thread(target=target, name="mlops-lb-load-engine", daemon=True)
        with _short_gil_switch():
            th.start()
            self._collect(q.get, alive=lambda w: th.is_alive())
            th.join(timeout=5)

    def _execute_processes(self) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        self._internal_stop = ctx.Event()
        go = ctx.Event()
        start_wall = ctx.Value("d", 0.0)
        procs = [
            ctx.Process(
                target=worker_main,
                args=(self._config(w, encode=True), q, self._internal_stop, go, start_wall),
                name=f"mlops-lb-load-{w}",
                daemon=True,
            )
            for w in range(self.workers)
        ]
        try:
            for p in procs:
                p.start()
            self.worker_pids = [int(p.pid or 0) for p in procs]

            def on_all_ready() -> None:
                self.epoch = time.time() + 0.05
                start_wall.value = self.epoch
                go.set()

            self._collect(q.get, alive=lambda w: procs[w].is_alive(), on_all_ready=on_all_ready)
        finally:
            self._internal_stop.set()
            go.set()
            for p in procs:
                p.join(timeout=5)
                if p.is_alive():
                    p.kill()
                    p.join(timeout=5)
            q.close()

    def _collect(
        self,
        get: Callable[..., tuple],
        alive: Callable[[int], bool],
        on_all_ready: Callable[[], None] | None = None,
    ) -> None:
        """Handle engine messages until every engine is done or dead; Ctrl-C and Stop end the run gracefully."""
        suspect: dict[int, float] = {}
        started = time.monotonic()
        while len(self._done) + len(self._dead) < self.workers:
            try:
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

    # ---------------------------------------------------------------- messages
    def _handle(self, msg: tuple) -> None:
        kind, w = msg[0], msg[1]
        if kind == "ready":
            self._ready.add(w)
        elif kind == "interval":
            _, _, k, counts, hists, rec = msg
            self._pending.setdefault(k, {})[w] = (counts, hists)
            self._add_records(w, rec)
            self._flush()
        elif kind == "records":
            self._add_records(w, msg[2])
        elif kind == "done":
            _, _, rec, info = msg
            self._add_records(w, rec)
            self._done[w] = info
            self._flush()
        elif kind == "error":
            log.error("load engine %d failed:\n%s", w, msg[2])
            self._dead[w] = msg[2]

    def _add_records(self, w: int, rec: dict[str, Any]) -> None:
        # The engine sends target codes: naming them here keeps object arrays out of its loop.
        names = np.array([*rec.pop("target_names", ()), ""], dtype=object)
        rec["target"] = names[rec["target"]]  # -1 picks the trailing ""
        n = len(rec["index"])
        self._received[w] = self._received.get(w, 0) + n
        if not n:
            return
        self._stats = add_stats(self._stats, record_stats(rec, self.slo))
        frame = records_frame(rec, self.epoch)
        if self._store is None:
            self._store = RecordStore(self.epoch)
        self._store.add(frame)
        if self.bundle is not None and self.bundle_error is None:
            self._to_bundle("append_requests", frame)

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

        from ._engine import new_histogram

        corr, unc, lag = new_histogram(), new_histogram(), new_histogram()
        shists: list[Any] = [None, None, None, None]  # ttft, ttft uncorrected, itl, tpot: only if streams
        offered = sent = responses = ok = tokens = 0
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
            self._starved += counts.get("starved", 0)
            err += np.asarray(counts["err"], dtype=np.int64)
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

        from ._engine import new_histogram

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
            max_lag_p99_s=self.max_lag_p99_s,
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


# --------------------------------------------------------------------------- public API
def run_load(
    url: str,
    profile: LoadProfile,
    payloads: Payloads = None,
    *,
    settings: LoadSettings | None = None,
    method: str = "POST",
    headers: Mapping[str, str] | None = None,
    connections: int = 32,
    timeout_s: float = 10.0,
    interval_s: float = 1.0,
    workers: int = 1,
    on_interval: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = True,
    stop: threading.Event | None = None,
    bundle: RunBundle | None = None,
    max_lag_p99_s: float = 0.003,
    slo: Mapping[str, float] | None = None,
    connect_timeout_s: float | None = None,
    cluster: str | None = None,
    shards: int | str | None = None,
    placement: str = "spread",
) -> LoadResult:
    """Send ``profile``'s schedule to ``url`` (open loop) and return a :class:`LoadResult`.

    ``payloads``: request bodies cycled in order — a list of bytes/str/dicts (dicts are JSON-encoded) or a
    callable ``i -> bytes`` (picklable when ``workers > 1``); None takes ``mlops_lb.serving.demo_payloads()``.
    ``connections`` keep-alive connections are shared by ``workers`` processes (spawned; each sends every
    ``workers``-th request of the schedule). ``on_interval(row)`` gets each interval's summary row.
    ``stop`` (a ``threading.Event``) or Ctrl-C end the run early with a partial result (``stopped=True``).
    ``bundle`` (a :class:`mlops_lb.bundle.RunBundle`) receives records and intervals as the run goes.
    ``settings`` (a :class:`mlops_lb.load.LoadSettings`) gives method, headers, connections, timeout_s,
    interval_s, workers, progress, max_lag_p99_s, slo and connect_timeout_s in one value instead of keywords.
    ``cluster="ray"`` (an existing ``ray.init()`` connection, else a local Ray for this run) or
    ``"ray://head:10001"`` runs ``shards`` engines (``"auto"``: one per free CPU) as Ray actors at rate/shards
    each, merged exactly; ``placement`` is ``spread``, ``strict_spread`` or ``pack`` (docs/distributed.md).

    A run ends at its last intended send time plus ``timeout_s`` at the latest, whatever the server does: a
    request that waits ``timeout_s`` past its intended time without a connection ends as ``no_connection``,
    one still unanswered at the end as ``timeout`` (``cancelled`` after a Stop). Opening a connection has its
    own bound, ``connect_timeout_s`` (default ``min(timeout_s, 3)``). Streamed responses (SSE or chunked)
    get TTFT, ITL, TPOT and token counts (see :class:`LoadResult`); ``slo={"ttft_s": …, "tpot_s": …,
    "latency_s": …}`` (any subset) sets the bounds of ``requests_meeting_slo`` and ``goodput_rps``.

    A run that sent under 99 % of its schedule, lagged behind it (schedule-lag p99 above ``max_lag_p99_s``),
    went unanswered or met many server errors is returned with ``valid=False``, ``invalid_reasons`` and the
    parallel ``invalid_kinds``. If the bundle cannot be written, the run goes on and the result carries the
    :class:`~mlops_lb.errors.StorageError` as ``bundle_error``.

    Example::

        r = run_load("http://127.0.0.1:8080/predict", ramp(10, 500, 60), payloads=[{"rows": [[5.1, 3.5]]}])
        r.summary()["p99_s"], r.valid
    """
    return _new_run(**locals()).execute()  # every parameter by name: _new_run is the one reader of them


def _new_run(
    url: str,
    profile: LoadProfile,
    payloads: Payloads,
    *,
    settings: LoadSettings | None,
    on_interval: Callable[[dict[str, Any]], None] | None,
    stop: threading.Event | None,
    bundle: RunBundle | None,
    **knobs: Any,
) -> _Run:
    """The run of :func:`run_load`'s arguments; ``knobs`` are the :class:`LoadSettings` given as keywords."""
    _check_request_line(knobs["method"], knobs["headers"])
    knobs["headers"] = dict(knobs["headers"] or {})
    # One LoadSettings instead of the keywords; a keyword that disagrees with it is an error.
    merged = settings.resolve(**knobs) if settings is not None else LoadSettings(**knobs)
    return _Run(url, profile, payloads, merged, on_interval=on_interval, stop=stop, bundle=bundle)


class LoadRun:
    """Handle of a load run going on in the background (see :func:`start_load`); what the widgets drive.

    Example::

        run = start_load(url, constant(100, 600), progress=False)
        run.latest_intervals().tail(3)
        run.stop(); result = run.result(timeout=30)
    """

    def __init__(self, run: _Run, stop: threading.Event) -> None:
        self._run = run
        self._stop = stop
        self._result: LoadResult | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="mlops-lb-load", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self._result = self._run.execute()
        except BaseException as exc:
            self._error = exc

    def stop(self) -> None:
        """Ask the run to end now; :meth:`result` then returns the partial result (``stopped=True``)."""
        self._stop.set()

    @property
    def done(self) -> bool:
        """True once the run has ended (finished, stopped or failed)."""
        return not self._thread.is_alive()

    @property
    def worker_pids(self) -> list[int]:
        """PIDs of the worker processes (empty for ``workers=1``)."""
        return list(self._run.worker_pids)

    def result(self, timeout: float | None = None) -> LoadResult:
        """Wait for the end of the run and return its LoadResult (re-raises the run's error, if any)."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"load run still going after {timeout} s")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def latest_intervals(self) -> pd.DataFrame:
        """The interval rows so far, as the ``LoadResult.intervals()`` frame."""
        import pandas as pd

        from .result import INTERVAL_COLUMNS

        with self._run.rows_lock:
            rows = list(self._run.rows)
        df = pd.DataFrame(rows, columns=list(INTERVAL_COLUMNS))
        df["interval_start"] = pd.to_datetime(df["interval_start"], utc=True)
        return df

    def __repr__(self) -> str:
        state = "done" if self.done else "running"
        return f"LoadRun({self._run.profile.describe()} -> {self._run.url}, {state})"


def _parameters_of(fn: Callable[P, Any]) -> Callable[[Callable[..., LoadRun]], Callable[P, LoadRun]]:
    """Give the decorated function ``fn``'s parameters: for type checkers (ParamSpec) and ``help()``."""

    def give(g: Callable[..., LoadRun]) -> Callable[P, LoadRun]:
        g.__signature__ = inspect.signature(fn).replace(return_annotation=LoadRun)  # type: ignore[attr-defined]
        return g

    return give


@_parameters_of(run_load)
def start_load(*args: Any, **kwargs: Any) -> LoadRun:
    """Like :func:`run_load` but returns at once with a :class:`LoadRun` handle (the run goes on a thread).

    Example::

        run = start_load(url, constant(50, 120), progress=False)
        ...                       # widgets stay live
        run.stop(); run.result()
    """
    bound = inspect.signature(run_load).bind(*args, **kwargs)
    bound.apply_defaults()
    given = bound.arguments
    if given["stop"] is None:
        given["stop"] = threading.Event()
    return LoadRun(_new_run(**given), given["stop"])
