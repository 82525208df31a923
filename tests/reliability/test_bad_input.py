"""Bad input: junk specs and profiles raise SpecError naming the field, malformed YAML says where, a slow or lying
client never stalls the model server, and wrong ARNs reach no AWS endpoint.

What tests elsewhere already pin (and this file does not repeat): any dict/YAML text gives a FleetSpec or a
SpecError (tests/test_spec.py), any junk profile argument gives SpecError only (tests/load/test_profiles.py),
schemathesis over the server's OpenAPI document finds no 5xx (tests/serving/test_openapi_fuzz.py).
"""

from __future__ import annotations

import copy
import http.client
import inspect
import socket
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mlops_lb import FleetSpec
from mlops_lb.aws import read_fleet_metrics, read_scaling_activities, read_target_health
from mlops_lb.errors import MetricsError, SpecError
from mlops_lb.load import constant, ramp, spike, step, sweep

# --------------------------------------------------------------------------- specs: the error names the field
_VALID = FleetSpec(name="demo").to_dict()
_LEAVES = [
    (part, key) for part, sub in _VALID.items() if isinstance(sub, dict) and part != "tags" for key in sub
]
# Rules that compare two fields of one part may name the other one (min > max names capacity.min or .desired).
_SIBLINGS = {
    "capacity": ("capacity.min", "capacity.desired", "capacity.max"),
    "health_check": ("health_check.timeout_s", "health_check.interval_s"),
    "target_group": ("target_group.slow_start_s", "target_group.algorithm"),
    "network": ("network.vpc_id", "network.subnet_ids"),
}
# Rules across parts name the field to change: an empty spot section is a valid one with every default, and spot
# needs a deregistration delay inside the two-minute notice (<= 90 s; the default 300 s is not), so the error
# names target_group.deregistration_delay_s (rules "spot-notice" and "deregistration-delay" in mlops_lb/_aws_rules.py).
_CROSS = {"capacity.spot": ("target_group.deregistration_delay_s",)}
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(leaf=st.sampled_from(_LEAVES), value=junk)
@example(leaf=("capacity", "spot"), value={})  # found by hypothesis once: the cross-part rule above
def test_one_bad_field_is_named_by_the_spec_error(leaf: tuple[str, str], value: Any) -> None:
    """Corrupt one field of a valid spec: the result is a valid spec or a SpecError whose field is that one
    (or, for a cross-field rule, its sibling), and whose message starts with that dotted path."""
    part, key = leaf
    data = copy.deepcopy(_VALID)
    data[part][key] = value
    try:
        FleetSpec.from_dict(data)
    except SpecError as exc:
        path = f"{part}.{key}"
        assert exc.field is not None, str(exc)
        ok = (
            exc.field == path
            or exc.field.startswith((path + "[", path + "."))
            or exc.field in _SIBLINGS.get(part, ())
            or exc.field in _CROSS.get(path, ())
        )
        assert ok, (path, exc.field, str(exc))
        assert str(exc).startswith(exc.field)


_PROFILES: dict[str, Callable[..., Any]] = {
    "constant": constant,
    "ramp": ramp,
    "step": step,
    "spike": spike,
    "sweep": sweep,
}
_GOOD_ARGS = {
    "constant": (10, 2),
    "ramp": (1, 10, 3),
    "step": ([1, 2], 1),
    "spike": (1, 5, 4, 1, 1),
    "sweep": (1, 1, 1, 3),
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(_PROFILES)), position=st.integers(0, 4), value=junk)
def test_one_bad_profile_argument_is_named(kind: str, position: int, value: Any) -> None:
    """Corrupt one argument of a profile constructor: a valid profile or a SpecError naming a parameter of it."""
    make = _PROFILES[kind]
    args = list(_GOOD_ARGS[kind])
    position %= len(args)
    args[position] = value
    names = list(inspect.signature(make).parameters)
    try:
        make(*args)
    except SpecError as exc:
        assert exc.field is not None and exc.field.split("[")[0] in (*names, "schedule"), (names, exc.field)
        assert str(exc).startswith(exc.field)


# --------------------------------------------------------------------------- malformed YAML says where
@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("name: demo\ncapacity:\n\tmax: 4\n", "line 3"),  # a tab where YAML wants spaces
        ("name: demo\ncapacity: {min: 1, max: 4\nregion: us-east-1\n", "line 3"),  # unclosed flow mapping
        ("name: demo\ntags: [a, b\n", "line 3"),  # unclosed flow sequence
        ("- name: demo\n- name: other\n", "list"),  # a list at top level
        ("name: demo\ncapacity:\n  maxx: 4\n", "capacity.maxx"),  # unknown key, with its path
        ("name: demo\nhealth_chek:\n  path: /h\n", "health_chek"),
    ],
)
def test_malformed_yaml_is_a_spec_error_with_its_location(text: str, where: str) -> None:
    """Tabs, unclosed brackets, a top-level list and unknown keys: SpecError saying where (line or field path)."""
    with pytest.raises(SpecError) as info:
        FleetSpec.from_yaml(text)
    assert where in str(info.value), str(info.value)
    if "maxx" in text:
        assert info.value.field == "capacity.maxx" and "max" in str(info.value)  # did you mean 'max'?


# --------------------------------------------------------------------------- readers: no AWS call on bad input
class _NoAws:
    """A boto3 session stand-in that fails the test if any client is made."""

    region_name = "us-east-1"
    profile_name = None

    def client(self, *a: Any, **k: Any) -> Any:
        raise AssertionError(f"an AWS client was made for bad input: {a}")


LB = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/demo/50dc6c495c0c9188"
TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/demo/73e2d6bc24d8a067"
NLB = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/demo/50dc6c495c0c9188"
T1 = datetime(2025, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "kwargs",
    [
        {
            "load_balancer_arn": TG,
            "target_group_arn": TG,
            "asg_name": "a",
        },  # a target group where the ALB goes
        {"load_balancer_arn": LB, "target_group_arn": LB, "asg_name": "a"},  # swapped
        {"load_balancer_arn": NLB, "target_group_arn": TG, "asg_name": "a"},  # a network load balancer
        {"load_balancer_arn": LB[:-5], "target_group_arn": TG[:40], "asg_name": "a"},  # truncated
        {"load_balancer_arn": "", "target_group_arn": TG, "asg_name": "a"},
        {"load_balancer_arn": None, "target_group_arn": TG, "asg_name": "a"},
        {"load_balancer_arn": LB, "target_group_arn": TG, "asg_name": ""},
        {"load_balancer_arn": LB, "target_group_arn": TG, "asg_name": None},
        {"load_balancer_arn": LB, "target_group_arn": TG, "asg_name": "a", "start": "yesterday"},
        {
            "load_balancer_arn": LB,
            "target_group_arn": TG,
            "asg_name": "a",
            "start": T1,
            "end": T1 - timedelta(1),
        },
        {
            "load_balancer_arn": LB,
            "target_group_arn": TG,
            "asg_name": "a",
            "start": T1,
            "end": T1,
            "period_s": 7,
        },
        {
            "load_balancer_arn": {"alb_arn": LB},
            "target_group_arn": TG,
            "asg_name": "a",
        },  # the outputs dict itself
    ],
)
def test_wrong_arns_or_outputs_raise_metrics_error_before_any_call(kwargs: dict[str, Any]) -> None:
    """read_fleet_metrics with a wrong ARN, a swapped or truncated one, a missing ASG name or a bad time window
    raises MetricsError (with a code) and never builds an AWS client."""
    kwargs = {"start": T1, "end": T1 + timedelta(hours=1), **kwargs}
    with pytest.raises(MetricsError) as info:
        read_fleet_metrics(**kwargs, session=_NoAws(), now=T1 + timedelta(hours=2))
    assert info.value.code


@pytest.mark.parametrize(
    "arn",
    [
        LB,
        "",
        None,
        "targetgroup/demo/73e2d6bc24d8a067",
        42,
    ],
)
def test_target_health_reader_refuses_wrong_arns(arn: Any) -> None:
    """read_target_health wants a target-group ARN: anything else is MetricsError, no AWS call."""
    with pytest.raises(MetricsError):
        read_target_health(arn, session=_NoAws())


@pytest.mark.parametrize("name", ["", None, 42])
def test_scaling_activities_reader_refuses_a_missing_group_name(name: Any) -> None:
    """read_scaling_activities without a usable ASG name is MetricsError, no AWS call."""
    with pytest.raises(MetricsError):
        read_scaling_activities(name, session=_NoAws())


# --------------------------------------------------------------------------- the model server never hangs
def _raw(port: int, data: bytes, timeout: float = 10.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    return s


def _status(sock: socket.socket) -> int:
    """Read until the status line is complete (raises socket.timeout if the server hangs)."""
    buf = b""
    while b"\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    return int(buf.split(b" ", 2)[1]) if buf.startswith(b"HTTP/") else 0


def _predict_ok(port: int, body: bytes) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_slow_and_partial_bodies_do_not_block_other_requests(server, record) -> None:
    """Twenty clients holding half-sent headers or bodies, plus one trickling its body byte by byte, do not
    delay anyone else: other requests keep being answered (a 10 s socket timeout would fail the test)."""
    from mlops_lb.serving import demo_payloads

    body = demo_payloads(1)[0]
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    stuck = [
        _raw(server.port, head + b"Content-Length: %d\r\n\r\n" % len(body) + body[:5]) for _ in range(10)
    ]
    stuck += [_raw(server.port, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Le") for _ in range(10)]
    trickle = _raw(server.port, head + b"Content-Length: %d\r\n\r\n" % len(body))
    try:
        statuses = []
        t0 = time.monotonic()
        for i, byte in enumerate(body):
            trickle.sendall(bytes([byte]))
            time.sleep(0.003)  # about a second for the whole body: slow, not stalled
            if i % 20 == 0:
                statuses.append(_predict_ok(server.port, body))
        trickled = _status(trickle)
        record(others_served=len(statuses), trickle_s=time.monotonic() - t0, held_connections=len(stuck))
        assert statuses and set(statuses) == {200}
        assert trickled == 200
    finally:
        for s in [*stuck, trickle]:
            s.close()
    assert _predict_ok(server.port, body) == 200


@pytest.mark.parametrize(
    ("length", "allowed"),
    [
        (b"99999999999999999999999999", {400, 413}),  # absurd: more than 2**64
        (b"1000000000000", {413}),  # a terabyte: refused before reading any of it
        (b"-1", {400}),
        (b"abc", {400}),
        (b"12, 13", {400}),
    ],
)
def test_absurd_content_length_is_refused_not_awaited(server, length: bytes, allowed: set[int]) -> None:
    """A Content-Length that is absurd, negative, non-numeric or doubled gets 400/413 at once: the server never
    waits for a body that will not come (the socket timeout would fail the test)."""
    s = _raw(server.port, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             b"Content-Length: " + length + b"\r\n\r\n{", timeout=10)  # fmt: skip
    try:
        assert _status(s) in allowed
    finally:
        s.close()
