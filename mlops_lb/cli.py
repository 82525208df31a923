"""The ``mlops-lb`` command.

Example::

    mlops-lb demo --duration-s 120               # local fleet, load past capacity, scale out and in, report
    mlops-lb serve --port 8080 --model demo      # the model server (what every instance runs)
    mlops-lb report runs/2026-11-28T10-00-00Z-demo
    mlops-lb preflight fleet.yaml                # check the AWS account against the spec (read-only)
    mlops-lb up fleet.yaml --backend aws         # also: status, scale, load, down
    mlops-lb load http://127.0.0.1:8080/predict --rps 200 --connections 64 --slo-p99 0.25
    mlops-lb load http://10.0.1.5/predict --rps 20000 --cluster ray://head:10001 --shards auto
    mlops-lb up fleet.yaml --detach              # the local fleet keeps running; then from any shell:
    mlops-lb status fleet.yaml; mlops-lb scale fleet.yaml --desired 3
    mlops-lb load fleet.yaml --rps 40; mlops-lb down fleet.yaml

Exit codes (for scripts and CI, as k6's thresholds): 0 the run is VALID (and every ``--slo-*`` met), 2 a usage or
input error (bad flag, bad spec, a folder that is not a run bundle), 3 the run is INVALID (its numbers do not
describe the fleet: the printout says why and what to change), 4 the run is valid but an SLO given by flags failed,
130 interrupted (Ctrl-C; what was measured is kept and its paths printed).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable, Sequence

from .errors import MlopsLbError
from .fleet import backend_names
from .load.profiles import rate_kinds
from .serving.llm_engine import EngineParams

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_INVALID",
    "EXIT_OK",
    "EXIT_SLO_FAILED",
    "EXIT_USAGE",
    "build_parser",
    "main",
]

# The exit codes and the verdict flags live beside the command bodies, which use them; cli re-exports them
# so that scripts read them from the module that parses the command line (and _commands never imports cli).
from ._commands import (
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_SLO_FAILED,
    EXIT_USAGE,
)

# The LLM emulator's engine flags: one per EngineParams field, whose default is the flag's default.
LLM_FLAGS = (
    ("max_num_seqs", "sequences decoded at once; the rest queue ({:g})"),
    ("prefill_ms_per_token", "prefill time per prompt token ({:g})"),
    ("decode_ms_per_token", "decode time per output token, alone ({:g})"),
    (
        "decode_slowdown_per_seq",
        "decode step grows by this fraction per extra sequence decoding ({:g}: 8 at once -> 13.5 ms)",
    ),
    ("max_model_len", "prompt + max_tokens limit ({:g})"),
    ("seed", "seed of the generated words ({:g})"),
    (
        "prefix_cache_blocks",
        "prefix cache size in blocks, LRU, as vLLM's automatic prefix caching ({:g}: off)",
    ),
    ("block_size", "tokens per prefix-cache block ({:g}, vLLM's default)"),
)


# run_load's placements (mlops_lb.load.distributed.PLACEMENTS; a test keeps the two equal): written out here so
# building the parser imports nothing of the load engine.
PLACEMENTS = ("spread", "strict_spread", "pack")


def _shards(text: str) -> int | str:
    """``--shards``: a positive integer or ``auto`` (one shard per free CPU of the cluster)."""
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer or 'auto' (got {text!r})") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {n})")
    return n


def _number(ok: Callable[[float], bool], wanted: str, not_a_number: str = "") -> Callable[[str], float]:
    """An argparse type: the flag's float when ``ok`` holds for it, else "must be <wanted> (got ...)" (a word that
    is no number at all: "must be <not_a_number>", when given).

    Example::

        c.add_argument("--rate", type=_number(lambda v: v > 0, "a positive number"))
    """

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            if not_a_number:
                raise argparse.ArgumentTypeError(f"must be {not_a_number} (got {text!r})") from None
            value = math.nan
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {wanted} (got {text!r})")
        return value

    return parse


_positive = _number(lambda v: 0 < v < math.inf, "a positive number", "a number")
# A type's message reaches the user as written (argparse %-formats help texts, not these): one "%".
_share = _number(lambda v: 0 <= v <= 1, "a fraction between 0 and 1, e.g. 0.01 for 1 %")


def _add_verdict_flags(c: argparse.ArgumentParser, *, connections_default: str) -> None:
    """The knobs of the run and its verdict, shared by ``load`` and ``demo`` (unset = the library's defaults)."""
    g = c.add_argument_group("generator and verdict (unset: the library's defaults)")
    g.add_argument(
        "--connections",
        type=int,
        default=None,
        metavar="N",
        help=f"keep-alive connections in all ({connections_default}); with --cluster they are split over the shards",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="generator processes on this machine (default 1): the fix when the verdict says generator lag",
    )
    g.add_argument(
        "--late-after-s",
        type=_positive,
        default=None,
        metavar="S",
        help="a send is late when it leaves more than S seconds after its intended time (default: automatic, "
        "max(5 ms, 10%% of the run's service-time p50))",
    )
    g.add_argument(
        "--max-late-share",
        type=_share,
        default=None,
        metavar="F",
        help="the run is INVALID when more than this share of sends is late where the rate suffered (default 0.01)",
    )
    g.add_argument(
        "--max-error-share",
        type=_share,
        default=None,
        metavar="F",
        help="the run is INVALID when more than this share of requests fail, 4xx included (default 0.01)",
    )
    g.add_argument("--max-lag-p99-s", type=_positive, default=None, help=argparse.SUPPRESS)  # old name


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``mlops-lb`` (kept separate so tests can inspect it)."""
    p = argparse.ArgumentParser(
        prog="mlops-lb", description="Load-balanced inference fleets: launch, load test, plot."
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the model server (what each instance runs)")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 on an instance behind an ALB)")
    s.add_argument(
        "--model", default="demo", help="'demo', 'demo.onnx' or a path to a .joblib/.pkl/.skops/.onnx model"
    )
    s.add_argument(
        "--allow-pickle",
        action="store_true",
        help="load a .joblib/.pkl model: a pickle RUNS ANY CODE it holds, so only for a file you made or trust "
        "(.skops and .onnx run nothing on load)",
    )
    s.add_argument(
        "--trust-type",
        action="append",
        default=[],
        metavar="NAME",
        help="a type a .skops model may build beyond what skops and scikit-learn classes allow (repeatable), "
        "e.g. mypkg.models.ChurnModel",
    )
    s.add_argument(
        "--target-id",
        default=None,
        help="id returned in X-Target-Id (default: host:port; the AWS user data passes the instance id)",
    )
    s.add_argument("--slots", type=int, default=0, help="emulated concurrent slots (0 = unlimited)")
    s.add_argument(
        "--header-timeout-s",
        type=float,
        default=10.0,
        help="close a connection whose request headers are not complete this long after it opened or after "
        "its last response (idle and slow clients; default 10)",
    )
    s.add_argument(
        "--max-in-flight",
        type=int,
        default=4096,
        help="answer 503 beyond this many requests in flight (/health is exempt; default 4096)",
    )
    s.add_argument(
        "--min-service-ms", type=float, default=0.0, help="emulated minimum service time per request"
    )
    # The LLM emulator (server.kind: llm-emulator). Defaults: one small engine that serves about 9 requests/s of
    # 128-token prompts and 64-token answers, so a few tens of rps on a 2-core machine make TTFT climb.
    llm = s.add_argument_group("LLM emulator (--llm)")
    llm.add_argument(
        "--llm", action="store_true", help="serve the OpenAI-compatible LLM emulator instead of a model"
    )
    defaults = EngineParams()
    for name, text in LLM_FLAGS:
        default = getattr(defaults, name)
        llm.add_argument(
            "--" + name.replace("_", "-"), type=type(default), default=default, help=text.format(default)
        )
    llm.add_argument("--served-model-name", default=None, help="name in /v1/models (mlops-lb-llm-emulator)")

    d = sub.add_parser(
        "demo", help="the whole story on this machine: launch, load past capacity, scale, report"
    )
    d.add_argument("--duration-s", type=float, default=120.0)
    d.add_argument("--spec", default=None, help="a FleetSpec YAML (default: the bundled demo spec)")
    d.add_argument("--out", default="runs", help="folder for the run bundle")
    _add_verdict_flags(d, connections_default="default: enough to stay open loop at the peak, up to 1024")

    r = sub.add_parser("report", help="(re)write report.html for a run bundle")
    r.add_argument("run_dir")

    # Every fleet subcommand defaults to the same backend, so `up X` then `status X` talk about one fleet.
    backend_help = (
        "where the fleet lives (default local; a local fleet started with `up --detach` is found by name)"
    )
    for name, text in (
        ("up", "launch the fleet"),
        ("status", "show targets"),
        ("down", "close/destroy the fleet"),
    ):
        c = sub.add_parser(name, help=text)
        c.add_argument("spec")
        c.add_argument("--backend", choices=backend_names(), default="local", help=backend_help)
        if name == "up":
            c.add_argument(
                "--detach",
                action="store_true",
                help="local: leave the fleet running under a supervisor process and return; status, scale, load "
                "and down then work from any shell of this user",
            )
        if name == "down":
            c.add_argument("--yes", action="store_true", help="confirm destroying an AWS stack")
    c = sub.add_parser("preflight", help="check the AWS account against a spec (read-only), before `up`")
    c.add_argument("spec")
    c = sub.add_parser("scale", help="change min/desired/max or the target rps per target")
    c.add_argument("spec")
    c.add_argument("--backend", choices=backend_names(), default="local", help=backend_help)
    c.add_argument("--min", type=int)
    c.add_argument("--desired", type=int)
    c.add_argument("--max", type=int)
    c.add_argument("--target-rps", type=float)
    c = sub.add_parser(
        "rollout",
        help="shift a detached local fleet to NEW_SPEC under an SLO guard; exit 0 completed, 4 rolled back",
    )
    c.add_argument("spec", help="the spec of a fleet started with `up --detach`")
    c.add_argument(
        "new_spec", nargs="?", default=None, help="the spec the new slot runs (not with --resume/--rollback)"
    )
    c.add_argument(
        "--strategy",
        default="canary:10:60",
        help="canary:PCT:BAKE_S | linear:STEP_PCT:BAKE_S | all[:BAKE_S] (default canary:10:60)",
    )
    c.add_argument("--guard-p99-ms", type=_positive, default=None, help="the new variant's p99 bound, ms")
    c.add_argument(
        "--guard-error-rate", type=_share, default=None, help="largest failed share on the new variant (0-1)"
    )
    c.add_argument("--guard-interval-s", type=_positive, default=None, help="how often the guard judges")
    how = c.add_mutually_exclusive_group()
    how.add_argument(
        "--resume", action="store_true", help="follow a running rollout, or resume an interrupted one"
    )
    how.add_argument("--rollback", action="store_true", help="send the new slot to 0 %% and retire it")
    c = sub.add_parser(
        "compare", help="compare two run bundles: differences with intervals, verdicts, HTML report"
    )
    c.add_argument("run_a")
    c.add_argument("run_b")
    c.add_argument("--slo", action="append", default=None, metavar="KEY=S", help="ttft_s=0.5 (repeatable)")
    c.add_argument("--usd-per-hour", type=float, default=None, help="fleet $/h for the cost figure")
    c.add_argument("--confidence", type=float, default=0.95)
    c.add_argument("--html", default=None, help="write the HTML comparison here (default: none)")
    c = sub.add_parser("sweep", help="run each variant of a spec on the local fleet and recommend one")
    c.add_argument("spec")
    c.add_argument("--variants", required=True, help="YAML/JSON list of overrides per variant")
    c.add_argument("--rps", type=float, required=True)
    c.add_argument("--duration-s", type=float, default=20.0)
    c.add_argument("--slo", action="append", required=True, metavar="KEY=S", help="ttft_s=0.5 (repeatable)")
    c.add_argument("--price-as", required=True, help="instance type local costs are 'as if priced at'")
    c.add_argument("--out", default=None, help="folder for sweep.csv and pareto.png")
    c = sub.add_parser(
        "routing",
        help="A/B the routing policies on a trace on the local fleet: goodput, TTFT p99, hit rate, verdicts",
    )
    c.add_argument("spec")
    c.add_argument(
        "--trace", required=True, help="a shipped trace's name (mooncake-conv-2025, ...) or a file"
    )
    c.add_argument("--duration-s", type=float, default=None, help="replay only the trace's first seconds")
    c.add_argument("--policies", default="least_outstanding_requests,consistent_hash,sticky_cookie")
    c.add_argument("--repeats", type=int, default=3)
    c.add_argument("--slo", action="append", required=True, metavar="KEY=S", help="ttft_s=0.5 (repeatable)")
    c.add_argument("--block-tokens", type=int, default=None, help="tokens per trace block on the wire")
    c = sub.add_parser(
        "load",
        help="run a load profile against a URL or a running fleet; exit 0 valid, 3 INVALID, 4 an SLO failed",
    )
    c.add_argument("url", metavar="URL|SPEC", help="a URL, or the spec of a fleet started with `up --detach`")
    c.add_argument(
        "--backend",
        choices=backend_names(),
        default="local",
        help="with a SPEC: where its fleet lives (default local)",
    )
    c.add_argument("--path", default=None, help="with a SPEC: the URL path to load (default /predict)")
    # every shape that can be said in --rps/--start-rps/--duration-s, a user's registered ones included
    c.add_argument("--profile", default="constant", choices=rate_kinds())
    c.add_argument(
        "--rps", type=float, default=50.0, help="rate (constant), end rate (ramp/step), burst (spike)"
    )
    c.add_argument(
        "--start-rps",
        type=float,
        default=1.0,
        help="start (ramp; step climbs in 4 equal steps), base (spike)",
    )
    c.add_argument("--duration-s", type=float, default=30.0)
    c.add_argument("--out", default="runs")
    tr = c.add_argument_group("trace replay (replaces --profile/--rps; --duration-s is the window's length)")
    tr.add_argument(
        "--trace",
        default=None,
        metavar="NAME|FILE",
        help="replay a shipped trace (azure-conv-2023, azure-code-2023, mooncake-conv-2025, synthetic-multiturn) "
        "or a CSV/JSONL file; LLM traces send OpenAI chat bodies (point the URL at /v1/chat/completions)",
    )
    tr.add_argument("--trace-start-s", type=float, default=0.0, help="start of the window in the trace (0)")
    tr.add_argument(
        "--trace-speed",
        type=float,
        default=1.0,
        help="divide every inter-arrival gap by this (1: as recorded)",
    )
    tr.add_argument(
        "--block-tokens",
        type=int,
        default=None,
        help="words per hash_id block on the wire (default the trace's)",
    )
    tr.add_argument("--model", default="mlops-lb-llm-emulator", help="the model name in the request bodies")
    _add_verdict_flags(c, connections_default="default 32")
    slo = c.add_argument_group("SLOs (as k6's thresholds: exit 4 when one fails; seconds, fractions)")
    slo.add_argument(
        "--slo-p99", type=_positive, default=None, metavar="S", help="p99 latency at most S seconds"
    )
    slo.add_argument(
        "--slo-ttft", type=_positive, default=None, metavar="S", help="p99 time to first token at most S"
    )
    slo.add_argument(
        "--slo-tpot", type=_positive, default=None, metavar="S", help="p99 time per output token at most S"
    )
    slo.add_argument(
        "--max-error-rate",
        type=_share,
        default=None,
        metavar="F",
        help="errors at most this share of requests",
    )
    c.add_argument(
        "--cluster",
        default=None,
        metavar="ray|ray://HOST:PORT",
        help="run open-loop shards on Ray: 'ray' starts a local Ray for the run, ray://head:10001 connects with "
        "Ray Client (docs/distributed.md)",
    )
    c.add_argument(
        "--shards",
        type=_shards,
        default=None,
        metavar="N|auto",
        help="shards with --cluster (default auto: one per free CPU of the cluster)",
    )
    c.add_argument(
        "--placement",
        choices=PLACEMENTS,
        default=None,
        help="how shards spread over the cluster's nodes with --cluster (default spread)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        from . import _commands

        return int(getattr(_commands, f"cmd_{args.command}")(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MlopsLbError as exc:
        print(f"mlops-lb: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
