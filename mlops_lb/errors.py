"""The one error tree of mlops_lb.

::

    MlopsLbError                      base: catch this to catch everything we raise
     ├── SpecError (ValueError)        a FleetSpec or load profile is invalid; names field, value, allowed
     ├── BackendUnavailable            HAProxy or the Pulumi CLI is missing; the message gives the install command
     ├── ProvisionError                launching/changing a fleet failed (Pulumi `up`, a local launch); keeps stderr
     │    ├── PortInUse                 the balancer's port is held by another process (``port``, ``holder``)
     │    └── BalancerDown              the local balancer is down and could not be restarted (``reason``)
     ├── MetricsError                  CloudWatch or a local metric read failed; keeps the AWS error code and a hint
     ├── LoadTestError                 a load test could not run (bad URL, no payloads, worker crash)
 ├── BundleError (ValueError)      a folder is not a run bundle, or a bundle's file is malformed; ``path``
     └── StorageError (OSError)        a run bundle or report could not be written/read; ``path`` and ``cause``

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
    "BalancerDown",
    "BundleError",
    "LoadTestError",
    "MetricsError",
    "MlopsLbError",
    "PortInUse",
    "ProvisionError",
    "SpecError",
    "StorageError",
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


class PortInUse(ProvisionError):
    """The balancer cannot bind ``port``: another process holds it. ``holder`` says who (PID and command when
    this user may see them).

    Example::

        raise PortInUse(8000, "pid 4242 (haproxy -db -f /tmp/a/haproxy.cfg)")
    """

    def __init__(self, port: int, holder: str, *, stderr: str = "") -> None:
        self.port = port
        self.holder = holder
        super().__init__(
            f"port {port} on 127.0.0.1 is already in use by {holder}; a fleet's balancer must own its port "
            "alone (pass port=0 for a free one, or close the other fleet)",
            stderr=stderr,
        )

    def __reduce__(self):
        return (_make_port_in_use, (self.port, self.holder, self.stderr))


def _make_port_in_use(port: int, holder: str, stderr: str) -> PortInUse:
    return PortInUse(port, holder, stderr=stderr)


class BalancerDown(ProvisionError):
    """The local balancer (HAProxy) died and could not be restarted yet; ``reason`` says why.

    ``launch()`` and ``scale()`` raise it at once rather than act on a fleet nobody can reach.

    Example::

        raise BalancerDown("port 8000 on 127.0.0.1 is already in use by pid 4242 (nginx)")
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"the fleet's balancer is down: {reason}")

    def __reduce__(self):
        return (type(self), (self.reason,))


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


class BundleError(MlopsLbError, ValueError):
    """A folder is not a run bundle, or one of its files is malformed (a bundle is data: it is never trusted).

    ``path`` is the folder (or file); ``bundles`` the run bundles found inside a folder that is not one, so the
    message can say which to pass.

    Example::

        try:
            RunBundle.load("runs")
        except BundleError as exc:
            print(exc)   # runs is not a run bundle; it holds 2: runs/20260101T000000Z-demo, ... (pass one of them)
    """

    def __init__(self, path: object, message: str, bundles: tuple[object, ...] = ()) -> None:
        self.path = path
        self.bundles = bundles
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (self.path, str(self), self.bundles))


class StorageError(MlopsLbError, OSError):
    """A file or folder of a run bundle (or report) could not be written or read.

    ``path`` is the file or folder, ``cause`` the underlying error (usually an ``OSError``: ENOSPC, EACCES,
    ENOTDIR...; also on ``__cause__``). ``run_load`` never raises it mid-run: it keeps it as
    ``LoadResult.bundle_error`` and returns the whole result.

    Example::

        try:
            RunBundle.create(root="/read-only/runs")
        except StorageError as exc:
            print(exc.path, exc.cause)    # cannot create /read-only/runs: [Errno 30] Read-only file system
    """

    def __init__(self, path: object, cause: BaseException, action: str = "write") -> None:
        self.path = path
        self.cause = cause
        self.action = action
        detail = getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
        errno = getattr(cause, "errno", None)
        super().__init__(f"cannot {action} {path}: {detail}" + (f" (errno {errno})" if errno else ""))
        self.errno = errno  # type: ignore[misc]

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self):
        return (type(self), (self.path, self.cause, self.action))
