"""RolloutPanel shows each rollout event: the share on the new slot, the state, each variant, the evidence."""

from __future__ import annotations

from mlops_lb.rollouts import VariantStats, rollout_event
from mlops_lb.widgets import RolloutPanel


def test_panel_follows_a_rollback():
    """A shift, an interval and a rollback: the bar follows the share, the table each variant, the evidence shows."""
    panel = RolloutPanel()
    panel(rollout_event("shift", "baking", step=0, percent=20, detail="step 1/2"))
    assert panel.share.value == 20 and "baking" in panel.state.value
    stats = {"old": VariantStats(80, 0, 0.02), "new": VariantStats(20, 0, 0.31)}
    panel(rollout_event("interval", "baking", step=0, percent=20, stats=stats))
    assert "310.0" in panel.variants.value and "20.0" in panel.variants.value
    ev = [{"interval": 1, "breaches": ["p99 0.310 s > guard.p99_s 0.120 s"], "stats": {}}]
    panel(rollout_event("rollback", "rolled_back", step=0, percent=0, detail="guard breached", evidence=ev))
    assert panel.share.value == 0 and "rolled_back" in panel.state.value
    assert "p99 0.310 s &gt; guard.p99_s" in panel.evidence.value
    assert len(panel.events) == 3
