"""Shadow traffic: a copy of each request of a load run, sent to a second fleet, never in the primary's way.

The shadow follows the primary's schedule (same intended send times from the same epoch, same bodies by
request index) on its own threads and connections. A copy whose intended time comes while every shadow connection
is busy is **dropped and counted**, never queued: a queue would let a slow shadow fleet push copies out in bursts
that compete with the primary's sends for this machine. Shadow results never enter the primary's records,
intervals or verdict; they are returned as :class:`ShadowResult` on ``LoadResult.shadow`` (and ``shadow.json``
in the bundle).

Example::

    r = run_load(fleet_a.url + "/predict", constant(100, 30), shadow=fleet_b.url + "/predict")
    r.shadow.summary()       # sent, dropped, errors, p50/p99 of the shadow fleet
    r.shadow.compare(r)      # primary vs shadow side by side

With ``shadow_compare="body"`` each response body, primary and shadow, is hashed (blake2b, 8 bytes; the bytes are
never kept, as bodies may carry user data) and each copy's hash is compared with the primary's for the same request
index: ``body_differs_share`` says how often the shadow answered something else (another model's output).
Streamed responses are not hashed, so not compared. Without it (``"status"``, the default) nothing is hashed and
the primary's connections take no body callback at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from .profiles import LoadProfile

__all__ = ["SHADOW_COMPARE", "ShadowResult", "ShadowSender"]

SHADOW_COMPARE = ("status", "body")
"""What a shadow run compares per request: the status only, or the status and a hash of the response body."""

log = logging.getLogger(__name__)


@dataclass
class ShadowResult:
    """What the shadow fleet did with the copies: one record per copy sent (``requests()``), and the count of
    copies ``dropped`` because no shadow connection was free at their intended time.

    Example::

        r.shadow.summary()["p99_s"], r.shadow.dropped
    """

    url: str
    scheduled: int = 0
    dropped: int = 0
    records: list[tuple[int, float, float, float, int, str, str, int]] = field(default_factory=list)
    epoch: float = 0.0
    compare_mode: str = "status"
    # request index -> the primary's body hash (shadow_compare="body"); in memory only, never in a bundle
    primary_hashes: dict[int, int] = field(default_factory=dict, repr=False)

    def body_differs_share(self) -> float:
        """Share of the copies answered without error whose body hash differs from the primary's for the same
        request index (both answered, both hashed); NaN when nothing pairs or bodies were not compared.

        Example::

            r = run_load(url, constant(50, 10), shadow=other, shadow_compare="body")
            r.shadow.body_differs_share()        # 0.0: same answers; > 0: the shadow answers differently
        """
        prim = self.primary_hashes
        pairs = [(r[7], prim[r[0]]) for r in self.records if r[7] and not r[5] and prim.get(r[0], 0)]
        if not pairs:
            return math.nan
        return sum(1 for a, b in pairs if a != b) / len(pairs)

    def requests(self) -> pd.DataFrame:
        """One row per copy sent: index, intended_at, sent_at, done_at, latency_s (from the intended time),
        status, error ('' when answered 2xx/3xx/4xx... by status; 'http_5xx', 'timeout', 'connect', 'reset'),
        target (X-Target-Id)."""
        import pandas as pd

        df = pd.DataFrame(
            [r[:7] for r in self.records],
            columns=["index", "intended", "sent", "done", "status", "error", "target"],
        )
        base = pd.Timestamp(self.epoch, unit="s", tz="UTC")
        out = pd.DataFrame(
            {
                "index": df["index"].astype("int64"),
                "intended_at": base + pd.to_timedelta(df["intended"], unit="s"),
                "sent_at": base + pd.to_timedelta(df["sent"], unit="s"),
                "done_at": base + pd.to_timedelta(df["done"], unit="s"),
                "latency_s": df["done"] - df["intended"],
                "status": df["status"].astype("int64"),
                "error": df["error"].astype(object),
                "target": df["target"].astype(object),
            }
        )
        return out

    def summary(self, primary: Any = None) -> dict[str, Any]:
        """sent, dropped, errors, error_share, p50_s, p99_s (answered copies; corrected from the intended time),
        ``body_differs_share`` (NaN unless ``shadow_compare="body"``) and, given the ``primary`` LoadResult,
        ``status_differs_share`` (what ``shadow.json`` in the bundle holds)."""
        import numpy as np

        sent = len(self.records)
        errors = sum(1 for r in self.records if r[5])
        lat = np.array([r[3] - r[1] for r in self.records if r[5] in ("", "http_5xx")], dtype=float)
        return {
            "url": self.url,
            "scheduled": self.scheduled,
            "sent": sent,
            "dropped": self.dropped,
            "errors": errors,
            "error_share": errors / sent if sent else 0.0,
            "p50_s": float(np.percentile(lat, 50)) if len(lat) else math.nan,
            "p99_s": float(np.percentile(lat, 99)) if len(lat) else math.nan,
            "compare": self.compare_mode,
            "body_differs_share": self.body_differs_share() if self.compare_mode == "body" else math.nan,
            **({"status_differs_share": self._status_differs(primary)} if primary is not None else {}),
        }

    def compare(self, primary: Any) -> pd.DataFrame:
        """Primary vs shadow, one column each: requests, errors, p50, p99, and the share of copies whose status
        differed from the primary's for the same request (paired by intended time; NaN when nothing pairs).

        Example::

            result.shadow.compare(result).loc["status_differs_share", "shadow"]
        """
        import numpy as np
        import pandas as pd

        prim = primary.requests()
        s = self.summary()
        ok = prim["error"].isin(["", "http_5xx"])
        lat = prim.loc[ok, "latency_s"].to_numpy(dtype=float)
        row_p = {
            "requests": len(prim),
            "errors": int((~prim["error"].isin(["", "cancelled"])).sum()),
            "p50_s": float(np.percentile(lat, 50)) if len(lat) else math.nan,
            "p99_s": float(np.percentile(lat, 99)) if len(lat) else math.nan,
        }
        row_s = {k: s[k] for k in ("errors", "p50_s", "p99_s")} | {
            "requests": s["sent"],
            "dropped": s["dropped"],
        }
        row_s["status_differs_share"] = self._status_differs(primary, prim)
        row_s["body_differs_share"] = s["body_differs_share"]
        return pd.DataFrame({"primary": pd.Series(row_p), "shadow": pd.Series(row_s)})

    def _status_differs(self, primary: Any, prim: Any = None) -> float:
        """Share of copies whose status differs from the primary request of the same intended time (NaN: none)."""
        import pandas as pd

        if prim is None:
            prim = primary.requests()
        diff = math.nan
        if self.records and len(prim):
            # Copy and primary share the schedule (same profile, same epoch): pair each copy with the primary request
            # of the same intended time (the primary's records carry no request index).
            sh = self.requests()[["intended_at", "status"]].sort_values("intended_at")
            pr = prim[["intended_at", "status"]].sort_values("intended_at")
            pairs = pd.merge_asof(
                sh, pr, on="intended_at", direction="nearest", tolerance=pd.Timedelta(PAIR_TOLERANCE_S, unit="s"),
                suffixes=("_shadow", "_primary"),
            ).dropna(subset=["status_primary"])  # fmt: skip
            if len(pairs):
                diff = float((pairs["status_shadow"] != pairs["status_primary"].astype("int64")).mean())
        return diff


# Copies are paired with primary requests by intended time; schedule times are the same floats on both sides, so
# anything within half a millisecond is the same request (above 2,000 rps two requests could share a slot).
PAIR_TOLERANCE_S = 0.0005


class ShadowSender:
    """Sends ``build(i)`` (the full request bytes of request ``i``) to ``host:port`` at each intended time of
    ``profile``'s schedule from ``epoch``, on ``connections`` threads; drops a copy when none is free.

    Example::

        s = ShadowSender("http://127.0.0.1:8001/predict", "127.0.0.1", 8001, build, profile, connections=8)
        s.start(time.time()); ...; result = s.finish()
    """

    def __init__(
        self,
        url: str,
        host: str,
        port: int,
        build: Callable[[int], bytes],
        profile: LoadProfile,
        *,
        connections: int = 8,
        timeout_s: float = 10.0,
        compare: str = "status",
    ) -> None:
        self.host, self.port, self.build, self.profile = host, port, build, profile
        self.timeout_s = timeout_s
        self.compare = compare
        self.result = ShadowResult(url=url, compare_mode=compare)
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers = [_Worker(self) for _ in range(connections)]
        self._dispatcher: threading.Thread | None = None

    def start(self, epoch: float) -> None:
        """Begin following the schedule from wall-clock ``epoch`` (the primary's offset 0)."""
        self.result.epoch = epoch
        self._idle = list(self._workers)
        for w in self._workers:
            w.thread.start()
        self._dispatcher = threading.Thread(
            target=self._dispatch, args=(epoch,), name="mlops-lb-shadow", daemon=True
        )
        self._dispatcher.start()

    def _dispatch(self, epoch: float) -> None:
        i = 0
        for chunk in self.profile.iter_schedule():
            for off in chunk:
                if self._stop.is_set():
                    return
                delay = epoch + float(off) - time.time()
                if delay > 0 and self._stop.wait(delay):
                    return
                self.result.scheduled += 1
                with self._lock:
                    w = self._idle.pop() if self._idle else None
                if w is None:
                    self.result.dropped += 1
                else:
                    w.give(i, float(off))
                i += 1

    def add_primary_hashes(self, index: Any, hashes: Any) -> None:
        """The primary's body hashes of a batch of finished requests (the collector hands them over)."""
        with self._lock:
            self.result.primary_hashes.update(zip(index.tolist(), hashes.tolist(), strict=True))

    def _done(self, w: _Worker, record: tuple[int, float, float, float, int, str, str, int]) -> None:
        with self._lock:
            self.result.records.append(record)
            self._idle.append(w)

    def finish(self, wait_s: float | None = None) -> ShadowResult:
        """Wait for the schedule's end (at most ``wait_s``, default: its remaining length + timeout), then stop."""
        if self._dispatcher is not None:
            self._dispatcher.join(wait_s if wait_s is not None else self.profile.duration_s + self.timeout_s)
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self._idle) == len(self._workers):
                    break
            time.sleep(0.02)
        self.stop()
        return self.result

    def stop(self) -> None:
        self._stop.set()
        for w in self._workers:
            w.give(-1, 0.0)
        for w in self._workers:
            if w.thread.is_alive():
                w.thread.join(1.0)
            w.close()


class _Worker:
    """One shadow connection on its own thread (keep-alive, reopened after an error or a close)."""

    def __init__(self, owner: ShadowSender) -> None:
        self.owner = owner
        self.sock: socket.socket | None = None
        self.job: tuple[int, float] | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.run, name="mlops-lb-shadow-conn", daemon=True)

    def give(self, i: int, off: float) -> None:
        self.job = (i, off)
        self.ready.set()

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None

    def run(self) -> None:
        o = self.owner
        while True:
            self.ready.wait()
            self.ready.clear()
            job = self.job
            if job is None or job[0] < 0:
                return
            i, off = job
            sent = time.time() - o.result.epoch
            status, error, target, digest = 0, "", "", 0
            try:
                if self.sock is None:
                    self.sock = socket.create_connection((o.host, o.port), timeout=o.timeout_s)
                    self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.sock.sendall(o.build(i))
                resp = http.client.HTTPResponse(self.sock)
                resp.begin()
                body = resp.read()
                if o.compare == "body" and resp.getheader("Content-Type", "").find("event-stream") < 0:
                    digest = int.from_bytes(hashlib.blake2b(body, digest_size=8).digest(), "little") or 1
                del body  # never kept: it may carry user data
                status, target = resp.status, resp.getheader("X-Target-Id") or ""
                error = "http_5xx" if status >= 500 else ("http_4xx" if status >= 400 else "")
                if resp.will_close:
                    self.close()
            except TimeoutError:
                error = "timeout"
                self.close()
            except ConnectionRefusedError:
                error = "connect"
                self.close()
            except (OSError, http.client.HTTPException):
                error = "reset"
                self.close()
            done = time.time() - o.result.epoch
            o._done(self, (i, off, sent, done, status, error, target, digest))
