"""The error tree: one base, SpecError is also a ValueError, messages that help, and every error pickles."""

from __future__ import annotations

import pickle

import pytest

import mlops_lb
from mlops_lb import errors
from mlops_lb.errors import (
    BackendUnavailable,
    LoadTestError,
    MetricsError,
    MlopsLbError,
    ProvisionError,
    SpecError,
)

SAMPLES = [
    SpecError("capacity.min", "must be <= capacity.max (got min=3, max=2)"),
    SpecError(None, "spec YAML must be a mapping"),
    BackendUnavailable("haproxy", "apt-get install -y haproxy", "needed by the local fleet"),
    ProvisionError("pulumi up failed", stderr="error: AccessDenied", result={"code": 255}),
    MetricsError("GetMetricData failed", code="AccessDenied", hint="allow cloudwatch:GetMetricData"),
    LoadTestError("no payloads"),
]


class TestTree:
    def test_every_error_is_an_mlops_lb_error(self):
        """Catching MlopsLbError catches everything mlops_lb raises on purpose."""
        for name in errors.__all__:
            assert issubclass(getattr(errors, name), MlopsLbError)

    def test_the_tree_is_shallow(self):
        """Every error derives from MlopsLbError or from one of its direct children: two levels at most."""
        for name in errors.__all__:
            cls = getattr(errors, name)
            if cls is not MlopsLbError:
                parent = cls.__bases__[0]
                assert parent is MlopsLbError or parent.__bases__[0] is MlopsLbError, name
        assert SpecError.__bases__ == (MlopsLbError, ValueError)

    def test_spec_error_is_a_value_error(self):
        """Code that catches ValueError keeps working for invalid specs."""
        with pytest.raises(ValueError, match="must be"):
            mlops_lb.FleetSpec(name="x" * 64)  # a DNS label has at most 63 characters on every backend

    def test_exported_from_the_package(self):
        """Every error is importable from mlops_lb itself."""
        for name in errors.__all__:
            assert getattr(mlops_lb, name) is getattr(errors, name)
            assert name in mlops_lb.__all__


class TestMessages:
    def test_spec_error_names_the_field(self):
        """SpecError keeps the field and starts its message with it."""
        err = SpecError("health_check.interval_s", "must be between 5 and 300 (got 2)")
        assert err.field == "health_check.interval_s"
        assert str(err) == "health_check.interval_s must be between 5 and 300 (got 2)"
        assert str(SpecError(None, "bad")) == "bad" and SpecError(None, "bad").field is None

    def test_backend_unavailable_gives_the_install_command(self):
        """The message names the program and the command that installs it."""
        err = BackendUnavailable("pulumi", "curl -fsSL https://get.pulumi.com | sh")
        assert "pulumi" in str(err) and "curl -fsSL https://get.pulumi.com | sh" in str(err)
        assert err.program == "pulumi" and err.install.startswith("curl")

    def test_provision_and_metrics_errors_keep_details(self):
        """ProvisionError keeps stderr and the raw result; MetricsError the AWS code and a hint."""
        p = ProvisionError("failed", stderr="boom", result=42)
        assert (p.stderr, p.result) == ("boom", 42) and "boom" in str(p)
        m = MetricsError("read failed", code="Throttling", hint="retry later")
        assert (m.code, m.hint) == ("Throttling", "retry later")
        assert str(m) == "read failed [Throttling] — retry later"


class TestPickling:
    @pytest.mark.parametrize("err", SAMPLES, ids=lambda e: type(e).__name__)
    def test_round_trip(self, err):
        """Errors cross process pools intact: same type, message and attributes."""
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err)
        assert str(back) == str(err)
        for attr in ("field", "program", "install", "detail", "stderr", "result", "code", "hint"):
            if hasattr(err, attr):
                assert getattr(back, attr) == getattr(err, attr)
