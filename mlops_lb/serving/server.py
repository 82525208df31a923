"""Run the model server (uvicorn) and build the command line that starts one as a separate process.

Example::

    serve(port=8080)                                        # blocks; what `mlops-lb serve --port 8080` does
    subprocess.Popen(worker_command(port=8081, target_id="w1", slots=2, min_service_ms=20))
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from ..errors import SpecError
from ._guard import (
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_MAX_IN_FLIGHT,
    bounded_protocol,
    limit_in_flight,
    max_connections_for,
    raise_nofile_limit,
)
from .llm_engine import EngineParams

__all__ = ["GRACEFUL_SHUTDOWN_S", "llm_command", "serve", "serve_llm", "worker_command"]

log = logging.getLogger(__name__)

# After SIGTERM uvicorn stops accepting, lets in-flight requests finish for at most this long, then exits.
GRACEFUL_SHUTDOWN_S = 30


def worker_command(
    *,
    port: int,
    target_id: str,
    model: str = "demo",
    slots: int = 0,
    min_service_ms: float = 0.0,
    host: str = "127.0.0.1",
    trusted_types: Sequence[str] = (),
    allow_pickle: bool = False,
) -> list[str]:
    """The argv that starts one model server as its own process (the local fleet's worker).

    ``trusted_types`` become ``--trust-type`` flags and ``allow_pickle`` ``--allow-pickle`` (see
    :func:`mlops_lb.serving.load_model`: a pickle runs code on load).

    Example::

        worker_command(port=8081, target_id="w1")
        # [sys.executable, '-m', 'mlops_lb', 'serve', '--port', '8081', '--host', '127.0.0.1', ...]
    """
    trust = [a for t in trusted_types for a in ("--trust-type", str(t))]
    return [
        sys.executable,
        "-m",
        "mlops_lb",
        "serve",
        "--port",
        str(int(port)),
        "--host",
        host,
        "--model",
        model,
        "--target-id",
        target_id,
        "--slots",
        str(int(slots)),
        "--min-service-ms",
        repr(float(min_service_ms)),
        *trust,
        *(["--allow-pickle"] if allow_pickle else []),
    ]


def serve(
    *,
    port: int,
    host: str = "127.0.0.1",
    model: str = "demo",
    target_id: str | None = None,
    slots: int = 0,
    min_service_ms: float = 0.0,
    trusted_types: Sequence[str] = (),
    allow_pickle: bool = False,
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
) -> None:
    """Serve the model on ``host:port`` until SIGTERM or Ctrl+C: one process, uvloop and httptools, no access log.

    ``target_id`` (sent back in ``X-Target-Id``) defaults to ``<hostname>:<port>``; on EC2 pass the instance id.
    SIGTERM stops accepting connections, lets in-flight requests finish (up to ``GRACEFUL_SHUTDOWN_S``) and exits
    with status 0. SIGUSR1 toggles the "health check failing" switch (/health answers 503, /predict still works).
    ``trusted_types`` and ``allow_pickle`` are :func:`~mlops_lb.serving.load_model`'s: a pickle runs code on load.
    A connection must complete each request's headers within ``header_timeout_s``; beyond ``max_in_flight``
    requests a request gets 503 (``/health`` never does).
    """
    if not 0 <= port <= 65535:
        raise SpecError("port", f"must be between 0 and 65535 (got {port})")
    if slots < 0:
        raise SpecError("slots", f"must be >= 0, 0 meaning unlimited (got {slots})")
    if not min_service_ms >= 0:
        raise SpecError("min_service_ms", f"must be >= 0 (got {min_service_ms})")
    _check_bounds(header_timeout_s, max_in_flight)
    import prometheus_client

    from .app import create_app

    # This process is ours: leave out the *_created series, which only lengthen every scrape.
    prometheus_client.disable_created_metrics()

    # A user model fitted on a DataFrame warns on every array it is given; the server always sends arrays.
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    app = create_app(
        model=model,
        target_id=target_id or f"{socket.gethostname()}:{port}",
        slots=slots,
        min_service_ms=min_service_ms,
        trusted_types=tuple(trusted_types),
        allow_pickle=allow_pickle,
    )
    _run(
        app,
        app.state.server,
        host=host,
        port=port,
        header_timeout_s=header_timeout_s,
        max_in_flight=max_in_flight,
    )


def llm_command(
    *,
    port: int,
    target_id: str,
    host: str = "127.0.0.1",
    params: EngineParams | None = None,
) -> list[str]:
    """The argv that starts one LLM emulator (``mlops-lb serve --llm``) as its own process.

    Example::

        llm_command(port=8001, target_id="llm-1", params=EngineParams(max_num_seqs=4))
        # [sys.executable, '-m', 'mlops_lb', 'serve', '--llm', '--port', '8001', ..., '--max-num-seqs', '4', ...]
    """
    p = params or EngineParams()
    return [
        sys.executable, "-m", "mlops_lb", "serve", "--llm",
        "--port", str(int(port)), "--host", host, "--target-id", target_id,
        "--max-num-seqs", str(p.max_num_seqs),
        "--prefill-ms-per-token", repr(float(p.prefill_ms_per_token)),
        "--decode-ms-per-token", repr(float(p.decode_ms_per_token)),
        "--decode-slowdown-per-seq", repr(float(p.decode_slowdown_per_seq)),
        "--max-model-len", str(p.max_model_len),
        "--seed", str(p.seed),
        "--prefix-cache-blocks", str(p.prefix_cache_blocks),
        "--block-size", str(p.block_size),
    ]  # fmt: skip


def serve_llm(
    *,
    port: int,
    host: str = "127.0.0.1",
    target_id: str | None = None,
    params: EngineParams | None = None,
    served_model_name: str | None = None,
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
) -> None:
    """Serve the LLM emulator on ``host:port`` until SIGTERM or Ctrl+C (what ``mlops-lb serve --llm`` does).

    Same process rules as :func:`serve`: uvloop and httptools, SIGTERM finishes in-flight streams (up to
    ``GRACEFUL_SHUTDOWN_S``) and exits 0, SIGUSR1 toggles /health to 503 and back.

    Example::

        serve_llm(port=8000, params=EngineParams(max_num_seqs=4, decode_ms_per_token=20))
    """
    if not 0 <= port <= 65535:
        raise SpecError("port", f"must be between 0 and 65535 (got {port})")
    _check_bounds(header_timeout_s, max_in_flight)
    from .llm_app import SERVED_MODEL_NAME, create_llm_app

    app = create_llm_app(
        params or EngineParams(),
        target_id=target_id or f"{socket.gethostname()}:{port}",
        served_model_name=served_model_name or SERVED_MODEL_NAME,
    )
    _run(
        app,
        app.state,  # type: ignore[attr-defined]
        host=host,
        port=port,
        header_timeout_s=header_timeout_s,
        max_in_flight=max_in_flight,
    )


def _run(
    app: Any,
    state: Any,
    *,
    host: str,
    port: int,
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
) -> None:
    """Serve ``app`` until SIGTERM or Ctrl+C with the process rules both servers share (see :func:`serve`).

    ``state`` is the object whose ``toggle_health_failing()`` SIGUSR1 calls. Idle and slow connections are bounded
    (``mlops_lb.serving._guard``): each request's headers within ``header_timeout_s``, connections capped below
    the open-file limit (raised to the hard limit first), at most ``max_in_flight`` requests, ``/health`` exempt.
    """
    import uvicorn

    signal.signal(signal.SIGUSR1, lambda *_: state.toggle_health_failing())
    # uvicorn handles SIGTERM itself, then restores the previous handler and raises the signal again so the process
    # dies "by SIGTERM" (exit status -15). Leaving a no-op handler in place makes a graceful stop exit 0 instead.
    signal.signal(signal.SIGTERM, _after_graceful_stop)
    nofile = raise_nofile_limit()
    config = uvicorn.Config(
        limit_in_flight(app, max_in_flight),
        host=host,
        port=port,
        loop="uvloop",
        http=bounded_protocol(header_timeout_s=header_timeout_s, max_connections=max_connections_for(nofile)),
        lifespan="on",
        access_log=False,
        log_level="info",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        workers=1,
    )
    uvicorn.Server(config).run()


def _check_bounds(header_timeout_s: float, max_in_flight: int) -> None:
    if not 0 < header_timeout_s <= 3600:
        raise SpecError("header_timeout_s", f"must be between 0 and 3600 seconds (got {header_timeout_s})")
    if not 1 <= max_in_flight <= 1_000_000:
        raise SpecError("max_in_flight", f"must be between 1 and 1000000 (got {max_in_flight})")


def _after_graceful_stop(signum: int, frame: Any) -> None:
    log.info("stopped by signal %d after finishing in-flight requests", signum)
