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
        compare and sweep (issue 27), routing (issue 28), rollout (issue 29)."""
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
            "routing",
            "rollout",
        }

    def test_rollout_flags_and_strategy(self) -> None:
        """rollout SPEC NEW_SPEC --strategy canary:PCT:BAKE: the strategy becomes the mapping the strategy classes
        check; a malformed one, NEW_SPEC together with --resume, or neither fail naming the flag (before any
        fleet is looked for); --resume and --rollback exclude each other (issue 29)."""
        from mlops_lb._commands import _strategy, cmd_rollout
        from mlops_lb.errors import SpecError
        from mlops_lb.rollouts import strategy_from_dict

        assert _strategy("canary:20:30") == {"kind": "canary", "percent": 20.0, "bake_s": 30.0}
        assert strategy_from_dict(_strategy("linear:25:5")).steps()[-1] == (100.0, 5.0)
        assert _strategy("all") == {"kind": "all_at_once"}
        for bad in ("canary:20", "blue:1:2", "linear:x:5"):
            with pytest.raises(SpecError, match="--strategy"):
                _strategy(bad)
        p = build_parser()
        for argv in (["rollout", "f.yaml", "n.yaml", "--resume"], ["rollout", "f.yaml"]):
            with pytest.raises(SpecError, match="NEW_SPEC"):
                cmd_rollout(p.parse_args(argv))
        with pytest.raises(SystemExit):
            p.parse_args(["rollout", "f.yaml", "--resume", "--rollback"])

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
    def test_local_fleet_commands_without_a_detached_fleet_explain_why(
        self,
        command: str,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """status/scale/down (local, the default backend) with no detached fleet exit 2 naming `up SPEC --detach`."""
        monkeypatch.setenv("MLOPS_LB_STATE_DIR", str(tmp_path / "state"))
        spec = str(Path(ml.__file__).parent / "examples" / "demo.yaml")
        assert main([command, spec]) == 2
        err = capsys.readouterr().err
        assert "mlops-lb: error: no detached local fleet 'mlops-lb-demo' is running" in err
        assert "mlops-lb up SPEC --detach" in err

    def test_a_bad_spec_file_is_a_clear_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A spec with a typo exits 2 naming the field and suggesting the fix; no traceback."""
        bad = tmp_path / "bad.yaml"
        bad.write_text("name: x\nhelth_check: {}\n")
        assert main(["up", str(bad)]) == 2
        err = capsys.readouterr().err
        assert "helth_check" in err and "did you mean 'health_check'" in err and "Traceback" not in err


# At the library's defaults a clean 20 rps run must be VALID (issue 24 part 1, helper `load`): on main the 3 ms
# lag bound calls it INVALID under a busy core, and this CLI now says so with exit code 3.
def test_load_runs_a_profile_and_writes_a_report(
    server: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mlops-lb load URL` runs a bounded profile against a real server, exits 0 and prints the report's path."""
    url = f"{server.url}/predict"  # type: ignore[attr-defined]
    rc = main(["load", url, "--rps", "20", "--duration-s", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    report = Path(out.split("report:")[-1].strip())
    assert report.is_file() and report.parent.parent == tmp_path
    assert ml.RunBundle.load(report.parent).summary["requests"] == 40
    assert rc == 0, out


# A tolerance the run certainly meets, for the tests of plumbing (the verdict rule itself is tested in tests/load):
# on main the old name's lag bound, on h/load its alias for late_after_s.
TOLERANT = ["--max-lag-p99-s", "2"]


class TestExitCodes:
    """`mlops-lb load` exits as k6 does with thresholds: 0 valid, 2 usage, 3 INVALID, 4 an SLO flag failed, 130 ^C."""

    def test_valid_run_prints_one_line_per_interval_and_exits_0(
        self, server: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Each interval is printed as it ends (as the demo does), then the table, the bundle and the report."""
        url = f"{server.url}/predict"  # type: ignore[attr-defined]
        rc = main(["load", url, "--rps", "20", "--duration-s", "3", "--out", str(tmp_path), *TOLERANT])
        out = capsys.readouterr().out
        assert rc == 0, out
        lines = [line for line in out.splitlines() if line.startswith("t=")]
        assert len(lines) >= 3 and all(
            "offered" in line and "achieved" in line and "p99" in line for line in lines
        )
        assert "run bundle: " in out and "report: " in out and "verdict" in out

    def test_invalid_run_exits_3_and_says_why(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Nothing listening: every request fails, the run is INVALID (not the fleet's latency): exit 3."""
        url = f"http://127.0.0.1:{_closed_port()}/predict"
        rc = main(["load", url, "--rps", "10", "--duration-s", "1", "--out", str(tmp_path), *TOLERANT])
        out = capsys.readouterr().out
        assert rc == 3, out
        assert "INVALID" in out and "why invalid" in out and "report: " in out

    def test_failed_slo_exits_4_naming_it(
        self, server: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A valid run whose p99 is above --slo-p99 exits 4 and names the flag and the measured value."""
        url = f"{server.url}/predict"  # type: ignore[attr-defined]
        args = ["load", url, "--rps", "20", "--duration-s", "1", "--out", str(tmp_path), *TOLERANT]
        rc = main([*args, "--slo-p99", "0.000001"])
        out = capsys.readouterr().out
        assert rc == 4, out
        assert "SLO failed: --slo-p99 1e-06 s: p99 was" in out
        rc = main([*args, "--slo-p99", "5", "--max-error-rate", "0.5"])  # the same run, bounds it meets
        assert rc == 0, capsys.readouterr().out

    @pytest.mark.parametrize(
        ("flags", "says"),
        [
            (
                ["--max-error-share", "2"],
                "argument --max-error-share: must be a fraction between 0 and 1, e.g. 0.01 for 1 % (got '2')",
            ),
            (["--late-after-s", "-1"], "argument --late-after-s: must be a positive number"),
            (["--slo-p99", "fast"], "argument --slo-p99: must be a number"),
        ],
    )
    def test_bad_verdict_flag_is_a_usage_error(
        self, flags: list[str], says: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A tolerance or SLO that is not a number in range exits 2 with argparse's message naming the flag."""
        with pytest.raises(SystemExit) as exc:
            main(["load", "http://127.0.0.1:9/predict", *flags])
        assert exc.value.code == 2 and says in capsys.readouterr().err

    def test_ctrl_c_exits_130_and_prints_the_paths(self, server: object, tmp_path: Path) -> None:
        """SIGINT mid-run: the load stops, what was measured is written, the paths printed, and the exit is 130."""
        import signal
        import time

        url = f"{server.url}/predict"  # type: ignore[attr-defined]
        cmd = [sys.executable, "-m", "mlops_lb", "load", url, "--rps", "20", "--duration-s", "60",
               "--out", str(tmp_path / "runs"), *TOLERANT]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # the first interval line: the load is sending
                if proc.stdout.readline().startswith("t="):
                    break
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 130, err[-2000:]
        (run,) = (tmp_path / "runs").iterdir()
        assert f"run bundle: {run.resolve()}" in out or f"run bundle: {run}" in out
        assert (run / "report.html").is_file() and f"report: {(run / 'report.html').resolve()}" in out
        assert 0 < ml.RunBundle.load(run).summary["requests"] < 20 * 60

    def test_knobs_reach_the_run(
        self, server: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--workers, --connections and the tolerance are the run's settings (load.json records them)."""
        url = f"{server.url}/predict"  # type: ignore[attr-defined]
        rc = main(["load", url, "--rps", "20", "--duration-s", "1", "--connections", "4", "--workers", "2",
                   "--out", str(tmp_path), *TOLERANT])  # fmt: skip
        assert rc == 0, capsys.readouterr().out
        (run,) = tmp_path.iterdir()
        settings = json.loads((run / "load.json").read_text())
        assert (settings["connections"], settings["workers"]) == (4, 2)
        assert 2.0 in (settings.get("max_lag_p99_s"), settings.get("late_after_s"))


class TestSloFailures:
    """slo_failures: each bound in both directions, and a bound on something not measured fails."""

    def test_each_bound(self) -> None:
        from mlops_lb._commands import slo_failures

        s = {"p99_s": 0.2, "ttft_p99_s": 0.5, "tpot_p99_s": 0.05, "requests": 100, "errors": 2}
        assert slo_failures(s, p99_s=0.25, ttft_s=0.5, tpot_s=0.06, error_rate=0.02) == []
        failed = slo_failures(s, p99_s=0.1, ttft_s=0.4, tpot_s=0.01, error_rate=0.01)
        assert [f.split()[0] for f in failed] == ["--slo-p99", "--slo-ttft", "--slo-tpot", "--max-error-rate"]
        assert "2 of 100 requests failed (2.00%)" in failed[-1]

    def test_unmeasured_bound_fails(self) -> None:
        from mlops_lb._commands import slo_failures

        (why,) = slo_failures({"p99_s": 0.2, "requests": 5, "errors": 0}, ttft_s=1.0)
        assert "not measured" in why
        assert slo_failures({"requests": 0, "errors": 0}, error_rate=0.5)  # nothing sent: not met


class TestDemoKnobs:
    def test_demo_flags_parse(self) -> None:
        """demo takes the same generator and verdict knobs as load."""
        args = build_parser().parse_args(
            [
                "demo",
                "--workers",
                "2",
                "--connections",
                "256",
                "--late-after-s",
                "0.02",
                "--max-late-share",
                "0.05",
                "--max-error-share",
                "0.02",
            ]
        )
        assert (
            args.workers,
            args.connections,
            args.late_after_s,
            args.max_late_share,
            args.max_error_share,
        ) == (
            2,
            256,
            0.02,
            0.05,
            0.02,
        )

    def test_bad_demo_knob_fails_before_any_process(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--workers 0 exits 2 naming the flag, and no bundle folder is created (nothing launched)."""
        rc = main(["demo", "--workers", "0", "--out", str(tmp_path / "runs")])
        assert rc == 2 and "mlops-lb: error: --workers must be between 1 and 256" in capsys.readouterr().err
        assert not (tmp_path / "runs").exists()


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


def test_report_on_a_folder_that_is_not_a_bundle_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mlops-lb report DIR` on a folder with no run bundle: one `mlops-lb: error:` line, exit 2, nothing written."""
    (tmp_path / "runs" / "a").mkdir(parents=True)
    assert main(["report", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err.startswith("mlops-lb: error: ")
    assert not (tmp_path / "runs" / "report.html").exists()
