"""Bodies of the ``mlops-lb`` subcommands; imported only when the command runs."""

from __future__ import annotations

import argparse
from typing import Any

EXIT_OK = 0
EXIT_USAGE = 2  # argparse uses 2 for its own usage errors too
EXIT_INVALID = 3
EXIT_SLO_FAILED = 4
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a Ctrl-C'd command

# The verdict's tolerance and the generator's size (LoadSettings' names), settable wherever a verdict is shown.
VERDICT_FLAGS = ("late_after_s", "max_late_share", "max_error_share", "max_lag_p99_s", "workers")


def cmd_serve(args: argparse.Namespace) -> int:
    from .serving import serve

    # where and how both servers listen: the same flags for the model server and the LLM server
    listen = {
        "port": args.port,
        "host": args.host,
        "target_id": args.target_id,
        "header_timeout_s": args.header_timeout_s,
        "max_in_flight": args.max_in_flight,
    }
    if args.llm:
        from dataclasses import fields

        from .serving import EngineParams, serve_llm

        # cli.py adds one flag per EngineParams field (LLM_FLAGS); reading the fields here keeps the import
        # pointing down (cli -> _commands), never back up.
        params = EngineParams(**{f.name: getattr(args, f.name) for f in fields(EngineParams)})
        serve_llm(**listen, params=params, served_model_name=args.served_model_name)
        return 0
    serve(
        **listen,
        model=args.model,
        slots=args.slots,
        min_service_ms=args.min_service_ms,
        trusted_types=tuple(args.trust_type),
        allow_pickle=args.allow_pickle,
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    options = _verdict_options(args)
    run_demo(duration_s=args.duration_s, spec=args.spec, out=args.out, **options)
    return 0


def _verdict_options(args: argparse.Namespace) -> dict[str, Any]:
    """The run's knobs given as flags (``--connections``, ``--workers``, the verdict's tolerance), checked by
    :class:`LoadSettings` with the flag's name in the error. Flags not given are not passed: the defaults stay the
    library's."""
    from .errors import SpecError
    from .load.settings import LoadSettings

    opts = {
        name: value
        for name in ("connections", *VERDICT_FLAGS)
        if (value := getattr(args, name, None)) is not None
    }
    try:
        LoadSettings(**opts)
    except SpecError as exc:
        raise SpecError(_flag(exc.field), str(exc).removeprefix(f"{exc.field} ")) from exc
    except TypeError as exc:  # a knob this engine does not have yet (e.g. an older mlops_lb.load)
        raise SpecError(
            None, f"this version of the load engine does not accept one of {sorted(opts)}: {exc}"
        ) from exc
    return opts


def _flag(field: str | None) -> str:
    return "--" + (field or "").replace("_", "-")


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    print(write_report(args.run_dir))
    return 0


def _in_process(args: argparse.Namespace) -> bool:
    from .fleet import get_backend

    return get_backend(args.backend).in_process


def _fleet(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .fleet import open_fleet

    return open_fleet(args.spec, backend=args.backend)


def _is_local(args: argparse.Namespace) -> bool:
    return args.backend == "local"


def _in_process_only(args: argparse.Namespace) -> str:
    return (
        f"--backend {args.backend}: this fleet lives inside the process that launched it; run `mlops-lb up SPEC "
        f"--backend {args.backend}` (it stays in the foreground until Ctrl-C) or use a notebook"
    )


def _print_line(line: str) -> None:
    print(line, end="" if line.endswith("\n") else "\n", flush=True)


def cmd_up(args: argparse.Namespace) -> int:
    import time

    from .errors import SpecError

    if args.detach:
        if not _is_local(args):
            raise SpecError(
                "--detach",
                f"is for the local fleet; a --backend {args.backend} fleet already outlives this terminal",
            )
        from .local.supervisor import start_detached

        fleet = start_detached(args.spec, on_output=_print_line)
        print(
            f"local fleet {fleet.spec.name!r} is up at {fleet.url}, detached (supervisor pid {fleet.pids['supervisor']})"
        )
        print(fleet.status().to_string(index=False))
        print(
            f"from any shell: mlops-lb status {args.spec} | scale {args.spec} --desired N | load {args.spec} | down {args.spec}"
        )
        return 0
    fleet = _fleet(args)
    if not _in_process(args):
        url = fleet.launch(on_output=_print_line)
        print(f"fleet is up: {url}")
        return 0
    with fleet:
        fleet.launch(on_output=print)
        print(f"local fleet is up at {fleet.url} — Ctrl-C to stop it (or start it with --detach)")
        print(fleet.status().to_string(index=False))
        while True:
            time.sleep(3600)


def cmd_preflight(args: argparse.Namespace) -> int:
    from .aws import preflight
    from .spec import FleetSpec

    result = preflight(FleetSpec.from_yaml(args.spec))
    print(repr(result))
    return 0 if result.ok else 1


def _running(args: argparse.Namespace) -> Any:
    """The fleet a spec names, running in another process: a detached local fleet (by name) or a cloud stack."""
    from .errors import SpecError

    if _is_local(args):
        from .local.supervisor import attach

        return attach(args.spec)
    if _in_process(args):
        raise SpecError(None, _in_process_only(args))
    return _fleet(args)


def cmd_status(args: argparse.Namespace) -> int:
    fleet = _running(args)
    print(f"{fleet.url}")
    lo, want, hi = fleet.capacity
    print(f"capacity: min {lo}, desired {want}, max {hi}")
    print(fleet.status().to_string(index=False))
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    fleet = _running(args)
    fleet.scale(min=args.min, desired=args.desired, max=args.max, target_rps_per_target=args.target_rps)
    lo, want, hi = fleet.capacity
    print(f"capacity: min {lo}, desired {want}, max {hi}")
    print(fleet.status().to_string(index=False))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from .errors import SpecError

    if _is_local(args):
        from .local.supervisor import attach

        fleet = attach(args.spec)
        fleet.down()
        print(f"local fleet {fleet.spec.name!r} is down: targets drained, HAProxy and the supervisor stopped")
        return 0
    if _in_process(args):
        raise SpecError(
            "backend", _in_process_only(args) + "; stopping that process (Ctrl-C) stops the fleet"
        )
    fleet = _fleet(args)
    if not args.yes:
        raise SpecError(
            "--yes", f"is required to destroy AWS stack {fleet.stack_name!r} and all its resources"
        )
    fleet.destroy(confirm=fleet.stack_name, on_output=_print_line)
    print(f"stack {fleet.stack_name} destroyed")
    return 0


def _strategy(text: str) -> dict[str, Any]:
    """``canary:PCT:BAKE`` / ``linear:STEP:BAKE`` / ``all[:BAKE]`` as a strategy mapping (checked by the strategy)."""
    from .errors import SpecError

    kind, *nums = text.split(":")
    names = {"canary": ("percent", "bake_s"), "linear": ("step_percent", "bake_s"), "all": ("bake_s",)}
    if kind not in names or not (len(nums) == len(names[kind]) or (kind == "all" and not nums)):
        raise SpecError(
            "--strategy", f"must be canary:PCT:BAKE_S, linear:STEP_PCT:BAKE_S or all[:BAKE_S] (got {text!r})"
        )
    try:
        values = [float(n) for n in nums]
    except ValueError:
        raise SpecError("--strategy", f"takes numbers after the kind (got {text!r})") from None
    return {"kind": "all_at_once" if kind == "all" else kind, **dict(zip(names[kind], values, strict=False))}


def cmd_rollout(args: argparse.Namespace) -> int:
    """``mlops-lb rollout SPEC NEW_SPEC``: exit 0 completed, EXIT_SLO_FAILED rolled back (the guard's verdict
    failed), EXIT_INTERRUPTED on Ctrl-C (the rollout goes on in the supervisor: `--resume` follows it again)."""
    from .errors import ProvisionError, SpecError
    from .local.supervisor import attach
    from .spec import FleetSpec

    if (args.resume or args.rollback) == (args.new_spec is not None):
        raise SpecError(
            "NEW_SPEC", "give a NEW_SPEC to start a rollout, or --resume / --rollback (without NEW_SPEC)"
        )
    options: dict[str, Any] = {}
    if args.new_spec is not None:
        options["strategy"] = _strategy(args.strategy)
        guard = {
            "p99_s": None if args.guard_p99_ms is None else args.guard_p99_ms / 1000.0,
            "max_error_share": args.guard_error_rate,
            "interval_s": args.guard_interval_s,
        }
        options["guard"] = {k: v for k, v in guard.items() if v is not None}
        new: Any = FleetSpec.from_yaml(args.new_spec)
    else:
        new = None
    fleet = attach(args.spec)  # after the flags are checked: a bad flag never reaches the supervisor
    res = fleet.rollout(new, resume=args.resume, rollback=args.rollback, on_output=_print_line, **options)
    print(repr(res))
    if res.state == "completed":
        return EXIT_OK
    if res.state == "rolled_back":
        return EXIT_SLO_FAILED
    if res.state == "interrupted":
        return EXIT_INTERRUPTED
    raise ProvisionError(f"rollout {res.state}: {res.reason}")


def _load_options(args: argparse.Namespace) -> dict[str, Any]:
    """run_load's keywords from ``mlops-lb load``'s flags, checked by :class:`LoadSettings` before anything starts.

    The session creates the run's bundle before the load starts, so a bad flag is caught here (with the flag's
    name) rather than by the engine after an empty bundle exists. Only flags given are passed: the engine's
    defaults stay the defaults.
    """
    from .errors import SpecError
    from .load.settings import LoadSettings

    opts: dict[str, Any] = {
        name: value
        for name in ("cluster", "shards", "placement")
        if (value := getattr(args, name)) is not None
    }
    if args.cluster is None:
        for flag in ("shards", "placement"):
            if flag in opts:
                raise SpecError(
                    f"--{flag}",
                    "needs --cluster ray (a local Ray for this run) or --cluster ray://head:10001; "
                    "one machine needs no shards",
                )
    slo = {
        key: value
        for key, flag in (("latency_s", "slo_p99"), ("ttft_s", "slo_ttft"), ("tpot_s", "slo_tpot"))
        if (value := getattr(args, flag, None)) is not None
    }
    if slo:  # the same bounds per request give the run's goodput (requests that met every one)
        opts["slo"] = slo
    knobs = _verdict_options(args)
    try:
        LoadSettings(**opts, **knobs)
    except SpecError as exc:
        raise SpecError(_flag(exc.field), str(exc).removeprefix(f"{exc.field} ")) from exc
    opts.update(knobs)
    if args.cluster is not None:
        from .load.distributed import import_ray

        import_ray()  # BackendUnavailable naming `pip install 'mlops_lb[ray]'` now, not from the run's thread
        if args.cluster.startswith("ray://"):
            _reach_ray_client(args.cluster)
    return opts


def _reach_ray_client(cluster: str) -> None:
    """LoadTestError now when nothing listens at a ``ray://`` address (the run would fail after its bundle exists)."""
    import socket
    from urllib.parse import urlsplit

    from .errors import LoadTestError

    parts = urlsplit(cluster)  # already checked by check_options: it has a host
    host, port = parts.hostname or "", parts.port or 10001
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        raise LoadTestError(
            f"--cluster {cluster}: cannot reach the Ray Client server at {host}:{port} ({exc}); start the head with "
            "`ray start --head --ray-client-server-port=10001` and allow that port from this machine"
        ) from exc


def slo_failures(
    summary: dict[str, Any],
    *,
    p99_s: float | None = None,
    ttft_s: float | None = None,
    tpot_s: float | None = None,
    error_rate: float | None = None,
) -> list[str]:
    """The SLOs given (as ``mlops-lb load``'s flags) that a run's summary does not meet, one sentence each.

    A bound on something the run did not measure (TTFT of a run that was not streamed) fails: it cannot be said
    to be met. Example::

        slo_failures({"p99_s": 0.3, "requests": 10, "errors": 0}, p99_s=0.25)
        # ['--slo-p99 0.25 s: p99 was 0.300 s']
    """
    failed = []
    for flag, key, bound in (
        ("--slo-p99", "p99_s", p99_s),
        ("--slo-ttft", "ttft_p99_s", ttft_s),
        ("--slo-tpot", "tpot_p99_s", tpot_s),
    ):
        if bound is None:
            continue
        value = summary.get(key)
        if not isinstance(value, (int, float)) or value != value:
            failed.append(
                f"{flag} {bound:g} s: not measured (no {key} in this run; was the response streamed?)"
            )
        elif value > bound:
            failed.append(f"{flag} {bound:g} s: {key.removesuffix('_s').replace('_', ' ')} was {value:.3f} s")
    if error_rate is not None:
        sent = int(summary.get("requests") or 0)
        errors = int(summary.get("errors") or 0)
        share = errors / sent if sent else 1.0
        if share > error_rate:
            failed.append(
                f"--max-error-rate {error_rate:g}: {errors} of {sent} requests failed ({share:.2%})"
            )
    return failed


def trace_workload(args: argparse.Namespace) -> tuple[Any, Any]:
    """``--trace``: the trace's window as the profile, and bodies that replay it (prefix structure when it has
    ``hash_ids``, each request's sizes when it has them, else the default payloads)."""
    from . import load

    t = load.trace(args.trace, start_s=args.trace_start_s, duration_s=args.duration_s, speed=args.trace_speed)
    if t.has_prefixes:
        return t, load.prefix_chat(model=args.model, profile=t, block_tokens=args.block_tokens)
    if t.has_sizes:
        return t, load.openai_chat(model=args.model, profile=t)
    return t, None


def cmd_load(args: argparse.Namespace) -> int:
    """Run the profile; exit 0 valid, 3 INVALID, 4 an SLO flag failed, 130 Ctrl-C (paths printed in every case)."""
    import time

    from . import load
    from .demo import interval_line
    from .session import RunSession
    from .summary import summary_rows, text_table

    options = _load_options(args)
    target, path = _load_target(args)
    payloads: Any = None
    if getattr(args, "trace", None) is not None:
        profile, payloads = trace_workload(args)
    else:
        # The widget builds its shapes the same way: "step" means the same in both.
        profile = load.make_profile(
            args.profile, rps=args.rps, start_rps=args.start_rps, duration_s=args.duration_s
        )
    first: list[float] = []  # t=0 is the first interval's start, not this process's start-up

    def on_interval(row: dict[str, Any]) -> None:
        start: Any = row.get("interval_start")
        if not first:
            first.append(start.timestamp() if hasattr(start, "timestamp") else time.time())
        print(interval_line(row, first[0], None if isinstance(target, str) else target), flush=True)

    session = RunSession(
        target,
        profile,
        out=args.out,
        name="load",
        path=path,
        payloads=payloads,
        on_interval=on_interval,
        **options,
    )
    session.start()
    interrupted = False
    try:
        while not session.run.done:
            time.sleep(0.1)
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: stopping the load and keeping what was measured", flush=True)
        session.stop()
    outcome = session.finish()
    if outcome.summary:
        print(text_table(summary_rows(outcome.summary)))
    shards = getattr(outcome.result, "shards", None)
    if shards is not None:
        # a shard that fell behind its schedule is the generator's limit, not the server's: name it
        cols = ["shard", "host", "state", "scheduled", "sent", "late", "lost", "lag_p99_s"]
        print(shards[[c for c in cols if c in shards.columns]].to_string(index=False))
    if outcome.bundle_path is not None:
        print(f"run bundle: {outcome.bundle_path}")
    if outcome.report_path is not None:
        print(f"report: {outcome.report_path}")
    if interrupted:
        return EXIT_INTERRUPTED
    if outcome.error is not None:
        raise outcome.error
    if outcome.report_error is not None:
        raise outcome.report_error
    if outcome.summary.get("valid") is False:
        print("INVALID: these numbers do not describe the fleet under this load (see 'why invalid' above)")
        return EXIT_INVALID
    failed = slo_failures(
        outcome.summary,
        p99_s=args.slo_p99,
        ttft_s=args.slo_ttft,
        tpot_s=args.slo_tpot,
        error_rate=args.max_error_rate,
    )
    for line in failed:
        print(f"SLO failed: {line}")
    return EXIT_SLO_FAILED if failed else EXIT_OK


def _load_target(args: argparse.Namespace) -> tuple[Any, str]:
    """(URL or fleet, path) of ``mlops-lb load``: a URL as given, or the running fleet a spec names."""
    from .errors import SpecError

    given = args.url
    if "://" in given:
        if args.path is not None:
            raise SpecError("--path", "goes with a SPEC; with a URL, put the path in the URL")
        return given, "/predict"
    if not given.endswith((".yaml", ".yml", ".json")) and not _is_file(given):
        raise SpecError(
            "URL",
            f"must be a URL such as http://127.0.0.1:8080/predict or a fleet's spec file (got {given!r})",
        )
    fleet = _attached_fleet(args, given)
    return fleet, args.path or "/predict"


def _is_file(text: str) -> bool:
    from pathlib import Path

    return Path(text).is_file()


def _attached_fleet(args: argparse.Namespace, spec: str) -> Any:
    """The fleet ``spec`` describes, running elsewhere: a detached local fleet or an AWS stack."""
    from .errors import SpecError

    args.spec = spec
    fleet = _running(args)
    if not getattr(fleet, "url", None):
        raise SpecError("spec", f"fleet {fleet.spec.name!r} is not up: run `mlops-lb up {spec}` first")
    return fleet


def cmd_compare(args: argparse.Namespace) -> int:
    from .experiments import cli_compare

    return cli_compare(args)


def cmd_routing(args: argparse.Namespace) -> int:
    from .routing_ab import cli_routing

    return cli_routing(args)


def cmd_sweep(args: argparse.Namespace) -> int:
    from .experiments import cli_sweep

    return cli_sweep(args)
