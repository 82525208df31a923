"""Hostile input (issue 25): model files that would run code, secrets that would leak, idle sockets that would
starve the health check, emulator fields that would crash or amplify. Each test failed before its fix.

Rules these tests encode, with their sources:

| rule | source |
|---|---|
| unpickling runs code: "It is possible to construct malicious pickle data which will execute arbitrary code" | https://docs.python.org/3/library/pickle.html |
| skops builds only types it trusts by default or that are passed as ``trusted``; ``get_untrusted_types`` lists the others without building | https://skops.readthedocs.io/en/stable/persistence.html (and ``skops.io.load``'s docstring, skops 0.16) |
| a field value must not contain CR, LF or NUL | RFC 9110 §5.5, https://www.rfc-editor.org/rfc/rfc9110#section-5.5 |
| Authorization / Proxy-Authorization carry credentials; Cookie carries session state | RFC 9110 §11.6.2, §11.7.2; RFC 6265 §4.2 |
| userinfo in an http URI is deprecated ("user:password" format), and is sent as a Basic credential | RFC 9110 §4.2.4; RFC 7617 §2 |
| POSIX env var names: letters, digits, underscore, not starting with a digit; a NUL cannot be in an env value or argv | POSIX.1-2017 XBD §8.1; execve(2) |
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mlops_lb as ml
from mlops_lb.errors import SpecError
from mlops_lb.serving.model import check_model, default_trusted, load_model


# --------------------------------------------------------------------------- model files
def _crafted_skops(path: Path, canary: Path) -> Path:
    """A real .skops file whose one node calls ``os.system("touch CANARY")`` when built.

    skops' ConstructorFromReduceNode builds ``module.class(*content)``: with ``os``/``system`` that is a call. The
    file is a real skops dump of a ZoneInfo (built with that node) with the names swapped, so skops parses it.
    """
    from zoneinfo import ZoneInfo

    import skops.io as sio

    schema = json.loads(zipfile.ZipFile(io.BytesIO(sio.dumps({"a": ZoneInfo("UTC")}))).read("schema.json"))
    node = schema["content"]["a"]
    node["__module__"], node["__class__"] = "os", "system"
    node["content"]["content"][0]["content"] = json.dumps(f"touch {canary}")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("schema.json", json.dumps(schema))
    return path


class TestModelFiles:
    def test_skops_file_naming_os_system_does_not_run(self, tmp_path: Path) -> None:
        """A .skops file naming os.system is refused before anything is built: no canary file, and the error names
        the type and the fix (model.trusted_types). Before the fix load_model trusted get_untrusted_types()."""
        canary = tmp_path / "canary"
        evil = _crafted_skops(tmp_path / "evil.skops", canary)
        import skops.io as sio

        assert sio.get_untrusted_types(file=evil) == ["os.system"]  # the file really names it
        for call in (load_model, check_model):
            with pytest.raises(SpecError) as err:
                call(str(evil))
            assert err.value.field == "model.trusted_types"
            assert "os.system" in str(err.value) and "trusted_types" in str(err.value)
        assert not canary.exists()

    def test_the_crafted_file_is_a_real_exploit(self, tmp_path: Path) -> None:
        """The other direction: handed to skops with everything it names trusted (the old behaviour), the same
        file creates the canary, so the refusal above is what stops it."""
        import skops.io as sio

        canary = tmp_path / "canary"
        evil = _crafted_skops(tmp_path / "evil.skops", canary)
        sio.load(evil, trusted=sio.get_untrusted_types(file=evil))
        assert canary.exists()

    def test_local_fleet_refuses_it_before_any_process(self, tmp_path: Path) -> None:
        """A spec serving the crafted file fails when the fleet is made, naming the type; nothing runs."""
        from mlops_lb.local import LocalFleet

        canary = tmp_path / "canary"
        evil = _crafted_skops(tmp_path / "evil.skops", canary)
        with pytest.raises(SpecError, match=r"os\.system"):
            LocalFleet(ml.FleetSpec(name="evil", model={"source": str(evil)}))
        assert not canary.exists()

    def test_scikit_learn_classes_load_without_naming_them(self, tmp_path: Path) -> None:
        """Models whose skops files name sklearn classes skops does not trust by default (a forest's Tree, a KD
        tree) load as they are; the types trusted are reported on the handle."""
        import skops.io as sio
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.neighbors import KNeighborsClassifier

        x = np.random.default_rng(0).normal(size=(40, 3))
        y = (x[:, 0] > 0).astype(int)
        for est in (RandomForestClassifier(n_estimators=2, random_state=0), KNeighborsClassifier(3)):
            path = tmp_path / f"{type(est).__name__}.skops"
            sio.dump(est.fit(x, y), path)
            assert sio.get_untrusted_types(file=path)  # skops alone would refuse it
            h = load_model(str(path))
            assert h.predict(x[:3]) == est.predict(x[:3]).tolist()
            assert set(h.trusted_types) == set(sio.get_untrusted_types(file=path))

    @pytest.mark.parametrize(
        ("name", "trusted"),
        [
            ("sklearn.tree._tree.Tree", True),
            ("sklearn.neighbors._kd_tree.KDTree", True),
            ("scipy.stats._distn_infrastructure.rv_continuous_frozen", True),
            ("numpy.memmap", False),  # a class whose constructor creates or truncates a file
            ("scipy.io.FortranFile", False),  # the same
            ("scipy.sparse.csr_matrix", False),  # skops trusts it itself; not ours to widen
            ("os.system", False),
            ("builtins.eval", False),
            ("numpy.testing._private.utils.runstring", False),  # a function that exec()s a string
            ("sklearn.utils._testing.assert_run_python_script_without_output", False),
            ("numpy.f2py.__main__.main", False),  # importing a __main__ module runs it
            ("numpy.load", False),  # a function, not a class
            ("sklearn.NoSuchThing", False),
            ("sklearnx.Evil", False),
        ],
    )
    def test_default_trust_rule(self, name: str, trusted: bool) -> None:
        """Classes of sklearn and scipy.stats outside test/build/dunder modules are trusted; functions, and the
        file-writing classes of numpy/scipy, never."""
        assert default_trusted(name) is trusted

    def test_skops_file_calling_numpy_memmap_does_not_write(self, tmp_path: Path) -> None:
        """Why numpy is not trusted by prefix: a node building numpy.memmap(path, "uint8", "w+", 0, (1,)) would
        create (or truncate) any file. Refused, and the file is not created."""
        from zoneinfo import ZoneInfo

        import skops.io as sio

        target = tmp_path / "written-by-a-model-file"
        dump = sio.dumps({"a": ZoneInfo("UTC"), "b": (str(target), "uint8", "w+", 0, 1)})
        schema = json.loads(zipfile.ZipFile(io.BytesIO(dump)).read("schema.json"))
        node = schema["content"]["a"]
        node["__module__"], node["__class__"] = "numpy", "memmap"
        node["content"] = schema["content"].pop("b")  # memmap(path, "uint8", "w+", 0, 1)
        schema["key_types"]["content"] = schema["key_types"]["content"][:1]
        path = tmp_path / "memmap.skops"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("schema.json", json.dumps(schema))
        assert sio.get_untrusted_types(file=path) == ["numpy.memmap"]
        with pytest.raises(SpecError, match=r"numpy\.memmap"):
            load_model(str(path))
        assert not target.exists()
        sio.load(path, trusted=["numpy.memmap"])  # the other direction: trusted, it writes
        assert target.exists()

    def test_user_named_types_are_trusted(self, tmp_path: Path) -> None:
        """A type the user names (model.trusted_types / --trust-type) is passed on to skops."""
        canary = tmp_path / "canary"
        evil = _crafted_skops(tmp_path / "evil.skops", canary)
        check_model(str(evil), trusted_types=["os.system"])  # the user said so: no refusal
        assert not canary.exists()  # check_model builds nothing

    def test_pickle_needs_the_opt_in(self, tmp_path: Path) -> None:
        """A .joblib/.pkl is refused without allow_pickle (spec, load_model, check_model), naming the opt-in and
        the safe formats; with it, it loads. Before the fix it was unpickled silently."""
        import joblib
        from sklearn.linear_model import LogisticRegression

        x = np.random.default_rng(0).normal(size=(30, 2))
        path = tmp_path / "m.joblib"
        joblib.dump(LogisticRegression().fit(x, x[:, 0] > 0), path)
        for call in (
            lambda: load_model(str(path)),
            lambda: check_model(str(path)),
            lambda: ml.ModelSpec(source=str(path)),
        ):
            with pytest.raises(SpecError) as err:
                call()
            assert err.value.field == "model.allow_pickle"
            assert "runs any code" in str(err.value) and ".skops" in str(err.value)
        assert load_model(str(path), allow_pickle=True).n_features == 2
        assert ml.ModelSpec(source=str(path), allow_pickle=True).allow_pickle is True

    def test_pickle_opt_in_reaches_the_worker_and_the_instance(self, tmp_path: Path) -> None:
        """model.allow_pickle / trusted_types become serve flags locally and in the AWS user data."""
        from mlops_lb.aws._parts import server_run
        from mlops_lb.local.workers import worker_argv

        spec = ml.FleetSpec(
            name="p", model={"source": "m.pkl", "allow_pickle": True, "trusted_types": ["mypkg.M"]}
        )
        argv = worker_argv(spec, port=9001, target_id="i-1")
        assert argv[-3:] == ["--trust-type", "mypkg.M", "--allow-pickle"]
        assert server_run(spec, {}, "us-east-1").model_flags == ("--trust-type", "mypkg.M", "--allow-pickle")
        assert ml.FleetSpec.from_yaml(spec.to_yaml()) == spec

    def test_serve_help_says_pickle_runs_code(self) -> None:
        """`mlops-lb serve --help` warns that a pickle runs code."""
        from mlops_lb.cli import build_parser

        serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
        assert "RUNS ANY CODE" in " ".join(serve.format_help().split())


def _run_async(coro: Any) -> Any:
    """Run ``coro`` on a private loop. Not asyncio.run: it ends with set_event_loop(None), after which code that
    relies on get_event_loop() (Pulumi's mocks, in later tests of the same process) raises RuntimeError."""
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


# --------------------------------------------------------------------------- idle and slow connections
def _serve_at_1024(port: int, *flags: str) -> subprocess.Popen[bytes]:
    """A real server process started with the soft open-file limit many systems default to (1024)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

    def low() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))

    return subprocess.Popen(
        [sys.executable, "-m", "mlops_lb", "serve", "--port", str(port), *flags],
        preexec_fn=low,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _health(port: int, timeout: float = 5.0) -> int:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", "/health")
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def _closed_by_peer(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


@pytest.mark.fleet
@pytest.mark.serial
@pytest.mark.parametrize("flags", [("--llm",), ("--model", "demo.onnx")], ids=["llm-emulator", "model"])
def test_2000_idle_sockets_do_not_starve_health_and_are_reaped(
    flags: tuple[str, ...], free_port: Any
) -> None:
    """2,000 idle sockets against a server started at RLIMIT_NOFILE 1024: /health still answers 200 (the server
    raised its soft limit), and after the header deadline the server has closed every idle socket.
    Before: /health was reset (ConnectionResetError) and no idle socket was ever closed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4200:
        pytest.skip(f"the hard open-file limit ({hard}) is too low to hold 2,000 sockets on each side")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4200), hard))  # this test's own sockets
    port = free_port()
    proc = _serve_at_1024(port, *flags, "--header-timeout-s", "2")
    socks: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                if _health(port, 2) == 200:
                    break
            assert time.monotonic() < deadline and proc.poll() is None, "server did not become ready"
            time.sleep(0.1)
        t0 = time.monotonic()
        socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2000)]
        assert _health(port) == 200
        # Every idle socket is closed by the server once the 2 s deadline has passed (bounded wait).
        while time.monotonic() - t0 < 20 and not all(_closed_by_peer(s) for s in socks[-50:]):
            time.sleep(0.2)
        assert sum(_closed_by_peer(s) for s in socks) == 2000
        assert _health(port) == 200
    finally:
        for s in socks:
            s.close()
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_trickled_headers_are_cut_off_but_a_prompt_client_is_served() -> None:
    """The header deadline in both directions, in process: a client sending half a request line is closed after
    the deadline; a client that sends its request in time gets its answer on the same connection."""
    import uvicorn

    from mlops_lb.serving._guard import bounded_protocol

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        http=bounded_protocol(header_timeout_s=0.5, max_connections=100),
        log_level="error",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    t = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    clients: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and t.is_alive(), "the test server did not start"
            time.sleep(0.02)
        slow = socket.create_connection(("127.0.0.1", port), timeout=5)
        clients.append(slow)
        slow.sendall(b"GET /slow HT")  # a request line that never ends
        prompt = socket.create_connection(("127.0.0.1", port), timeout=5)
        clients.append(prompt)
        prompt.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert prompt.recv(1024).endswith(b"ok")
        assert not _closed_by_peer(slow)  # within the deadline it is left alone
        time.sleep(1.0)
        assert _closed_by_peer(slow)
        assert _closed_by_peer(prompt)  # idle after its answer: reaped too, before uvicorn's 5 s keep-alive
    finally:
        for c in clients:
            c.close()
        server.should_exit = True
        t.join(10)
        sock.close()


def test_in_flight_limit_answers_503_but_never_on_health() -> None:
    """Beyond max_in_flight a request gets 503 with Retry-After; /health is answered whatever the load; below the
    limit requests pass (both directions of the verdict)."""
    import asyncio

    from mlops_lb.serving._guard import limit_in_flight

    release = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    limited = limit_in_flight(app, 2)

    async def call(path: str) -> tuple[int, dict[bytes, bytes]]:
        sent: list[Any] = []

        async def send(msg: Any) -> None:
            sent.append(msg)

        async def receive() -> Any:
            return {"type": "http.request", "body": b""}

        await limited({"type": "http", "path": path}, receive, send)
        return sent[0]["status"], dict(sent[0]["headers"])

    async def main() -> None:
        slow = [asyncio.create_task(call("/slow")) for _ in range(2)]
        await asyncio.sleep(0.05)
        status, headers = await call("/predict")
        assert status == 503 and headers[b"retry-after"] == b"1"
        assert (await call("/health"))[0] == 200
        release.set()
        assert [(await t)[0] for t in slow] == [200, 200]
        assert (await call("/predict"))[0] == 200

    _run_async(main())


# --------------------------------------------------------------------------- the LLM emulator's request fields
def _llm_call(body: bytes, path: str = "/v1/chat/completions") -> tuple[int, bytes]:
    """One request through the emulator's ASGI app, in process (fast engine), returning status and whole body."""
    import asyncio

    from mlops_lb.serving.llm_app import create_llm_app
    from mlops_lb.serving.llm_engine import EngineParams

    app = create_llm_app(EngineParams(prefill_ms_per_token=0, decode_ms_per_token=0.1))

    async def main() -> tuple[int, bytes]:
        sent: list[Any] = []
        chunks = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> Any:
            if chunks:
                return chunks.pop()
            await asyncio.sleep(3600)  # the client stays: no disconnect

        async def send(msg: Any) -> None:
            sent.append(msg)

        scope = {"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""}
        await asyncio.wait_for(app(scope, receive, send), 30)
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    return _run_async(main())


class TestEmulatorFields:
    @pytest.mark.parametrize("digits", [4300, 200, 20])
    def test_huge_max_tokens_is_a_400_naming_the_field(self, digits: int) -> None:
        """A max_tokens of thousands of digits is a 400 naming max_tokens (before: 500 from int formatting)."""
        status, body = _llm_call(
            b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": ' + b"9" * digits + b"}"
        )
        assert status == 400, body[:200]
        assert b"max_tokens" in body and len(body) < 1000

    def test_max_tokens_in_range_is_served(self) -> None:
        """The other direction: a max_tokens within the context length is answered."""
        status, body = _llm_call(b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}')
        assert status == 200 and json.loads(body)["usage"]["completion_tokens"] == 3

    def test_unbounded_model_name_is_not_echoed(self) -> None:
        """A 3.9 MB model name is a short 400, not echoed in every chunk (before: 41x amplification); a normal
        name is still echoed."""
        huge = "m" * 3_900_000
        req = {
            "model": huge,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 8,
            "stream": True,
        }
        status, body = _llm_call(json.dumps(req).encode())
        assert status == 400 and b"model" in body and len(body) < 1000
        req["model"] = "meta-llama/Llama-3.1-8B-Instruct"
        status, body = _llm_call(json.dumps(req).encode())
        assert status == 200 and body.count(b"meta-llama/Llama-3.1-8B-Instruct") >= 8


# --------------------------------------------------------------------------- secrets
TOKEN = "tok-5b1f0c9e-UNIQUE-SECRET-7d3a"


@contextlib.contextmanager
def _capture_server() -> Any:
    """A loopback HTTP server (a thread per connection) that records each request's head and answers 200."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    srv.settimeout(0.2)
    heads: list[bytes] = []
    stop = threading.Event()

    def answer(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            buf = b""
            try:
                while True:
                    while b"\r\n\r\n" not in buf:
                        chunk = conn.recv(65536)
                        if not chunk:
                            raise ConnectionError
                        buf += chunk
                    head, _, rest = buf.partition(b"\r\n\r\n")
                    n = int(
                        next(
                            (
                                h.split(b":")[1]
                                for h in head.split(b"\r\n")
                                if h.lower().startswith(b"content-length")
                            ),
                            b"0",
                        )
                    )
                    while len(rest) < n:
                        rest += conn.recv(65536)
                    heads.append(head)
                    buf = rest[n:]
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            except (OSError, ConnectionError):
                pass

    def serve() -> None:
        # A thread per connection: answered one after the other, each keep-alive connection of the load held the
        # next one's requests until its 5 s idle timeout, and the test waited ~11 s for a 1 s load.
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1], heads
    finally:
        stop.set()
        t.join(10)
        srv.close()


class TestSecretsSpec:
    def test_env_values_with_secret_names_are_redacted_and_warned(self, caplog: Any) -> None:
        """repr, to_dict and to_yaml show *** for HF_TOKEN (before: the value); the value still reaches the
        targets; a warning names server.secrets; plain names stay readable (both directions)."""
        import logging

        import mlops_lb.spec as spec_mod

        spec_mod._WARNED_SECRET_ENV.discard("HF_TOKEN")
        with caplog.at_level(logging.WARNING, logger="mlops_lb.spec"):
            spec = ml.FleetSpec(name="s", server={"env": {"HF_TOKEN": TOKEN, "LOG_LEVEL": "debug"}})
        for shown in (
            repr(spec),
            repr(spec.server),
            str(spec.server.env),
            json.dumps(spec.to_dict()),
            spec.to_yaml(),
        ):
            assert TOKEN not in shown and "***" in shown and "debug" in shown
        assert "server.secrets.HF_TOKEN" in caplog.text and TOKEN not in caplog.text
        env = spec.server.environment(port=1, host="h", target_id="t", model="demo")
        assert env["HF_TOKEN"] == TOKEN

    @pytest.mark.parametrize(
        ("secrets", "field", "words"),
        [
            ({"X": {}}, "server.secrets.X", "exactly one source"),
            ({"X": {"ssm": "/a", "env": "B"}}, "server.secrets.X", "exactly one source"),
            ({"X": {"vault": "a"}}, "server.secrets.X", "exactly one source"),
            ({"1X": {"env": "B"}}, "server.secrets.1X", "environment variable name"),
            ({"PORT": {"env": "B"}}, "server.secrets.PORT", "set by the fleet"),
            ({"X": {"env": "B C"}}, "server.secrets.X.env", "without spaces"),
            ({"X": {"ssm": "/a", "key": "k"}}, "server.secrets.X.key", "secretsmanager only"),
            ({"X": "plain-value"}, "server.secrets.X", "must be a reference"),
        ],
    )
    def test_secret_references_are_validated(self, secrets: Any, field: str, words: str) -> None:
        """Exactly one source per secret, valid names, references only: a SpecError names the field."""
        with pytest.raises(SpecError) as err:
            ml.FleetSpec(name="s", server={"secrets": secrets})
        assert err.value.field == field and words in str(err.value)
        assert "plain-value" not in str(err.value)

    def test_valid_references_round_trip(self) -> None:
        """Each source kind is accepted and only the reference is stored."""
        secrets = {
            "HF_TOKEN": {"ssm": "/team/hf-token"},
            "DB": {
                "secretsmanager": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf",
                "key": "pw",
            },
            "LOCAL": {"env": "MY_LOCAL_TOKEN"},
        }
        spec = ml.FleetSpec(name="s", server={"secrets": secrets})
        assert (
            ml.FleetSpec.from_yaml(spec.to_yaml()) == spec and spec.to_dict()["server"]["secrets"] == secrets
        )

    def test_a_name_in_env_and_secrets_is_refused(self) -> None:
        """One name, one place."""
        with pytest.raises(SpecError, match="one place"):
            ml.FleetSpec(name="s", server={"env": {"X": "1"}, "secrets": {"X": {"env": "Y"}}})

    def test_local_fleet_refuses_aws_sources_and_missing_vars_before_any_process(
        self, monkeypatch: Any
    ) -> None:
        """The local backend reads no AWS secret (no credentials needed locally) and needs the named variable."""
        from mlops_lb.local import LocalFleet

        monkeypatch.delenv("MLOPS_LB_TEST_UNSET", raising=False)
        with pytest.raises(SpecError, match="cannot be fetched by the local backend") as err:
            LocalFleet(ml.FleetSpec(name="s", server={"secrets": {"X": {"ssm": "/a"}}}))
        assert err.value.field == "server.secrets.X"
        with pytest.raises(SpecError, match="export MLOPS_LB_TEST_UNSET"):
            LocalFleet(ml.FleetSpec(name="s", server={"secrets": {"X": {"env": "MLOPS_LB_TEST_UNSET"}}}))

    @pytest.mark.parametrize(
        "server",
        [
            {"env": {"A": "x\0y"}},
            {"command": ["app", "--flag", "a\0b"]},
            {"command": ["app"], "install": "req\0.txt"},
        ],
    )
    def test_nul_is_refused_in_values_that_reach_a_shell(self, server: Any) -> None:
        """NUL cannot live in an env value, an argument or a path: refused with the field named."""
        with pytest.raises(SpecError, match="NUL"):
            ml.FleetSpec(name="s", server=server)
        with pytest.raises(SpecError, match="NUL"):
            ml.ModelSpec(source="m\0.onnx")

    def test_newlines_and_quotes_are_still_allowed(self) -> None:
        """Only NUL is refused: a PEM (newlines) or quotes are data, encoded by the user-data renderer."""
        pem = "-----BEGIN KEY-----\nabc\n-----END KEY-----\n"
        assert ml.FleetSpec(name="s", server={"env": {"CERT": pem, "Q": "a'b\"c"}}).server.env["CERT"] == pem


class TestHeadersAndUrls:
    def test_load_settings_repr_hides_header_values(self) -> None:
        """repr(LoadSettings) shows *** for Authorization and X-Api-Key (before: the values); plain headers stay."""
        from mlops_lb.load import LoadSettings

        s = LoadSettings(
            headers={"Authorization": f"Bearer {TOKEN}", "X-Api-Key": TOKEN, "Accept": "text/plain"}
        )
        assert TOKEN not in repr(s) and "text/plain" in repr(s) and "***" in repr(s)

    def test_header_error_does_not_quote_a_key_read_from_a_file(self) -> None:
        """A key with its trailing newline is refused without printing it (before: the whole value)."""
        from mlops_lb.errors import LoadTestError

        with pytest.raises(LoadTestError) as err:
            ml.run_load(
                "http://127.0.0.1:9/", ml.load.constant(1, 1), [b"{}"], headers={"X-Api-Key": TOKEN + "\n"}
            )
        assert TOKEN not in str(err.value) and "LF" in str(err.value) and "strip()" in str(err.value)

    def test_bad_url_error_hides_its_credentials(self) -> None:
        """An https URL with user:password is refused without echoing the password or the api_key."""
        from mlops_lb.errors import LoadTestError

        with pytest.raises(LoadTestError) as err:
            ml.run_load(f"https://u:{TOKEN}@127.0.0.1:9/p?api_key={TOKEN}", ml.load.constant(1, 1), [b"{}"])
        assert TOKEN not in str(err.value) and "u:***@" in str(err.value)

    def test_url_credentials_are_sent_as_basic_auth_and_redacted(self, tmp_path: Path, caplog: Any) -> None:
        """user:password@ in the URL goes out as Authorization: Basic (before: silently dropped); load.json, the
        result and INFO logs show the URL with *** (before: the password and the api_key)."""
        import base64
        import logging

        from mlops_lb.bundle import RunBundle

        with _capture_server() as (port, heads), caplog.at_level(logging.DEBUG):
            bundle = RunBundle.create(root=tmp_path, name="u")
            url = f"http://alice:{TOKEN}@127.0.0.1:{port}/p?api_key={TOKEN}&n=1"
            result = ml.run_load(
                url, ml.load.constant(5, 1), [b"{}"], progress=False, bundle=bundle, max_lag_p99_s=1.0
            )
        want = b"Authorization: Basic " + base64.b64encode(f"alice:{TOKEN}".encode())
        assert heads and all(want in h for h in heads)
        assert all(f"api_key={TOKEN}".encode() in h for h in heads)  # the query is sent as given
        assert result.summary()["requests"] == 5
        assert TOKEN not in caplog.text and TOKEN not in repr(result) and TOKEN not in str(result.url)
        for f in bundle.path.rglob("*"):
            if f.is_file():
                assert TOKEN.encode() not in f.read_bytes(), f

    def test_url_credentials_and_an_authorization_header_are_refused(self) -> None:
        """Two credentials for one request: refused, naming headers=."""
        from mlops_lb.errors import LoadTestError

        with pytest.raises(LoadTestError, match="headers=") as err:
            ml.run_load(
                f"http://u:{TOKEN}@127.0.0.1:9/",
                ml.load.constant(1, 1),
                [b"{}"],
                headers={"Authorization": "x"},
            )
        assert TOKEN not in str(err.value)


@pytest.mark.fleet
@pytest.mark.timeout(240)
def test_one_token_in_env_header_url_and_secret_is_found_nowhere(
    tmp_path: Path, caplog: Any, monkeypatch: Any
) -> None:
    """The token test: one token planted in a server.env value, a server.secrets env reference, a header and the
    URL's query; a whole session on a local fleet; to_yaml, an error path, the captured log, the worker logs and
    every file of the bundle: the token appears nowhere, yet the target really got the secret."""
    import logging
    import shutil

    import psutil

    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed")
    monkeypatch.setenv("MLOPS_LB_TEST_LAUNCHER_TOKEN", TOKEN)
    spec = ml.FleetSpec.example("demo").replace(
        local=ml.LocalSpec(period_s=0.5, slots=2, min_service_ms=5),
        server=ml.ServerSpec(
            env={"HF_TOKEN": TOKEN}, secrets={"DB_PASSWORD": {"env": "MLOPS_LB_TEST_LAUNCHER_TOKEN"}}
        ),
    )
    texts = [repr(spec), spec.to_yaml()]
    with caplog.at_level(logging.DEBUG), ml.open_fleet(spec) as fleet:
        fleet.launch()
        pids = [int(p) for p in fleet.status()["pid"].dropna()]
        envs = [psutil.Process(p).environ() for p in pids]
        assert envs and all(e.get("DB_PASSWORD") == TOKEN and e.get("HF_TOKEN") == TOKEN for e in envs)
        outcome = ml.run_session(
            fleet,
            ml.load.constant(10, 1),
            out=tmp_path,
            path=f"/predict?api_key={TOKEN}",
            headers={"X-Api-Key": TOKEN, "Authorization": f"Bearer {TOKEN}"},
        )
        assert outcome.error is None and outcome.bundle_path is not None
        texts += [fleet.logs(t, tail=500) for t in fleet.status()["target"]]
        try:  # an error path: a header with a trailing newline
            ml.run_load(fleet.url + "/predict", ml.load.constant(1, 1), headers={"X-Api-Key": TOKEN + "\n"})
        except Exception as exc:
            texts.append(str(exc))
        else:
            raise AssertionError("a header with a newline was accepted")
    texts.append(caplog.text)
    texts.append(repr(outcome))
    for i, text in enumerate(texts):
        assert TOKEN not in text, (i, text[:300])
    files = [f for f in Path(outcome.bundle_path).rglob("*") if f.is_file()]
    assert any(f.name == "report.html" for f in files) and any(f.name == "spec.json" for f in files)
    for f in files:
        assert TOKEN.encode() not in f.read_bytes(), f
    assert "***" in (Path(outcome.bundle_path) / "spec.json").read_text()


def test_user_data_carries_secret_references_not_values() -> None:
    """Rendered AWS user data (render_user_data as it is today) of a spec whose secret is a reference: the value
    is nowhere (it never entered the spec)."""
    from mlops_lb.aws._parts import server_run
    from mlops_lb.aws.userdata import render_user_data

    spec = ml.FleetSpec(name="u", server={"secrets": {"HF_TOKEN": {"ssm": "/team/hf-token"}}})
    ud = render_user_data(
        bucket="b", region="us-east-1", wheel_key="wheels/x/mlops_lb-0.1.0-py3-none-any.whl", port=8080,
        server=server_run(spec, {}, "us-east-1"),
    )  # fmt: skip
    assert TOKEN not in ud


def test_user_data_does_not_carry_secret_looking_env_values() -> None:
    """A server.env HF_TOKEN value must not sit in launch-template user data (DescribeLaunchTemplateVersions and
    IMDS show it): the AWS backend refuses it before any cloud call, naming server.secrets, and never quotes it."""
    from mlops_lb.aws.program import check_aws_server

    spec = ml.FleetSpec(name="u", server={"command": ["app"], "env": {"HF_TOKEN": TOKEN}})
    with pytest.raises(SpecError) as err:
        check_aws_server(spec)
    assert "server.secrets" in str(err.value) and TOKEN not in str(err.value)


def test_a_non_string_header_value_is_not_quoted() -> None:
    """A bytes token as a header value is refused naming its type, not its content (before: the bytes shown)."""
    from mlops_lb.load import LoadSettings

    with pytest.raises(SpecError) as err:
        LoadSettings(headers={"X-Api-Key": TOKEN.encode()})  # type: ignore[dict-item]
    assert TOKEN not in str(err.value) and "bytes" in str(err.value)


def test_a_spec_reloaded_from_its_redacted_yaml_warns(caplog: Any) -> None:
    """to_yaml() hides the value; launching from that YAML would hand the target '***': a warning says so."""
    import logging

    import mlops_lb.spec as spec_mod

    spec_mod._WARNED_SECRET_ENV.discard("API_TOKEN=***")
    text = ml.FleetSpec(name="s", server={"env": {"API_TOKEN": TOKEN}}).to_yaml()
    with caplog.at_level(logging.WARNING, logger="mlops_lb.spec"):
        again = ml.FleetSpec.from_yaml(text)
    assert again.server.env["API_TOKEN"] == "***" and "saved with its secret values hidden" in caplog.text
