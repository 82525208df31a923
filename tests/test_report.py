"""The HTML report: self-contained, complete, written where asked, and clean in headless Chromium."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from mlops_lb.errors import SpecError
from mlops_lb.report import load_bundle, render_report_html, write_report

CHROMIUM = Path("/usr/bin/chromium")


def _synthetic() -> ModuleType:
    """tests/fixtures/synthetic.py (importable by name: pytest puts tests/ on sys.path)."""
    from fixtures import synthetic

    return synthetic


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("runs") / "2025-01-15T12-00-00Z-synthetic"
    _synthetic().make_bundle(path)
    return path


@pytest.fixture(scope="module")
def report(run_dir: Path) -> tuple[Path, str]:
    out = write_report(run_dir, png=True)
    return out, out.read_text(encoding="utf-8")


class TestContent:
    def test_written_into_the_bundle(self, run_dir: Path, report: tuple[Path, str]) -> None:
        """write_report(run_dir) writes run_dir/report.html and, with png=True, one PNG per plot."""
        out, _ = report
        assert out == run_dir / "report.html"
        pngs = sorted(p.name for p in run_dir.glob("*.png"))
        assert pngs == [
            "latency_over_time.png",
            "per_target.png",
            "percentile_spectrum.png",
            "scaling_timeline.png",
            "throughput.png",
        ]
        assert all(p.read_bytes()[:4] == b"\x89PNG" for p in run_dir.glob("*.png"))
        assert not list(run_dir.glob("*.tmp"))

    def test_no_external_resources(self, report: tuple[Path, str]) -> None:
        """Nothing is fetched from anywhere: no http(s) src/href/url(), no scripts, no link tags."""
        _, text = report
        lowered = text.lower()
        for bad in (
            'src="http',
            "src='http",
            'href="http',
            "href='http",
            "url(http",
            "<script",
            "<link",
            "@import",
            "//cdn",
        ):
            assert bad not in lowered, bad
        srcs = re.findall(r"src='([^']*)'", text)
        assert len(srcs) == 5 and all(s.startswith("data:image/png;base64,") for s in srcs)
        png = base64.b64decode(srcs[0].split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"

    def test_summary_table(self, report: tuple[Path, str]) -> None:
        """The summary has requests, errors by kind, offered vs achieved, VALID, scale times and a cost."""
        _, text = report
        syn = _synthetic()
        b = syn.make_bundle()
        assert f"<td class='l'>{len(b.requests):,}</td>" in text
        assert "timeout: 5" in text and "http_5xx: 3" in text
        assert "offered / achieved" in text
        assert "verdict valid'>VALID" in text
        # relative to the run's start, with the absolute UTC time on hover
        assert "<span title='2025-01-15 12:00:20.000 UTC'>t+20.0 s</span>" in text
        assert "<span title='2025-01-15 12:00:50.000 UTC'>t+50.0 s</span>" in text
        assert "t+0 = 2025-01-15 12:00:00 UTC" in text
        # a run without a recorded backend (this synthetic one) is priced "as if" on AWS, and says so
        assert "as if priced at t3.small in us-east-1, 0.0208 USD/h on-demand" in text
        assert "estimated cost of this run" in text

    def test_latency_table_corrected_and_uncorrected(self, report: tuple[Path, str]) -> None:
        """Corrected and uncorrected percentiles appear in ms with one decimal."""
        _, text = report
        b = _synthetic().make_bundle()
        p99 = f"{b.summary['p99_s'] * 1000:.1f}"
        p99u = f"{b.summary['p99_uncorrected_s'] * 1000:.1f}"
        assert re.search(r"corrected \(ms\)</th>(<td>[^<]*</td>){2}<td>" + re.escape(p99) + "</td>", text)
        assert re.search(r"uncorrected \(ms\)</th>(<td>[^<]*</td>){2}<td>" + re.escape(p99u) + "</td>", text)

    def test_waterfall_spec_and_events(self, report: tuple[Path, str]) -> None:
        """The waterfall names the new targets, the spec is shown as YAML, and every event is listed."""
        _, text = report
        waterfall = text.split("Scale-out waterfall", 1)[1].split("<h2>Spec", 1)[0]
        assert "i-local0002" in waterfall and "i-local0003" in waterfall
        # durations per stage, not ten columns of timestamps
        assert "launch → healthy (s)" in waterfall and "decision → first request (s)" in waterfall
        assert waterfall.count("</th>") == 7
        assert "name: synthetic" in text and "target_rps_per_target: 40.0" in text
        events = text.split("<h2>Events</h2>", 1)[1]
        # every event of the run's window (the initial launch, before the load started, is not this run's)
        b = load_bundle(_synthetic().make_bundle())
        start, end = b.window
        ev = b.events
        inside = ev[(ev["timestamp"] >= start) & (ev["timestamp"] <= end)]
        assert 0 < len(inside) < len(ev)
        assert events.count("</tr>") == len(inside) + 1

    def test_invalid_run_is_loud(self) -> None:
        """An invalid run shows INVALID with its reasons."""
        b = _synthetic().make_bundle()
        b.summary = {**b.summary, "valid": False, "invalid_reasons": ["sent 90% of schedule", "lag p99 9 ms"]}
        text = render_report_html(b)
        assert "verdict invalid'>INVALID</span> sent 90% of schedule; lag p99 9 ms" in text

    def test_sweep_adds_capacity_plan(self, tmp_path: Path) -> None:
        """A sweep run with an SLO gets the capacity curve and a capacity plan section."""
        syn = _synthetic()
        b = syn.make_bundle()
        b.intervals = syn.make_intervals(
            b.requests, step_rps=np.repeat([25.0, 50.0, 75.0, 100.0, 125.0, 150.0], 10)
        )
        out = write_report(b, out=tmp_path / "r" / "sweep.html", png=True, slo_p99_s=0.05)
        text = out.read_text()
        assert "<h2>Capacity plan</h2>" in text and "max OK rate per target" in text
        assert (tmp_path / "r" / "capacity_curve.png").is_file()

    def test_bundle_without_folder_needs_out(self) -> None:
        """A bundle object without a path cannot guess where to write."""
        with pytest.raises(SpecError, match="out"):
            write_report(_synthetic().make_bundle())

    def test_missing_dir(self, tmp_path: Path) -> None:
        """A run directory that does not exist is a SpecError naming it."""
        with pytest.raises(SpecError, match="not a directory"):
            write_report(tmp_path / "nope")

    def test_loads_a_partial_bundle(self, tmp_path: Path) -> None:
        """A bundle folder with only requests (a crashed run) still renders, with derived numbers."""
        b = _synthetic().make_bundle()
        b.requests.to_parquet(tmp_path / "requests.parquet")
        loaded = load_bundle(tmp_path)
        assert len(loaded.requests) == len(b.requests)
        text = render_report_html(tmp_path)
        assert "UNKNOWN" in text and "percentile_spectrum" in text

    def test_cli(self, run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """`mlops-lb report RUN_DIR` writes the report and prints its path."""
        from mlops_lb.cli import main

        assert main(["report", str(run_dir)]) == 0
        assert capsys.readouterr().out.strip() == str(run_dir / "report.html")


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing")
def test_opens_in_headless_chromium(report: tuple[Path, str], tmp_path: Path) -> None:
    """Chromium renders the report with no failed resource loads, no console errors and every image decoded."""
    from playwright.sync_api import sync_playwright

    out, _ = report
    failed: list[str] = []
    console_errors: list[str] = []
    requested: list[str] = []
    with sync_playwright() as pw:
        # Playwright takes the profile directory as an argument, not as --user-data-dir.
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = context.new_page()
            page.set_viewport_size({"width": 1200, "height": 900})
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.on("request", lambda r: requested.append(r.url))
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.goto(out.as_uri(), wait_until="load")
            images: Any = page.evaluate(
                "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
            )
            title = page.title()
            width = page.evaluate("document.documentElement.scrollWidth")
            headings = page.eval_on_selector_all("h2", "els => els.map(e => e.textContent)")
        finally:
            context.close()
    assert failed == [] and console_errors == []
    assert all(u.startswith(("file:", "data:")) for u in requested), requested
    assert len(images) == 5 and all(c and w > 100 and h > 100 for c, w, h in images)
    assert title == "mlops_lb report: synthetic"
    assert width <= 1200, f"the report is {width} px wide in a 1200 px window"
    assert headings == ["Summary", "Latency", "Plots", "Scale-out waterfall", "Spec", "Events"]


RECORDED = Path(__file__).parent / "fixtures" / "recorded_sweep"


class TestRecordedBundle:
    """tests/fixtures/recorded_sweep: a real 3 s sweep (100/300/500 rps, 1 s steps) recorded with run_load into a
    RunBundle against a loopback server answering `X-Target-Id: i-test1`; the run is INVALID (lag p99 > 3 ms on a
    busy 2-core box), which the report must say."""

    def test_report_from_recorded_run(self, tmp_path: Path) -> None:
        """The real bundle layout loads, plots, and reports INVALID with the load settings and a capacity plan."""
        import shutil

        run = tmp_path / "recorded"
        shutil.copytree(RECORDED, run)
        out = write_report(run, slo_p99_s=0.05)
        text = out.read_text()
        assert "verdict invalid'>INVALID</span> schedule lag p99" in text
        assert (
            "<h2>Load settings</h2>" in text
            and "<th class='l'>profile.kind</th><td class='l'>sweep</td>" in text
        )
        assert "<h2>Capacity plan</h2>" in text and "500.0 rps" in text
        assert text.count("data:image/png;base64,") == 5  # no scaling metrics in a bare load test
        assert "<td class='l'>900</td>" in text

    def test_plots_from_recorded_run(self) -> None:
        """Plots read the recorded frames: 4 intervals, one target serving all 900 requests."""
        from mlops_lb import plots

        b = load_bundle(RECORDED)
        ax = plots.latency_over_time(b.intervals).axes[0]
        assert len(ax.get_lines()) == 8 and np.asarray(ax.get_lines()[0].get_xdata()).shape == (4,)
        bars = plots.per_target(b.requests).axes[0]
        assert [t.get_text() for t in bars.get_xticklabels()] == ["i-test1"]
        assert [p.get_height() for p in bars.patches] == [900.0]  # type: ignore[attr-defined]


def test_report_target_line_follows_the_metric_period_not_the_local_clock() -> None:
    """An AWS run's report compares RequestCountPerTarget (per 60 s) with target x 60, not x local.period_s."""
    from types import SimpleNamespace

    from mlops_lb.report import _plots

    b = _synthetic().make_bundle()
    mf = b.metrics.copy()
    start = mf["timestamp"].min()
    mf["timestamp"] = start + (mf["timestamp"] - start) * 30  # 2 s local periods -> 60 s CloudWatch periods
    aws = SimpleNamespace(**{**vars(b), "metrics": mf})
    fig = {stem: f for stem, _, f in _plots(aws, None)}["scaling_timeline"]
    labels = [ln.get_label() for a in fig.axes for ln in a.get_lines()]
    assert "target 2400 = 40 rps x 60 s" in labels, labels


class TestRunWindow:
    """Issue 18 point 5: a report is about its run, not the fleet's whole life."""

    def _short_run_on_an_old_fleet(self) -> Any:
        import pandas as pd

        syn = _synthetic()
        b = syn.make_bundle()
        start = b.requests["intended_at"].min()
        # keep 0.4 s of requests: a run stopped early, on a fleet that scaled out twice long before it
        b.requests = b.requests[b.requests["intended_at"] < start + pd.Timedelta(seconds=0.4)]
        b.intervals = b.intervals.iloc[:1]
        b.summary = {**b.summary, "duration_s": 0.4}
        old = pd.DataFrame(
            {
                "timestamp": [start - pd.Timedelta(seconds=37.1), start - pd.Timedelta(seconds=33.0)],
                "kind": ["scale_out", "scale_out"],
                "target": ["", ""],
                "detail": ["before the run", "before the run"],
            }
        )
        b.events = pd.concat([old, b.events[b.events["timestamp"] < start]], ignore_index=True)
        return b

    @pytest.fixture(scope="class")
    @classmethod
    def short_run_page(cls) -> str:
        """The short run's page, rendered once for the tests that read it (a render is 2-3 s of CPU)."""
        return render_report_html(cls._short_run_on_an_old_fleet(cls()))

    def test_events_and_scale_outs_before_the_run_are_left_out(self, short_run_page: str) -> None:
        """Scale-outs 37 s and 33 s before a 0.4 s run are not reported as its scale-outs (no 't+-37.1 s')."""
        text = short_run_page
        assert "t+-" not in text and "before the run" not in text
        assert "<th class='l'>scale-outs</th><td class='l'>none</td>" in text

    def test_cost_covers_the_run_only(self, short_run_page: str, report: tuple[Path, str]) -> None:
        """Instance-hours come from the metrics inside the run's window, not the fleet's earlier periods (the
        whole synthetic bundle's page is the module's ``report``)."""
        row = short_run_page.split("instance-hours (wall clock)</th><td class='l'>", 1)[1].split("<", 1)[0]
        _, whole_life = report
        row_all = whole_life.split("instance-hours (wall clock)</th><td class='l'>", 1)[1].split("<", 1)[0]
        assert float(row) < float(row_all) / 10

    def test_scaling_plot_starts_at_the_run(self) -> None:
        """The scaling timeline's data starts no earlier than one metric period before t+0."""
        from mlops_lb.report import _plots

        figs = {stem: f for stem, _, f in _plots(self._short_run_on_an_old_fleet(), None)}
        xs = [x for ax in figs["scaling_timeline"].axes for ln in ax.get_lines() for x in ln.get_xdata()]
        numeric = [float(x) for x in xs if isinstance(x, (int, float, np.floating))]
        assert numeric and min(numeric) >= -2.0  # the synthetic metrics' period is 2 s


def test_a_saturated_run_is_called_saturated_with_its_fix() -> None:
    """The verdict names the engine's kind (fleet saturated), not the schedule lag it caused."""
    b = _synthetic().make_bundle()
    fix = (
        "32 connections all waiting on a saturated fleet: raise connections= (the panel's connections field)"
    )
    b.summary = {
        **b.summary,
        "valid": False,
        "invalid_kinds": ["connections_exhausted"],
        "invalid_reasons": [fix],
    }
    text = render_report_html(b)
    assert "verdict invalid'>INVALID: fleet saturated</span>" in text and "raise connections=" in text
    assert "generator lag" not in text


def test_an_unwritable_report_is_a_storage_error(tmp_path: Path) -> None:
    """write_report never lets a raw OSError out: StorageError names the file."""
    from mlops_lb.errors import StorageError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match=r"report\.html"):
        write_report(_synthetic().make_bundle(), out=blocker / "report.html")


def _streamed(b: Any) -> Any:
    """The synthetic bundle as if every request had streamed: TTFT a fifth of its latency, 20 tokens each."""
    req, iv = b.requests, b.intervals
    req["ttft_s"] = req["latency_s"] / 5
    req["ttft_uncorrected_s"] = req["service_s"] / 5
    req["output_tokens"] = 20
    req["itl_mean_s"] = req["tpot_s"] = (req["latency_s"] - req["ttft_s"]) / 19
    for p in ("p50", "p90", "p99", "p999", "max"):
        iv[f"ttft_{p}_s"], iv[f"ttft_{p}_uncorrected_s"] = iv[f"{p}_s"] / 5, iv[f"{p}_uncorrected_s"] / 5
        iv[f"itl_{p}_s"] = iv[f"tpot_{p}_s"] = iv[f"{p}_s"] * 4 / 5 / 19
    iv["output_tokens_per_s"] = iv["achieved_rps"] * 20
    b.summary = {
        **b.summary,
        "ttft_p50_s": 0.0123, "ttft_p90_s": 0.02, "ttft_p99_s": 0.0456, "ttft_p999_s": 0.05, "ttft_max_s": 0.06,
        "ttft_p50_uncorrected_s": 0.011, "ttft_p99_uncorrected_s": 0.0222,
        "itl_p50_s": 0.002, "itl_p99_s": 0.0031, "tpot_p50_s": 0.0021, "tpot_p99_s": 0.0033,
        "output_tokens": 20_000, "output_tokens_per_s": 333.3, "slo": {"ttft_s": 0.04, "tpot_s": 0.05},
        "requests_meeting_slo": 950, "goodput_rps": 15.8,
    }  # fmt: skip
    return b


class TestLlmSection:
    def test_a_streamed_run_gets_the_llm_section(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """TTFT corrected and uncorrected, ITL and TPOT percentiles from the summary (ms), tokens/s, goodput with
        the SLO that defined it, and the streaming plots written as PNGs too: the very bytes the page embeds, from
        one savefig per figure (before: the PNG files encoded every figure a second time, ~0.3 s CPU each)."""
        from matplotlib.figure import Figure

        saved: list[int] = []
        real = Figure.savefig

        def counting(self: Figure, *a: Any, **k: Any) -> Any:
            saved.append(id(self))
            return real(self, *a, **k)

        monkeypatch.setattr(Figure, "savefig", counting)
        b = _streamed(_synthetic().make_bundle())
        out = write_report(b, out=tmp_path / "llm.html", png=True)
        text = out.read_text()
        pngs = sorted(tmp_path.glob("*.png"))
        assert len(saved) == len(set(saved)) == len(pngs) > 5
        assert all(base64.b64encode(p.read_bytes()).decode("ascii") in text for p in pngs)
        assert "<h2>LLM streaming</h2>" in text
        row = re.search(r"TTFT corrected \(ms\)</th>(.*?)</tr>", text)
        assert row and re.findall(r"<td>([^<]*)</td>", row.group(1)) == [
            "12.3",
            "20.0",
            "45.6",
            "50.0",
            "60.0",
        ]
        unc = re.search(r"TTFT uncorrected \(ms\)</th>(.*?)</tr>", text)
        assert unc and re.findall(r"<td>([^<]*)</td>", unc.group(1))[:3] == ["11.0", "n/a", "22.2"]
        assert "TPOT (ms)</th><td>2.1</td>" in text and "ITL (ms)</th><td>2.0</td>" in text
        assert "333.3" in text and "15.80 requests/s (950 of" in text
        assert "TTFT ≤ 40 ms, TPOT ≤ 50 ms" in text
        for stem in ("ttft_over_time", "itl_over_time", "tokens_per_s", "ttft_spectrum", "itl_spectrum"):
            assert f"<figure id='{stem}'>" in text and (tmp_path / f"{stem}.png").is_file()
        assert "goodput_curve" not in text  # not a sweep or step run

    def test_a_streamed_step_run_adds_goodput_against_offered_rate(self) -> None:
        syn = _synthetic()
        b = syn.make_bundle()
        b.intervals = syn.make_intervals(
            b.requests, step_rps=np.repeat([25.0, 50.0, 75.0, 100.0, 125.0, 150.0], 10)
        )
        assert "<figure id='goodput_curve'>" in render_report_html(_streamed(b))

    def test_a_run_that_did_not_stream_has_no_llm_section(self) -> None:
        b = _synthetic().make_bundle()
        b.summary = {**b.summary, "ttft_p50_s": float("nan"), "output_tokens": 0}
        assert "LLM streaming" not in render_report_html(b)


class TestAtAGlance:
    """Issue 24 part 4: the page tells the truth at a glance."""

    def test_waterfall_times_and_ids_do_not_wrap(self, report: tuple[Path, str]) -> None:
        """Times (t+…) and target ids sit in nowrap cells; reasons and details wrap (whole, never cut)."""
        _, text = report
        wf = text[text.index("<h2>Scale-out waterfall</h2>") : text.index("<h2>Spec</h2>")]
        assert "<td class='nw'><span title=" in wf and "<td class='l nw'>i-local" in wf
        assert "<td class='wrap'>" in wf and "td.nw { white-space: nowrap;" in text

    @pytest.mark.parametrize(("backend", "as_if"), [("aws", False), ("local", True), (None, True)])
    def test_cost_rows_say_which_rate_and_whether_priced_as_if(
        self, run_dir: Path, backend: str | None, as_if: bool
    ) -> None:
        """A local fleet's cost is what the same targets would cost on AWS, and says so; an AWS run's is its
        list price; per-million and peak rows name the achieved rate they divide by."""
        from mlops_lb.bundle import RunBundle, RunFacts
        from mlops_lb.report import _cost

        b = RunBundle.load(run_dir)
        b.run_facts = b.facts.merged(RunFacts(backend=backend)) if backend else b.facts
        text = repr(_cost(b.in_window(), b.summary))  # the page's cost rows
        assert ("as if priced at t3.small in us-east-1" in text) is as_if
        assert ("t3.small in us-east-1 at 0.0208 USD/h (on-demand list price)" in text) is not as_if
        assert "the hourly cost at peak capacity over the achieved rate (" in text
        assert "plus the ALB at the achieved rate" in text

    def test_reasons_are_shown_whole(self, run_dir: Path) -> None:
        """A long invalid reason (with its fix) is in the page whole, not cut."""
        import dataclasses

        import pandas as pd

        from mlops_lb.bundle import RunBundle

        empty = pd.DataFrame()  # no figures to draw: the verdict line is what this pins
        b = dataclasses.replace(
            RunBundle.load(run_dir), requests=empty, intervals=empty, metrics=empty, events=empty
        )
        reason = (
            "schedule lag p99 40.0 ms > 5 ms in 3 of 20 intervals; " + "detail " * 80 + "raise workers= (END)"
        )
        b.summary = {
            **b.summary,
            "valid": False,
            "invalid_reasons": [reason],
            "invalid_kinds": ["generator_lag"],
        }
        import html

        assert html.escape(reason) in render_report_html(b)


def test_a_bundle_without_summary_uses_the_loads_hdr_percentiles() -> None:
    """One percentile definition: a crashed run's summary comes from the same µs HDR histogram and percentile
    names as LoadResult.summary() (before: numpy's interpolating np.percentile over failed requests too)."""
    import pandas as pd

    from mlops_lb.bundle import LoadedBundle
    from mlops_lb.report import _summary

    t0 = pd.Timestamp("2026-01-01T00:00:00Z")
    lat = [0.001] * 98 + [1.0, 2.0, 30.0]  # the 30 s one failed: it is not the fleet's latency
    n = len(lat)
    at = [t0 + pd.Timedelta(seconds=i * 0.1) for i in range(n)]
    req = pd.DataFrame(
        {
            "intended_at": at,
            "done_at": at,
            "latency_s": lat,
            "service_s": lat,
            "status": [200] * (n - 1) + [0],
            "error": [None] * (n - 1) + ["timeout"],
        }
    )
    e = pd.DataFrame()
    s = _summary(LoadedBundle(path=None, spec=None, requests=req, intervals=e, metrics=e, events=e))
    assert s["errors"] == 1 and s["requests"] == n
    assert s["p99_s"] == pytest.approx(1.0, rel=1e-3)  # the 99th of 100 successes; np.percentile said 1.01
    assert s["max_s"] == pytest.approx(2.0, rel=1e-3) and s["max_uncorrected_s"] == pytest.approx(
        2.0, rel=1e-3
    )
