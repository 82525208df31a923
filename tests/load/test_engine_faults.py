"""The engine against hostile or unusual servers (issue 19): close-delimited bodies, hung and never-accepting
servers, Stop during a hang. Real sockets on 127.0.0.1 (tests/load/_rawserver.py); bounds are generous."""

from __future__ import annotations

import threading
import time

import pytest
from _rawserver import raw_server

from mlops_lb.load import constant, run_load

# The raw servers run on threads of the test process. TestRunEndsOnTime times its runs (a run ends at duration +
# timeout): a neighbour test on the same two cores would stretch them, so it runs alone (`serial`); the others pin
# counts, error kinds and files and run two at a time. The target-fixture tests are `fleet` as well.

BODY = [b'{"rows": [[1.0, 2.0]]}']
LAX = {"progress": False, "max_lag_p99_s": 10.0}


class TestCloseDelimited:
    @pytest.mark.parametrize("mode", ["close11", "http10"])
    def test_body_ends_at_close(self, mode):
        """RFC 9112 §6.3: a response without Content-Length or chunked coding ends when the server closes; the
        engine counts it as a 200 with its whole body, not as a reset."""
        with raw_server(mode) as port:
            r = run_load(f"http://127.0.0.1:{port}/", constant(40, 1), BODY, connections=4, **LAX)
        df = r.requests()
        assert len(df) == 40
        assert (df["error"] == "").all(), df["error"].value_counts()
        assert (df["status"] == 200).all()
        from _rawserver import RESPONSES

        assert (df["bytes"] == len(RESPONSES[mode])).all()
        if mode == "close11":
            assert (df["target"] == "raw").all()

    def test_server_closing_idle_keepalive_connections(self):
        """RFC 9112 §9.6: the server closes each kept-alive connection right after its response. The engine drops
        the parked connection (never writes to a closed transport, never reuses a dead one) and records every
        request (writing to a transport uvloop had closed once crashed a run: 'the handler is closed')."""
        with raw_server("keepalive_then_close") as port:
            r = run_load(f"http://127.0.0.1:{port}/", constant(200, 2), BODY, connections=4, **LAX)
        df = r.requests()
        assert len(df) == 400
        assert set(df["error"]) <= {"", "reset"}, df["error"].value_counts()
        assert (df["status"] == 200).mean() > 0.5

    def test_declared_length_cut_short_is_still_a_reset(self):
        """A close before the declared Content-Length is a broken response (reset), not a complete one."""
        with raw_server("short") as port:
            r = run_load(f"http://127.0.0.1:{port}/", constant(20, 0.5), BODY, connections=2, **LAX)
        assert (r.requests()["error"] == "reset").all()


@pytest.mark.serial  # each run must end within duration + timeout_s + 3 s
class TestRunEndsOnTime:
    def test_hung_server_run_ends_at_duration_plus_timeout(self):
        """A server that accepts and never answers: the run ends near duration + timeout_s (not one timeout
        per round of connections), every request has a named error kind, and the diagnosis blames the server."""
        with raw_server("hang") as port:
            t0 = time.monotonic()
            r = run_load(f"http://127.0.0.1:{port}/", constant(50, 3), BODY, connections=8, timeout_s=1.0,
                         **LAX)  # fmt: skip
            took = time.monotonic() - t0
        df = r.requests()
        assert len(df) == 150
        assert took < 3 + 1.0 + 3.0, took  # duration + timeout_s + start-up and a loaded machine's slack
        kinds = set(df["error"])
        assert kinds <= {"timeout", "no_connection"} and "" not in kinds, df["error"].value_counts()
        assert (df["error"] == "timeout").sum() >= 8  # each connection carried at least one request
        assert (df["error"] == "no_connection").sum() > 0
        nc = df[df["error"] == "no_connection"]
        assert nc["sent_at"].isna().all() and nc["intended_at"].notna().all()
        assert not r.valid and "server_not_answering" in r.invalid_kinds
        s = r.summary()
        assert s["invalid_kinds"] == r.invalid_kinds and len(s["invalid_kinds"]) == len(s["invalid_reasons"])
        assert "generator_lag" not in r.invalid_kinds

    def test_never_accepting_listener(self):
        """A listener that never accepts: connects beyond its backlog hang and are bounded by connect_timeout_s;
        the run still ends near duration + timeout_s, nothing is left without an error kind."""
        with raw_server("noaccept") as port:
            t0 = time.monotonic()
            r = run_load(f"http://127.0.0.1:{port}/", constant(20, 2), BODY, connections=8, timeout_s=1.0,
                         connect_timeout_s=0.5, **LAX)  # fmt: skip
            took = time.monotonic() - t0
        df = r.requests()
        assert len(df) == 40
        assert took < 0.5 + 2 + 1.0 + 3.0, took
        assert "" not in set(df["error"]), df["error"].value_counts()
        assert set(df["error"]) <= {"connect", "no_connection", "timeout"}
        assert "server_not_answering" in r.invalid_kinds

    def test_stop_during_hang_cancels_in_flight(self):
        """Stop while every connection waits on a hung server: the run ends within a second or so, in-flight and
        waiting requests are `cancelled`, none has status 0 with an empty error."""
        stop = threading.Event()
        with raw_server("hang") as port:
            threading.Timer(1.0, stop.set).start()
            t0 = time.monotonic()
            r = run_load(f"http://127.0.0.1:{port}/", constant(50, 30), BODY, connections=8, timeout_s=10.0,
                         stop=stop, **LAX)  # fmt: skip
            took = time.monotonic() - t0
        assert took < 1.0 + 1.0 + 3.0, took
        assert r.stopped
        df = r.requests()
        due = df[df["intended_at"] <= df["intended_at"].min() + __import__("pandas").Timedelta(seconds=0.9)]
        assert (due["error"] == "cancelled").all(), due["error"].value_counts()
        sent = df[df["sent_at"].notna()]
        assert len(sent) == 8 and (sent["error"] == "cancelled").all()
        # requests intended after the Stop were never due: kept, unsent, outside the run
        later = df[df["sent_at"].isna() & (df["error"] == "")]
        assert len(later) > 1000


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MB tmpfs (mount needs root; skipped where not permitted), filled to leave ``free`` bytes."""
    import os
    import subprocess

    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"mount not permitted here: {res.stderr.decode().strip()}")

    def fill(free: int) -> None:
        st = os.statvfs(mnt)
        with open(mnt / "filler", "wb") as fh:
            fh.write(b"\0" * max(st.f_bavail * st.f_frsize - free, 0))

    try:
        yield mnt, fill
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


class TestStorageFailure:
    def test_full_disk_keeps_the_result(self, target, tiny_disk, caplog):
        """The bundle's disk fills mid-run: run_load still returns the whole result with bundle_error set, logs
        one warning (not a traceback per append), and what reached disk loads."""
        import logging

        from mlops_lb.bundle import RunBundle
        from mlops_lb.errors import StorageError

        mnt, fill = tiny_disk
        b = RunBundle.create(root=mnt, name="full")
        fill(60_000)  # room for load.json and a part or two, not for the whole run
        with caplog.at_level(logging.WARNING, logger="mlops_lb.load.runner"):
            r = run_load(f"{target.base}/ok", constant(1000, 3), BODY, connections=8, bundle=b,
                         interval_s=0.25, **LAX)  # fmt: skip
        assert isinstance(r.bundle_error, StorageError) and r.bundle_error.errno == 28
        assert str(b.path) in str(r.bundle_error)
        assert r.summary()["bundle_error"] == str(r.bundle_error)
        assert len(r.requests()) == 3000 and r.summary()["responses"] == 3000
        warnings = [rec for rec in caplog.records if rec.levelno >= logging.WARNING]
        assert len(warnings) == 1 and warnings[0].exc_info is None
        loaded = RunBundle.load(b.path)
        assert 0 < len(loaded.requests) < 3000


class TestBadRequestInput:
    @pytest.mark.parametrize(
        ("kwargs", "needle"),
        [
            ({"headers": {"X-A": "v\r\nX-Injected: 1"}}, "headers['X-A']"),
            ({"headers": {"X-A": "v\nX"}}, "CR, LF"),
            ({"headers": {"Bad Name": "v"}}, "'Bad Name'"),
            ({"method": "PO ST"}, "method"),
            ({"method": "GET /x HTTP/1.1\r\n"}, "method"),
        ],
    )
    def test_request_line_and_headers_are_validated(self, target, kwargs, needle):
        """RFC 9110 §5.5/§5.6.2: a CR/LF in a header value or a space in a method would split the request
        (header injection); refused with a LoadTestError naming the field, before any request is sent."""
        from mlops_lb.errors import LoadTestError

        with pytest.raises(LoadTestError) as ei:
            run_load(f"{target.base}/ok", constant(10, 0.5), BODY, **kwargs, **LAX)
        assert needle in str(ei.value)
        assert target.count() == 0

    def test_unresolvable_host_fails_before_the_run(self):
        """A host that does not resolve (.invalid is reserved, RFC 2606) is a clear error before any request."""
        from mlops_lb.errors import LoadTestError

        t0 = time.monotonic()
        with pytest.raises(LoadTestError, match="does not resolve"):
            run_load("http://no-such-host.invalid:8080/x", constant(10, 30), BODY, **LAX)
        assert time.monotonic() - t0 < 10  # not after the 30 s run

    def test_hostname_resolves_once(self, target):
        """A name (localhost) is resolved before the run and the Host header keeps the name."""
        r = run_load(f"http://localhost:{target.port}/ok", constant(20, 0.5), BODY, connections=2, **LAX)
        assert r.summary()["responses"] == 10
