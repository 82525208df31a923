"""In a real browser: Voila serves a ScalingPanel over a local fleet; moving `desired` from 1 to 2 and clicking
Apply brings the status table to two healthy targets.

Debian's Chromium is driven through Playwright's ``executable_path`` (never ``playwright install``). Voila runs in
its own process group on a random 127.0.0.1 port and is stopped at the end; the kernel (its own session, started
by jupyter_client) is stopped by Voila's shutdown, and any fleet process still alive after that is killed by PID.
A screenshot goes to ``artifacts/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = Path(__file__).with_name("panel_app.ipynb")
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
def _voila(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    port = _free_port()
    pids_file = tmp_path / "pids.json"
    log_path = tmp_path / "voila.log"
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        MLOPS_LB_PANEL_PIDS=str(pids_file),
        MPLBACKEND="agg",
    )
    voila = Path(sys.executable).with_name("voila")
    # Voila serves a single notebook only from inside its root directory (the working directory).
    shutil.copy(APP, tmp_path / APP.name)
    cmd = [
        str(voila),
        APP.name,
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
            page.goto(url, timeout=60_000)
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
