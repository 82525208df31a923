"""boto3 clients with the SDK's standard retry mode, and translation of botocore errors.

Example::

    cw = client("cloudwatch", session=None, region="us-east-1")
    try:
        cw.get_metric_data(...)
    except Exception as exc:
        raise metrics_error("GetMetricData", exc) from exc
"""

from __future__ import annotations

import threading
from typing import Any

from ..errors import MetricsError, ProvisionError

__all__ = ["client", "error_code", "metrics_error", "provision_error"]

# Standard mode retries throttling (and 5xx) with jittered backoff; 8 attempts rides out a burst of
# ThrottlingException on GetMetricData without hiding a real outage.
RETRIES = {"mode": "standard", "max_attempts": 8}

_HINTS = {
    "AccessDenied": "the caller lacks permission; allow the action in its IAM policy",
    "AccessDeniedException": "the caller lacks permission; allow the action in its IAM policy",
    "UnauthorizedOperation": "the caller lacks permission; allow the action in its IAM policy",
    "InvalidParameterValue": "check dimensions (ARN suffixes), period and time window",
    "InvalidParameterCombination": "check the statistic/period combination",
    "InvalidParameterValueException": "check dimensions (ARN suffixes), period and time window",
    "InvalidParameterException": "check dimensions (ARN suffixes), period and time window",
    "ValidationError": "an argument was rejected by AWS; check names and ARNs",
    "ExpiredToken": "refresh your AWS credentials (aws sso login, or new keys)",
    "ExpiredTokenException": "refresh your AWS credentials (aws sso login, or new keys)",
    "Throttling": "AWS kept throttling after retries; read a shorter window or fewer series",
    "ThrottlingException": "AWS kept throttling after retries; read a shorter window or fewer series",
    "LoadBalancerNotFound": "the load balancer is gone; was the stack destroyed?",
    "TargetGroupNotFound": "the target group is gone; was the stack destroyed?",
}


# botocore's parsed data files (endpoints, partitions, each service's model), shared by the sessions made here.
# A new botocore session parses them again: 0.15-0.2 s of CPU per client, and one preflight makes five clients.
# Only this static data is shared; credentials, region and profile are still read anew by every session.
_LOADER: Any = None
_LOADER_LOCK = threading.Lock()


def _new_session() -> Any:
    """A fresh boto3 session (credentials, region and profile read now) whose data loader is the shared one."""
    import boto3
    import botocore.session

    global _LOADER
    core = botocore.session.get_session()
    with _LOADER_LOCK:
        if _LOADER is None:
            _LOADER = core.get_component("data_loader")
        else:
            core.register_component("data_loader", _LOADER)
        sess = boto3.session.Session(botocore_session=core)
        # boto3 appends its own data directory to the loader's search path per session: keep one copy of each.
        _LOADER.search_paths[:] = list(dict.fromkeys(_LOADER.search_paths))
    return sess


def client(service: str, *, session: Any = None, region: str | None = None) -> Any:
    """A boto3 client for ``service`` with standard retries (from ``session`` when given, else a fresh session
    that reads credentials and region now but reuses the service models already parsed in this process)."""
    from botocore.config import Config

    sess: Any = session if session is not None else _new_session()
    return sess.client(service, region_name=region, config=Config(retries=dict(RETRIES)))  # type: ignore[arg-type]


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError (None for other exceptions)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def _describe(action: str, exc: BaseException) -> tuple[str, str | None, str | None]:
    code = error_code(exc)
    msg = getattr(exc, "response", {}).get("Error", {}).get("Message") if code else None
    text = f"{action} failed: {msg or exc}"
    hint = _HINTS.get(code or "")
    if code is None and type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
        code, hint = "NoCredentials", "configure AWS credentials (aws configure, AWS_PROFILE or env vars)"
    elif code is None and type(exc).__name__ == "NoRegionError":
        code, hint = "NoRegion", "set FleetSpec.region or AWS_REGION"
    return text, code, hint


def metrics_error(action: str, exc: BaseException) -> MetricsError:
    """A MetricsError carrying the AWS error code and a hint (raise it ``from exc``)."""
    text, code, hint = _describe(action, exc)
    return MetricsError(text, code=code, hint=hint)


def provision_error(action: str, exc: BaseException) -> ProvisionError:
    """A ProvisionError naming the AWS error code (raise it ``from exc``)."""
    text, code, hint = _describe(action, exc)
    return ProvisionError(f"{text}" + (f" [{code}]" if code else "") + (f" — {hint}" if hint else ""))
