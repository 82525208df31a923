"""The Fleet protocol's seams: one backend registry for open_fleet and the CLI, named callback types."""

from __future__ import annotations

import pytest

import mlops_lb as ml
from mlops_lb import fleet as fleet_mod
from mlops_lb.cli import build_parser
from mlops_lb.fleet import Capacity, backend_names, get_backend, open_fleet, register_backend


class _Toy:
    """A backend defined outside the package: the registry is all it takes."""

    def __init__(self, spec: ml.FleetSpec, **options: object) -> None:
        self.spec, self.options = spec, options


def test_registry_feeds_open_fleet_and_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """A registered backend opens through open_fleet and is a --backend choice; names live in one place."""
    monkeypatch.setattr(fleet_mod, "_REGISTRY", dict(fleet_mod._REGISTRY))
    assert backend_names()[:2] == ("local", "aws") and fleet_mod.BACKENDS == ("local", "aws")
    assert get_backend("local").in_process and not get_backend("aws").in_process
    register_backend("toy", f"{__name__}:_Toy", in_process=False)
    opened = open_fleet({"name": "demo"}, backend="toy", knob=1)
    assert isinstance(opened, _Toy) and opened.options == {"knob": 1}
    up = next(
        a for a in build_parser()._subparsers._group_actions[0].choices["up"]._actions if a.dest == "backend"
    )  # type: ignore[union-attr]
    assert "toy" in up.choices


def test_unknown_backend_is_named_with_a_suggestion() -> None:
    """A typo is a SpecError on `backend` listing the registered names, before the spec is read."""
    with pytest.raises(ml.SpecError) as info:
        open_fleet("no-such-file.yaml", backend="locall")
    assert info.value.field == "backend" and "did you mean 'local'" in str(info.value)


def test_capacity_is_a_tuple_of_plain_ints() -> None:
    """Capacity unpacks like the (min, desired, max) tuple the demo indexes, with named fields."""
    lo, want, hi = Capacity(1, 2, 3)
    assert (lo, want, hi) == (1, 2, 3) and Capacity(1, 2, 3).desired == 2 and Capacity(1, 2, 3)[1] == 2
