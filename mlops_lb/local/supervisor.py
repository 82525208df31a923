"""A local fleet that outlives one terminal: ``mlops-lb up SPEC --detach`` and a control socket.

``start_detached(spec)`` starts a **supervisor** process (``python -m mlops_lb.local.supervisor``) in its own
session. The supervisor owns one :class:`~mlops_lb.local.fleet.LocalFleet` exactly as a notebook would, and answers
requests on a Unix socket, so ``mlops-lb status``, ``scale``, ``load`` and ``down`` work from any other shell of the
same user. :func:`attach` returns a :class:`RemoteFleet` that speaks to it and implements the Fleet protocol's reads
(``status``, ``metrics``, ``events``, ``decisions``, ``logs``) and ``scale``, so a load run's bundle captures the
fleet's data as it does in-process.

Rollouts run **inside** the supervisor (ops ``rollout``, ``rollout_status``, ``rollback``), so the client that
started one -- a notebook kernel, a terminal -- can die without stopping it: ``attach(spec).rollout_status()``
shows where it is, ``attach(spec).rollout(resume=True)`` follows it to its end (or resumes an interrupted one) and
``attach(spec).rollback()`` sends the new slot to 0 % and retires it. The guard reads HAProxy's per-server counters
(a client feed lives in the client's process, so it cannot follow the rollout across a restart).

Privacy: the socket is the fleet's remote control, so it lives in a directory only its user can enter (0700, owned
by the user; anything else is refused, not repaired) and is itself 0600; the supervisor also checks the caller's
uid (``SO_PEERCRED``). The wire format is one JSON request line and one JSON answer line; tables travel as Parquet
bytes (data, never pickles).

Cleanup: ``down`` closes the fleet (workers drained, HAProxy stopped), removes the socket and state files and
exits. SIGTERM does the same. A fleet that dies under the supervisor (its controller thread gone, or the balancer
down and not restartable for ``DEAD_AFTER_S``) is closed and the supervisor exits; a supervisor killed with SIGKILL
takes its fleet along through the parent-death signal and the reaper of :mod:`mlops_lb.local._proc`, and the next
command that finds its stale socket removes it.

Example::

    from mlops_lb.local.supervisor import attach, start_detached
    info = start_detached("fleet.yaml", on_output=print)     # returns when the fleet is up
    fleet = attach("fleet.yaml"); fleet.status(); fleet.scale(desired=3)
    fleet.rollout({"local": {"min_service_ms": 4}}, strategy=Canary(percent=20, bake_s=30), on_output=print)
    fleet.down()                                            # the processes are gone when it returns
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import logging
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import LoadTestError, MlopsLbError, ProvisionError, SpecError
from ..spec import FleetSpec

__all__ = ["DEAD_AFTER_S", "RemoteFleet", "attach", "start_detached", "state_dir"]

log = logging.getLogger(__name__)

STATE_ENV = "MLOPS_LB_STATE_DIR"  # where sockets and logs live (tests point it at a temp dir)
DEAD_AFTER_S = 30.0  # a balancer down this long (restarts failing) means the fleet is dead: close it
_MAX_LINE = 64 * 1024 * 1024  # a metrics table of a long run fits; a runaway peer does not fill memory


# ------------------------------------------------------------------ where
def state_dir() -> Path:
    """The private directory of detached fleets: ``$MLOPS_LB_STATE_DIR``, else ``$XDG_RUNTIME_DIR/mlops-lb``, else
    ``/tmp/mlops-lb-<uid>``. Created 0700; one owned by someone else or open to others is refused (another user
    could otherwise plant a socket that our commands would talk to)."""
    given = os.environ.get(STATE_ENV)
    if given:
        d = Path(given)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        d = Path(os.environ["XDG_RUNTIME_DIR"]) / "mlops-lb"
    else:
        d = Path(tempfile.gettempdir()) / f"mlops-lb-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        d.mkdir(mode=0o700, parents=True)
    st = d.lstat()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ProvisionError(f"{d} must be a directory, not a link or a file (remove it and retry)")
    if st.st_uid != os.getuid():
        raise ProvisionError(
            f"{d} belongs to uid {st.st_uid}, not to you: set {STATE_ENV} to a private directory"
        )
    if st.st_mode & 0o077:
        raise ProvisionError(
            f"{d} is open to other users (mode {stat.S_IMODE(st.st_mode):o}): `chmod 700 {d}` or set {STATE_ENV}"
        )
    return d


def _paths(name: str) -> tuple[Path, Path, Path]:
    """(socket, log, state json) of the detached fleet ``name``."""
    d = state_dir()
    return d / f"{name}.sock", d / f"{name}.log", d / f"{name}.json"


def _spec_of(spec: FleetSpec | str | os.PathLike[str]) -> FleetSpec:
    return spec if isinstance(spec, FleetSpec) else FleetSpec.from_yaml(Path(spec))


# ------------------------------------------------------------------ wire
def _frame(df: Any) -> dict[str, Any]:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    attrs = json.loads(json.dumps(dict(df.attrs), default=str))
    return {"__frame__": base64.b64encode(buf.getvalue()).decode("ascii"), "attrs": attrs}


def _unframe(obj: Any) -> Any:
    import pandas as pd

    if isinstance(obj, dict) and "__frame__" in obj:
        df = pd.read_parquet(io.BytesIO(base64.b64decode(obj["__frame__"])))
        df.attrs.update(obj.get("attrs") or {})
        return df
    return obj


def _send(sock: socket.socket, obj: dict[str, Any]) -> None:
    sock.sendall(json.dumps(obj, default=str).encode() + b"\n")


def _recv(sock: socket.socket) -> dict[str, Any]:
    chunks, size = [], 0
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if chunk.endswith(b"\n") or size > _MAX_LINE:
            break
    if not chunks:
        raise ConnectionError("the supervisor closed the connection without answering")
    data = json.loads(b"".join(chunks))
    if not isinstance(data, dict):
        raise ConnectionError("the supervisor answered something that is not a JSON object")
    return data


def _plain(obj: Any) -> Any:
    """A spec, strategy or guard as JSON-ready data (what travels on the wire; never code)."""
    import dataclasses

    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return obj


def _time(text: Any) -> datetime | None:
    return None if text is None else datetime.fromisoformat(str(text))


# ------------------------------------------------------------------ client
class RemoteFleet:
    """A detached local fleet seen from another process: the Fleet protocol's reads, ``scale`` and ``down``.

    ``close()`` only forgets the connection (the fleet keeps running); ``down()`` stops it. Example::

        fleet = attach("fleet.yaml")
        fleet.url, fleet.capacity
        fleet.status()                   # DataFrame: target, address, state, health, launched_at, pid
        fleet.scale(desired=3)
        fleet.down()
    """

    def __init__(self, spec: FleetSpec, sock_path: Path, info: dict[str, Any]) -> None:
        self.spec = spec
        self._sock_path = sock_path
        self._info = info
        self.url: str = str(info["url"])
        self.metric_period_s = float(spec.local.period_s)
        self.closed = False

    def call(self, op: str, timeout: float = 60.0, **args: Any) -> Any:
        """Send one request; return its result (tables as DataFrames) or raise the supervisor's error."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            try:
                s.connect(str(self._sock_path))
            except OSError as exc:
                raise ProvisionError(
                    f"detached fleet {self.spec.name!r} does not answer at {self._sock_path} ({exc}); "
                    f"`mlops-lb up SPEC --detach` starts it again"
                ) from exc
            _send(s, {"op": op, **args})
            answer = _recv(s)
        if not answer.get("ok"):
            err = str(answer.get("error", "unknown error"))
            raise (SpecError(None, err) if answer.get("type") == "SpecError" else ProvisionError(err))
        return _unframe(answer.get("result"))

    @property
    def capacity(self) -> tuple[int, int, int]:
        """(min, desired, max) now."""
        lo, want, hi = self.call("capacity")
        return int(lo), int(want), int(hi)

    @property
    def pids(self) -> dict[str, Any]:
        """The supervisor's and HAProxy's process ids (targets' are in ``status()``)."""
        return dict(self.call("ping"))

    def status(self, *, include_terminated: bool = False) -> Any:
        return self.call("status", include_terminated=include_terminated)

    def scale(self, **changes: Any) -> None:
        self.call("scale", **changes)

    def metrics(
        self, start: datetime | None = None, end: datetime | None = None, period_s: Any = None
    ) -> Any:
        return self.call("metrics", start=start, end=end, period_s=period_s)

    def events(self, start: datetime | None = None, end: datetime | None = None) -> Any:
        return self.call("events", start=start, end=end)

    def decisions(self) -> Any:
        return self.call("decisions")

    def logs(self, target: str, *, tail: int = 200) -> str:
        return str(self.call("logs", target=target, tail=tail))

    def rollout(
        self,
        new: Any = None,
        *,
        strategy: Any = None,
        guard: Any = None,
        feed: Any = None,
        on_output: Callable[[str], None] | None = None,
        on_event: Callable[[dict[str, Any]], Any] | None = None,
        resume: bool = False,
        rollback: bool = False,
        wait: bool = True,
        poll_s: float = 0.5,
    ) -> Any:
        """Start a rollout in the supervisor (same arguments as :meth:`LocalFleet.rollout`) and follow it.

        With ``wait`` (the default) progress lines go to ``on_output`` (events to ``on_event``) by polling
        ``rollout_status`` until the rollout ends; returns its :class:`~mlops_lb.local.rollout.RolloutResult`. A
        Ctrl-C or a dead kernel stops only the following: the rollout goes on in the supervisor, and
        ``rollout(resume=True)`` follows it again (or resumes it, if it was interrupted). ``wait=False``
        returns :meth:`rollout_status` at once. The guard reads HAProxy's counters: ``feed`` is refused.

        Example::

            res = attach("fleet.yaml").rollout({"local": {"min_service_ms": 4}},
                                               strategy=Canary(percent=20, bake_s=30), on_output=print)
            res.state      # 'completed' or 'rolled_back'
        """
        if feed is not None:
            raise SpecError(
                "feed",
                "a detached fleet's rollout runs in its supervisor, which cannot read this process's load run: "
                "drop feed (the guard then reads HAProxy's per-server counters) or run the fleet in-process",
            )
        args: dict[str, Any] = {"resume": bool(resume), "rollback": bool(rollback)}
        if isinstance(new, FleetSpec):  # a whole spec, told apart from a mapping of the parts that change
            args["new_spec"] = new.to_dict()
        elif new is not None:
            args["new"] = _plain(new)
        if strategy is not None:
            args["strategy"] = _plain(strategy)
        if guard is not None:
            args["guard"] = _plain(guard)
        status = self.call("rollout", **args)
        if not wait:
            return status
        return self._follow_rollout(on_output, on_event, poll_s)

    def rollback(self, *, on_output: Callable[[str], None] | None = None) -> Any:
        """Send the new slot to 0 % and retire it (a running rollout is interrupted first); returns the result.

        Example::

            attach("fleet.yaml").rollback().state       # 'rolled_back'
        """
        return self.rollout(rollback=True, on_output=on_output)

    def rollout_status(self) -> dict[str, Any]:
        """Where the supervisor's rollout is: ``state``, ``step``, ``percent``, ``reason``, ``interrupted_in``,
        ``running`` (its thread is alive) and ``events`` (how many it emitted)."""
        st = dict(self.call("rollout_status", since=None))
        st.pop("result", None)
        return st

    def _follow_rollout(
        self,
        on_output: Callable[[str], None] | None,
        on_event: Callable[[dict[str, Any]], Any] | None,
        poll_s: float,
    ) -> Any:
        from .rollout import RolloutResult

        seen: int | None = None  # the first poll shows the events of this rollout so far
        while True:
            st = self.call("rollout_status", since=seen if seen is not None else 0)
            for ev in st.get("new_events", []):
                if on_output is not None:
                    on_output(f"[rollout {ev['kind']}] {ev['percent']:g} % new: {ev['detail']}")
                if on_event is not None:
                    on_event(ev)
            seen = int(st["events"])
            if not st["running"] and st.get("error"):
                raise ProvisionError(f"the rollout in the supervisor stopped: {st['error']}")
            if not st["running"]:
                return RolloutResult.from_dict(
                    st.get("result") or {"state": st["state"], "reason": st["reason"]}
                )
            time.sleep(poll_s)

    def down(self, timeout: float = 120.0) -> None:
        """Stop the fleet and its supervisor; returns once the supervisor process has exited."""
        pid = int(self.pids["supervisor"])
        self.call("down", timeout=timeout)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            raise ProvisionError(f"the supervisor (pid {pid}) did not exit within {timeout:g} s")
        self.closed = True

    def close(self) -> None:
        """Forget this handle; the detached fleet keeps running (``down()`` stops it)."""
        self.closed = True

    def __repr__(self) -> str:
        return f"<RemoteFleet {self.spec.name!r} url={self.url} socket={self._sock_path}>"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def attach(spec: FleetSpec | str | os.PathLike[str]) -> RemoteFleet:
    """The running detached fleet of ``spec`` (found by its name); SpecError when none runs.

    A socket left by a supervisor that died is removed here, with its state file. Example::

        attach("fleet.yaml").status()
    """
    fs = _spec_of(spec)
    sock, _, info_path = _paths(fs.name)
    if not sock.exists():
        raise SpecError(
            None,
            f"no detached local fleet {fs.name!r} is running (no socket at {sock}); start one with "
            f"`mlops-lb up SPEC --detach`",
        )
    probe = RemoteFleet(fs, sock, {"url": ""})
    try:
        info = probe.call("ping", timeout=10)
    except ProvisionError:
        _remove_stale(sock, info_path)
        raise SpecError(
            None,
            f"detached fleet {fs.name!r} is gone (its supervisor died; its processes went with it); removed the "
            f"stale socket {sock}. Start it again with `mlops-lb up SPEC --detach`",
        ) from None
    return RemoteFleet(fs, sock, info)


def _remove_stale(sock: Path, info_path: Path) -> None:
    for p in (sock, info_path):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def start_detached(
    spec: FleetSpec | str | os.PathLike[str],
    *,
    on_output: Callable[[str], None] | None = None,
    timeout_s: float = 600.0,
) -> RemoteFleet:
    """Validate ``spec``, start its supervisor in its own session and return once the fleet is up.

    Raises SpecError (bad spec, one already running under that name) before any process starts, and
    ProvisionError quoting the supervisor's log when the launch fails (no process is left behind then).
    """
    from .fleet import check_runs_locally

    fs = _spec_of(spec)
    check_runs_locally(fs)
    sock, log_path, info_path = _paths(fs.name)
    if sock.exists():
        with contextlib.suppress(SpecError):
            running = attach(fs)
            raise SpecError(
                "name",
                f"a detached fleet {fs.name!r} is already running at {running.url}: `mlops-lb down SPEC` first, "
                "or give this spec another name",
            )
    spec_path = info_path.with_suffix(".spec.json")
    _write_private(spec_path, json.dumps(fs.to_dict()))
    with contextlib.suppress(FileNotFoundError):
        log_path.unlink()  # a new log, created private (an old one may have been made with other permissions)
    with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlops_lb.local.supervisor", "--spec-json", str(spec_path)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C or a closed terminal must not reach the fleet
            close_fds=True,
        )
    shown = 0
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            shown = _follow(log_path, shown, on_output)
            if proc.poll() is not None:
                _follow(log_path, shown, on_output)
                raise ProvisionError(
                    f"the detached fleet {fs.name!r} did not start (supervisor exit code {proc.returncode}); "
                    f"its log {log_path}:\n{_log_head(log_path)}"
                )
            if sock.exists():
                with contextlib.suppress(SpecError, ProvisionError):
                    fleet = attach(fs)
                    _follow(log_path, shown, on_output)
                    return fleet
            if time.monotonic() > deadline:
                raise ProvisionError(
                    f"the detached fleet {fs.name!r} was not up after {timeout_s:g} s; see {log_path}"
                )
            time.sleep(0.1)
    except BaseException:
        if (
            proc.poll() is None
        ):  # Ctrl-C or a timeout during launch: the supervisor closes its fleet on SIGTERM
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        _remove_stale(sock, info_path)
        raise


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only this user can read (created 0600, never briefly wider)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(text)


def _follow(path: Path, shown: int, on_output: Callable[[str], None] | None) -> int:
    """Pass the log's complete new lines to ``on_output``; returns the offset read up to."""
    try:
        with open(path, "rb") as f:
            f.seek(shown)
            data = f.read()
    except OSError:
        return shown
    end = data.rfind(b"\n") + 1
    if on_output is not None:
        for line in data[:end].decode(errors="replace").splitlines():
            on_output(line)
    return shown + end


def _log_head(path: Path, lines: int = 30) -> str:
    """The log's first error lines with what follows (the cause comes first; the last lines are the cleanup)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    first = next((i for i, line in enumerate(text) if "error" in line.lower() or "Traceback" in line), 0)
    return "\n".join(text[first : first + lines])


# ------------------------------------------------------------------ server
class _Supervisor:
    def __init__(self, spec: FleetSpec) -> None:
        from .fleet import LocalFleet

        self.spec = spec
        self.sock_path, self.log_path, self.info_path = _paths(spec.name)
        self.fleet = LocalFleet(spec)
        self.stop = threading.Event()
        self.reason = ""
        self.serving = False
        # The rollout running in this process (its thread) and the events it emitted, JSON-ready, oldest first.
        self.rollout_thread: threading.Thread | None = None
        self.rollout_events: list[dict[str, Any]] = []
        self.rollout_error = ""

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._stop_now(f"signal {signal.Signals(signum).name}")
        if not self.serving:  # still launching: interrupt launch(), whose cleanup stops what it started
            raise KeyboardInterrupt

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        try:
            url = self.fleet.launch(on_output=lambda line: print(line, flush=True))
            self.serving = True
            if self.stop.is_set():
                return 0
            server = self._bind()
            _write_private(
                self.info_path, json.dumps({"pid": os.getpid(), "url": url, "socket": str(self.sock_path)})
            )
            print(
                f"supervisor {os.getpid()}: fleet {self.spec.name!r} up at {url}; socket {self.sock_path}",
                flush=True,
            )
            threading.Thread(target=self._watch, name="fleet-watch", daemon=True).start()
            with server:
                while not self.stop.is_set():
                    try:
                        conn, _ = server.accept()
                    except TimeoutError:
                        continue
                    except OSError:
                        if self.stop.is_set():
                            break
                        raise
                    threading.Thread(target=self._serve, args=(conn,), daemon=True).start()
        finally:
            _remove_stale(self.sock_path, self.info_path)
            with contextlib.suppress(OSError):
                self.info_path.with_suffix(".spec.json").unlink()
            self.fleet.close()
            print(f"supervisor {os.getpid()}: fleet closed ({self.reason or 'launch ended'})", flush=True)
        return 1 if self.reason.startswith("fleet died") else 0

    def _stop_now(self, reason: str) -> None:
        if not self.reason:
            self.reason = reason
        self.stop.set()

    def _bind(self) -> socket.socket:
        _remove_stale(self.sock_path, self.info_path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is born 0600: no window where another user could connect
        try:
            server.bind(str(self.sock_path))
        finally:
            os.umask(old)
        os.chmod(self.sock_path, 0o600)
        server.listen(16)
        server.settimeout(0.5)
        return server

    def _watch(self) -> None:
        """Close the fleet when it died under us (controller thread gone, balancer down past DEAD_AFTER_S)."""
        down_since = 0.0
        while not self.stop.wait(1.0):
            f = self.fleet
            thread = getattr(f, "_thread", None)
            if f.closed or (thread is not None and not thread.is_alive()):
                self._stop_now("fleet died: its controller stopped")
                return
            if f.balancer == "down":
                down_since = down_since or time.monotonic()
                if time.monotonic() - down_since > DEAD_AFTER_S:
                    self._stop_now(f"fleet died: the balancer is down ({f.balancer_reason})")
                    return
            else:
                down_since = 0.0

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(30)
                uid = _peer_uid(conn)
                if uid is not None and uid != os.getuid():
                    _send(conn, {"ok": False, "error": f"uid {uid} may not control this fleet"})
                    return
                req = _recv(conn)
                result = self._handle(req)
                _send(conn, {"ok": True, "result": result})
            except MlopsLbError as exc:
                with contextlib.suppress(OSError):
                    _send(conn, {"ok": False, "error": str(exc), "type": type(exc).__name__})
            except Exception as exc:  # one bad request must not take the fleet down
                log.exception("request failed")
                with contextlib.suppress(OSError):
                    _send(conn, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})

    def _handle(self, req: dict[str, Any]) -> Any:
        f, op = self.fleet, req.get("op")
        if op == "ping":
            hp = getattr(f, "_haproxy", None)
            return {"supervisor": os.getpid(), "haproxy": getattr(hp, "pid", None), "url": f.url}
        if op == "capacity":
            return list(f.capacity)
        if op == "status":
            return _frame(f.status(include_terminated=bool(req.get("include_terminated"))))
        if op == "scale":
            keys = ("min", "desired", "max", "target_rps_per_target")
            f.scale(**{k: req[k] for k in keys if req.get(k) is not None})
            return list(f.capacity)
        if op == "metrics":
            return _frame(
                f.metrics(
                    start=_time(req.get("start")), end=_time(req.get("end")), period_s=req.get("period_s")
                )
            )
        if op == "events":
            return _frame(f.events(start=_time(req.get("start")), end=_time(req.get("end"))))
        if op == "decisions":
            return _frame(f.decisions())
        if op == "logs":
            return f.logs(str(req.get("target")), tail=int(req.get("tail") or 200))
        if op == "rollout":
            return self._rollout(req)
        if op == "rollout_status":
            return self._rollout_status(req.get("since"))
        if op == "down":
            self._stop_now("down requested")
            return "closing"
        raise LoadTestError(f"unknown request {op!r}")

    def _rollout(self, req: dict[str, Any]) -> dict[str, Any]:
        """Start (or resume, or roll back) the fleet's rollout on a thread of this process; answer once it has
        passed validation (its first event) or failed it, so bad input comes back as the caller's error."""
        f = self.fleet
        resume, rollback = bool(req.get("resume")), bool(req.get("rollback"))
        running = self.rollout_thread is not None and self.rollout_thread.is_alive()
        if rollback:
            f.rollout(rollback=True, on_event=self._record_event)  # interrupts a running one first
            return self._rollout_status(None)
        if resume and running:
            return self._rollout_status(None)  # the client died and came back: follow the running rollout
        if running:
            raise SpecError(
                "rollout",
                f"another rollout is {f.rollout_status()['state']} in the supervisor: follow it with "
                "rollout(resume=True) (`mlops-lb rollout SPEC --resume`) or stop it with rollback()",
            )
        if not resume:
            self.rollout_events = []
        first = threading.Event()
        start_count = len(self.rollout_events)
        failure: list[BaseException] = []

        def record(ev: dict[str, Any]) -> None:
            self._record_event(ev)
            first.set()

        def body() -> None:
            try:
                f.rollout(
                    FleetSpec.from_dict(req["new_spec"]) if req.get("new_spec") else req.get("new"),
                    strategy=req.get("strategy"),
                    guard=req.get("guard"),
                    on_event=record,
                    on_output=lambda line: print(line, flush=True),
                    resume=resume,
                )
            except BaseException as exc:  # reported to the caller below or through rollout_status
                failure.append(exc)
                self.rollout_error = f"{type(exc).__name__}: {exc}"
                if not first.is_set():
                    first.set()
                else:
                    log.exception("rollout failed")

        self.rollout_error = ""
        self.rollout_thread = threading.Thread(target=body, name="rollout", daemon=True)
        self.rollout_thread.start()
        first.wait(25.0)  # validation and the new slot's creation take well under a second; bounded anyway
        if failure and len(self.rollout_events) == start_count:
            raise failure[0]
        return self._rollout_status(None)

    def _record_event(self, ev: dict[str, Any]) -> None:
        self.rollout_events.append(json.loads(json.dumps(ev, default=str)))

    def _rollout_status(self, since: Any) -> dict[str, Any]:
        st = dict(self.fleet.rollout_status())
        running = self.rollout_thread is not None and self.rollout_thread.is_alive()
        st.update(running=running, events=len(self.rollout_events), error=self.rollout_error)
        if since is not None:
            st["new_events"] = self.rollout_events[int(since) :]
        run = getattr(self.fleet, "_rollout", None)
        if not running and run is not None:
            st["result"] = run.result.to_dict()
        return st


def _peer_uid(conn: socket.socket) -> int | None:
    if not hasattr(socket, "SO_PEERCRED"):  # macOS: the 0700 directory is the guard
        return None
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def main(argv: list[str] | None = None) -> int:
    """``python -m mlops_lb.local.supervisor --spec-json FILE``: run one fleet until ``down`` or SIGTERM."""
    p = argparse.ArgumentParser(prog="python -m mlops_lb.local.supervisor")
    p.add_argument("--spec-json", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = FleetSpec.from_dict(json.loads(Path(args.spec_json).read_text()))
    try:
        return _Supervisor(spec).run()
    except KeyboardInterrupt:
        print("supervisor: stopped during launch", flush=True)
        return 130
    except MlopsLbError as exc:
        print(f"error: {exc}", flush=True)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
