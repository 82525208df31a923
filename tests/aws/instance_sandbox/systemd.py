"""A small systemd stand-in behind the sandbox's ``systemctl`` shim: units under /etc/systemd/system, started with
their own ``ExecStart=`` and supervised with their ``Restart=`` and ``StartLimit*`` semantics.

What it reads of a unit, with systemd's documented defaults (systemd 252 man pages, freedesktop.org, read
2026-12-06):

* systemd.unit(5) ``[Unit]``: ``StartLimitIntervalSec=`` (default ``DefaultStartLimitIntervalSec=`` = 10 s) and
  ``StartLimitBurst=`` (default 5): a unit started more than *burst* times within the interval is not started
  again and stays ``failed`` (``start-limit-hit``); this applies to restarts by ``Restart=`` too
  (https://www.freedesktop.org/software/systemd/man/latest/systemd.unit.html#StartLimitIntervalSec=interval).
* systemd.service(5): ``Type=`` (``simple`` by default; ``oneshot``: ``systemctl start`` returns when the process
  has exited), ``Restart=`` (``no`` default, ``always``, ``on-failure``), ``RestartSec=`` (100 ms default),
  ``ExecStartPre=`` (a ``-`` prefix ignores failure), ``TimeoutStopSec=`` (90 s default), ``WorkingDirectory=``.
* systemd.exec(5): ``EnvironmentFile=`` (envfile.py: quoted values may span lines), ``Environment=``.
* systemd.service(5) "Command lines": ``${VAR}`` is the variable's value, ``$$`` a literal ``$``, ``%%`` a literal
  ``%``; double quotes group a word.
* systemd.kill(5): ``KillMode=mixed`` sends ``KillSignal=`` to the main process and SIGKILL to the rest of the unit
  after ``TimeoutStopSec=``.

Not emulated (said so the reader knows): ``DynamicUser=`` (the unit runs as root here), cgroups (a unit's
processes are its process group), dependencies beyond the order units were enabled in.

Every state change is one JSON line in ``$SANDBOX_ROOT/systemd/events.jsonl`` (the timeline of the sandbox).

Usage (through the shim): ``systemctl enable --now mlops-lb.service``; the sandbox itself calls
``systemctl --boot`` (start every enabled unit, as at boot) and ``systemctl --shutdown``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from envfile import env_file  # this folder is sys.path[0]: the shim runs the file as a script

ROOT = Path(os.environ["SANDBOX_ROOT"])
STATE = ROOT / "systemd"
UNITS = Path("/etc/systemd/system")
DEFAULT_START_LIMIT_INTERVAL_S = (
    10.0  # systemd.unit(5) / systemd-system.conf(5) DefaultStartLimitIntervalSec=
)
DEFAULT_START_LIMIT_BURST = 5  # systemd-system.conf(5) DefaultStartLimitBurst=
DEFAULT_RESTART_S = 0.1  # systemd.service(5) RestartSec=
DEFAULT_TIMEOUT_STOP_S = 90.0  # systemd-system.conf(5) DefaultTimeoutStopSec=


def event(unit: str, what: str, **detail: object) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    with (STATE / "events.jsonl").open("a") as f:
        f.write(json.dumps({"t": time.time(), "unit": unit, "event": what, **detail}) + "\n")


def seconds(value: str) -> float:
    """systemd time span: ``10``, ``10s``, ``2min``, ``500ms``, ``infinity``."""
    value = value.strip()
    if value == "infinity":
        return float("inf")
    total = 0.0
    for num, unit in re.findall(r"([\d.]+)\s*(ms|s|sec|min|m|h)?", value):
        total += float(num) * {"ms": 0.001, "min": 60, "m": 60, "h": 3600}.get(unit, 1)
    return total


def parse(unit: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values (a key may repeat)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in (UNITS / unit).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(section, {}).setdefault(key.strip(), []).append(value.strip())
    return out


def one(conf: dict[str, dict[str, list[str]]], section: str, key: str, default: str = "") -> str:
    return conf.get(section, {}).get(key, [default])[-1]


def environment(conf: dict[str, dict[str, list[str]]]) -> dict[str, str]:
    # systemd's default PATH, with the sandbox's shims where AL2023 has /usr/bin/aws, dnf and python3.N.
    env = {"PATH": os.environ["PATH"]}
    for path in conf.get("Service", {}).get("EnvironmentFile", []):
        optional = path.startswith("-")
        p = Path(path.lstrip("-"))
        if not p.is_file():
            if optional:
                continue
            raise FileNotFoundError(f"EnvironmentFile {p} is missing")
        env.update(env_file(p.read_text()))
    for assignment in conf.get("Service", {}).get("Environment", []):
        for word in shlex.split(assignment):
            key, _, value = word.partition("=")
            env[key] = value
    return env


def command(line: str, env: dict[str, str]) -> tuple[list[str], bool]:
    """(argv, ignore_failure) of one Exec line, with ${VAR}, $$ and %% as systemd.service(5) says."""
    ignore = line.startswith("-")
    words = shlex.split(line.lstrip("-@+!"), posix=True)

    def expand(word: str) -> str:
        return re.sub(
            r"\$\$|%%|\$\{(\w+)\}",
            lambda m: {"$$": "$", "%%": "%"}.get(m.group(0)) or env.get(m.group(1) or "", ""),
            word,
        )

    return [expand(w) for w in words], ignore


def pidfile(unit: str) -> Path:
    return STATE / f"{unit}.pid"


def supervise(unit: str) -> None:
    """The unit's manager process: start ExecStart, restart it as Restart= says, within the start limit."""
    conf = parse(unit)
    interval = seconds(one(conf, "Unit", "StartLimitIntervalSec", str(DEFAULT_START_LIMIT_INTERVAL_S)))
    burst = int(one(conf, "Unit", "StartLimitBurst", str(DEFAULT_START_LIMIT_BURST)))
    restart = one(conf, "Service", "Restart", "no")
    restart_s = seconds(one(conf, "Service", "RestartSec", str(DEFAULT_RESTART_S)))
    stop_s = seconds(one(conf, "Service", "TimeoutStopSec", str(DEFAULT_TIMEOUT_STOP_S)))
    workdir = one(conf, "Service", "WorkingDirectory", "/") or "/"
    starts: list[float] = []
    child: subprocess.Popen[bytes] | None = None
    stopping = False

    def kill_rest(pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # TimeoutStopSec= is over: everything left of the unit

    def on_term(*_: object) -> None:
        # Only signal here: the main loop's child.wait() returns when the main process is gone.
        nonlocal stopping
        stopping = True
        if child is None or child.returncode is not None:
            finish()
        os.kill(child.pid, signal.SIGTERM)  # KillMode=mixed: KillSignal= to the main process first
        timer = threading.Timer(min(stop_s, 60.0), kill_rest, args=(child.pid,))
        timer.daemon = True
        timer.start()

    def finish() -> None:
        if child is not None:
            kill_rest(child.pid)
        event(unit, "stopped")
        pidfile(unit).unlink(missing_ok=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    while True:
        # systemd's ratelimit: a window opens at the first start and counts starts until it is `interval` old.
        now = time.monotonic()
        if not starts or now - starts[0] >= interval:
            starts = []
        starts.append(now)
        if interval > 0 and len(starts) > burst:
            event(unit, "failed", reason="start-limit-hit", starts=len(starts), interval_s=interval)
            (STATE / f"{unit}.failed").write_text("start-limit-hit")
            pidfile(unit).unlink(missing_ok=True)
            return
        env = environment(conf)
        for pre in conf.get("Service", {}).get("ExecStartPre", []):
            argv, ignore = command(pre, env)
            rc = subprocess.run(argv, env=env, cwd=workdir, check=False).returncode
            if rc and not ignore:
                event(unit, "exited", phase="ExecStartPre", code=rc)
                break
        argv, _ = command(one(conf, "Service", "ExecStart"), env)
        log = (ROOT / "units").joinpath(f"{unit}.log").open("ab")
        child = subprocess.Popen(argv, env=env, cwd=workdir, stdout=log, stderr=log, start_new_session=True)
        event(unit, "started", pid=child.pid, argv=argv)
        rc = child.wait()
        event(unit, "exited", code=rc)
        if stopping:
            finish()
        if restart == "always" or (restart == "on-failure" and rc != 0):
            time.sleep(restart_s)
            continue
        (STATE / f"{unit}.failed").write_text(f"exit {rc}") if rc else None
        pidfile(unit).unlink(missing_ok=True)
        return


def start(unit: str, *, wait_oneshot: bool = True) -> int:
    conf = parse(unit)
    (STATE / f"{unit}.failed").unlink(missing_ok=True)
    if one(conf, "Service", "Type", "simple") == "oneshot" and wait_oneshot:
        env = environment(conf)
        argv, _ = command(one(conf, "Service", "ExecStart"), env)
        event(unit, "started", argv=argv, type="oneshot")
        with (ROOT / "units").joinpath(f"{unit}.log").open("ab") as log:
            rc = subprocess.run(argv, env=env, stdout=log, stderr=log, check=False).returncode
        event(unit, "exited", code=rc, type="oneshot")
        return 0 if rc == 0 else 1
    if pidfile(unit).is_file():
        return 0  # already active
    # The manager runs detached (its own session), as systemd's units outlive systemctl.
    proc = subprocess.Popen(
        [sys.executable, __file__, "--supervise", unit],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )
    pidfile(unit).write_text(str(proc.pid))
    return 0


def stop(unit: str) -> None:
    p = pidfile(unit)
    if not p.is_file():
        return
    pid = int(p.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        p.unlink(missing_ok=True)
        return
    for _ in range(1200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    p.unlink(missing_ok=True)


def enabled() -> list[str]:
    f = STATE / "enabled"
    return f.read_text().split() if f.is_file() else []


def main(argv: list[str]) -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    (ROOT / "units").mkdir(parents=True, exist_ok=True)
    with (STATE / "calls.jsonl").open("a") as f:
        f.write(json.dumps({"t": time.time(), "argv": argv}) + "\n")
    if argv[:1] == ["--supervise"]:
        supervise(argv[1])
        return 0
    if argv[:1] == ["--boot"]:  # what systemd does for multi-user.target: start what is enabled, not waiting
        for unit in enabled():
            if parse(unit).get("Service", {}).get("Type") != ["oneshot"]:
                start(unit)
            else:  # a oneshot runs in the background at boot; nothing waits for it
                subprocess.Popen(
                    [sys.executable, __file__, "start", unit],
                    start_new_session=True,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env={**os.environ},
                )
        return 0
    if argv[:1] == ["--shutdown"]:
        for unit in reversed(enabled()):
            stop(unit)
        return 0
    args = [a for a in argv if not a.startswith("-")]
    flags = {a for a in argv if a.startswith("-")}
    verb, units = (args[0], args[1:]) if args else ("", [])
    units = [u if "." in u else f"{u}.service" for u in units]
    if verb == "daemon-reload":
        return 0
    if verb == "enable":
        have = enabled()
        (STATE / "enabled").write_text(" ".join(have + [u for u in units if u not in have]))
        for u in units:
            event(u, "enabled")
        rc = 0
        if "--now" in flags:
            for u in units:
                rc |= start(u)
        return rc
    if verb in ("start", "restart"):
        rc = 0
        for u in units:
            if verb == "restart":
                stop(u)
            rc |= start(u)
        return rc
    if verb == "stop":
        for u in units:
            stop(u)
        return 0
    if verb == "is-active":
        return 0 if all(pidfile(u).is_file() for u in units) else 3
    if verb == "is-failed":
        return 0 if any((STATE / f"{u}.failed").is_file() for u in units) else 1
    print(f"systemctl (sandbox): unsupported: {' '.join(argv)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
