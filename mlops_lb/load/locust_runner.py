"""Locust (closed loop) as subprocesses, for load beyond one machine; converted to the intervals schema.

Locust is never imported here: it monkey-patches the interpreter with gevent at import and hangs a Jupyter
kernel. :func:`run_locust` writes a locustfile (a ``FastHttpUser`` POSTing the payloads in turn), starts
``python -m locust --headless --master`` and K ``--worker`` processes (each in its own process group, killed on
exit or error), and turns ``<prefix>_stats_history.csv`` into a frame with the columns of
``LoadResult.intervals()`` and ``attrs["loop"] == "closed"``.

Closed loop means each user waits for its response before sending again: when the server stalls, Locust
sends less and its percentiles hide the stall (coordinated omission). Its percentile columns are copied to both
the ``p*_s`` and ``p*_uncorrected_s`` columns, and ``attrs["corrected"]`` is False; use :func:`run_load` for
latency you can trust and Locust for sheer distributed volume.

Workers on other machines: run the master here with ``--master-bind-host 0.0.0.0`` (or use ``run_locust(...,
workers=0)`` plus remote workers) and on each other machine, with the same locustfile (``out_dir/locustfile.py``
and ``payloads.json``)::

    python -m locust -f locustfile.py --worker --master-host <this machine's IP> --master-port 5557

Example::

    from mlops_lb.load import run_locust
    res = run_locust("http://127.0.0.1:8080/predict", users=50, spawn_rate=10, duration_s=30, workers=2,
                     payloads=[b'{"rows": [[5.1, 3.5, 1.4, 0.2]]}'])
    res.intervals()[["interval_start", "achieved_rps", "p99_s"]]; res.summary()
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from ..errors import BackendUnavailable, LoadTestError, SpecError
from ._codes import ERROR_KINDS

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LocustResult", "locust_history_to_intervals", "run_locust"]

log = logging.getLogger(__name__)

_LOCUSTFILE = '''\
"""Written by mlops_lb.load.run_locust: POST the bodies of payloads.json in turn (closed loop)."""
import itertools
import json
import os

from locust import FastHttpUser, task

_HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(_HERE, "payloads.json")) as fh:
    _BODIES = [b.encode() for b in json.load(fh)]
_NEXT = itertools.count()


class Client(FastHttpUser):
    host = {host!r}

    @task
    def post(self):
        body = _BODIES[next(_NEXT) % len(_BODIES)]
        self.client.post({path!r}, data=body, headers={{"Content-Type": "application/json"}})
'''

_PCT_COLUMNS = (("p50", "50%"), ("p90", "90%"), ("p99", "99%"), ("p999", "99.9%"), ("max", "100%"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(5)
    except subprocess.TimeoutExpired:
        # Called from `finally`: never let cleanup replace the error that brought us here.
        with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    except ProcessLookupError:
        pass


def locust_history_to_intervals(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Convert Locust's ``*_stats_history.csv`` (its ``Aggregated`` rows) into the intervals schema.

    Example::

        df = locust_history_to_intervals("out/locust_stats_history.csv")
        df.attrs["loop"]        # 'closed'
    """
    import numpy as np
    import pandas as pd

    from .result import INTERVAL_COLUMNS

    raw = pd.read_csv(path, na_values=["N/A"])
    agg = raw[raw["Name"] == "Aggregated"].copy()
    agg = agg.sort_values("Timestamp", kind="stable").reset_index(drop=True)
    total = agg["Total Request Count"].astype(float)
    fails = agg["Total Failure Count"].astype(float)
    sent = total.diff().fillna(total).clip(lower=0).astype("int64")
    errors = fails.diff().fillna(fails).clip(lower=0).astype("int64")
    out = pd.DataFrame(
        {
            "interval_start": pd.to_datetime(agg["Timestamp"], unit="s", utc=True).astype(
                "datetime64[ns, UTC]"
            ),
            "offered_rps": np.nan,  # a closed loop offers no schedule
            "achieved_rps": agg["Requests/s"].astype(float),
            "sent": sent,
            "ok": (sent - errors).clip(lower=0),
            "errors": errors,
        }
    )
    for kind in ERROR_KINDS[1:]:
        out[f"err_{kind}"] = errors if kind == "other" else 0
    for name, col in _PCT_COLUMNS:
        vals = agg[col].astype(float) / 1000.0 if col in agg else np.nan
        out[f"{name}_s"] = vals
        out[f"{name}_uncorrected_s"] = vals
    out["lag_p99_s"] = np.nan
    out["step_rps"] = np.nan
    for c in INTERVAL_COLUMNS:
        if c not in out:  # the streaming columns: Locust does not time tokens
            out[c] = 0 if c == "output_tokens" else np.nan
    out = out[list(INTERVAL_COLUMNS)]
    out.attrs["loop"] = "closed"
    out.attrs["corrected"] = False
    return out


@dataclass(kw_only=True)
class LocustResult:
    """A finished Locust run: ``intervals()`` in the LoadResult schema (closed loop), ``summary()``, files.

    Example::

        res = run_locust(url, users=20, spawn_rate=5, duration_s=20)
        res.intervals().attrs["loop"], res.summary()["achieved_rps"], res.out_dir
    """

    loop: ClassVar[str] = "closed"
    valid: ClassVar[bool] = True
    invalid_reasons: ClassVar[tuple[str, ...]] = ()

    url: str
    out_dir: Path
    prefix: Path  # Locust's --csv prefix: <prefix>_stats.csv and <prefix>_stats_history.csv
    users: int
    workers: int
    duration_s: float

    def intervals(self) -> pd.DataFrame:
        """Per-interval frame converted from ``*_stats_history.csv`` (``attrs["loop"] == "closed"``)."""
        return locust_history_to_intervals(f"{self.prefix}_stats_history.csv")

    def stats(self) -> pd.DataFrame:
        """Locust's final ``*_stats.csv`` as written."""
        import pandas as pd

        return pd.read_csv(f"{self.prefix}_stats.csv", na_values=["N/A"])

    def summary(self) -> dict[str, Any]:
        """requests, errors, achieved_rps and p50…max (seconds, closed loop: not corrected) of the whole run."""
        st = self.stats()
        row = st[st["Name"] == "Aggregated"].iloc[0]
        out: dict[str, Any] = {
            "loop": "closed",
            "requests": int(row["Request Count"]),
            "errors": int(row["Failure Count"]),
            "achieved_rps": float(row["Requests/s"]),
            "users": self.users,
            "workers": self.workers,
        }
        for name, col in _PCT_COLUMNS:
            v = float(row[col]) / 1000.0 if col in row and not math.isnan(float(row[col])) else math.nan
            out[f"{name}_uncorrected_s"] = v
        return out

    def __repr__(self) -> str:
        try:
            s = self.summary()
            return (
                f"LocustResult(closed loop, {self.users} users, {self.workers} workers: {s['requests']:,} requests, "
                f"{s['errors']:,} errors, {s['achieved_rps']:.1f} rps, p99 {s['p99_uncorrected_s'] * 1e3:.1f} ms "
                "uncorrected)"
            )
        except Exception:
            return f"LocustResult(closed loop, {self.out_dir})"


def run_locust(
    url: str,
    *,
    users: int,
    spawn_rate: float,
    duration_s: float,
    workers: int = 1,
    payloads: Sequence[bytes | str | dict[str, Any]] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
) -> LocustResult:
    """Run Locust headless (a master and ``workers`` worker subprocesses) against ``url``; closed loop.

    ``payloads`` are POSTed in turn (None: ``mlops_lb.serving.demo_payloads()``). Files (locustfile, CSVs,
    logs) go to ``out_dir`` (a temp dir by default). ``workers=0`` starts only the master and waits for
    remote workers (see the module docstring). Raises :class:`BackendUnavailable` when Locust is not installed
    (``pip install 'mlops_lb[locust]'``).

    Example::

        res = run_locust("http://127.0.0.1:8080/predict", users=10, spawn_rate=10, duration_s=10)
        res.intervals()
    """
    if isinstance(users, bool) or not isinstance(users, int) or users < 1:
        raise SpecError("users", f"must be an integer >= 1 (got {users!r})")
    if isinstance(workers, bool) or not isinstance(workers, int) or not 0 <= workers <= 256:
        raise SpecError("workers", f"must be an integer between 0 and 256 (got {workers!r})")
    for name, v in (("spawn_rate", spawn_rate), ("duration_s", duration_s)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise SpecError(name, f"must be a number > 0 (got {v!r})")
    from .runner import _body, _default_payloads, _parse_url

    _parse_url(url)
    parts = urlsplit(url)
    host = f"{parts.scheme}://{parts.netloc}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    bodies = [_body(p).decode() for p in (payloads if payloads is not None else _default_payloads())]
    if not bodies:
        raise LoadTestError("payloads must not be empty")
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="mlops-lb-locust-"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "payloads.json").write_text(json.dumps(bodies))
    locustfile = out / "locustfile.py"
    locustfile.write_text(_LOCUSTFILE.format(host=host, path=path))
    prefix = out / "locust"
    port = _free_port()
    run_time = max(1, math.ceil(duration_s))
    base = [sys.executable, "-m", "locust", "-f", str(locustfile), "--loglevel", "WARNING"]
    master_cmd = [
        *base, "--headless", "--master", "--master-bind-host", "127.0.0.1" if workers else "*",
        "--master-bind-port", str(port), "--expect-workers", str(max(workers, 1)), "-u", str(users),
        "-r", str(spawn_rate), "--run-time", f"{run_time}s", "--csv", str(prefix), "--csv-full-history",
        "--only-summary", "--exit-code-on-error", "0", "--stop-timeout", "2",
    ]  # fmt: skip
    worker_cmd = [*base, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        try:
            log_m = (out / "master.log").open("wb")
            logs.append(log_m)
            master = subprocess.Popen(
                master_cmd, stdout=log_m, stderr=subprocess.STDOUT, start_new_session=True
            )
        except FileNotFoundError as exc:  # pragma: no cover - sys.executable always exists
            raise BackendUnavailable("python", "reinstall Python") from exc
        procs.append(master)
        for w in range(workers):
            log_w = (out / f"worker-{w}.log").open("wb")
            logs.append(log_w)
            procs.append(
                subprocess.Popen(worker_cmd, stdout=log_w, stderr=subprocess.STDOUT, start_new_session=True)
            )
        log.info("locust: master + %d workers, %d users for %ss against %s (files in %s)", workers, users,
                 run_time, url, out)  # fmt: skip
        # Workers must connect first (--expect-workers); allow generous start-up on a busy machine.
        deadline = time.monotonic() + run_time + 90
        while master.poll() is None:
            if time.monotonic() > deadline:
                raise LoadTestError(f"locust did not finish within {run_time + 90} s (logs in {out})")
            time.sleep(0.2)
        master_log = (out / "master.log").read_text(errors="replace")
        if "No module named locust" in master_log:
            raise BackendUnavailable("locust", "pip install 'mlops_lb[locust]'")
        if not Path(f"{prefix}_stats_history.csv").exists():
            raise LoadTestError(
                f"locust wrote no stats history (exit {master.returncode}):\n{master_log[-2000:]}"
            )
    finally:
        for p in reversed(procs):
            _kill_group(p)
        for fh in logs:
            fh.close()
    return LocustResult(
        url=url, out_dir=out, prefix=prefix, users=users, workers=workers, duration_s=run_time
    )
