"""A run bundle is data from anywhere: reading, reporting and writing one never follows it out of its folder, never
crashes on its content, never embeds it unbounded, and says plainly when a folder is not a bundle (issue 25).

Each test names the defect it pins; each failed before its fix (checked against the parent of the fix commit).
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from mlops_lb import _bundle_files as bundle_files
from mlops_lb import report as report_mod
from mlops_lb._owner import OWNER_FILE, RECORDS_PREFIX, process_start_time, sweep_orphans, write_owner
from mlops_lb.bundle import RunBundle
from mlops_lb.errors import BundleError
from mlops_lb.report import render_report_html, write_report

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded_sweep"
CANARY = "CANARY-7f3e-outside-the-bundle"


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A copy of the recorded sweep bundle (real records of a real run) to do harm to."""
    dst = tmp_path / "runs" / "20260101T000000Z-recorded"
    shutil.copytree(RECORDED, dst)
    return dst


# --------------------------------------------------------------------------- symlinks
def test_load_json_linked_outside_the_bundle_is_not_read(run: Path, tmp_path: Path, caplog) -> None:
    """Before: load.json -> a file outside was read and embedded in the report. Now: skipped with a warning."""
    secret = tmp_path / "credentials.json"
    secret.write_text(json.dumps({"token": CANARY}))
    (run / "load.json").unlink()
    (run / "load.json").symlink_to(secret)
    with caplog.at_level(logging.WARNING):
        b = RunBundle.load(run)
    assert b.load_settings is None and "links outside the bundle" in caplog.text
    assert CANARY not in repr(b.__dict__)


def test_a_table_linked_outside_the_bundle_is_not_read(run: Path, tmp_path: Path) -> None:
    """A parquet file or parts folder linked outside is skipped like a damaged one; a link inside is fine."""
    outside = tmp_path / "elsewhere.parquet"
    shutil.copy(run / "requests.parquet", outside)
    (run / "requests.parquet").unlink()
    (run / "requests.parquet").symlink_to(outside)
    assert len(RunBundle.load(run).requests) == 0
    inside = run / "kept.parquet"
    shutil.copy(outside, inside)
    (run / "requests.parquet").unlink()
    (run / "requests.parquet").symlink_to(inside.name)
    assert len(RunBundle.load(run).requests) == 900


@pytest.mark.parametrize("planted", ["report.html.tmp", "report.html"])
def test_writing_the_report_never_follows_a_planted_symlink(
    run: Path, tmp_path: Path, planted: str, monkeypatch
) -> None:
    """Before: write_report wrote the fixed name report.html.tmp, following a symlink there and overwriting its
    target. Now the page goes through a fresh O_EXCL name and a rename: the target is untouched. (The page's
    content is not what this pins: a stub page keeps the test fast.)"""
    monkeypatch.setattr(report_mod, "_render", lambda b, slo: ("<!DOCTYPE html><p>page</p>", []))
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (run / "report.html").unlink(missing_ok=True)
    (run / planted).symlink_to(victim)
    out = write_report(run)
    assert victim.read_text() == "precious"
    assert out.is_file() and not out.is_symlink() and "<!DOCTYPE html>" in out.read_text()
    assert not [p for p in run.iterdir() if p.name.startswith(".report.html.")]  # no temporary left behind


# --------------------------------------------------------------------------- content that is data, not markup
def test_a_target_id_with_dollars_is_plain_text_in_the_figures(run: Path) -> None:
    """Before: a target id ``i-$\\notacommand$`` made matplotlib parse mathtext and raise at draw time: the report
    was lost. Now tick labels and titles escape ``$`` and show the id as written."""
    from mlops_lb import plots

    req = pd.read_parquet(run / "requests.parquet")
    req["target"] = [r"i-$\notacommand$", "a$b$c"] * (len(req) // 2) + ["x"] * (len(req) % 2)
    fig = plots.per_target(req)
    fig.savefig(io.BytesIO(), format="png")  # raised ValueError (ParseFatalException) before
    shown = {t._preprocess_math(t.get_text())[0] for t in fig.axes[0].get_xticklabels()}  # what is drawn
    assert shown == {r"i-$\notacommand$", "a$b$c"}


def test_a_huge_spec_is_bounded_in_the_page(run: Path, monkeypatch) -> None:
    """Before: a 200 MB spec.json was read and dumped whole into the page (1 GB RSS). Now a file past
    MAX_JSON_BYTES is not read (a warning), and what is embedded is at most MAX_EMBED_CHARS."""
    big = {"name": "x", "padding": "p" * 300_000}
    (run / "spec.json").write_text(json.dumps(big))
    shown = report_mod._spec_text(RunBundle.load(run))  # what the page's Spec section embeds
    assert len(shown) < report_mod.MAX_EMBED_CHARS + 200 and "more characters of spec.json" in shown
    monkeypatch.setattr(bundle_files, "MAX_JSON_BYTES", 100_000)
    b = RunBundle.load(run)
    assert b.spec_dict is None and report_mod._spec_text(b) == "no spec recorded"


def test_a_trace_profile_is_one_line_in_the_load_settings(run: Path) -> None:
    """Before: every send time of a trace profile was printed, one per line (96 % of a 170,000 px demo page).
    Now: one line with count, span and peak rate; header values never shown."""
    offsets = [i * 0.01 for i in range(20_000)]  # 100 rps for 200 s
    settings = json.loads((run / "load.json").read_text())
    settings["profile"] = {"kind": "trace", "offsets": offsets, "source": None}
    settings["headers"] = {"Authorization": f"Bearer {CANARY}"}
    (run / "load.json").write_text(json.dumps(settings))
    rows = dict(
        report_mod._settings_rows(RunBundle.load(run).load_settings or {})
    )  # the page's settings table
    assert rows["profile.offsets"] == "20,000 send times over 200.0 s, peak 100 rps (busiest second)"
    assert rows["headers"] == "Authorization: ***" and CANARY not in repr(rows)
    assert all("\n" not in v and len(v) < 400 for v in rows.values())


# --------------------------------------------------------------------------- malformed bundles, wrong folders
@pytest.mark.parametrize(
    ("file", "content"),
    [
        ("summary.json", "[1, 2, 3]"),
        ("summary.json", '"just a string"'),
        ("load.json", "42"),
    ],
)
def test_a_malformed_json_file_is_a_bundle_error(run: Path, file: str, content: str) -> None:
    """A JSON file of the wrong shape is a BundleError naming the file (before: a TypeError traceback)."""
    (run / file).write_text(content)
    with pytest.raises(BundleError, match=f"{file} is malformed"):
        render_report_html(run)


def test_records_of_the_wrong_type_are_a_bundle_error(run: Path) -> None:
    """Records whose columns hold the wrong types cannot be reported: one BundleError, the cause kept."""
    req = pd.read_parquet(run / "requests.parquet")
    req["latency_s"] = "fast"
    req.to_parquet(run / "requests.parquet")
    with pytest.raises(BundleError, match="is malformed and cannot be reported") as info:
        render_report_html(run)
    assert info.value.__cause__ is not None


def test_a_folder_that_is_not_a_bundle_names_the_bundles_inside(run: Path) -> None:
    """Before: ``mlops-lb report runs`` wrote an empty report. Now the error names the bundles it holds."""
    with pytest.raises(BundleError, match="is not a run bundle") as info:
        RunBundle.load(run.parent)
    assert info.value.bundles == (run,) and str(run) in str(info.value)
    empty = run.parent.parent / "empty"
    empty.mkdir()
    with pytest.raises(BundleError, match="no run bundle found inside it either"):
        write_report(empty)


@pytest.mark.parametrize("harm", ["not_a_bundle", "malformed"])
def test_the_cli_says_one_error_line_without_a_traceback(run: Path, harm: str) -> None:
    """``mlops-lb report`` on a folder of bundles or a malformed bundle: one ``mlops-lb: error:`` line."""
    target = run.parent if harm == "not_a_bundle" else run
    if harm == "malformed":
        (run / "summary.json").write_text("[]")
    proc = subprocess.run(
        [sys.executable, "-m", "mlops_lb", "report", str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("mlops-lb: error: "), proc.stderr
    if harm == "not_a_bundle":
        assert run.name in lines[0]


# --------------------------------------------------------------------------- record folders of killed sessions
def test_record_folders_of_dead_owners_are_swept_and_others_kept(tmp_path: Path, monkeypatch) -> None:
    """A killed session's $TMPDIR/mlops-lb-records-* folder is removed by the next session's sweep; a live
    owner's folder, a folder without an owner file and another prefix are kept."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    started = process_start_time(dead.pid)
    dead.kill()
    dead.wait()
    orphan = tmp_path / f"{RECORDS_PREFIX}orphan"
    orphan.mkdir()
    (orphan / OWNER_FILE).write_text(f"{dead.pid} {started}\n")
    (orphan / "part-000000.arrow").write_bytes(b"x" * 1000)
    live = tmp_path / f"{RECORDS_PREFIX}live"
    live.mkdir()
    write_owner(live)
    unowned = tmp_path / f"{RECORDS_PREFIX}unowned"
    unowned.mkdir()
    other = tmp_path / "mlops-lb-wheel-x"
    other.mkdir()
    (other / OWNER_FILE).write_text(f"{dead.pid} {started}\n")
    assert sweep_orphans() == [orphan]
    assert not orphan.exists() and live.exists() and unowned.exists() and other.exists()


def test_the_record_store_names_its_owner(monkeypatch, tmp_path: Path) -> None:
    """The load's record folder carries the owner file the sweep reads (before: none, so never swept)."""
    from mlops_lb.load.result import RecordStore

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    store = RecordStore(0.0)
    store.add(pd.DataFrame({"intended_at": pd.to_datetime([0], unit="s", utc=True), "latency_s": [0.1]}))
    try:
        assert store.folder is not None and store.folder.name.startswith(RECORDS_PREFIX)
        assert (store.folder / OWNER_FILE).read_text().split()[0] == str(os.getpid())
        assert sweep_orphans() == []  # its owner (this process) is alive
    finally:
        store.close()
