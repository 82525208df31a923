"""Two slots behind one ALB (blue/green): the plan kept in stack config, and the program part that declares it.

A fleet starts with one slot (``a``: the resources it always had, names unchanged). The first
``fleet.rollout(...)`` writes a :class:`SlotPlan` into the stack config key ``rollout``; from then on the program
declares **two permanent slots that alternate**:

* slot ``b``: its own target group (same settings as ``a``), launch template, Auto Scaling group and
  target-tracking policy. ``ALBRequestCountPerTarget``'s resource label names one target group *attached to the
  policy's group*, so one policy cannot track both slots (rule ``tracking-resource-label``);
* the listener's default action: ``forward`` to both groups with the plan's weights (at most 5 groups per
  action, weights 0-999: rules ``forward-target-groups``, ``forward-weight``);
* per slot, CloudWatch alarms on ``TargetResponseTime`` p99 and ``HTTPCode_Target_5XX_Count`` Sum with the
  dimensions ``TargetGroup`` + ``LoadBalancer`` (the only per-group set AWS publishes: rule
  ``alb-metric-dimensions``), one-minute period (ALB metrics come every 60 s), missing data not breaching (ALB
  count metrics are missing, not 0, when no request flowed).

The live slot runs the fleet's spec with ``minSize``/``maxSize`` from the stack config (so ``fleet.scale()``
keeps working); the other slot runs ``plan.other_spec`` with ``plan.other_capacity``. An idle slot has
capacity 0 and weight 0: what remains is a target group, a launch template, an empty group, a policy (all free)
and its alarms (CloudWatch bills alarms per alarm-month; see docs/aws.md).

Weights move during a rollout through ELBv2 ``ModifyListener`` (seconds, not a ``pulumi up``) and every move is
mirrored into the plan, so the next ``up`` declares the weights AWS already has and never fights the rollout.

Example::

    plan = SlotPlan(live="a", weights=(90, 10), other_spec=new.to_dict(), other_capacity=(1, 1, 2))
    plan.to_json()                       # what AwsFleet writes to the stack config key "rollout"
    SlotPlan.from_json(plan.to_json()) == plan
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .._aws_rules import FORWARD_TARGET_GROUPS_MAX, FORWARD_WEIGHT
from ..errors import SpecError
from ..rollouts import CHANGEABLE_PARTS
from ..spec import FleetSpec
from ._parts import (
    SLOT_TAG,
    _Ctx,
    _group,
    _launch_template,
    _role_extras,
    _scaling,
    slot_b_name,
)
from ._spot import spot_role_policy
from .assets import content_key, staged_asset

__all__ = [
    "CONFIG_KEY",
    "SLOTS",
    "SlotPlan",
    "declare_slots",
    "forward_config",
    "read_plan",
    "slot_differences",
]

CONFIG_KEY = "rollout"
SLOTS = ("a", "b")
# What a rollout may change (mlops_lb.rollouts.new_spec's parts; capacity is the running fleet's); the rest (name,
# region, network, target group, health checks) is shared by both slots and changes with launch().
ROLLABLE = (*CHANGEABLE_PARTS, "capacity")


def other(slot: str) -> str:
    """The slot that is not ``slot``."""
    return "b" if slot == "a" else "a"


@dataclass(frozen=True)
class SlotPlan:
    """The two slots' state, as the stack config keeps it (JSON under the key ``rollout``).

    ``live``: the slot that runs the fleet's spec; ``weights``: (slot a, slot b) forward weights, 0-999;
    ``other_spec``: the other slot's spec as a dict; ``other_capacity``: its (min, desired, max); ``guard``:
    alarm thresholds (``p99_s``, ``max_5xx``); ``state``/``reason``/``step``: where the rollout stands.

    Example::

        SlotPlan(live="a", weights=(100, 0)).weight("b")     # 0
    """

    live: str = "a"
    weights: tuple[int, int] = (100, 0)
    other_spec: Mapping[str, Any] | None = None
    other_capacity: tuple[int, int, int] = (0, 0, 0)
    guard: Mapping[str, Any] = field(default_factory=dict)
    state: str = "idle"
    reason: str = ""
    step: int = 0
    steps: tuple[tuple[float, float], ...] = ()
    updated_at: str = ""

    def __post_init__(self) -> None:
        if self.live not in SLOTS:
            raise SpecError("rollout.live", f"must be 'a' or 'b' (got {self.live!r})")
        forward_config(("a", "b"), self.weights)  # raises for weights AWS would refuse
        lo, want, hi = self.other_capacity
        if not 0 <= lo <= want <= hi:
            raise SpecError(
                "rollout.other_capacity", f"must be 0 <= min <= desired <= max (got {self.other_capacity})"
            )

    def weight(self, slot: str) -> int:
        """The forward weight of ``slot``."""
        return self.weights[SLOTS.index(slot)]

    def with_weights(self, **by_slot: int) -> SlotPlan:
        """The plan with new weights, e.g. ``plan.with_weights(a=90, b=10)``."""
        w = dict(zip(SLOTS, self.weights, strict=True))
        w.update(by_slot)
        return replace(self, weights=(w["a"], w["b"]))

    def spec_of(self, slot: str, fleet_spec: FleetSpec) -> FleetSpec | None:
        """The spec ``slot`` runs: the fleet's for the live slot, ``other_spec`` for the other (None: none yet)."""
        if slot == self.live:
            return fleet_spec
        return FleetSpec.from_dict(self.other_spec) if self.other_spec is not None else None

    def to_json(self) -> str:
        """The stack-config value (sorted keys: the same plan always writes the same text)."""
        data = {
            "version": 1,
            "live": self.live,
            "weights": {"a": self.weights[0], "b": self.weights[1]},
            "other_spec": dict(self.other_spec) if self.other_spec is not None else None,
            "other_capacity": list(self.other_capacity),
            "guard": dict(self.guard),
            "state": self.state,
            "reason": self.reason,
            "step": self.step,
            "steps": [list(s) for s in self.steps],
            "updated_at": self.updated_at,
        }
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SlotPlan:
        """Read a plan back; SpecError (field ``rollout``) when the config value is not one."""
        try:
            d = json.loads(text)
            return cls(
                live=d["live"],
                weights=(int(d["weights"]["a"]), int(d["weights"]["b"])),
                other_spec=d.get("other_spec"),
                other_capacity=tuple(int(x) for x in d.get("other_capacity", (0, 0, 0))),  # type: ignore[arg-type]
                guard=dict(d.get("guard") or {}),
                state=str(d.get("state", "idle")),
                reason=str(d.get("reason", "")),
                step=int(d.get("step", 0)),
                steps=tuple((float(p), float(b)) for p, b in d.get("steps", ())),
                updated_at=str(d.get("updated_at", "")),
            )
        except SpecError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise SpecError(
                "rollout", f"the stack config value is not a rollout plan ({exc}); fix or remove it"
            ) from exc


def forward_config(arns: tuple[Any, ...] | list[Any], weights: tuple[int, ...] | list[int]) -> dict[str, Any]:
    """ELBv2's ``ForwardConfig`` for ``arns`` with ``weights``; SpecError before any call when AWS would refuse it.

    At most 5 target groups per forward action and integer weights 0-999 (rules ``forward-target-groups`` and
    ``forward-weight`` in ``mlops_lb/_aws_rules.py``), and at least one weight above 0 (our rule: a listener
    whose groups all weigh 0 would serve nothing).

    Example::

        forward_config(["arn:...:targetgroup/a/1", "arn:...:targetgroup/b/2"], [90, 10])
        # {'TargetGroups': [{'TargetGroupArn': ..., 'Weight': 90}, ...], 'TargetGroupStickinessConfig': {...}}
    """
    if len(arns) != len(weights):
        raise SpecError(
            "weights", f"need one weight per target group ({len(arns)} groups, {len(weights)} weights)"
        )
    if not 1 <= len(arns) <= FORWARD_TARGET_GROUPS_MAX:
        raise SpecError(
            "target_groups",
            f"a forward action takes 1-{FORWARD_TARGET_GROUPS_MAX} target groups (got {len(arns)}): "
            "AWS's quota 'Target Groups per Action' is 5 and not adjustable",
        )
    lo, hi = FORWARD_WEIGHT
    for i, w in enumerate(weights):
        if isinstance(w, bool) or not isinstance(w, int) or not lo <= w <= hi:
            raise SpecError(
                f"weights[{i}]", f"must be an integer from {lo} to {hi} (ALB weights) (got {w!r})"
            )
    if not any(weights):
        raise SpecError("weights", "at least one target group needs a weight above 0 (all 0 serves nothing)")
    return {
        "TargetGroups": [{"TargetGroupArn": a, "Weight": w} for a, w in zip(arns, weights, strict=True)],
        # No stickiness: each request is weighed on its own, so the canary's share is the weight's share.
        "TargetGroupStickinessConfig": {"Enabled": False},
    }


def slot_differences(old: FleetSpec, new: FleetSpec) -> dict[str, tuple[Any, Any]]:
    """``{dotted field: (old, new)}`` for every leaf that differs; SpecError for a field a rollout cannot change.

    Example::

        slot_differences(spec, replace(spec, model=ModelSpec(source="v2.onnx")))   # {'model.source': (...)}
    """
    a, b = old.to_dict(), new.to_dict()
    out: dict[str, tuple[Any, Any]] = {}

    def walk(x: Any, y: Any, path: str) -> None:
        if isinstance(x, Mapping) and isinstance(y, Mapping):
            for k in sorted(set(x) | set(y)):
                walk(x.get(k), y.get(k), f"{path}.{k}" if path else str(k))
        elif x != y:
            out[path] = (x, y)

    walk(a, b, "")
    for path in out:
        top = path.split(".", 1)[0]
        if top not in ROLLABLE:
            raise SpecError(
                path,
                f"is shared by both slots (one ALB, one listener, same target-group settings), so a rollout "
                f"cannot change it; a rollout changes only {', '.join(ROLLABLE)}: use launch() for {top}",
            )
    for s in (old, new):
        if s.capacity.warm_pool is not None:
            raise SpecError(
                "capacity.warm_pool",
                "rollouts do not support warm pools yet (each slot's lifecycle hook would need its own name): "
                "remove the warm pool, or use fleet.update_code() / launch()",
            )
    return out


def read_plan() -> SlotPlan | None:
    """The plan in the running program's stack config, or None for a fleet that never rolled out (one slot)."""
    import pulumi

    text = pulumi.Config().get(CONFIG_KEY)
    return SlotPlan.from_json(text) if text else None


def _slot_keys(
    ctx: _Ctx, slot: str, keys: Mapping[str, Any], files: tuple[Path | None, Path | None], bucket: Any
) -> dict[str, Any]:
    """The bucket keys ``slot``'s user data reads: the live slot's, with its own model / install when they differ
    (content-addressed: the same file is one object whichever slot needs it)."""
    import pulumi

    out = dict(keys)
    for kind, path in zip(("model", "install"), files, strict=True):
        out[kind] = None if path is None else content_key(kind, path)
        if path is not None and out[kind] != keys.get(kind):
            ctx.aws.s3.BucketObjectv2(
                f"{ctx.name}-{slot}-{kind}",
                bucket=bucket.id,
                key=out[kind],
                source=pulumi.FileAsset(str(staged_asset(path, out[kind]))),
                server_side_encryption="AES256",
                tags=ctx.asset_tags,
                opts=ctx.opts(),
            )
    if out.get("install") is None:
        out.pop("install", None)
    return out


def _alarms(ctx: _Ctx, plan: SlotPlan, slot: str, alb: Any, tg: Any) -> list[Any]:
    """The guard's alarms on ``slot``'s target group: p99 response time and the target 5xx share of requests.

    One-minute periods (ALB metrics arrive every 60 s); ``breach_intervals`` consecutive breaching minutes, so
    CloudWatch applies the guard's own "N in a row" rule; missing data is not a breach (ALB count metrics are
    missing, not 0, in a minute without requests).
    """
    aws, guard = ctx.aws, plan.guard
    dims = {"LoadBalancer": alb.arn_suffix, "TargetGroup": tg.arn_suffix}
    n = int(guard.get("breach_intervals", 1))
    common: dict[str, Any] = dict(
        evaluation_periods=n,
        datapoints_to_alarm=n,
        comparison_operator="GreaterThanThreshold",
        treat_missing_data="notBreaching",
        tags={**ctx.tags, SLOT_TAG: slot},
        opts=ctx.opts(),
    )
    out = []
    if guard.get("p99_s") is not None:
        out.append(
            aws.cloudwatch.MetricAlarm(
                f"{ctx.name}-{slot}-p99",
                namespace="AWS/ApplicationELB",
                metric_name="TargetResponseTime",
                dimensions=dims,
                period=60,
                extended_statistic="p99",
                threshold=float(guard["p99_s"]),
                alarm_description=f"mlops_lb rollout guard: slot {slot} p99 > {guard['p99_s']} s",
                **common,
            )
        )
    if guard.get("max_error_share") is not None:
        q = aws.cloudwatch.MetricAlarmMetricQueryArgs
        qm = aws.cloudwatch.MetricAlarmMetricQueryMetricArgs

        def metric(qid: str, name: str) -> Any:
            return q(
                id=qid,
                metric=qm(
                    namespace="AWS/ApplicationELB", metric_name=name, dimensions=dims, period=60, stat="Sum"
                ),
                return_data=False,
            )

        out.append(
            aws.cloudwatch.MetricAlarm(
                f"{ctx.name}-{slot}-5xx",
                # The share, as the guard states it: target 5xx over requests in the same minute (metric math).
                metric_queries=[
                    q(id="share", expression="errors / requests", label="target 5xx share", return_data=True),
                    metric("errors", "HTTPCode_Target_5XX_Count"),
                    metric("requests", "RequestCount"),
                ],
                threshold=float(guard["max_error_share"]),
                alarm_description=(
                    f"mlops_lb rollout guard: slot {slot} target 5xx share > {guard['max_error_share']}"
                ),
                **common,
            )
        )
    return out


def declare_slots(
    ctx: _Ctx,
    plan: SlotPlan,
    *,
    lb: Mapping[str, Any],
    inst_sg: Any,
    profile: Any,
    bucket: Any,
    keys: Mapping[str, Any],
    other_files: tuple[Path | None, Path | None],
) -> dict[str, Any]:
    """Declare both slots (launch template, group, policy, alarms) for ``plan``; returns the program's extra outputs
    and ``asg``/``ami``/``resource_label`` of the live slot.

    Slot a keeps the resource names a one-slot fleet has (no replacement when a fleet first rolls out); slot b's
    are ``<name>-b-...`` in their own component.
    """
    fleet_spec = ctx.spec
    per: dict[str, dict[str, Any]] = {}
    for slot in SLOTS:
        spec = plan.spec_of(slot, fleet_spec) or fleet_spec  # an unset other slot idles with the fleet's spec
        if spec.capacity.warm_pool is not None:  # slot_differences() refuses it before any call; launch() too
            raise SpecError("capacity.warm_pool", "a fleet with two slots cannot have a warm pool yet")
        live = slot == plan.live
        if slot == "a":
            sctx = replace(ctx, spec=spec)  # the "instances" component the role opened: names as before
        else:
            sctx = replace(ctx, spec=spec, name=slot_b_name(ctx.name), tags={**ctx.tags, SLOT_TAG: "b"})
            sctx.enter("slot")
        files = (None, None) if live else other_files
        skeys = dict(keys) if live else _slot_keys(sctx, slot, keys, files, bucket)
        if not live and _role_extras(sctx):  # what the other spec needs beyond the live one's role policy
            doc = json.dumps({"Version": "2012-10-17", "Statement": _role_extras(sctx)})
            ctx.aws.iam.RolePolicy(
                f"{ctx.name}-{slot}-extras", role=profile.role, policy=doc, opts=sctx.opts()
            )
        tg = lb["tg"] if slot == "a" else lb["tg_b"]
        spot_role_policy(
            sctx, profile, tg
        )  # capacity.spot only: each slot's agents deregister from its own group
        lt, ami = _launch_template(sctx, inst_sg, profile, bucket, skeys, tg)
        asg = _group(sctx, lt, tg, bounds=None if live else plan.other_capacity)
        label = _scaling(sctx, asg, {"alb": lb["alb"], "tg": tg})
        per[slot] = {"asg": asg, "tg": tg, "ami": ami, "label": label, "ctx": sctx}
    gctx = replace(ctx)
    gctx.enter("guard")
    alarms = {s: _alarms(gctx, plan, s, lb["alb"], per[s]["tg"]) for s in SLOTS}
    serving = per[plan.live]
    return {
        "asg": serving["asg"],
        "tg": serving["tg"],
        "ami": serving["ami"],
        "resource_label": serving["label"],
        "outputs": {
            "live_slot": plan.live,
            "rollout_state": plan.state,
            "slots": {
                s: {
                    "asg_name": per[s]["asg"].name,
                    "target_group_arn": per[s]["tg"].arn,
                    "target_group_arn_suffix": per[s]["tg"].arn_suffix,
                    "weight": plan.weight(s),
                    "alarms": [a.name for a in alarms[s]],
                }
                for s in SLOTS
            },
            "rollout": plan.to_json(),
        },
    }
