"""Bodies of the ``mlops-lb`` subcommands; imported only when the command runs."""

from __future__ import annotations

import argparse


def cmd_serve(args: argparse.Namespace) -> int:
    from .serving import serve

    serve(port=args.port, host=args.host, model=args.model, target_id=args.target_id,
          slots=args.slots, min_service_ms=args.min_service_ms)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(duration_s=args.duration_s, spec=args.spec, out=args.out)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    print(write_report(args.run_dir))
    return 0
