"""Streamed responses pass the local load balancer token by token, as they leave the target.

HAProxy by default lets the kernel hold small writes for more data (MSG_MORE); ``option http-no-delay`` turns that
off ("favor low interactive delays over performance in HTTP", HAProxy 2.6 Configuration Manual, section 4,
https://docs.haproxy.org/2.6/configuration.html#4-option%20http-no-delay). Without it a short SSE answer from the
LLM emulator arrived as one burst at its end: TTFT read ~the whole latency and every ITL gap read 0.
"""

from __future__ import annotations

import http.client
import json
import shutil
import time
from urllib.parse import urlsplit

import pytest

import mlops_lb as ml
from mlops_lb.local import LocalFleet

# Starts local fleets (HAProxy and server processes): serial phase, not the fast command.
pytestmark = [
    pytest.mark.fleet,
    pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed"),
]


@pytest.mark.timeout(60)
def test_sse_tokens_arrive_spread_out_not_in_one_burst() -> None:
    """6 tokens at >= 40 ms each from the emulator: through HAProxy the first and last token events arrive at
    least 100 ms apart (the emulator spaces them >= 200 ms; a burst would be well under 1 ms)."""
    spec = ml.FleetSpec.from_dict(
        {
            "name": "sse",
            "capacity": {"min": 1, "desired": 1, "max": 1},
            "server": {"kind": "llm-emulator", "llm": {"decode_ms_per_token": 40, "seed": 1}},
            "local": {"period_s": 1.0},
        }
    )
    body = json.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 6, "stream": True}
    )
    with LocalFleet(spec) as fleet:
        fleet.launch()
        u = urlsplit(fleet.url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=20)
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        stamps: list[float] = []
        while True:
            line = resp.fp.readline()
            if not line or line.startswith(b"data: [DONE]"):
                break
            if line.startswith(b"data:") and json.loads(line[5:])["choices"][0]["delta"].get("content"):
                stamps.append(time.perf_counter())
        conn.close()
    assert len(stamps) == 6
    assert stamps[-1] - stamps[0] >= 0.100, [round(s - stamps[0], 4) for s in stamps]
