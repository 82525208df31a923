"""PID "1" of one sandboxed instance: runs inside ``unshare -m -n`` (a private mount and network namespace).

It lays the instance's filesystem (overlays over ``/etc``, ``/opt`` and ``/var/log`` whose writes land in the
sandbox folder, a file over ``/dev/console``, the host's own ``python3.N`` hidden so only what ``dnf install``
brings exists), brings up the namespace's loopback with 169.254.169.254 on it, serves the IMDSv2 emulator
there, writes ``ready`` and waits until it is killed. Nothing here touches the host: every mount is in the
private namespace (``--propagation private``) and vanishes with it.

IMDSv2 rules emulated (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html,
read 2026-12-06): a session token comes from ``PUT /latest/api/token`` with
``X-aws-ec2-metadata-token-ttl-seconds`` (1-21600, otherwise 400); every GET must carry it in
``X-aws-ec2-metadata-token`` (otherwise 401); a missing item answers 404 (``spot/instance-action`` is absent until
an interruption is scheduled). ``autoscaling/target-lifecycle-state`` is the item Auto Scaling updates before each
steady-state transition (https://docs.aws.amazon.com/autoscaling/ec2/userguide/retrieving-target-lifecycle-state-through-imds.html).

Usage: ``unshare -m -n --propagation private python init.py SANDBOX_ROOT``
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(sys.argv[1])
IMDS = ROOT / "imds"
TOKENS: dict[str, float] = {}
LOCK = threading.Lock()


def log(entry: dict[str, object]) -> None:
    with LOCK, (ROOT / "imds.jsonl").open("a") as f:
        f.write(json.dumps({"t": time.time(), **entry}) + "\n")


class Imds(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # our own log, not stderr
        pass

    def answer(self, code: int, body: str = "") -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:
        if self.path != "/latest/api/token":
            return self.answer(404)
        try:
            ttl = int(self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", ""))
        except ValueError:
            ttl = 0
        if not 1 <= ttl <= 21600:
            log({"method": "PUT", "path": self.path, "status": 400})
            return self.answer(400)
        token = secrets.token_urlsafe(40)
        TOKENS[token] = time.time() + ttl
        (ROOT / "tokens").open("a").write(token + "\n")  # so a test can look for them in the console
        log({"method": "PUT", "path": self.path, "status": 200})
        return self.answer(200, token)

    def do_GET(self) -> None:
        token = self.headers.get("X-aws-ec2-metadata-token", "")
        if TOKENS.get(token, 0) < time.time():
            log({"method": "GET", "path": self.path, "status": 401})
            return self.answer(401)
        prefix = "/latest/meta-data/"
        item = IMDS / self.path[len(prefix) :] if self.path.startswith(prefix) else None
        if item is None or ".." in self.path or not item.is_file():
            log({"method": "GET", "path": self.path, "status": 404})
            return self.answer(404)
        log({"method": "GET", "path": self.path, "status": 200})
        return self.answer(200, item.read_text())


def journald() -> None:
    """journald's syslog socket (what ``logger`` writes to on AL2023): every message lands in journal.log."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("/dev/log")
    with (ROOT / "journal.log").open("ab", buffering=0) as out:
        while True:
            out.write(sock.recv(65536) + b"\n")


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True)


def main() -> None:
    fs = ROOT / "fs"
    for name, target in (("etc", "/etc"), ("opt", "/opt"), ("varlog", "/var/log")):
        upper, work = fs / name, fs / f".{name}-work"
        upper.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        sh(
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={target},upperdir={upper},workdir={work}",
            target,
        )
    # /dev gets an overlay too (its submounts bound back), so journald's /dev/log socket exists in here only.
    hostdev = fs / ".hostdev"
    hostdev.mkdir(parents=True, exist_ok=True)
    sh("mount", "--rbind", "/dev", str(hostdev))
    (fs / "dev").mkdir(exist_ok=True)
    (fs / ".dev-work").mkdir(exist_ok=True)
    sh(
        "mount",
        "-t",
        "overlay",
        "overlay",
        "-o",
        f"lowerdir=/dev,upperdir={fs / 'dev'},workdir={fs / '.dev-work'}",
        "/dev",
    )
    for sub in ("pts", "shm", "mqueue"):
        if (hostdev / sub).is_dir() and Path(f"/dev/{sub}").is_dir():
            sh("mount", "--rbind", str(hostdev / sub), f"/dev/{sub}")
    console = ROOT / "console.log"
    console.touch()
    sh("mount", "--bind", str(console), "/dev/console")
    threading.Thread(target=journald, daemon=True).start()
    # AL2023 has only its system python3 (3.9) until dnf installs python3.N: hide the host's own.
    missing = ROOT / "not-installed"
    missing.write_text('#!/bin/sh\necho "$0: command not found" >&2\nexit 127\n')
    missing.chmod(0o755)
    for d in ("/usr/bin", "/usr/local/bin"):
        for p in sorted(Path(d).glob("python3.*")):
            if p.name[len("python3.") :].isdigit():
                sh("mount", "--bind", str(missing), str(p))
    sh("ip", "link", "set", "lo", "up")
    sh("ip", "addr", "add", "169.254.169.254/32", "dev", "lo")
    server = ThreadingHTTPServer(("169.254.169.254", 80), Imds)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (ROOT / "ready").write_text(str(os.getpid()))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
