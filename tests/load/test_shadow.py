"""Shadow traffic (``run_load(..., shadow=url)``): every request copied to a second target on its own
connections; the copies never delay a primary send, never enter the primary's records or verdict, and a copy with
no free shadow connection is dropped and counted."""

from __future__ import annotations

import pytest

from mlops_lb.errors import LoadTestError, SpecError
from mlops_lb.load import constant, run_load

pytestmark = pytest.mark.fleet


def test_copies_reach_the_shadow_and_stay_out_of_the_primary(target_factory):
    """A 40 ms shadow behind a 2 ms primary: each side sees its own latency; the primary's records and the
    primary target's request count hold no copy; the comparison names both."""
    primary, shadow = target_factory(delay_s=0.002), target_factory(delay_s=0.04)
    r = run_load(
        primary.base + "/ok",
        constant(100, 3),
        payloads=[b"x"],
        progress=False,
        shadow=shadow.base + "/ok",
        shadow_connections=16,
    )
    s = r.shadow.summary()
    n = len(r.requests())
    assert primary.count() == n == 300
    assert shadow.count() == s["sent"] == s["scheduled"] - s["dropped"]
    assert s["sent"] >= 0.95 * 300, s  # 16 connections carry 100 rps x 40 ms = 4 in flight
    assert s["p50_s"] >= 0.04 and s["errors"] == 0
    assert r.valid and r.summary()["p50_s"] < 0.04
    cmp = r.shadow.compare(r)
    assert cmp.loc["requests", "primary"] == 300 and cmp.loc["p50_s", "shadow"] >= 0.04
    assert cmp.loc["status_differs_share", "shadow"] == 0.0  # every copy paired with its primary, same 200


def test_a_hung_shadow_drops_copies_and_never_holds_the_primary_back(target_factory):
    """A shadow that never answers: its two connections fill at once, every later copy is dropped and counted,
    and the primary run is valid with its sends on time."""
    primary, shadow = target_factory(delay_s=0.002), target_factory()
    r = run_load(
        primary.base + "/ok",
        constant(100, 2),
        payloads=[b"x"],
        progress=False,
        timeout_s=1.0,
        shadow=shadow.base + "/hang",
        shadow_connections=2,
    )
    s = r.shadow.summary()
    assert s["dropped"] >= 150 and s["dropped"] + s["sent"] == s["scheduled"] == 200, s
    assert s["errors"] == s["sent"]  # each copy sent timed out
    assert r.valid, r.invalid_reasons
    assert r.requests()["lag_s"].quantile(0.99) < 0.05
    assert len(r.requests()) == primary.count() == 200


def test_bad_shadow_connections_fail_before_sending(target):
    """A shadow pool size out of range names the field; nothing is sent."""
    with pytest.raises(SpecError, match="shadow_connections"):
        run_load(
            target.base + "/ok",
            constant(10, 1),
            progress=False,
            shadow=target.base + "/ok",
            shadow_connections=0,
        )
    with pytest.raises(LoadTestError, match="url must be"):
        run_load(target.base + "/ok", constant(10, 1), progress=False, shadow="https://example.org/x")
    assert target.count() == 0


def test_status_differences_pair_each_copy_with_its_primary_by_intended_time():
    """Copies pair with the primary request of the same intended time (the primary keeps no request index): equal
    statuses give 0, a shadow answering 500 to half of them gives 0.5, and a copy with no partner is left out."""
    import pandas as pd

    from mlops_lb.load.shadow import ShadowResult

    epoch = 1_700_000_000.0
    offsets = [i * 0.01 for i in range(10)]

    class Primary:
        def requests(self) -> pd.DataFrame:
            base = pd.Timestamp(epoch, unit="s", tz="UTC")
            return pd.DataFrame(
                {
                    "intended_at": [base + pd.Timedelta(o, unit="s") for o in reversed(offsets)],
                    "status": [200] * 10,
                    "error": [""] * 10,
                    "latency_s": [0.01] * 10,
                }
            )

    def shadow(statuses: list[int], extra: float | None = None) -> ShadowResult:
        recs = [
            (i, o, o, o + 0.02, st, "http_5xx" if st >= 500 else "", "t")
            for i, (o, st) in enumerate(zip(offsets, statuses, strict=True))
        ]
        if extra is not None:  # a copy whose primary is not in the records (e.g. a lost worker's)
            recs.append((99, extra, extra, extra + 0.02, 500, "http_5xx", "t"))
        return ShadowResult(url="http://127.0.0.1:1/x", scheduled=len(recs), records=recs, epoch=epoch)

    same = shadow([200] * 10).compare(Primary())
    assert same.loc["status_differs_share", "shadow"] == 0.0
    half = shadow([200, 500] * 5, extra=5.0).compare(Primary())
    assert half.loc["status_differs_share", "shadow"] == 0.5


@pytest.mark.parametrize(
    ("shadow_path", "share"), [("/ok", 0.0), ("/ok?out=another-model", 1.0)], ids=["same", "differs"]
)
def test_body_comparison_both_ways(target_factory, shadow_path, share):
    """shadow_compare="body": a shadow answering what the primary answers gives body_differs_share 0; one that
    answers another model's output (same status, other bytes) gives 1 while status_differs_share stays 0. Only
    hashes are kept: no response body is stored on either side."""
    primary, shadow = target_factory(), target_factory()
    r = run_load(
        primary.base + "/ok",
        constant(50, 1),
        payloads=[b"x"],
        progress=False,
        shadow=shadow.base + shadow_path,
        shadow_compare="body",
    )
    s = r.shadow.summary()
    assert s["sent"] >= 45 and s["errors"] == 0, s
    assert len(r.shadow.primary_hashes) == 50
    assert s["body_differs_share"] == share
    cmp = r.shadow.compare(r)
    assert cmp.loc["body_differs_share", "shadow"] == share
    assert cmp.loc["status_differs_share", "shadow"] == 0.0
    assert "body_hash" not in r.requests().columns  # the primary's records are unchanged
    from mlops_lb.report import _shadow_section

    html = _shadow_section(r.shadow.summary(r))  # what shadow.json holds, as the report shows it
    assert f"response body differs (hash)</th><td class='l'>{share:.1%}" in html
    assert "status differs from the primary&#x27;s</th><td class='l'>0.0%" in html


def test_body_comparison_needs_a_shadow_and_a_known_mode(target):
    """A bad shadow_compare names the field and its values; 'body' without a shadow names the fix."""
    with pytest.raises(SpecError, match="shadow_compare must be 'status' or 'body'"):
        run_load(
            target.base + "/ok", constant(10, 1), progress=False, shadow=target.base, shadow_compare="bytes"
        )
    with pytest.raises(SpecError, match="shadow_compare 'body' compares with a shadow fleet"):
        run_load(target.base + "/ok", constant(10, 1), progress=False, shadow_compare="body")
    assert target.count() == 0


def test_report_says_when_bodies_were_not_compared():
    """A status-only shadow run's section says "not compared" for bodies instead of a share."""
    from mlops_lb.report import _shadow_section

    html = _shadow_section({"url": "http://x/p", "sent": 3, "body_differs_share": float("nan")})
    assert "response body differs (hash)</th><td class='l'>not compared" in html
    assert _shadow_section(None) == ""
