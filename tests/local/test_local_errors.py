"""The local backend's own errors: ProvisionError subclasses that keep their fields and pickle."""

from __future__ import annotations

import pickle

from mlops_lb.errors import ProvisionError
from mlops_lb.local import BalancerDown, PortInUse


def test_port_in_use_and_balancer_down_keep_their_fields_across_pickle() -> None:
    """Both are ProvisionErrors (old `except ProvisionError` still works) that name the port, holder and reason."""
    for err in (
        PortInUse(8000, "pid 42 (nginx)", stderr="[ALERT] cannot bind"),
        BalancerDown("port 8000 taken"),
    ):
        again = pickle.loads(pickle.dumps(err))
        assert isinstance(again, ProvisionError) and type(again) is type(err) and str(again) == str(err)
    assert "port 8000" in str(PortInUse(8000, "pid 42 (nginx)")) and "pid 42" in str(
        PortInUse(8000, "pid 42")
    )
    assert BalancerDown("x").reason == "x"
