"""run_load / start_load: the public API of a load run — explicit parameters, the request bytes, a LoadRun handle.

It checks the request line, builds one :class:`~mlops_lb.load.LoadSettings` and the raw requests, and hands them
to the :class:`~mlops_lb.load.collector.Collector`, which runs the engines on an executor
(:mod:`mlops_lb.load.executors`) and builds the result. The engine always runs on its own thread with its own
(uv)loop, or in worker processes or Ray shards; the calling thread only collects: it merges each interval's histograms, calls ``on_interval``, advances the progress bar, appends
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
import dataclasses
import inspect
import json
import logging
import re
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec
from urllib.parse import unquote, urlsplit

from .._redact import REDACTED, is_secret_name, redact_url
from ..errors import LoadTestError, SpecError
from ._profile_base import LoadProfile
from ._wire import Keyed
from .collector import COLLECT_GRACE_S, Collector
from .result import LoadResult
from .settings import LoadSettings

if TYPE_CHECKING:
    import pandas as pd

    from ..bundle import RunBundle

__all__ = ["COLLECT_GRACE_S", "LoadRun", "run_load", "start_load"]

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
        return _request(self.head, self.fn(i))


def _request(head: bytes, p: Any) -> bytes:
    """One request's bytes: ``head``, a Keyed payload's own header lines (a routing key), then the body."""
    extra = b""
    if isinstance(p, Keyed):
        extra, p = p.head_lines(), p.body
    body = _body(p)
    return b"%s%sContent-Length: %d\r\n\r\n%s" % (head, extra, len(body), body)


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


# RFC 9110 §5.6.2 (https://www.rfc-editor.org/rfc/rfc9110#section-5.6.2): methods and field names are tokens;
# §5.5: a field value must not contain CR, LF or NUL (they would split the request: header injection).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


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
    executor: str = "auto",
    on_interval: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = True,
    stop: threading.Event | None = None,
    bundle: RunBundle | None = None,
    late_after_s: float | None = None,
    max_late_share: float = 0.01,
    max_error_share: float = 0.01,
    max_lag_p99_s: float | None = None,
    slo: Mapping[str, float] | None = None,
    connect_timeout_s: float | None = None,
    cluster: str | None = None,
    shards: int | str | None = None,
    placement: str = "spread",
    on_records: Callable[[pd.DataFrame], None] | None = None,
    shadow: str | None = None,
    shadow_connections: int = 8,
    shadow_compare: str = "status",
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
    ``cluster="ray"`` (an existing ``ray.init()`` connection, else the cluster ``RAY_ADDRESS`` names, else a local
    Ray for this run) or
    ``"ray://head:10001"`` runs ``shards`` engines (``"auto"``: one per free CPU) as Ray actors at rate/shards
    each, merged exactly; ``placement`` is ``spread``, ``strict_spread`` or ``pack`` (docs/distributed.md).

    A run ends at its last intended send time plus ``timeout_s`` at the latest, whatever the server does: a
    request that waits ``timeout_s`` past its intended time without a connection ends as ``no_connection``,
    one still unanswered at the end as ``timeout`` (``cancelled`` after a Stop). Opening a connection has its
    own bound, ``connect_timeout_s`` (default ``min(timeout_s, 3)``). Streamed responses (SSE or chunked)
    get TTFT, ITL, TPOT and token counts (see :class:`LoadResult`); ``slo={"ttft_s": …, "tpot_s": …,
    "latency_s": …}`` (any subset) sets the bounds of ``requests_meeting_slo`` and ``goodput_rps``.

    ``on_records(frame)`` gets each batch of finished requests (the ``requests()`` columns, ``target`` included)
    as it arrives, about once per interval: what a rollout's guard reads (:class:`mlops_lb.rollouts.ClientFeed`).
    ``shadow`` (a URL) sends a copy of each request, same body and intended time, to a second fleet on
    ``shadow_connections`` connections of its own; a copy with no free connection is dropped and counted, never
    queued, and nothing of the shadow enters this run's records or verdict: ``result.shadow``
    (:class:`~mlops_lb.load.shadow.ShadowResult`, ``shadow.json`` in the bundle) holds its latency and errors.
    ``shadow_compare="body"`` also hashes each response body on both sides (blake2b; bodies are never kept) and
    reports ``body_differs_share`` next to ``status_differs_share`` (``"status"``, the default, hashes nothing).

    Validity (:mod:`mlops_lb.load.validity` states the rule): a run whose schedule was held back — in some
    interval more than ``max_late_share`` (1 %) of the requests went out more than ``late_after_s`` late (None:
    ``max(5 ms, 10 % of the service-time p50)``) *and* the rate suffered — or whose failed requests (4xx
    included) pass ``max_error_share`` (1 %) of those sent is returned with ``valid=False``,
    ``invalid_reasons`` (each naming its fix) and the parallel ``invalid_kinds``; each held-back window is
    blamed on the fleet (saturated) or the generator (lag). ``max_lag_p99_s`` is the old name of
    ``late_after_s``. If the bundle cannot be written, the run goes on and the result carries the
    :class:`~mlops_lb.errors.StorageError` as ``bundle_error``.

    Example::

        r = run_load("http://127.0.0.1:8080/predict", ramp(10, 500, 60), payloads=[{"rows": [[5.1, 3.5]]}])
        r.summary()["p99_s"], r.valid
    """
    knobs = {
        "method": method, "headers": headers, "connections": connections, "timeout_s": timeout_s,
        "interval_s": interval_s, "workers": workers, "executor": executor, "progress": progress,
        "late_after_s": late_after_s, "max_late_share": max_late_share, "max_error_share": max_error_share,
        "max_lag_p99_s": max_lag_p99_s, "slo": slo, "connect_timeout_s": connect_timeout_s, "cluster": cluster,
        "shards": shards, "placement": placement,
    }  # fmt: skip
    run = _new_run(url, profile, payloads, settings, knobs, on_interval=on_interval, stop=stop, bundle=bundle,
                   on_records=on_records, shadow=shadow, shadow_connections=shadow_connections,
                   shadow_compare=shadow_compare)  # fmt: skip
    return run.execute()


def _new_run(
    url: str,
    profile: LoadProfile,
    payloads: Payloads,
    settings: LoadSettings | None,
    knobs: Mapping[str, Any],
    *,
    on_interval: Callable[[dict[str, Any]], None] | None,
    stop: threading.Event | None,
    bundle: RunBundle | None,
    on_records: Callable[[pd.DataFrame], None] | None = None,
    shadow: str | None = None,
    shadow_connections: int = 8,
    shadow_compare: str = "status",
) -> Collector:
    """The run of :func:`run_load`'s arguments; ``knobs`` are the :class:`LoadSettings` fields given as keywords."""
    missing = set(_SETTING_NAMES) - set(knobs)
    assert not missing, f"run_load keywords without a LoadSettings field: {missing}"
    knobs = dict(knobs)
    _check_request_line(knobs["method"], knobs["headers"])
    knobs["headers"] = dict(knobs["headers"] or {})
    # One LoadSettings instead of the keywords; a keyword that disagrees with it is an error.
    merged = settings.resolve(**knobs) if settings is not None else LoadSettings(**knobs)
    if not isinstance(profile, LoadProfile):
        raise SpecError("profile", f"must be a LoadProfile such as load.constant(100, 30) (got {profile!r})")
    host, port, path, hostport = _parse_url(url)
    _resolve(host, port)
    from .shadow import SHADOW_COMPARE

    if shadow_compare not in SHADOW_COMPARE:
        raise SpecError("shadow_compare", f"must be 'status' or 'body' (got {shadow_compare!r})")
    if shadow_compare == "body" and shadow is None:
        raise SpecError("shadow_compare", "'body' compares with a shadow fleet: give shadow=URL too")
    if shadow is not None:  # checked with the primary's URL, before any payload is built
        from .._validate import check_int

        check_int("shadow_connections", shadow_connections, 1, 1024)
        s_host, s_port, s_path, s_hostport = _parse_url(shadow)
        _resolve(s_host, s_port)
    head = _head(merged.method, path, hostport, {**_url_credentials(url, merged.headers), **merged.headers})
    requests: list[bytes] | None = None
    request_fn: Callable[[int], bytes] | None = None
    if payloads is None:
        payloads = _default_payloads()
    if callable(payloads):
        request_fn = _RequestBuilder(head, payloads)
    else:
        if isinstance(payloads, (str, bytes)) or not len(payloads):
            raise LoadTestError("payloads must be a non-empty list of bodies or a callable i -> bytes")
        requests = [_request(head, p) for p in payloads]
    sender = None
    if shadow is not None:
        from .shadow import ShadowSender

        s_head = _head(
            merged.method, s_path, s_hostport, {**_url_credentials(shadow, merged.headers), **merged.headers}
        )
        build: Callable[[int], bytes]
        if request_fn is not None:
            build = _RequestBuilder(s_head, payloads)  # type: ignore[arg-type]
        else:
            copies = [_request(s_head, p) for p in payloads]  # type: ignore[union-attr]
            build = lambda i: copies[i % len(copies)]  # noqa: E731
        sender = ShadowSender(redact_url(shadow), s_host, s_port, build, profile, connections=shadow_connections,
                              timeout_s=merged.timeout_s, compare=shadow_compare)  # fmt: skip
    # The URL as shown (logs, load.json, the result, the report) carries no credentials (mlops_lb._redact).
    return Collector(redact_url(url), profile, merged, target=(host, port), requests=requests, request_fn=request_fn,
                     on_interval=on_interval, stop=stop, bundle=bundle, on_records=on_records,
                     shadow=sender)  # fmt: skip


# The collector under its old name (tests patch it)
_Run = Collector


# The LoadSettings fields run_load takes as keywords (every one of them: the settings value carries them all).
_SETTING_NAMES = tuple(f.name for f in dataclasses.fields(LoadSettings))


class LoadRun:
    """Handle of a load run going on in the background (see :func:`start_load`); what the widgets drive.

    Example::

        run = start_load(url, constant(100, 600), progress=False)
        run.latest_intervals().tail(3)
        run.stop(); result = run.result(timeout=30)
    """

    def __init__(self, run: Collector, stop: threading.Event) -> None:
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
    def send_end_s(self) -> float | None:
        """Seconds into the run at which sending ended (every engine said so), or None while it goes on.

        From the engines' own :class:`~mlops_lb.load._messages.SendEnd`, so a caller showing a "draining" phase
        need not guess it from the wall clock.
        """
        run = self._run
        ends = dict(run._send_ends)
        live = [w for w in range(run.workers) if w not in run._dead]
        if not live or any(w not in ends for w in live):
            return None
        return max(ends[w] for w in live)

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
    knobs = {name: given[name] for name in _SETTING_NAMES}
    run = _new_run(given["url"], given["profile"], given["payloads"], given["settings"], knobs,
                   on_interval=given["on_interval"], stop=given["stop"], bundle=given["bundle"],
                   on_records=given["on_records"], shadow=given["shadow"],
                   shadow_connections=given["shadow_connections"],
                   shadow_compare=given["shadow_compare"])  # fmt: skip
    return LoadRun(run, given["stop"])
