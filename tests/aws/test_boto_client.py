"""``_boto.client``: a fresh session per call (credentials and region read now) that reuses the service models
already parsed in this process instead of parsing botocore's data files again for every client."""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest

from mlops_lb.aws import _boto

_OPENED: list[str] | None = None  # files opened while a test watches; None when nobody watches


def _watch_opens(event: str, args: tuple[Any, ...]) -> None:
    if _OPENED is not None and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_watch_opens)  # audit hooks cannot be removed: this one records only while _OPENED is a list


def _data_files_opened_by(make: Any) -> list[str]:
    """The files under botocore's data directory (endpoints, service models) that ``make()`` opens."""
    import botocore

    global _OPENED
    data = os.path.join(os.path.dirname(botocore.__file__), "data")
    _OPENED = []
    try:
        make()
        return [p for p in _OPENED if p.startswith(data)]
    finally:
        _OPENED = None


def test_a_second_client_parses_no_data_file_again() -> None:
    """Once a service's model is read, later clients of it read no data file, whatever the region (before: every
    call made a new session that parsed endpoints.json and the model again, 0.15-0.2 s of CPU per client, five
    clients per preflight)."""
    _boto.client("ec2", region="us-east-1")
    _boto.client("sts", region="us-east-1")

    def more() -> None:
        for region in ("us-east-1", "eu-west-1"):
            _boto.client("ec2", region=region)
            _boto.client("sts", region=region)

    assert _data_files_opened_by(more) == []
    # boto3 adds its data directory to the shared loader per session: the search path does not grow with them
    paths = _boto.client("sts", region="us-east-1")._loader.search_paths
    assert len(paths) == len(set(paths))


def test_each_client_still_reads_region_and_credentials_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only parsed data is shared: a changed AWS_DEFAULT_REGION or access key reaches the next client."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFIRST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    first = _boto.client("ec2")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSECOND")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    second = _boto.client("ec2")
    assert (first.meta.region_name, second.meta.region_name) == ("us-east-1", "eu-west-1")
    keys = [c._request_signer._credentials.get_frozen_credentials().access_key for c in (first, second)]
    assert keys == ["AKIDFIRST", "AKIDSECOND"]
    assert second.meta.config.retries["mode"] == "standard"
