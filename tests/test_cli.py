"""The `mlops-lb` command line: subcommands, exit codes, and errors that say what to do."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import mlops_lb as ml
from mlops_lb.cli import build_parser, main


class TestParser:
    def test_every_documented_subcommand_exists(self) -> None:
        """serve, demo, report, up, status, scale, load and down are all commands (DESIGN §2), and preflight,
        compare and sweep (issue 27)."""
        sub = next(a for a in build_parser()._actions if a.dest == "command")
        assert set(sub.choices) == {
            "serve",
            "demo",
            "report",
            "up",
            "status",
            "scale",
            "load",
            "down",
            "preflight",
            "compare",
            "sweep",
        }

    def test_demo_options(self) -> None:
        """demo takes --duration-s, --spec and --out."""
        args = build_parser().parse_args(["demo", "--duration-s", "30", "--spec", "f.yaml", "--out", "o"])
        assert (args.duration_s, args.spec, args.out) == (30.0, "f.yaml", "o")

    def test_load_options(self) -> None:
        """load takes --connections, --cluster, --shards (an integer or auto) and --placement; all unset by default."""
        parse = build_parser().parse_args
        args = parse(["load", "http://h/p"])
        assert (args.connections, args.cluster, args.shards, args.placement) == (None, None, None, None)
        args = parse(["load", "http://h/p", "--connections", "64", "--cluster", "ray://head:10001", "--shards", "4",
                      "--placement", "strict_spread"])  # fmt: skip
        assert (args.connections, args.cluster, args.shards, args.placement) == (
            64,
            "ray://head:10001",
            4,
            "strict_spread",
        )
        assert parse(["load", "http://h/p", "--cluster", "ray", "--shards", "auto"]).shards == "auto"

    def test_placements_are_the_engines(self) -> None:
        """--placement offers exactly run_load's placements (the CLI writes them out to stay cheap to import)."""
        from mlops_lb.cli import PLACEMENTS
        from mlops_lb.load.distributed import PLACEMENTS as ENGINE_PLACEMENTS

        assert PLACEMENTS == ENGINE_PLACEMENTS

    @pytest.mark.parametrize(("value", "says"), [("x", "an integer or 'auto'"), ("0", "at least 1")])
    def test_bad_shards_is_a_usage_error(
        self, value: str, says: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--shards that is neither a positive integer nor auto exits 2 with argparse's usage message."""
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(["load", "http://h/p", "--cluster", "ray", "--shards", value])
        assert exc.value.code == 2 and says in capsys.readouterr().err


class TestErrors:
    @pytest.mark.parametrize("command", ["status", "scale", "down"])
    def test_local_fleet_commands_outside_its_process_explain_why(
        self, command: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """status/scale/down on the local backend exit 2 and say the fleet lives in the process that launched it."""
        spec = str(Path(ml.__file__).parent / "examples" / "demo.yaml")
        assert main([command, spec, "--backend", "local"]) == 2
        err = capsys.readouterr().err
        assert "mlops-lb: error:" in err and "mlops-lb up SPEC" in err

    def test_a_bad_spec_file_is_a_clear_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A spec with a typo exits 2 naming the field and suggesting the fix; no traceback."""
        bad = tmp_path / "bad.yaml"
        bad.write_text("name: x\nhelth_check: {}\n")
        assert main(["up", str(bad)]) == 2
        err = capsys.readouterr().err
        assert "helth_check" in err and "did you mean 'health_check'" in err and "Traceback" not in err


def test_load_runs_a_profile_and_writes_a_report(
    server: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mlops-lb load URL` runs a bounded profile against a real server and prints the report's path."""
    url = f"{server.url}/predict"  # type: ignore[attr-defined]
    rc = main(["load", url, "--rps", "20", "--duration-s", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    report = Path(out.split("report:")[-1].strip())
    assert report.is_file() and report.parent.parent == tmp_path
    assert ml.RunBundle.load(report.parent).summary["requests"] == 40


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TestLoadFlagsFailBeforeTheRun:
    """A bad flag of `mlops-lb load` exits 2 naming the flag, before a bundle exists or a request is sent."""

    @pytest.mark.parametrize(
        ("flags", "says"),
        [
            (["--connections", "0"], "--connections must be between 1 and 100000 (got 0)"),
            (["--shards", "2"], "--shards needs --cluster ray"),
            (["--placement", "pack"], "--placement needs --cluster ray"),
            (["--cluster", "http://head:10001"], "--cluster must be 'ray'"),
            (["--cluster", "ray://"], "--cluster must be ray://host[:port]"),
            (
                ["--cluster", "ray", "--shards", "9", "--connections", "4"],
                "--shards must be <= connections (4)",
            ),
        ],
    )
    def test_bad_flag(
        self, flags: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        out = tmp_path / "runs"
        rc = main(
            [
                "load",
                f"http://127.0.0.1:{_closed_port()}/predict",
                "--duration-s",
                "1",
                "--out",
                str(out),
                *flags,
            ]
        )
        err = capsys.readouterr().err
        assert rc == 2 and f"mlops-lb: error: {says}" in err and "Traceback" not in err
        assert not out.exists()

    def test_without_ray_the_error_names_the_extra(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
        out = tmp_path / "runs"
        rc = main(["load", "http://127.0.0.1:9/predict", "--cluster", "ray", "--out", str(out)])
        assert rc == 2 and "pip install 'mlops_lb[ray]'" in capsys.readouterr().err
        assert not out.exists()

    def test_unreachable_ray_client_address(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        pytest.importorskip("ray")
        port = _closed_port()
        out = tmp_path / "runs"
        rc = main(
            ["load", "http://127.0.0.1:9/predict", "--cluster", f"ray://127.0.0.1:{port}", "--out", str(out)]
        )
        err = capsys.readouterr().err
        assert rc == 2 and f"cannot reach the Ray Client server at 127.0.0.1:{port}" in err
        assert not out.exists()


def test_load_connections_reach_the_run(
    server: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--connections is the run's connection count (load.json of the bundle records it)."""
    url = f"{server.url}/predict"  # type: ignore[attr-defined]
    rc = main(["load", url, "--rps", "20", "--duration-s", "1", "--connections", "3", "--out", str(tmp_path)])
    assert rc == 0, capsys.readouterr().out
    (run,) = tmp_path.iterdir()
    assert json.loads((run / "load.json").read_text())["connections"] == 3
    assert ml.RunBundle.load(run).summary["requests"] == 20


# slow: a local Ray start takes tens of seconds on a loaded 2-core machine (see tests/distributed).
@pytest.mark.slow
def test_load_on_local_ray_shards(server: object, tmp_path: Path) -> None:
    """`mlops-lb load URL --cluster ray --shards 2` runs two shards on a local Ray, merges them and prints the table."""
    pytest.importorskip("ray")
    url = f"{server.url}/predict"  # type: ignore[attr-defined]
    env = {**os.environ, "RAY_agent_register_timeout_ms": "120000", "RAY_raylet_start_wait_time_s": "120"}
    cmd = [sys.executable, "-m", "mlops_lb", "load", url, "--rps", "40", "--duration-s", "2", "--connections", "4",
           "--cluster", "ray", "--shards", "2", "--out", str(tmp_path / "runs")]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=280, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    (run,) = (tmp_path / "runs").iterdir()
    spec = json.loads((run / "load.json").read_text())
    assert (spec["cluster"], spec["shards"], spec["connections"]) == ("ray", 2, 4)
    assert ml.RunBundle.load(run).summary["requests"] == 80
    table = out.stdout.split("lag_p99_s", 1)[1].split("report:", 1)[0].strip().splitlines()
    assert [line.split()[0] for line in table] == ["0", "1"]
