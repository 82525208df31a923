"""examples/byo_fastapi: the user's own FastAPI app (its own model, no mlops_lb import) as a local fleet that
target tracking scales out under load and back in when quiet."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest
from _localfleet import wait_for

import mlops_lb as ml
from mlops_lb.local import LocalFleet

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "byo_fastapi"


def test_example_app_does_not_use_mlops_lb() -> None:
    """The example is a user's server: it never imports mlops_lb."""
    tree = ast.parse((EXAMPLE / "app.py").read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "fastapi" in names and not any(n.split(".")[0] == "mlops_lb" for n in names)


@pytest.mark.fleet
@pytest.mark.serial  # waits for scale-out and scale-in on the compressed clock
def test_byo_fastapi_fleet_scales_out_and_back_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """20 rps against a 5 rps/target target: scale-out to max 3, every target serves (X-Target-Id from HAProxy),
    then scale-in to 1 with drains; the app's own log shows its requests."""
    monkeypatch.chdir(EXAMPLE.parents[1])  # the spec's command is relative to the repository root
    spec = ml.FleetSpec.from_yaml(EXAMPLE / "fleet.yaml")
    assert spec.server.kind == "command"
    spec = spec.replace(local=dataclasses.replace(spec.local, period_s=0.5))  # a faster clock for CI
    with LocalFleet(spec) as fleet:
        fleet.launch()
        body = json.dumps({"rows": [[0.1, 0.2, 0.3, 0.4]]}).encode()
        result = ml.run_load(
            fleet.url + "/predict",
            ml.load.constant(rps=20, duration_s=6),
            payloads=[body],
            connections=8,
            headers={"Content-Type": "application/json"},
        )
        summary = result.summary()
        assert summary["errors"] == 0 and summary["requests"] >= 100, summary
        wait_for(lambda: (fleet.events()["kind"] == "scale_out").any(), 10, "a scale_out event")
        wait_for(lambda: (fleet.status()["health"] == "healthy").sum() == 3, 60, "three healthy targets")
        wait_for(lambda: (fleet.events()["kind"] == "scale_in").any(), 40, "a scale_in event")
        wait_for(lambda: len(fleet.status()) == 1, 30, "one target left")
        ev = fleet.events()
        counts = ev["kind"].value_counts().to_dict()
        print("events:", counts)
        print(ev[ev["kind"].isin(["scale_out", "scale_in"])][["kind", "detail"]].to_string())
        assert counts["launch"] >= 3 and counts["terminate"] >= 2 and counts["draining"] >= 2
        served = result.requests()["target"]
        assert served.str.startswith("i-local").all()
        first = fleet.status()["target"].iloc[0]
        assert '"POST /predict HTTP/1.1" 200' in fleet.logs(first)
