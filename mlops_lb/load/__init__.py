"""Open-loop load generation: profiles, the uvloop/httptools engine, results, and a Locust runner.

Latency is measured from each request's *intended* send time (coordinated-omission corrected), so a stalled
server shows up as latency, not as a quietly lower request rate. See DESIGN §6 for the measurements behind the
engine's design.

Example::

    from mlops_lb import load
    result = load.run_load("http://127.0.0.1:8080/predict", load.ramp(10, 300, 60), payloads=[b'{"rows": [[1]]}'])
    result.summary()["p99_s"], result.valid
    result.intervals()       # one row per second: offered/achieved rps, errors by kind, p50…max
"""

from __future__ import annotations

from ._wire import Keyed
from .locust_runner import LocustResult, run_locust
from .payloads import openai_chat, openai_completions, payloads_from_jsonl
from .prefix_replay import prefix_chat
from .profiles import (
    LoadProfile,
    RateProfile,
    TraceProfile,
    constant,
    make_profile,
    piecewise,
    profile_from_dict,
    profile_kinds,
    ramp,
    rate_kinds,
    spike,
    step,
    sweep,
    trace,
)
from .result import LoadResult
from .runner import LoadRun, run_load, start_load
from .settings import LoadSettings
from .trace_library import multiturn, shipped_traces

__all__ = [
    "Keyed",
    "LoadProfile",
    "LoadResult",
    "LoadRun",
    "LoadSettings",
    "LocustResult",
    "RateProfile",
    "TraceProfile",
    "constant",
    "make_profile",
    "multiturn",
    "openai_chat",
    "openai_completions",
    "payloads_from_jsonl",
    "piecewise",
    "prefix_chat",
    "profile_from_dict",
    "profile_kinds",
    "ramp",
    "rate_kinds",
    "run_load",
    "run_locust",
    "shipped_traces",
    "spike",
    "start_load",
    "step",
    "sweep",
    "trace",
]
