"""In a real browser: Voila serves the panels over a local fleet.

- moving `desired` from 1 to 2 and clicking Apply brings the status table to two healthy targets;
- the panels' promises (issue 18): opened on a 3-target fleet the scaling panel shows desired 3; Apply after
  changing only the target leaves desired at 3; a saturated run's panel and report say "fleet saturated", not
  "generator lag"; after ``fleet.close()`` the panel says the fleet is closed.

Debian's Chromium is driven through Playwright's ``executable_path`` (never ``playwright install``). Voila runs in
its own process group on a random 127.0.0.1 port and is stopped at the end; the kernel (its own session, started
by jupyter_client) is stopped by Voila's shutdown, and any fleet process still alive after that is killed by PID.
Screenshots go to ``artifacts/`` (``artifacts/after/`` for the promises, one per step).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = Path(__file__).with_name("panel_app.ipynb")
PROMISES_APP = Path(__file__).with_name("panels_promises_app.ipynb")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.fleet,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="/usr/bin/chromium is missing"),
    pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _voila(tmp_path: Path, app: Path = APP) -> Iterator[tuple[str, Path, Path]]:
    port = _free_port()
    pids_file = tmp_path / "pids.json"
    log_path = tmp_path / "voila.log"
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        MLOPS_LB_PANEL_PIDS=str(pids_file),
        MLOPS_LB_PANEL_RUNS=str(tmp_path / "runs"),
        MPLBACKEND="agg",
    )
    voila = Path(sys.executable).with_name("voila")
    # Voila serves a single notebook only from inside its root directory (the working directory).
    shutil.copy(app, tmp_path / app.name)
    cmd = [
        str(voila),
        app.name,
        f"--port={port}",
        "--no-browser",
        "--Voila.ip=127.0.0.1",
        "--VoilaConfiguration.show_tracebacks=True",
        "--Voila.root_dir=" + str(tmp_path),
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            assert proc.poll() is None, f"voila exited: {log_path.read_text()[-3000:]}"
            time.sleep(0.2)
        else:
            pytest.fail(f"voila did not listen on {port}: {log_path.read_text()[-3000:]}")
        yield f"http://127.0.0.1:{port}/", pids_file, log_path
    finally:
        # SIGTERM lets Voila shut its kernel down (which closes the fleet); then the group is killed for good.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        _reap_fleet(pids_file)


def _reap_fleet(pids_file: Path) -> None:
    if not pids_file.exists():
        return
    info = json.loads(pids_file.read_text())
    pids = [info["kernel"], *info["workers"]]
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(180)
def test_scale_from_one_to_two_targets_in_the_browser(tmp_path: Path) -> None:
    """Moving `desired` 1 -> 2 and clicking Apply makes the status table show 2 healthy targets."""
    from playwright.sync_api import expect, sync_playwright

    artifacts = ROOT / "artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / "voila_scaling_panel.png"
    with _voila(tmp_path) as (url, _pids, log_path), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(url, timeout=120_000)  # Voila runs the cells (a fleet launch) before the page loads
            summary = page.locator(".mlops-lb-status-summary")
            expect(summary).to_contain_text("1 target (1 healthy", timeout=90_000)

            desired = page.locator(".widget-slider", has=page.locator(".widget-label", has_text="desired"))
            handle = desired.locator(".noUi-handle")
            handle.focus()
            handle.press("ArrowRight")  # noUiSlider's keyboard step: one target
            expect(desired.locator(".widget-readout")).to_have_text("2")

            page.get_by_role("button", name="Apply").click()
            expect(page.locator(".mlops-lb-msg").first).to_contain_text("applied", timeout=30_000)
            expect(summary).to_contain_text("2 targets (2 healthy", timeout=60_000)
            page.screenshot(path=str(shot), full_page=True)
        except Exception:
            with contextlib.suppress(Exception):
                page.screenshot(path=str(shot), full_page=True)
            print(f"voila log tail:\n{log_path.read_text()[-4000:]}")
            raise
        finally:
            browser.close()
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 0


def _engine_classifies_invalid_runs() -> bool:
    """True once the engine's summary carries ``invalid_kinds`` (the engine branch of this round)."""
    import inspect

    from mlops_lb.load.result import LoadResult

    return "invalid_kinds" in inspect.getsource(LoadResult)


def _slider(page: Any, label: str) -> Any:
    return page.locator(".widget-slider", has=page.locator(".widget-label", has_text=label))


def _text_input(page: Any, label: str) -> Any:
    import re

    exact = re.compile(rf"^{re.escape(label)}$")
    return page.locator(".widget-text", has=page.locator(".widget-label", has_text=exact)).locator("input")


# serial: a panel verdict that generator lag would flip ("fleet saturated", not "generator lag"), so it runs alone.
# The scaling test above only waits (up to 60 s) for what takes seconds: it runs two at a time.
@pytest.mark.serial
@pytest.mark.timeout(240)
def test_the_panels_tell_the_truth_in_the_browser(tmp_path: Path) -> None:
    """Desired 3 on a 3-target fleet; Apply of the target alone keeps 3; a saturated run reads "fleet saturated";
    after close() the panel says closed. One Voila session, a screenshot per step in artifacts/after/."""
    from playwright.sync_api import expect, sync_playwright

    shots = ROOT / "artifacts" / "after"
    shots.mkdir(parents=True, exist_ok=True)
    saturation_checked = _engine_classifies_invalid_runs()
    with _voila(tmp_path, PROMISES_APP) as (url, _pids, log_path), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1400})
        try:
            page.goto(url, timeout=120_000)  # Voila runs the cells (a fleet launch) before the page loads
            summary = page.locator(".mlops-lb-status-summary")
            expect(summary).to_contain_text("3 targets (3 healthy", timeout=90_000)

            # 1. the sliders start from the fleet (3), not from the spec it was opened with (1)
            desired = _slider(page, "desired")
            expect(desired.locator(".widget-readout")).to_have_text("3")
            page.screenshot(path=str(shots / "1_opened_desired_3.png"), full_page=True)

            # 2. change only the target; the change is marked until Apply; desired stays 3 afterwards
            target = _slider(page, "target rps / target")
            handle = target.locator(".noUi-handle")
            handle.focus()
            handle.press("ArrowRight")
            expect(page.get_by_text("not applied yet")).to_be_visible(timeout=10_000)
            page.screenshot(path=str(shots / "2a_target_moved_not_applied.png"), full_page=True)
            page.get_by_role("button", name="Apply").click()
            expect(page.get_by_text("the fleet now has min 3, desired 3, max 3")).to_be_visible(
                timeout=30_000
            )
            expect(desired.locator(".widget-readout")).to_have_text("3")
            expect(summary).to_contain_text("3 targets (3 healthy")
            page.screenshot(path=str(shots / "2b_applied_target_only_desired_still_3.png"), full_page=True)

            # 3. a saturated run: 1000 rps for 2 s on 32 connections against ~300 rps of fleet
            page.locator(".widget-dropdown select").first.select_option("constant")
            rate = _text_input(page, "rps")
            rate.fill("1000")
            rate.press("Enter")
            duration = _text_input(page, "duration s")
            duration.fill("2")
            duration.press("Enter")
            page.get_by_role("button", name="Start").click()
            # The run is going: sending lasts the profile's 2 s, then draining; on a busy machine the page may
            # first show the run after its sending phase, so either phase proves the Start reached a run.
            expect(page.get_by_text(re.compile(r"^(sending|draining)")).first).to_be_visible(timeout=15_000)
            expect(page.get_by_role("button", name="Start")).to_be_disabled()
            page.screenshot(path=str(shots / "3a_saturated_run_going.png"), full_page=True)
            link = page.locator("a.mlops-lb-report")
            expect(link).to_be_visible(timeout=90_000)
            expect(page.get_by_role("button", name="Start")).to_be_enabled()
            page.screenshot(path=str(shots / "3b_saturated_run_done.png"), full_page=True)
            panel_text = page.locator(".mlops-lb-summary").inner_text()
            assert "offered / achieved\t1000.0" in panel_text, panel_text  # the inputs reached the run
            report_path = Path(link.inner_text().strip())
            report_html = report_path.read_text(encoding="utf-8")
            if saturation_checked:
                # The verdict and its reason, not the whole page: the workers field's tooltip names generator lag.
                assert "fleet saturated" in panel_text
                assert "generator lag" not in panel_text
                assert "INVALID: fleet saturated" in report_html and "generator lag" not in report_html
            report_page = browser.new_page(viewport={"width": 1200, "height": 900})
            report_page.goto(report_path.as_uri())
            report_page.screenshot(path=str(shots / "3c_saturated_report.png"), full_page=True)
            assert report_page.evaluate("document.documentElement.scrollWidth") <= 1200
            report_page.close()

            # 4. close the fleet: the panel says so and disables itself
            page.get_by_role("button", name="Close fleet").click()
            expect(page.get_by_text("fleet closed").first).to_be_visible(timeout=30_000)
            expect(page.get_by_role("button", name="Apply")).to_be_disabled()
            page.screenshot(path=str(shots / "4_fleet_closed.png"), full_page=True)
        except Exception:
            with contextlib.suppress(Exception):
                page.screenshot(path=str(shots / "failure.png"), full_page=True)
            print(f"voila log tail:\n{log_path.read_text()[-4000:]}")
            raise
        finally:
            browser.close()
    print(f"screenshots: {sorted(p.name for p in shots.glob('*.png'))}; panel: {panel_text!r}")
    if not saturation_checked:
        pytest.skip(
            "the panels' steps passed; 'fleet saturated' needs the engine's invalid_kinds (engine branch not merged)"
        )
