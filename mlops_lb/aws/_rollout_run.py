"""``AwsFleet.rollout``: bring up the idle slot with the new spec, shift weights step by step, guard, finish.

The steps and the guard are the backend-neutral ones (:mod:`mlops_lb.rollouts`); this module applies them on AWS:

1. **prepare**: the plan (stack config ``rollout``, :class:`~mlops_lb.aws._rollout.SlotPlan`) gets the new spec
   for the idle slot, then one ``pulumi up`` creates or updates only that slot (the live slot's template, group and
   policy are unchanged: tested under the strict mocks); the driver waits for its targets to be healthy;
2. **shift**: each step's share goes to the new slot with ELBv2 ``ModifyListener`` (a weighted ``forward``), which
   takes effect in seconds, where a ``pulumi up`` takes minutes; each move is saved into the plan, so the next
   ``up`` declares the weights AWS already has;
3. **guard**, every interval of each bake: the new slot's CloudWatch alarms (``DescribeAlarms``: p99
   ``TargetResponseTime`` and target 5xx share, per target group) and, when a load run is attached (``feed``),
   the client-side per-variant stats through :func:`mlops_lb.rollouts.guard_decision`. A breach puts the new slot
   at weight 0 in the same interval, then retires it (capacity 0);
4. **finish**: the new slot takes weight 999 (all), the old one is retired (capacity 0, weight 0) and becomes the
   idle slot of the next rollout; the fleet's spec is the new one.

ALB weights are integers 0-999 (rule ``forward-weight``): a share of ``p`` % is ``round(p * 9.99)`` of 999, a
resolution of 0.1 %. Without a ``feed`` the evidence that the new slot served anything is its ``RequestCount``
over the bake (CloudWatch publishes ALB metrics per minute, a few minutes late: bake at least 180 s then).

Example::

    result = fleet.rollout({"model": {"source": "v2.onnx"}}, strategy=Canary(percent=10, bake_s=300),
                           guard=Guard(p99_s=0.5, max_error_share=0.01), on_output=print)
    result.state            # 'completed' or 'rolled_back'
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from ..errors import ProvisionError, SpecError
from ..rollouts import (
    ClientFeed,
    Guard,
    RolloutEvent,
    Strategy,
    VariantStats,
    client_variant_stats,
    guard_decision,
    rollout_event,
)
from ..spec import FleetSpec
from ._boto import provision_error
from ._rollout import SlotPlan, forward_config, other, slot_differences

__all__ = ["RUNNING", "TOTAL_WEIGHT", "AwsRolloutResult", "RolloutSeams", "run_rollout", "weights_for"]

log = logging.getLogger(__name__)

TOTAL_WEIGHT = 999  # the largest ALB weight (rule forward-weight): the finest split of 100 %
RUNNING = ("preparing", "baking", "rolling_back")
MIN_AWS_INTERVAL_S = 10.0  # alarms change at most once a minute; polling faster only costs API calls


def weights_for(percent: float) -> tuple[int, int]:
    """(old slot, new slot) ALB weights for ``percent`` % on the new slot, summing to 999.

    Example::

        weights_for(10)     # (899, 100)
        weights_for(100)    # (0, 999)
    """
    new = round(float(percent) / 100.0 * TOTAL_WEIGHT)
    return TOTAL_WEIGHT - new, new


@dataclass
class RolloutSeams:
    """What the driver touches, so tests give it moto / Stubber clients and a fake ``up``.

    ``save(plan)`` writes the plan to the stack config; ``up(spec)`` runs ``pulumi up`` for the fleet spec and
    returns the stack outputs; ``feed()`` (optional) returns the last interval's client-side per-variant stats
    (``{"new": VariantStats, "old": VariantStats}``).
    """

    elbv2: Any
    cloudwatch: Any
    autoscaling: Any
    save: Callable[[SlotPlan], None]
    up: Callable[[FleetSpec], Mapping[str, Any]]
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))
    healthy_timeout_s: float = 1200.0


@dataclass(frozen=True)
class AwsRolloutResult:
    """How a rollout ended: ``state`` (``completed``, ``rolled_back``, ``failed``), why, the live slot, the final
    weights (slot a, slot b), the fleet spec now serving, and every progress event."""

    state: str
    reason: str
    live: str
    weights: tuple[int, int]
    spec: FleetSpec
    events: tuple[RolloutEvent, ...] = ()
    breach_to_zero_s: float | None = None

    def __repr__(self) -> str:
        return f"AwsRolloutResult(state={self.state!r}, live={self.live!r}, weights={self.weights}, {self.reason!r})"


class _Run:
    def __init__(
        self,
        *,
        fleet_spec: FleetSpec,
        plan: SlotPlan,
        outputs: Mapping[str, Any],
        seams: RolloutSeams,
        guard: Guard,
        feed: ClientFeed | Callable[[], Mapping[str, VariantStats]] | None,
        on_output: Callable[[str], Any] | None,
        on_event: Callable[[RolloutEvent], Any] | None,
    ) -> None:
        self.spec, self.plan, self.outputs, self.s = fleet_spec, plan, dict(outputs), seams
        self.guard, self.feed, self.on_output, self.on_event = guard, feed, on_output, on_event
        self.target = other(plan.live)  # the slot this rollout brings in (plan.live flips when it completes)
        self.events: list[RolloutEvent] = []
        self.breach_at: float | None = None
        self.breach_to_zero_s: float | None = None

    # ------------------------------------------------------------------ effects
    def say(self, text: str) -> None:
        log.info("%s", text)
        if self.on_output is not None:
            self.on_output(text)

    def emit(self, kind: str, state: str, detail: str = "", **kw: Any) -> None:
        pct = 100.0 * self.plan.weight(self.target) / max(1, sum(self.plan.weights))
        ev = rollout_event(kind, state, step=self.plan.step, percent=pct, detail=detail, **kw)  # type: ignore[arg-type]
        self.events.append(ev)
        if self.on_event is not None:
            self.on_event(ev)

    def save(self, **changes: Any) -> None:
        self.plan = replace(self.plan, updated_at=self.s.now().isoformat(), **changes)
        self.s.save(self.plan)

    def slot(self, slot: str) -> Mapping[str, Any]:
        slots = self.outputs.get("slots") or {}
        if slot not in slots:
            raise ProvisionError(f"stack outputs name no slot {slot!r}: run the rollout's stack update first")
        return slots[slot]  # type: ignore[no-any-return]

    def set_weights(self, a: int, b: int, **changes: Any) -> None:
        cfg = forward_config([self.slot("a")["target_group_arn"], self.slot("b")["target_group_arn"]], [a, b])
        listener = self.outputs.get("listener_arn")
        if not listener:
            raise ProvisionError("stack outputs have no listener_arn: update the stack (launch()) first")
        try:
            self.s.elbv2.modify_listener(
                ListenerArn=listener, DefaultActions=[{"Type": "forward", "ForwardConfig": cfg}]
            )
        except Exception as exc:
            raise provision_error("ELBv2 ModifyListener", exc) from exc
        self.save(weights=(a, b), **changes)  # after the call: the plan says what AWS has
        self.say(f"weights: slot a {a}, slot b {b} (of {TOTAL_WEIGHT})")

    def retire(self, slot: str) -> None:
        """Capacity 0 at once (the plan says so too, so the next up agrees)."""
        asg = self.slot(slot)["asg_name"]
        try:
            self.s.autoscaling.update_auto_scaling_group(
                AutoScalingGroupName=asg, MinSize=0, MaxSize=0, DesiredCapacity=0
            )
        except Exception as exc:
            raise provision_error("Auto Scaling UpdateAutoScalingGroup", exc) from exc
        self.say(f"slot {slot} retired: {asg} capacity 0")

    def alarm_breaches(self, slot: str) -> list[str]:
        names = [n for n in self.slot(slot).get("alarms") or [] if n]
        if not names:
            return []
        try:
            found = self.s.cloudwatch.describe_alarms(AlarmNames=names).get("MetricAlarms", [])
        except Exception as exc:
            raise provision_error("CloudWatch DescribeAlarms", exc) from exc
        return [
            f"{a['AlarmName']}: {a.get('StateReason', '')}" for a in found if a.get("StateValue") == "ALARM"
        ]

    def fleet_requests(self, slot: str, start: datetime, end: datetime) -> float:
        dims = [
            {"Name": "TargetGroup", "Value": self.slot(slot)["target_group_arn_suffix"]},
            {"Name": "LoadBalancer", "Value": self.outputs["alb_arn_suffix"]},
        ]
        try:
            got = self.s.cloudwatch.get_metric_statistics(
                Namespace="AWS/ApplicationELB",
                MetricName="RequestCount",
                Dimensions=dims,
                StartTime=start - timedelta(minutes=1),
                EndTime=end,
                Period=60,
                Statistics=["Sum"],
            )
        except Exception as exc:
            raise provision_error("CloudWatch GetMetricStatistics", exc) from exc
        return float(sum(p.get("Sum", 0.0) for p in got.get("Datapoints", [])))

    def wait_healthy(self, slot: str, want: int) -> None:
        arn = self.slot(slot)["target_group_arn"]
        deadline = self.s.clock() + self.s.healthy_timeout_s
        while True:
            try:
                desc = self.s.elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
            except Exception as exc:
                raise provision_error("ELBv2 DescribeTargetHealth", exc) from exc
            healthy = sum(1 for d in desc if d.get("TargetHealth", {}).get("State") == "healthy")
            if healthy >= want:
                self.say(f"slot {slot}: {healthy} healthy target(s)")
                return
            if self.s.clock() >= deadline:
                raise ProvisionError(
                    f"slot {slot} has {healthy} of {want} healthy targets after {self.s.healthy_timeout_s:.0f} s; "
                    f"it takes no traffic: see fleet.logs(<instance>) and fleet.rollout(rollback=True)"
                )
            self.s.sleep(10.0)

    def client_stats(self) -> Mapping[str, VariantStats]:
        """The last interval's per-variant stats: from a :class:`~mlops_lb.rollouts.ClientFeed` (the load run's
        records, ``X-Target-Id`` = the instance id, mapped to old/new by each slot's group), or what a plain
        callable returns."""
        feed = self.feed
        if isinstance(feed, ClientFeed):
            return client_variant_stats(feed.take(), self.variant_of())
        assert feed is not None
        return feed()

    def variant_of(self) -> dict[str, str]:
        names = {str(self.slot(s)["asg_name"]): ("new" if s == self.target else "old") for s in ("a", "b")}
        try:
            groups = self.s.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=list(names))
        except Exception as exc:
            raise provision_error("Auto Scaling DescribeAutoScalingGroups", exc) from exc
        return {
            str(i["InstanceId"]): names[str(g["AutoScalingGroupName"])]
            for g in groups.get("AutoScalingGroups", [])
            for i in g.get("Instances", [])
        }

    # ------------------------------------------------------------------ the walk
    def interval_s(self) -> float:
        return (
            self.guard.interval_s if self.feed is not None else max(self.guard.interval_s, MIN_AWS_INTERVAL_S)
        )

    def bake(self, new: str, bake_s: float) -> tuple[str, list[dict[str, Any]]] | None:
        """Judge each interval of one bake; the breach's reason and evidence, or None when the bake is clean."""
        intervals: list[Mapping[str, VariantStats]] = []
        start_wall, t0 = self.s.now(), self.s.clock()
        while True:
            self.s.sleep(self.interval_s())
            alarms = self.alarm_breaches(new)
            if alarms:
                self.breach_at = self.s.clock()
                return "CloudWatch alarm: " + "; ".join(alarms), [{"alarms": alarms}]
            if self.feed is not None:
                stats = self.client_stats()
                intervals.append(stats)
                d = guard_decision(self.guard, intervals)
                self.emit("interval", "baking", d.reason, stats=stats)
                if d.action == "rollback":
                    self.breach_at = self.s.clock()
                    return d.reason, list(d.evidence)
            else:
                self.emit("interval", "baking", "alarms OK")
            if self.s.clock() - t0 >= bake_s:
                break
        if self.feed is not None:
            d = guard_decision(self.guard, intervals, bake_over=True)
            return (d.reason, list(d.evidence)) if d.action == "rollback" else None
        served = self.fleet_requests(new, start_wall, self.s.now())
        if served < self.guard.min_requests:
            return (
                f"no evidence: slot {new} served {served:.0f} requests in the bake (CloudWatch RequestCount), fewer "
                f"than guard.min_requests={self.guard.min_requests}; send load, attach a feed or bake longer "
                "(ALB metrics arrive per minute, minutes late)",
                [],
            )
        return None

    def shift_and_bake(self, from_step: int) -> AwsRolloutResult:
        new = other(self.plan.live)
        for i in range(from_step, len(self.plan.steps)):
            pct, bake_s = self.plan.steps[i]
            old_w, new_w = weights_for(pct)
            a, b = (old_w, new_w) if new == "b" else (new_w, old_w)
            self.set_weights(a, b, state="baking", step=i)
            self.emit("shift", "baking", f"step {i + 1}/{len(self.plan.steps)}: {pct:g} % on slot {new}")
            breach = self.bake(new, bake_s)
            if breach is not None:
                return self.roll_back(*breach)
        return self.complete()

    def roll_back(self, reason: str, evidence: Sequence[dict[str, Any]] = ()) -> AwsRolloutResult:
        new = other(self.plan.live)
        self.emit("breach", "rolling_back", reason, evidence=evidence)
        a, b = (TOTAL_WEIGHT, 0) if new == "b" else (0, TOTAL_WEIGHT)
        self.set_weights(a, b, state="rolling_back", reason=reason)
        if self.breach_at is not None:
            self.breach_to_zero_s = self.s.clock() - self.breach_at
        self.emit("rollback", "rolling_back", f"slot {new} at weight 0: {reason}")
        self.retire(new)
        self.save(state="rolled_back", other_capacity=(0, 0, 0))
        self.outputs = dict(self.s.up(self.spec))  # the stack agrees with AWS again
        self.emit("rollback", "rolled_back", reason)
        return self.result("rolled_back", reason)

    def complete(self) -> AwsRolloutResult:
        old, new = self.plan.live, other(self.plan.live)
        new_spec = self.plan.spec_of(new, self.spec)
        assert new_spec is not None  # prepare() wrote it
        self.retire(old)
        self.plan = replace(
            self.plan,
            live=new,
            other_spec=self.spec.to_dict(),
            other_capacity=(0, 0, 0),
            state="completed",
            reason="every step baked clean",
        )
        self.save()
        self.spec = new_spec
        self.outputs = dict(self.s.up(self.spec))
        self.emit("complete", "completed", f"slot {new} serves everything; slot {old} retired")
        return self.result("completed", "every step baked clean")

    def result(self, state: str, reason: str) -> AwsRolloutResult:
        return AwsRolloutResult(
            state=state,
            reason=reason,
            live=self.plan.live,
            weights=self.plan.weights,
            spec=self.spec,
            events=tuple(self.events),
            breach_to_zero_s=self.breach_to_zero_s,
        )


def run_rollout(
    *,
    fleet_spec: FleetSpec,
    plan: SlotPlan | None,
    outputs: Mapping[str, Any],
    seams: RolloutSeams,
    new: FleetSpec | None = None,
    strategy: Strategy | None = None,
    guard: Guard | None = None,
    feed: ClientFeed | Callable[[], Mapping[str, VariantStats]] | None = None,
    resume: bool = False,
    rollback: bool = False,
    on_output: Callable[[str], Any] | None = None,
    on_event: Callable[[RolloutEvent], Any] | None = None,
) -> AwsRolloutResult:
    """Run (or resume, or roll back) a rollout of ``fleet_spec``'s fleet to ``new``; see the module docstring.

    Refused before any change (SpecError naming the field): a rollout while another runs or was interrupted
    (``resume=True`` or ``rollback=True`` then), ``resume``/``rollback`` with none to act on, ``new`` changing a
    part both slots share, a warm pool, a router tier.

    Example::

        run_rollout(fleet_spec=spec, plan=None, outputs=fleet.outputs(), seams=seams, new=v2,
                    strategy=Canary(percent=10, bake_s=300), guard=Guard(p99_s=0.5))
    """
    if resume and rollback:
        raise SpecError("resume", "resume=True and rollback=True exclude each other: choose one")
    router = getattr(getattr(fleet_spec, "routing", None), "router", None)
    if router is not None:
        raise SpecError(
            "routing.router",
            "a fleet behind a router tier cannot roll out by ALB weights (the ALB sends everything to the "
            "routers, which pick the targets): remove routing.router, or use fleet.update_code() / launch()",
        )
    state = plan.state if plan is not None else "idle"
    # a resumed run and a new one differ only in their plan and guard
    new_run = functools.partial(
        _Run,
        fleet_spec=fleet_spec,
        outputs=outputs,
        seams=seams,
        feed=feed,
        on_output=on_output,
        on_event=on_event,
    )
    if resume or rollback:
        if plan is None or state not in (*RUNNING, "interrupted"):
            what = "resume" if resume else "rollback"
            raise SpecError(what, f"there is no interrupted rollout to act on (state {state!r})")
        g = Guard(**{k: v for k, v in plan.guard.items() if k in {f.name for f in dataclasses.fields(Guard)}})
        run = new_run(plan=plan, guard=g)
        if rollback:
            return run.roll_back("rolled back on request after an interrupted rollout")
        return _guarded(run, lambda: run.shift_and_bake(plan.step))
    if state in RUNNING or state == "interrupted":
        raise SpecError(
            "rollout",
            f"a rollout is already {state} on this fleet (step {plan.step + 1 if plan else 0}); finish it with "
            "fleet.rollout(resume=True) or fleet.rollout(rollback=True)",
        )
    if new is None or strategy is None or guard is None:
        raise SpecError("new", "a rollout needs the new spec, a strategy and a guard")
    diff = slot_differences(fleet_spec, new)
    live = plan.live if plan is not None else "a"
    target = other(live)
    start = SlotPlan(
        live=live,
        weights=(TOTAL_WEIGHT, 0) if live == "a" else (0, TOTAL_WEIGHT),
        other_spec=new.to_dict(),
        other_capacity=(new.capacity.min, new.capacity.desired, new.capacity.max),
        guard=guard.to_dict(),
        state="preparing",
        steps=tuple((float(p), float(b)) for p, b in strategy.steps()),
    )
    run = new_run(plan=start, guard=guard)
    lines = [f"  {k}: {a!r} -> {b!r}" for k, (a, b) in sorted(diff.items())] or ["  (no spec change)"]
    run.say(
        f"rollout to slot {target} ({getattr(strategy, 'kind', strategy)}); the new slot differs in:\n"
        + "\n".join(lines)
    )

    def walk() -> AwsRolloutResult:
        run.save()
        run.emit("start", "preparing", f"slot {target} gets the new spec")
        try:
            run.outputs = dict(seams.up(fleet_spec))
            run.wait_healthy(target, new.capacity.desired)
        except Exception as exc:
            a, b = (TOTAL_WEIGHT, 0) if target == "b" else (0, TOTAL_WEIGHT)
            run.save(state="failed", reason=str(exc), weights=(a, b))
            run.emit("failed", "failed", str(exc))
            raise
        run.emit("ready", "baking", f"slot {target} healthy")
        return run.shift_and_bake(0)

    return _guarded(run, walk)


def _guarded(run: _Run, body: Callable[[], AwsRolloutResult]) -> AwsRolloutResult:
    """Ctrl-C (or a kernel restart) mid-rollout leaves both slots serving at the last weights, recorded as
    ``interrupted`` so ``fleet.status()`` shows it and ``rollout(resume=True | rollback=True)`` continues."""
    try:
        return body()
    except KeyboardInterrupt:
        run.save(state="interrupted")
        run.emit("interrupted", "interrupted", "stopped; both slots serve at the weights shown")
        raise
