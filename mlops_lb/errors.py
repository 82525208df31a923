"""The one error tree of mlops_lb.

::

    MlopsLbError                      base: catch this to catch everything we raise
     ├── SpecError (ValueError)        a FleetSpec or load profile is invalid; names field, value, allowed
     ├── BackendUnavailable            HAProxy or the Pulumi CLI is missing; the message gives the install command
     ├── ProvisionError                launching/changing a fleet failed (Pulumi `up`, a local launch); keeps stderr
     ├── MetricsError                  CloudWatch or a local metric read failed; keeps the AWS error code and a hint
     └── LoadTestError                 a load test could not run (bad URL, no payloads, worker crash)

Foreign errors (botocore, pulumi.automation) are translated at the boundary with ``raise ... from exc`` so the
original stays on ``__cause__``.

Example::

    try:
        FleetSpec(name="x" * 40)
    except SpecError as exc:
        print(exc.field, exc)      # name  name must be at most 24 characters ...
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "LoadTestError",
    "MetricsError",
    "MlopsLbError",
    "ProvisionError",
    "SpecError",
]


class MlopsLbError(Exception):
    """Base class of every error mlops_lb raises on purpose."""


class SpecError(MlopsLbError, ValueError):
    """An invalid spec or profile value. ``field`` is the dotted path of the offending field (or None).

    Example::

        raise SpecError("capacity.min", "must be <= capacity.desired (got min=3, desired=2)")
    """

    def __init__(self, field: str | None, message: str) -> None:
        self.field = field
        super().__init__(f"{field} {message}" if field else message)

    def __reduce__(self):  # keep picklable across process pools
        return (_make_spec_error, (self.field, str(self)))


def _make_spec_error(field: str | None, text: str) -> SpecError:
    err = SpecError(None, text)
    err.field = field
    return err


class BackendUnavailable(MlopsLbError):
    """A required external program is missing. ``install`` holds the command that installs it.

    Example::

        raise BackendUnavailable("haproxy", "apt-get install -y haproxy   # macOS: brew install haproxy")
    """

    def __init__(self, program: str, install: str, detail: str = "") -> None:
        self.program = program
        self.install = install
        self.detail = detail
        msg = f"{program} was not found on PATH. Install it with: {install}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)

    def __reduce__(self):
        return (type(self), (self.program, self.install, self.detail))


class ProvisionError(MlopsLbError):
    """Provisioning failed. ``stderr`` keeps the useful lines of the tool's output.

    Example::

        raise ProvisionError("pulumi up failed", stderr="error: creating ALB: AccessDenied")
    """

    def __init__(self, message: str, *, stderr: str = "", result: object | None = None) -> None:
        self.stderr = stderr
        self.result = result
        super().__init__(message + (f"\n{stderr}" if stderr else ""))


class MetricsError(MlopsLbError):
    """A metric read failed. ``code`` is the AWS error code when there is one, ``hint`` what to try.

    Example::

        raise MetricsError("GetMetricData failed", code="AccessDenied", hint="allow cloudwatch:GetMetricData")
    """

    def __init__(self, message: str, *, code: str | None = None, hint: str | None = None) -> None:
        self.code = code
        self.hint = hint
        text = message
        if code:
            text += f" [{code}]"
        if hint:
            text += f" — {hint}"
        super().__init__(text)


class LoadTestError(MlopsLbError):
    """A load test could not be run or was broken off by a failure (not by Stop).

    Example::

        raise LoadTestError("no payloads: pass payloads=[...] or a callable")
    """
