"""The `mlops-lb` command line: subcommands, exit codes, and errors that say what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

import mlops_lb as ml
from mlops_lb.cli import build_parser, main


class TestParser:
    def test_every_documented_subcommand_exists(self) -> None:
        """serve, demo, report, up, status, scale, load and down are all commands (DESIGN §2), and preflight."""
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
        }

    def test_demo_options(self) -> None:
        """demo takes --duration-s, --spec and --out."""
        args = build_parser().parse_args(["demo", "--duration-s", "30", "--spec", "f.yaml", "--out", "o"])
        assert (args.duration_s, args.spec, args.out) == (30.0, "f.yaml", "o")


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
