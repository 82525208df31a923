"""The spot agent: watch IMDS for an interruption notice and take this target out of the load balancer at once.

The same code runs on an EC2 instance (a systemd unit from the user data; ``python -m
mlops_lb.serving.spot_agent``) and for every spot target of the local fleet (a thread polling the fleet's IMDS
emulator). It imports the standard library only, so it starts fast on the instance's Python.

What it watches (EC2 instance metadata, IMDSv2: a token from ``PUT /latest/api/token``, then every GET carries
it; https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html):

* ``/latest/meta-data/spot/instance-action``: 404 until EC2 decides to interrupt, then JSON
  ``{"action": "terminate"|"stop"|"hibernate", "time": "2026-12-07T01:02:03Z"}``; the two-minute notice.
  AWS recommends polling every 5 seconds.
* ``/latest/meta-data/events/recommendations/rebalance``: 404 until EC2 sees an elevated risk of interruption,
  then ``{"noticeTime": "..."}`` (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/rebalance-recommendations.html).

On the notice it calls ``deregister`` once (AWS: ``aws elbv2 deregister-targets`` on this instance's target;
local: the fleet's control endpoint), so the balancer sends nothing new while in-flight requests finish during
the deregistration delay (<= 90 s, inside the two minutes). Each step is appended to ``record`` as one JSON line
(``event``, ``t`` epoch seconds, ``detail``), which ``fleet.events()`` reads back.

Example::

    agent = SpotAgent(Imds("http://169.254.169.254"), deregister=lambda: print("out"), record=print, poll_s=5)
    agent.run(stop=threading.Event())      # returns once deregistered (or when stop is set)

    # on an instance (what the user data's unit runs):
    # python -m mlops_lb.serving.spot_agent --target-group-arn arn:... --port 8080 --record /var/log/spot.jsonl
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

__all__ = [
    "INSTANCE_ACTION",
    "REBALANCE",
    "Imds",
    "SpotAgent",
    "aws_deregister",
    "http_deregister",
    "main",
]

INSTANCE_ACTION = "/latest/meta-data/spot/instance-action"
REBALANCE = "/latest/meta-data/events/recommendations/rebalance"
TOKEN_PATH = "/latest/api/token"
TOKEN_TTL_S = 21600  # IMDSv2's maximum token lifetime (6 hours)


class Imds:
    """A minimal IMDSv2 client: ``get(path)`` returns the body, or None for 404 (the item is not there yet).

    Example::

        Imds("http://169.254.169.254").get("/latest/meta-data/instance-id")   # 'i-0123...'
    """

    def __init__(self, base: str = "http://169.254.169.254", *, timeout_s: float = 1.0) -> None:
        self.base = base.rstrip("/")
        self.timeout_s = timeout_s
        self._token: str | None = None
        self._token_at = 0.0

    def _fetch_token(self) -> str:
        req = urllib.request.Request(
            self.base + TOKEN_PATH,
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)},
        )
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            token = resp.read().decode()
        self._token, self._token_at = token, time.monotonic()
        return token

    def get(self, path: str) -> str | None:
        """The item at ``path`` (a str), None when IMDS answers 404; other failures raise OSError."""
        for attempt in (0, 1):
            token = self._token
            if token is None or time.monotonic() - self._token_at > TOKEN_TTL_S / 2:
                token = self._fetch_token()
            req = urllib.request.Request(self.base + path, headers={"X-aws-ec2-metadata-token": token})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return str(resp.read().decode())
            except urllib.error.HTTPError as exc:
                exc.close()  # it holds the response's socket
                if exc.code == 404:
                    return None
                if exc.code == 401 and attempt == 0:  # the token expired or IMDS restarted: get a new one
                    self._token = None
                    continue
                raise
        return None  # pragma: no cover - the loop returns or raises


Record = Callable[[dict[str, Any]], None]


class SpotAgent:
    """Poll the notice and the rebalance recommendation; on the notice, deregister once and record it.

    ``on_rebalance`` (optional) runs once when the recommendation appears. ``run`` returns after deregistering,
    or when ``stop`` is set.
    """

    def __init__(
        self,
        imds: Imds,
        *,
        deregister: Callable[[], object],
        record: Record,
        poll_s: float = 5.0,
        on_rebalance: Callable[[], object] | None = None,
    ) -> None:
        self.imds = imds
        self.deregister = deregister
        self.record = record
        self.poll_s = poll_s
        self.on_rebalance = on_rebalance
        self.rebalance_seen = False
        self.notice: dict[str, Any] | None = None

    def _emit(self, event: str, detail: str, **extra: Any) -> None:
        try:
            self.record({"event": event, "t": time.time(), "detail": detail, **extra})
        except Exception as exc:  # a full disk must not stop the deregistration
            print(f"spot agent: could not record {event}: {exc}", file=sys.stderr)

    def poll_once(self) -> bool:
        """One look at IMDS; True once the notice was handled (deregistered)."""
        if not self.rebalance_seen:
            body = self.imds.get(REBALANCE)
            if body is not None:
                self.rebalance_seen = True
                self._emit("rebalance", f"rebalance recommendation {body.strip()}")
                if self.on_rebalance is not None:
                    self.on_rebalance()
        body = self.imds.get(INSTANCE_ACTION)
        if body is None:
            return False
        try:
            notice = json.loads(body)
        except ValueError:
            notice = {"action": "terminate", "raw": body[:200]}
        self.notice = notice
        seen = time.time()
        self._emit(
            "notice", f"interruption notice: {notice.get('action')} at {notice.get('time')}", notice=notice
        )
        try:
            self.deregister()
        except Exception as exc:
            self._emit("deregister_failed", f"{type(exc).__name__}: {exc}")
            raise
        self._emit("deregistered", f"deregistered {time.time() - seen:.3f} s after seeing the notice")
        return True

    def run(self, stop: threading.Event | None = None) -> bool:
        """Poll every ``poll_s`` until the notice was handled (True) or ``stop`` is set (False)."""
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                if self.poll_once():
                    return True
            except OSError as exc:  # IMDS briefly unreachable: keep polling, say so once per failure
                self._emit("imds_error", f"{type(exc).__name__}: {exc}")
            stop.wait(self.poll_s)
        return False


def aws_deregister(target_group_arn: str, instance_id: str, port: int, region: str | None = None) -> None:
    """``aws elbv2 deregister-targets`` for this instance's target (the instance role allows it on this group only).

    https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_DeregisterTargets.html
    """
    argv = [
        "aws",
        "elbv2",
        "deregister-targets",
        "--target-group-arn",
        target_group_arn,
        "--targets",
        f"Id={instance_id},Port={port}",
    ]
    if region:
        argv += ["--region", region]
    subprocess.run(argv, check=True, timeout=30, stdout=subprocess.DEVNULL)


def http_deregister(url: str, target: str, timeout_s: float = 2.0) -> None:
    """POST ``{"target": target}`` to the local fleet's control endpoint (what the ALB API is on AWS)."""
    req = urllib.request.Request(
        url,
        data=json.dumps({"target": target}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        resp.read()


def _file_record(path: str) -> Record:
    def record(event: dict[str, Any]) -> None:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(event) + "\n")
        print(json.dumps(event), flush=True)

    return record


def main(argv: list[str] | None = None) -> int:
    """The instance's unit: ``python -m mlops_lb.serving.spot_agent --target-group-arn ARN --port 8080``."""
    ap = argparse.ArgumentParser(prog="spot_agent", description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--imds", default="http://169.254.169.254")
    ap.add_argument("--target-group-arn", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--region", default=None)
    ap.add_argument("--record", default="/var/log/mlops_lb/spot-agent.jsonl")
    ap.add_argument("--poll-s", type=float, default=5.0)
    args = ap.parse_args(argv)
    imds = Imds(args.imds)
    instance_id = ""
    while not instance_id:  # IMDS answers as soon as the network is up; retry until then
        try:
            instance_id = imds.get("/latest/meta-data/instance-id") or ""
        except OSError:
            time.sleep(1)
    region = args.region or imds.get("/latest/meta-data/placement/region")
    agent = SpotAgent(
        imds,
        deregister=lambda: aws_deregister(args.target_group_arn, instance_id, args.port, region),
        record=_file_record(args.record),
        poll_s=args.poll_s,
    )
    agent.run()
    return 0


if __name__ == "__main__":  # pragma: no cover - the unit's entry point
    raise SystemExit(main())
