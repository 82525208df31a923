"""Spot interruptions in ``fleet.events()`` from the agent's own record, read back from each instance's console.

The spot agent (:mod:`mlops_lb.serving.spot_agent`) writes one JSON object per step to
``/var/log/mlops-lb-spot.jsonl`` and prints the same line to stdout, which its unit sends to the journal and the
console (``StandardOutput=journal+console``); EC2 GetConsoleOutput returns that console, the channel
``fleet.logs(target)`` already reads. journald prefixes what it forwards to the console with an optional
``[  seconds.micros] `` timestamp and ``identifier[pid]: `` (systemd, src/journal/journald-console.c,
``server_forward_console``), so a record is read from the line's first ``{``.

A console is data from an instance, never code: each line is parsed as JSON and kept only when it is an object
with a known ``event``, a finite epoch ``t`` and a string ``detail``; anything else that looks like a record is
skipped and counted (``events().attrs["spot_agent_bad_lines"]``). Details are cut to 300 printable characters.

The record is joined with the group's activities by instance id: a notice's row names the group's first
``spot_interrupted``/``spot_rebalance``/``terminate`` activity for that instance at or after it (their Cause
text is the group's, matched in :func:`mlops_lb.aws.cloudwatch.read_scaling_activities`).

Example::

    rows, bad = parse_agent_record(console_text, "i-0123456789abcdef0")
    rows[0]["kind"], rows[0]["timestamp"]        # 'spot_notice', Timestamp('2026-12-07 04:00:01+0000', tz='UTC')
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

__all__ = ["AGENT_EVENTS", "AgentRecordReader", "join_activities", "parse_agent_record"]

# the agent's event names (serving/spot_agent.py: SpotAgent._emit calls) -> the events frame's kind
AGENT_EVENTS = {
    "rebalance": "spot_agent",
    "notice": "spot_notice",
    "deregistered": "spot_agent",
    "deregister_failed": "spot_agent",
    "imds_error": "spot_agent",
}
# after these the agent exits (deregistered) or its unit restarts it: the record of that notice is complete
_FINAL = ("deregistered", "deregister_failed")
_MAX_DETAIL = 300
_PRINTABLE = re.compile(r"[^\x20-\x7e]")
# a record must fall between EC2's launch (2006) and a day from now: a wild clock or a forged line is not data
_EARLIEST_T = datetime(2006, 1, 1, tzinfo=timezone.utc).timestamp()


def parse_agent_record(text: str, instance: str) -> tuple[list[dict[str, Any]], int]:
    """Events-frame rows from the agent lines in ``text`` (a console or the .jsonl file), and how many lines that
    looked like records were skipped as malformed.

    Example::

        parse_agent_record('{"event": "notice", "t": 1796616001.5, "detail": "interruption notice"}', "i-1")
    """
    rows: list[dict[str, Any]] = []
    bad = 0
    latest = time.time() + 86_400
    for line in text.splitlines():
        if '"event"' not in line:
            continue  # the console holds the whole boot: only lines that claim to be records count
        start = line.find("{")
        try:
            rec = json.loads(line[start:]) if start >= 0 else None
        except ValueError:
            rec = None
        event = rec.get("event") if isinstance(rec, dict) else None
        t = rec.get("t") if isinstance(rec, dict) else None
        detail = rec.get("detail") if isinstance(rec, dict) else None
        ok = (
            isinstance(event, str)
            and event in AGENT_EVENTS
            and isinstance(t, (int, float))
            and not isinstance(t, bool)
            and math.isfinite(t)
            and _EARLIEST_T <= t <= latest
            and isinstance(detail, str)
        )
        if not ok:
            bad += 1
            continue
        assert isinstance(event, str) and isinstance(detail, str) and isinstance(t, (int, float))
        clean = _PRINTABLE.sub("?", detail)[:_MAX_DETAIL]
        kind = AGENT_EVENTS[event]
        rows.append(
            {
                "timestamp": datetime.fromtimestamp(float(t), timezone.utc),
                "kind": kind,
                "target": instance,
                # the local fleet's wording (local/spot.py), so plots and the report read both alike
                "detail": f"agent: {event}: {clean}",
            }
        )
    return rows, bad


def join_activities(agent_rows: list[dict[str, Any]], activities: Iterable[Mapping[str, Any]]) -> None:
    """Name, on each notice row, the group's first spot/terminate activity for that instance at or after it."""
    acts = sorted(
        (a for a in activities if a.get("kind") in ("spot_interrupted", "spot_rebalance", "terminate")),
        key=lambda a: a["timestamp"],
    )
    for row in agent_rows:
        if row["kind"] != "spot_notice":
            continue
        for a in acts:
            ts = a["timestamp"]
            if a.get("target") == row["target"] and _utc(ts) >= row["timestamp"]:
                cause = str(a.get("detail", ""))[:_MAX_DETAIL]
                row["detail"] += f"; the group: {a['kind']} at {_utc(ts):%H:%M:%S} UTC: {cause}"
                break


def _utc(ts: Any) -> datetime:
    if hasattr(ts, "to_pydatetime"):
        ts = ts.to_pydatetime()
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=timezone.utc)


class AgentRecordReader:
    """Reads each instance's console (``console(instance) -> text``) for the agent's record, at most every
    ``every_s`` per instance, and not again once the record is complete (the agent deregistered and exited).

    ``events()`` runs every few seconds during a run (the session saves them as it goes): GetConsoleOutput per
    instance each time would be wasteful, and a finished record does not change.

    Example::

        reader = AgentRecordReader(fleet._console_text)
        rows, bad, unreadable = reader.rows(["i-0123456789abcdef0"])
    """

    def __init__(self, console: Callable[[str], str], every_s: float = 30.0) -> None:
        self.console = console
        self.every_s = every_s
        self._cache: dict[str, tuple[float, list[dict[str, Any]], int, bool]] = {}

    def rows(self, instances: Iterable[str]) -> tuple[list[dict[str, Any]], int, list[str]]:
        """(rows, malformed lines, instances whose console could not be read)."""
        out: list[dict[str, Any]] = []
        bad = 0
        unreadable: list[str] = []
        now = time.monotonic()
        for iid in instances:
            cached = self._cache.get(iid)
            if cached is None or (not cached[3] and now - cached[0] >= self.every_s):
                try:
                    text = self.console(iid)
                except Exception:  # gone, or not allowed: the activities still show it; retried after every_s
                    unreadable.append(iid)
                    cached = (now, cached[1] if cached else [], cached[2] if cached else 0, False)
                    self._cache[iid] = cached
                else:
                    rows, n_bad = parse_agent_record(text, iid)
                    final = any(r["detail"].startswith(tuple(f"agent: {e}:" for e in _FINAL)) for r in rows)
                    cached = (now, rows, n_bad, final)
                    self._cache[iid] = cached
            out += [dict(r) for r in cached[1]]
            bad += cached[2]
        return out, bad, unreadable
