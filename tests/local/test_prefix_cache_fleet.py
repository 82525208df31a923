"""A local fleet of LLM emulators with a prefix cache: replaying a trace with prefix structure, the fleet's
MetricFrame shows the hit rate per target (scraped from vLLM's counters on each target's /metrics)."""

from __future__ import annotations

import shutil
import time
import urllib.request

import pytest

import mlops_lb as ml
from mlops_lb.frames import check_metric_frame
from mlops_lb.local import LocalFleet

pytestmark = [
    pytest.mark.fleet,
    pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed"),
]


@pytest.mark.timeout(90)
def test_hit_rate_per_target_in_the_metric_frame() -> None:
    """Two targets, round robin, a short multi-turn replay: each target reports a hit rate; the fleet's row is
    total hits over total queries; after POST /reset_prefix_cache on every target a repeat starts cold."""
    spec = ml.FleetSpec.from_dict(
        {
            "name": "pc",
            "capacity": {"min": 2, "desired": 2, "max": 2},
            "health_check": {"interval_s": 10, "timeout_s": 5, "healthy_threshold": 2, "grace_period_s": 60},
            "server": {
                "kind": "llm-emulator",
                "llm": {
                    "prefix_cache_blocks": 1024,
                    "block_size": 16,
                    "decode_ms_per_token": 2,
                    "max_num_seqs": 16,
                },
            },
            "local": {"period_s": 1.0},
        }
    )
    t = ml.load.multiturn(sessions=12, session_rate=20, think_s=0.1, block_tokens=32, seed=1)
    with LocalFleet(spec) as fleet:
        fleet.launch()
        result = ml.load.run_load(
            fleet.url + "/v1/chat/completions",
            t,
            payloads=ml.load.prefix_chat(model="m", profile=t),
            progress=False,
            connections=16,
        )
        assert result.summary()["errors"] == 0, result.summary()
        time.sleep(fleet.spec.local.period_s * 2.5)  # let the periods holding the traffic close
        df = fleet.metrics()
        check_metric_frame(df)
        hit = df[df["metric"] == "PrefixCacheHitRate"]
        targets = set(fleet.status()["target"])
        assert set(hit["target"]) - {""} == targets, hit
        assert ((hit["value"] >= 0) & (hit["value"] <= 100)).all()
        # multi-turn sessions repeat their context: with round robin some turns land where their prefix is
        assert hit[hit["target"] == ""]["value"].max() > 0
        addresses = list(fleet.status()["address"])

        def hits() -> float:
            total = 0.0
            for address in addresses:
                text = urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()
                total += float(
                    next(
                        ln for ln in text.splitlines() if ln.startswith("vllm:prefix_cache_hits_total")
                    ).rsplit(" ", 1)[1]
                )
            return total

        counted = hits()
        for address in addresses:
            req = urllib.request.Request(f"http://{address}/reset_prefix_cache", method="POST")
            with urllib.request.urlopen(req, timeout=5) as resp:
                assert resp.status == 200
        before = hits()
        assert before == counted > 0  # a flush empties the cache, not the counters (they only grow)
        first = t.head(1)  # its blocks were cached before the reset, wherever it ran
        ml.load.run_load(
            fleet.url + "/v1/chat/completions", first, payloads=ml.load.prefix_chat(model="m", profile=first),
            progress=False,
        )  # fmt: skip
        assert hits() == before  # flushed: a cold miss on whichever target served it
