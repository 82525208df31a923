"""Scale-out waterfall from hand-made events and requests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_lb.analysis import scale_out_waterfall
from mlops_lb.errors import SpecError
from mlops_lb.frames import events_frame

T0 = pd.Timestamp("2025-01-15T12:00:00", tz="UTC")


def at(s: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(seconds=s)


def _events() -> pd.DataFrame:
    return events_frame(
        [
            {"timestamp": at(-10), "kind": "launch", "target": "i-1", "detail": "initial"},
            {"timestamp": at(-8), "kind": "healthy", "target": "i-1", "detail": ""},
            {"timestamp": at(0), "kind": "scale_out", "target": "", "detail": "above target: 1 -> 2"},
            {"timestamp": at(1), "kind": "launch", "target": "i-2", "detail": ""},
            {"timestamp": at(2), "kind": "registered", "target": "i-2", "detail": ""},
            {"timestamp": at(5), "kind": "healthy", "target": "i-2", "detail": "L7OK"},
            {"timestamp": at(30), "kind": "scale_in", "target": "", "detail": "below: 2 -> 1"},
            {"timestamp": at(40), "kind": "scale_out", "target": "", "detail": "above again: 1 -> 3"},
            {"timestamp": at(40.5), "kind": "launch", "target": "i-3", "detail": ""},
            {"timestamp": at(40.5), "kind": "launch", "target": "i-4", "detail": ""},
            {"timestamp": at(43), "kind": "healthy", "target": "i-3", "detail": ""},
            {"timestamp": at(60), "kind": "scale_out", "target": "", "detail": "no room left"},
        ]
    )


def _requests() -> pd.DataFrame:
    done = [at(5.2), at(5.5), at(7.0), at(44.0), at(3.0)]
    return pd.DataFrame(
        {
            "done_at": done,
            "target": ["i-2", "i-2", "i-2", "i-3", "i-1"],
            "error": [None, None, None, None, None],
            "latency_s": np.full(5, 0.01),
        }
    ).assign(error=lambda d: d["error"].where(d.index != 0, "timeout"))


class TestWaterfall:
    def test_hand_made_run(self) -> None:
        """Scale-out at 0 s: launch 1 s, registered 2 s, healthy 5 s, first *successful* request 5.5 s (the 5.2 s
        one timed out) -> 1 / 4 / 0.5 / 5.5 s. Scale-out at 40 s launches two targets; i-4 never turns healthy.
        The scale-out at 60 s launched nothing: one row with no target. The initial launch is not a scale-out."""
        wf = scale_out_waterfall(_events(), _requests())
        assert list(wf["target"]) == ["i-2", "i-3", "i-4", ""]
        first = wf.iloc[0]
        assert first["reason"] == "above target: 1 -> 2"
        assert first["registered_at"] == at(2)
        assert (first["decision_to_launch_s"], first["launch_to_healthy_s"]) == (1.0, 4.0)
        assert first["healthy_to_first_request_s"] == pytest.approx(0.5)
        assert first["decision_to_first_request_s"] == pytest.approx(5.5)
        i3 = wf.iloc[1]
        assert (i3["decision_to_launch_s"], i3["launch_to_healthy_s"], i3["decision_to_first_request_s"]) == (
            0.5,
            2.5,
            4.0,
        )
        i4 = wf.iloc[2]
        assert pd.isna(i4["healthy_at"]) and np.isnan(i4["decision_to_healthy_s"])
        assert pd.isna(wf.iloc[3]["launch_at"])

    def test_without_requests(self) -> None:
        """Without requests the first-request stage is empty but the rest is there."""
        wf = scale_out_waterfall(_events())
        assert wf["first_request_at"].isna().all()
        assert wf.iloc[0]["decision_to_healthy_s"] == 5.0

    def test_no_scale_out(self) -> None:
        """A run without scale-outs gives an empty frame with the columns."""
        ev = _events()
        wf = scale_out_waterfall(ev[ev["kind"] != "scale_out"].reset_index(drop=True))
        assert wf.empty and "decision_to_first_request_s" in wf.columns

    def test_synthetic_bundle(self, bundle: Any, synthetic: Any) -> None:
        """The synthetic run's two new targets turn healthy 3 s after the decision and serve right after."""
        wf = scale_out_waterfall(bundle.events, bundle.requests)
        assert list(wf["target"]) == ["i-local0002", "i-local0003"]
        assert (wf["decision_to_healthy_s"] == synthetic.NEW_HEALTHY_AT - synthetic.SCALE_OUT_AT).all()
        assert (wf["healthy_to_first_request_s"].between(0, 0.5)).all()

    def test_bad_events(self) -> None:
        """An events frame without the contract columns is a SpecError."""
        with pytest.raises(SpecError, match="kind"):
            scale_out_waterfall(pd.DataFrame({"timestamp": [T0]}))
