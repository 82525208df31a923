"""Bodies of the ``mlops-lb`` subcommands; imported only when the command runs."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_serve(args: argparse.Namespace) -> int:
    from .serving import serve

    if args.llm:
        from .cli import LLM_FLAGS
        from .serving import EngineParams, serve_llm

        params = EngineParams(**{name: getattr(args, name) for name, _ in LLM_FLAGS})
        serve_llm(
            port=args.port,
            host=args.host,
            target_id=args.target_id,
            params=params,
            served_model_name=args.served_model_name,
        )
        return 0
    serve(
        port=args.port,
        host=args.host,
        model=args.model,
        target_id=args.target_id,
        slots=args.slots,
        min_service_ms=args.min_service_ms,
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(duration_s=args.duration_s, spec=args.spec, out=args.out)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    print(write_report(args.run_dir))
    return 0


def _in_process_only(args: argparse.Namespace) -> str:
    return (
        f"--backend {args.backend}: this fleet lives inside the process that launched it; run `mlops-lb up SPEC "
        f"--backend {args.backend}` (it stays in the foreground until Ctrl-C) or use a notebook"
    )


def _in_process(args: argparse.Namespace) -> bool:
    from .fleet import get_backend

    return get_backend(args.backend).in_process


def _fleet(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .fleet import open_fleet

    return open_fleet(args.spec, backend=args.backend)


def cmd_up(args: argparse.Namespace) -> int:
    import time

    fleet = _fleet(args)
    if not _in_process(args):
        url = fleet.launch(on_output=lambda line: print(line, end="" if line.endswith("\n") else "\n"))
        print(f"fleet is up: {url}")
        return 0
    with fleet:
        fleet.launch(on_output=print)
        print(f"local fleet is up at {fleet.url} — Ctrl-C to stop it")
        print(fleet.status().to_string(index=False))
        while True:
            time.sleep(3600)


def cmd_preflight(args: argparse.Namespace) -> int:
    from .aws import preflight
    from .spec import FleetSpec

    result = preflight(FleetSpec.from_yaml(args.spec))
    print(repr(result))
    return 0 if result.ok else 1


def cmd_status(args: argparse.Namespace) -> int:
    from .errors import SpecError

    if _in_process(args):
        raise SpecError(None, _in_process_only(args))
    fleet = _fleet(args)
    print(f"{fleet.url}")
    print(fleet.status().to_string(index=False))
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    from .errors import SpecError

    if _in_process(args):
        raise SpecError(None, _in_process_only(args))
    fleet = _fleet(args)
    fleet.scale(min=args.min, desired=args.desired, max=args.max, target_rps_per_target=args.target_rps)
    print(fleet.status().to_string(index=False))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from .errors import SpecError

    if _in_process(args):
        raise SpecError(
            "backend", _in_process_only(args) + "; stopping that process (Ctrl-C) stops the fleet"
        )
    fleet = _fleet(args)
    if not args.yes:
        raise SpecError(
            "--yes", f"is required to destroy AWS stack {fleet.stack_name!r} and all its resources"
        )
    fleet.destroy(
        confirm=fleet.stack_name, on_output=lambda line: print(line, end="" if line.endswith("\n") else "\n")
    )
    print(f"stack {fleet.stack_name} destroyed")
    return 0


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
        for name in ("connections", "cluster", "shards", "placement")
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
    try:
        LoadSettings(**opts)
    except SpecError as exc:
        raise SpecError(f"--{exc.field}", str(exc).removeprefix(f"{exc.field} ")) from exc
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


def cmd_load(args: argparse.Namespace) -> int:
    from . import load
    from .session import run_session
    from .summary import summary_rows, text_table

    options = _load_options(args)
    # The widget builds its shapes the same way: "step" means the same in both.
    profile = load.make_profile(
        args.profile, rps=args.rps, start_rps=args.start_rps, duration_s=args.duration_s
    )
    outcome = run_session(args.url, profile, out=args.out, name="load", **options)
    print(text_table(summary_rows(outcome.summary)))
    shards = getattr(outcome.result, "shards", None)
    if shards is not None:
        # a shard that fell behind its schedule is the generator's limit, not the server's: name it
        cols = ["shard", "host", "state", "scheduled", "sent", "late", "lost", "lag_p99_s"]
        print(shards[[c for c in cols if c in shards.columns]].to_string(index=False))
    if outcome.error is not None:
        raise outcome.error
    if outcome.report_error is not None:
        raise outcome.report_error
    print(f"report: {outcome.report_path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .experiments import cli_compare

    return cli_compare(args)


def cmd_sweep(args: argparse.Namespace) -> int:
    from .experiments import cli_sweep

    return cli_sweep(args)
