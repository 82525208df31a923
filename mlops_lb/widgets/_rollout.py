"""RolloutPanel: a rollout's progress, live: the share on the new slot, its state, each variant's last interval.

Example::

    panel = ml.widgets.RolloutPanel()
    display(panel)
    fleet.rollout(new, strategy=Canary(percent=20, bake_s=10), guard=guard, feed=feed, on_event=panel)
"""

from __future__ import annotations

import html
import math
import threading
from typing import Any

import ipywidgets as W

from ._common import message_html

__all__ = ["RolloutPanel"]

_KIND = {
    "completed": "ok",
    "rolled_back": "error",
    "failed": "error",
    "interrupted": "error",
    "rolling_back": "error",
}


class RolloutPanel(W.VBox):  # type: ignore[misc]
    """A callable panel: pass it as ``on_event`` of ``fleet.rollout`` and it shows each
    :class:`~mlops_lb.rollouts.RolloutEvent` as it comes (thread-safe). ``share`` is the percent on the new slot,
    ``state`` the rollout state line, ``variants`` the last interval's per-variant table, ``evidence`` the guard's
    evidence after a breach; ``events`` keeps every event received.

    Example::

        panel = RolloutPanel(); panel({"kind": "shift", "state": "baking", "percent": 20, ...})
    """

    def __init__(self) -> None:
        self.share = W.FloatProgress(value=0.0, min=0.0, max=100.0, description="new slot %")
        self.state = W.HTML(message_html("waiting for a rollout"))
        self.variants = W.HTML("")
        self.evidence = W.HTML("")
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        super().__init__([self.share, self.state, self.variants, self.evidence])

    def __call__(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.events.append(dict(event))
            self.share.value = float(event.get("percent", 0.0))
            state = str(event.get("state", ""))
            detail = str(event.get("detail", ""))
            self.state.value = message_html(f"{state} (step {int(event.get('step', 0)) + 1}): {detail}",
                                            _KIND.get(state, "busy"))  # fmt: skip
            stats = event.get("stats") or {}
            if stats:
                self.variants.value = _table(stats)
            if event.get("evidence"):
                rows = [
                    f"<li>interval {e.get('interval')}: {html.escape('; '.join(e.get('breaches', [])))}</li>"
                    for e in event["evidence"]
                ]
                self.evidence.value = "<b>guard evidence</b><ul>" + "".join(rows) + "</ul>"


def _ms(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{float(v) * 1e3:.1f}"


def _table(stats: dict[str, dict[str, Any]]) -> str:
    head = "<tr><th>variant</th><th>requests</th><th>errors</th><th>p99 ms</th></tr>"
    body = "".join(
        f"<tr><td>{html.escape(str(name))}</td><td>{s.get('requests', 0)}</td><td>{s.get('errors', 0)}</td>"
        f"<td>{_ms(s.get('p99_s'))}</td></tr>"
        for name, s in sorted(stats.items())
    )
    return f'<table class="mlops-lb-rollout">{head}{body}</table>'
