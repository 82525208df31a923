"""Issue-19 fault probes for the load engine and run bundles: one line of figures per probe (bounded, < 60 s).

Real sockets on 127.0.0.1 (the raw-socket servers of tests/load/_rawserver.py and a tiny tmpfs for the full-disk
probe, which needs root). ``--code DIR`` imports mlops_lb from DIR, to print the same probes for an older version
(``git archive <commit> mlops_lb | tar -x -C DIR``); probes an older version cannot run say so.

    .venv/bin/python bench/probe_faults.py [--code /tmp/old] [--full]

``--full`` adds the issue's own hung-server probe (10 s at 50 rps, timeout 10 s; about 20 s now, 162 s before).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BODY = [b'{"rows": [[1.0, 2.0]]}']


def kinds(r) -> str:
    df = r.requests()
    c = Counter(zip(df["status"], df["error"], strict=True))
    return ", ".join(f"{st}/{err or '-'}: {n}" for (st, err), n in sorted(c.items()))


def timed_run(url: str, rps: float, dur: float, **kw):
    from mlops_lb.load import constant, run_load

    t0 = time.monotonic()
    try:
        r = run_load(url, constant(rps, dur), BODY, progress=False, max_lag_p99_s=10.0, **kw)
    except Exception as exc:
        return None, time.monotonic() - t0, exc
    return r, time.monotonic() - t0, None


def probe_close_delimited() -> None:
    from _rawserver import raw_server

    for mode in ("close11", "http10"):
        with raw_server(mode) as port:
            r, _took, exc = timed_run(f"http://127.0.0.1:{port}/", 40, 1, connections=4)
        print(f"[4] close-delimited {mode}: {exc!r}" if exc else f"[4] close-delimited {mode}: {kinds(r)}")


def probe_hung(rps: float, dur: float, timeout_s: float, label: str) -> None:
    from _rawserver import raw_server

    with raw_server("hang") as port:
        r, took, exc = timed_run(f"http://127.0.0.1:{port}/", rps, dur, timeout_s=timeout_s)
    if exc:
        print(f"[3] {label}: {exc!r}")
        return
    print(
        f"[3] {label}: took {took:.1f} s for a {dur:g} s run (bound {dur + timeout_s:g} s); {kinds(r)}; "
        f"kinds {getattr(r, 'invalid_kinds', 'n/a')}; reasons {r.invalid_reasons}"
    )


def probe_noaccept() -> None:
    from _rawserver import raw_server

    with raw_server("noaccept") as port:
        called = time.time()
        r, took, exc = timed_run(f"http://127.0.0.1:{port}/", 20, 3, timeout_s=2.0)
    if exc:
        print(f"[3] never-accepting listener: {exc!r}")
        return
    wait = r.started_at.timestamp() - called
    print(
        f"[3] never-accepting listener, 3 s at 20 rps, timeout 2 s: took {took:.1f} s, of which {wait:.1f} s "
        f"before the first send; {kinds(r)}; kinds {getattr(r, 'invalid_kinds', 'n/a')}"
    )


def probe_stop() -> None:
    from _rawserver import raw_server

    stop = threading.Event()
    with raw_server("hang") as port:
        t_stop = [0.0]

        def fire() -> None:
            t_stop[0] = time.monotonic()
            stop.set()

        threading.Timer(2.0, fire).start()
        r, _took, exc = timed_run(f"http://127.0.0.1:{port}/", 50, 30, timeout_s=10.0, stop=stop)
        after = time.monotonic() - t_stop[0]
    if exc:
        print(f"[3] stop during hang: {exc!r}")
        return
    df = r.requests()
    sent = df[df["sent_at"].notna()]
    empty = int(((sent["status"] == 0) & (sent["error"] == "")).sum())
    print(
        f"[3] Stop 2 s into a hung 30 s run: returned {after:.1f} s after Stop; sent requests: "
        f"{Counter(sent['error'])} (status 0 with empty error: {empty})"
    )


@contextlib.contextmanager
def tmpfs(size: str, ro: bool = False):
    d = Path(tempfile.mkdtemp(prefix="probe-fs-"))
    opts = f"size={size}" + (",ro" if ro else "")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(d)], capture_output=True)
    if res.returncode:
        yield None
        return
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)
        with contextlib.suppress(OSError):
            d.rmdir()


def probe_full_disk(url: str) -> None:
    import logging

    from mlops_lb.bundle import RunBundle

    with tmpfs("2m") as mnt:
        if mnt is None:
            print("[2] full disk: mount not permitted, skipped")
            return
        b = RunBundle.create(root=mnt, name="full")
        records: list[logging.LogRecord] = []

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                records.append(record)

        h = Keep(level=logging.WARNING)
        logging.getLogger("mlops_lb").addHandler(h)
        try:
            r, _took, exc = timed_run(url, 5000, 5, bundle=b, connections=32)
        finally:
            logging.getLogger("mlops_lb").removeHandler(h)
        tracebacks = sum(1 for x in records if x.exc_info)
        try:
            on_disk = len(RunBundle.load(b.path).requests)
        except Exception as e2:
            on_disk = f"load failed: {e2!r}"
        if exc:
            print(
                f"[2] full disk (2 MB tmpfs, 25,000 requests): run_load RAISED {type(exc).__name__}: {exc}; "
                f"result lost; {len(records)} warnings ({tracebacks} with traceback); rows loadable: {on_disk}"
            )
        else:
            print(
                f"[2] full disk (2 MB tmpfs, 25,000 requests): returned {len(r.requests()):,} rows in memory, "
                f"bundle_error={getattr(r, 'bundle_error', None)!s}; {len(records)} warnings ({tracebacks} with "
                f"traceback); rows loadable from disk: {on_disk}"
            )


def probe_bad_roots() -> None:
    from mlops_lb.bundle import RunBundle

    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "runs"
        f.write_text("x")
        try:
            RunBundle.create(root=f)
        except Exception as exc:
            print(f"[7] bundle root is a file: {type(exc).__mro__[:3]} {exc}")
    with tmpfs("1m", ro=True) as mnt:
        if mnt is None:
            print("[7] read-only root: mount not permitted, skipped")
            return
        try:
            RunBundle.create(root=mnt / "runs")
        except Exception as exc:
            print(f"[7] bundle root read-only: {type(exc).__mro__[:3]} {exc}")


def probe_bad_input(target_url: str, count) -> None:
    for label, kw, url in (
        ("header value with CR/LF", {"headers": {"X-A": "v\r\nX-Injected: 1"}}, target_url),
        ("method with a space", {"method": "PO ST"}, target_url),
        ("unresolvable host", {}, "http://no-such-host.invalid:8080/x"),
    ):
        before = count()
        r, took, exc = timed_run(url, 10, 1, **kw)
        sent = count() - before
        print(f"[7] {label}: {'raised ' + type(exc).__name__ + ': ' + str(exc) if exc else 'ran: ' + kinds(r)}; "
              f"{sent} requests reached the server; {took:.2f} s")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--code")
    ap.add_argument("--full", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, args.code or str(ROOT))
    sys.path.insert(1, str(ROOT / "tests" / "load"))
    import mlops_lb

    print(f"mlops_lb from {Path(mlops_lb.__file__).parent}")
    srv = subprocess.Popen([sys.executable, str(ROOT / "tests/load/_server.py")], stdout=subprocess.PIPE, text=True,
                           start_new_session=True)  # fmt: skip
    try:
        port = int(srv.stdout.readline()) if srv.stdout else 0
        base = f"http://127.0.0.1:{port}"

        def count() -> int:
            import urllib.request

            with urllib.request.urlopen(f"{base}/__count", timeout=5) as resp:
                return int(resp.read())

        probe_close_delimited()
        probe_hung(50, 3, 2.0, "hung server, 3 s at 50 rps, timeout 2 s, 32 connections")
        if args.full:
            probe_hung(50, 10, 10.0, "hung server, 10 s at 50 rps, timeout 10 s (the issue's probe)")
        probe_noaccept()
        probe_stop()
        probe_full_disk(f"{base}/ok")
        probe_bad_roots()
        probe_bad_input(f"{base}/ok", count)
    finally:
        os.killpg(srv.pid, 15)
        srv.wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
