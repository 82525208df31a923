"""The spot rows of a run: the bundle keeps the interruptions and the instance ledger, and the report shows per
interruption the notice, notice -> deregistered / replacement healthy and the client-visible errors attributed to
it, then errors per interruption and the cost incurred against all on-demand.

Prices are the shipped table's (mlops_lb/data/prices.csv, t3.small us-east-1: 0.0208 USD/h on-demand list, 0.0103
USD/h spot snapshot use1-az1 of 2026-12-06, each row with its source). No process is started: the bundles are
written here the way ``RunBundle.capture`` writes a local spot fleet's tables (tests/local/test_spot_local.py
checks the same rows on a real run).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

import mlops_lb as ml
from mlops_lb.analysis.spot import interruption_errors, ledger_cost
from mlops_lb.bundle import RunBundle
from mlops_lb.frames import events_frame
from mlops_lb.report import _spot_section, render_report_html
from mlops_lb.run_facts import RunFacts

T0 = datetime(2026, 12, 7, 4, 0, tzinfo=timezone.utc)
SCALE = 2.0 / 60.0  # period_s 2: one AWS minute = 2 s here


def at(s: float) -> pd.Timestamp:
    return pd.Timestamp(T0 + timedelta(seconds=s))


def _interruptions(**extra: object) -> pd.DataFrame:
    """One interruption of i-2 as SpotController.rows() gives it: notice at 10 s, deregistered 0.2 s later,
    reclaimed at 14 s, replacement i-4 healthy at 30 s."""
    row = {
        "target": "i-2", "cause": "on demand (fleet.interrupt)", "triggered_s": 10.0, "rebalance_s": 10.0,
        "notice_s": 10.0, "deregistered_s": 10.2, "terminated_s": 14.0, "released_s": 10.0, "replacement": "i-4",
        "replacement_healthy_s": 30.0, "in_flight_at_notice": 1, "notice_to_deregistered_s": 0.2,
        "notice_to_replacement_healthy_s": 20.0,
    }  # fmt: skip
    row.update(extra)  # type: ignore[arg-type]
    for k in ("triggered", "rebalance", "notice", "deregistered", "terminated", "replacement_healthy"):
        v = row[f"{k}_s"]
        row[f"{k}_at"] = None if v is None else at(float(v))  # type: ignore[arg-type]
    df = pd.DataFrame([row])
    df.attrs["time_scale"] = SCALE
    # i-1 on-demand all along, i-2 spot until its reclaim, i-3 spot, i-4 the replacement (spot) from 10 s
    df.attrs["ledger"] = [
        {"target": t, "lifecycle": lc, "instance_type": "t3.small", "launched_s": a, "ended_s": b,
         "launched_at": at(a), "ended_at": None if b is None else at(b)}
        for t, lc, a, b in (("i-1", "on-demand", 0.0, None), ("i-2", "spot", 0.0, 14.0),
                            ("i-3", "spot", 0.0, None), ("i-4", "spot", 10.0, None))
    ]  # fmt: skip
    return df


def _requests(failures: list[tuple[float, str, str, int]]) -> pd.DataFrame:
    """40 s of 10 rps, all 200 from i-1/i-3 (and i-2 before its notice), plus ``failures``:
    (done s, target, error kind, status)."""
    rows = []
    for k in range(400):
        s = k / 10
        tgt = ("i-1", "i-3", "i-2" if s < 10 else "i-4")[k % 3]
        rows.append((s, tgt, "", 200))
    rows += failures
    n = len(rows)
    return pd.DataFrame(
        {
            "intended_at": [at(s - 0.01) for s, *_ in rows],
            "sent_at": [at(s - 0.01) for s, *_ in rows],
            "done_at": [at(s) for s, *_ in rows],
            "latency_s": [0.01] * n, "service_s": [0.01] * n, "lag_s": [0.0] * n,
            "status": [st for *_, st in rows],
            "error": [e for _, _, e, _ in rows],
            "bytes": [10] * n,
            "target": [t for _, t, _, _ in rows],
            "worker": [0] * n,
        }
    )  # fmt: skip


def test_errors_are_attributed_by_target_and_by_window() -> None:
    # i-2's own 502 after the interruption began; a reset with no target inside the window (notice 10 s ..
    # reclaim 14 s + 1 s detection); a timeout of i-1 at 25 s, outside; i-2's error before its interruption.
    failures = [
        (12.0, "i-2", "http_5xx", 502),
        (14.5, "", "reset", 0),
        (25.0, "i-1", "timeout", 0),
        (5.0, "i-2", "http_5xx", 500),
        (13.0, "", "cancelled", 0),  # never sent: the run's own stop, not a client-visible error
    ]
    per = interruption_errors(_interruptions(), _requests(failures), detect_s=1.0)
    assert per["client_errors"].tolist() == [2]
    assert per.attrs["unattributed"] == 2
    # with no detection margin the reset at 14.5 s falls after the reclaim: not this interruption's
    assert interruption_errors(_interruptions(), _requests(failures))["client_errors"].tolist() == [1]
    # the balancer's own record of when it stopped routing to i-2 (an unhealthy event at 16 s) ends the window
    ev = events_frame(
        [
            {"timestamp": at(16), "kind": "unhealthy", "target": "i-2", "detail": "failed 2 checks"},
            {"timestamp": at(3), "kind": "unhealthy", "target": "i-2", "detail": "before the reclaim"},
        ]
    )
    late_reset = [(15.5, "", "reset", 0)]
    assert interruption_errors(_interruptions(), _requests(late_reset), events=ev)[
        "client_errors"
    ].tolist() == [1]
    assert interruption_errors(_interruptions(), _requests(late_reset))["client_errors"].tolist() == [0]
    # i-2's 502 was sent after the notice; in the clean run nothing was (the agent took i-2 out at 10.2 s)
    assert per["sent_after_notice"].tolist() == [1]
    clean = interruption_errors(_interruptions(), _requests([]), detect_s=1.0)
    assert clean["client_errors"].tolist() == [0] and clean.attrs["unattributed"] == 0
    assert clean["sent_after_notice"].tolist() == [0]


def test_ledger_cost_is_the_instance_hours_at_spot_and_list_prices() -> None:
    df = _interruptions()
    ledger = pd.DataFrame(df.attrs["ledger"]).assign(time_scale=SCALE)
    c = ledger_cost(ledger, start=at(0), end=at(40))
    # local seconds / SCALE = AWS seconds: i-1 40 s on-demand; spot i-2 14 s, i-3 40 s, i-4 30 s
    h = 1 / SCALE / 3600
    assert c.on_demand_instance_hours == pytest.approx(40 * h)
    assert c.spot_instance_hours == pytest.approx(84 * h)
    assert c.usd == pytest.approx(40 * h * 0.0208 + 84 * h * 0.0103)
    assert c.all_on_demand_usd == pytest.approx(124 * h * 0.0208)
    # the window cuts lives: from 20 s on, i-2 is gone
    late = ledger_cost(ledger, start=at(20), end=at(40))
    assert late.spot_instance_hours == pytest.approx(40 * h)


def _bundle(
    tmp_path: Path, failures: list[tuple[float, str, str, int]], *, spot_tables: bool, start_s: float = 0.0
) -> Path:
    spec = ml.FleetSpec(
        name="spot-report",
        region="us-east-1",
        instance={"type": "t3.small"},
        capacity={
            "min": 3,
            "desired": 3,
            "max": 5,
            "spot": {"on_demand_base": 1, "instance_types": ["t3.small"]},
        },
        target_group={"deregistration_delay_s": 60},
        local={"period_s": 2.0},
    )
    b = RunBundle.create(root=tmp_path, name="spot", spec=spec)
    b.write_facts(
        RunFacts(start=at(start_s), end=at(40), send_end=at(40), metric_period_s=2.0, backend="local")
    )
    b.append_requests(_requests(failures))
    kinds = ("spot_rebalance", "spot_notice", "spot_agent", "spot_interrupted")
    b.write_events(events_frame([
        {"timestamp": at(10 + i), "kind": k, "target": "i-2", "detail": "agent: deregistered: 0.2 s"}
        for i, k in enumerate(kinds)
    ]))  # fmt: skip
    if spot_tables:
        assert [p.name for p in b.write_spot(_interruptions())] == [
            "spot_interruptions.parquet",
            "spot_ledger.parquet",
        ]
    b.finalize()
    return b.path


def _spot_html(page: str) -> str:
    start = page.index("<h2>Spot interruptions</h2>")
    return page[start : page.index("<h2>", start + 5)]


def _section(path: Path) -> str:
    """The report's spot section alone (the whole page draws every plot: seconds on a busy machine)."""
    b = RunBundle.load(path)
    return _spot_section(b.in_window(), b.requests, b.events, b.window[0])  # type: ignore[index]


def test_report_shows_errors_per_interruption_and_the_cost(tmp_path: Path) -> None:
    ok = _section(_bundle(tmp_path / "a", [], spot_tables=True))
    assert "<th class='l'>client-visible errors per interruption</th><td class='l'>0.00 (0 attributed" in ok
    assert "i-2" in ok and "0.20" in ok and "20.00" in ok
    h = 1 / SCALE / 3600
    usd, od = 40 * h * 0.0208 + 84 * h * 0.0103, 124 * h * 0.0208
    assert f"{usd:.5f} USD vs {od:.5f} USD all on-demand: {100 * (1 - usd / od):.1f} % saved" in ok
    bad = _section(
        _bundle(tmp_path / "b", [(12.0, "i-2", "http_5xx", 502), (14.5, "", "reset", 0)], spot_tables=True)
    )
    assert "2.00 (2 attributed to 1 interruption(s))" in bad


def test_an_interruption_outside_the_run_is_not_the_runs(tmp_path: Path) -> None:
    # the fleet's table covers its whole life: i-2 was reclaimed at 14 s, before a run that began at 20 s
    late = _section(_bundle(tmp_path, [], spot_tables=True, start_s=20.0))
    assert "<th class='l'>interruptions</th><td class='l'>0</td>" in late and "n/a (none)" in late


def test_an_older_bundle_without_the_tables_still_renders(tmp_path: Path) -> None:
    path = _bundle(tmp_path, [], spot_tables=False)
    loaded = RunBundle.load(path)
    assert loaded.spot_interruptions.empty and loaded.spot_ledger.empty
    section = _spot_html(render_report_html(path))
    assert "no spot tables" in section


def test_capture_saves_the_spot_tables_of_a_spot_fleet_only(tmp_path: Path) -> None:
    class Fleet:  # what RunBundle.capture reads of a local fleet (LocalFleet.spot_interruptions's frame)
        def __init__(self, df: pd.DataFrame) -> None:
            self.df = df

        def spot_interruptions(self) -> pd.DataFrame:
            return self.df

    b = RunBundle.create(root=tmp_path, name="cap")
    assert b.capture(Fleet(_interruptions()), tables=("spot",)) == []
    loaded = RunBundle.load(b.path)
    assert loaded.spot_interruptions["target"].tolist() == ["i-2"]
    assert sorted(loaded.spot_ledger["target"]) == ["i-1", "i-2", "i-3", "i-4"]
    assert set(loaded.spot_ledger["time_scale"]) == {SCALE}
    empty = pd.DataFrame()
    empty.attrs["ledger"] = []
    b2 = RunBundle.create(root=tmp_path, name="nospot")
    assert b2.capture(Fleet(empty), tables=("spot",)) == []
    assert not (b2.path / "spot_interruptions.parquet").exists()
