"""The AWS rollout driver (issue 29) against moto (ELBv2 listener, target health, Auto Scaling, CloudWatch alarms and
metrics) and botocore's Stubber (the documented ModifyListener request), with a fake clock and a fake ``pulumi up``.

moto accepts a weight of 1000 and six target groups in ModifyListener (checked 2026-12-07): the limits are ours to
enforce (``forward_config``, rules forward-weight / forward-target-groups), and the strict Pulumi mocks enforce
them on the program (tests/aws/test_rollout_program.py).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from mlops_lb import CapacitySpec, FleetSpec, InstanceSpec
from mlops_lb.aws._rollout import SlotPlan, forward_config
from mlops_lb.aws._rollout_run import RolloutSeams, run_rollout, weights_for
from mlops_lb.errors import SpecError
from mlops_lb.rollouts import AllAtOnce, Canary, Guard, Linear, VariantStats

REGION = "us-east-1"
OLD = FleetSpec(name="demo", capacity=CapacitySpec(min=1, desired=1, max=2))
NEW = dataclasses.replace(OLD, instance=InstanceSpec(type="t3.medium"))
GOOD = {"new": VariantStats(requests=100, errors=0, p99_s=0.05), "old": VariantStats(100, 0, 0.05)}
SLOW = {"new": VariantStats(requests=100, errors=0, p99_s=2.0), "old": VariantStats(100, 0, 0.05)}


class World:
    """moto's ALB with two slots, as the program declares them after the first rollout's update."""

    def __init__(self, name: str = "demo") -> None:
        import boto3

        self.name = name
        self.ec2 = boto3.client("ec2", region_name=REGION)
        self.elb = boto3.client("elbv2", region_name=REGION)
        self.cw = boto3.client("cloudwatch", region_name=REGION)
        self.asg = boto3.client("autoscaling", region_name=REGION)
        vpc = self.ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        subnets = [s["SubnetId"] for s in self.ec2.describe_subnets()["Subnets"]][:2]
        lb = self.elb.create_load_balancer(Name=name, Subnets=subnets)["LoadBalancers"][0]
        self.ec2.create_launch_template(
            LaunchTemplateName=f"{name}-lt",
            LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.small"},
        )
        slots: dict[str, dict[str, Any]] = {}
        for slot, (tg_name, desired) in {"a": (name, 1), "b": (f"{name}-b", 0)}.items():
            tg = self.elb.create_target_group(Name=tg_name, Protocol="HTTP", Port=8080, VpcId=vpc)[
                "TargetGroups"
            ][0]
            self.asg.create_auto_scaling_group(
                AutoScalingGroupName=f"{tg_name}-asg",
                LaunchTemplate={"LaunchTemplateName": f"{name}-lt", "Version": "$Latest"},
                MinSize=desired,
                MaxSize=2,
                DesiredCapacity=desired,
                TargetGroupARNs=[tg["TargetGroupArn"]],
                VPCZoneIdentifier=subnets[0],
            )
            alarms = []
            for kind, metric in (("p99", "TargetResponseTime"), ("5xx", "HTTPCode_Target_5XX_Count")):
                alarm = f"{name}-{slot}-{kind}-0abc123"
                self.cw.put_metric_alarm(
                    AlarmName=alarm,
                    Namespace="AWS/ApplicationELB",
                    MetricName=metric,
                    Statistic="Sum",
                    Period=60,
                    EvaluationPeriods=2,
                    Threshold=1.0,
                    ComparisonOperator="GreaterThanThreshold",
                )
                alarms.append(alarm)
            slots[slot] = {
                "asg_name": f"{tg_name}-asg",
                "target_group_arn": tg["TargetGroupArn"],
                "target_group_arn_suffix": tg["TargetGroupArn"].split(":")[-1],
                "alarms": alarms,
            }
        self.listener = self.elb.create_listener(
            LoadBalancerArn=lb["LoadBalancerArn"],
            Protocol="HTTP",
            Port=80,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": slots["a"]["target_group_arn"]}],
        )["Listeners"][0]["ListenerArn"]
        self.outputs = {
            "listener_arn": self.listener,
            "alb_arn_suffix": lb["LoadBalancerArn"].split(":loadbalancer/")[-1],
            "slots": slots,
        }
        self.saved: list[SlotPlan] = []
        self.ups: list[FleetSpec] = []
        self.t = 0.0
        self.sleeps = 0
        self.at_sleep: dict[int, Callable[[], None]] = {}

    # the seams ---------------------------------------------------------------------------------------------
    def up(self, spec: FleetSpec) -> dict[str, Any]:
        """A stack update: the plan's capacity for slot b (what the program declares), as AWS would apply it."""
        self.ups.append(spec)
        plan = self.saved[-1]
        if plan.state == "preparing":
            lo, want, hi = plan.other_capacity
            self.asg.update_auto_scaling_group(
                AutoScalingGroupName=f"{self.name}-b-asg", MinSize=lo, MaxSize=hi, DesiredCapacity=want
            )
        return self.outputs

    def sleep(self, dt: float) -> None:
        self.t += dt
        self.sleeps += 1
        hook = self.at_sleep.pop(self.sleeps, None)
        if hook is not None:
            hook()

    def seams(self) -> RolloutSeams:
        return RolloutSeams(
            elbv2=self.elb,
            cloudwatch=self.cw,
            autoscaling=self.asg,
            save=self.saved.append,
            up=self.up,
            sleep=self.sleep,
            clock=lambda: self.t,
        )

    # what AWS has ------------------------------------------------------------------------------------------
    def weights(self) -> tuple[int, int]:
        (action,) = self.elb.describe_listeners(ListenerArns=[self.listener])["Listeners"][0][
            "DefaultActions"
        ]
        by_arn = {g["TargetGroupArn"]: g["Weight"] for g in action["ForwardConfig"]["TargetGroups"]}
        return by_arn[self.outputs["slots"]["a"]["target_group_arn"]], by_arn[
            self.outputs["slots"]["b"]["target_group_arn"]
        ]

    def capacity(self, asg: str) -> tuple[int, int, int]:
        g = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[asg])["AutoScalingGroups"][0]
        return g["MinSize"], g["DesiredCapacity"], g["MaxSize"]

    def alarm(self, name: str) -> None:
        self.cw.set_alarm_state(
            AlarmName=name, StateValue="ALARM", StateReason="Threshold Crossed: 2 datapoints"
        )


@pytest.fixture(scope="module")
def _shared_world() -> Iterator[World]:
    """One moto account for the module (building it costs seconds); each test gets it reset."""
    from moto import mock_aws

    with mock_aws():
        yield World()


@pytest.fixture
def world(_shared_world: World) -> World:
    """The two-slot world as the first rollout finds it: slot a serving at 1 instance, slot b empty, alarms OK."""
    w = _shared_world
    w.elb.modify_listener(
        ListenerArn=w.listener,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": w.outputs["slots"]["a"]["target_group_arn"]}],
    )
    for asg, (lo, want) in (("demo-asg", (1, 1)), ("demo-b-asg", (0, 0))):
        w.asg.update_auto_scaling_group(AutoScalingGroupName=asg, MinSize=lo, MaxSize=2, DesiredCapacity=want)
    for slot in w.outputs["slots"].values():
        for alarm in slot["alarms"]:
            w.cw.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="reset")
    w.saved, w.ups, w.t, w.sleeps, w.at_sleep = [], [], 0.0, 0, {}
    return w


def _run(world: World, **kw: Any) -> Any:
    args: dict[str, Any] = dict(
        fleet_spec=OLD,
        plan=None,
        outputs=world.outputs,
        seams=world.seams(),
        new=NEW,
        strategy=Canary(percent=10, bake_s=3),
        guard=Guard(p99_s=0.5, min_requests=20, breach_intervals=2, interval_s=1.0),
    )
    args.update(kw)
    return run_rollout(**args)


class TestWeights:
    def test_percent_maps_to_weights_summing_to_999(self) -> None:
        """A share p % is round(p x 9.99) of ALB's largest weight, 999; both ends are valid weights."""
        assert weights_for(0) == (999, 0) and weights_for(100) == (0, 999) and weights_for(10) == (899, 100)
        assert all(0 <= w <= 999 for p in range(101) for w in weights_for(p))

    @pytest.mark.parametrize(
        ("arns", "weights", "field"),
        [
            (["a", "b"], [1000, 0], "weights[0]"),
            (["a", "b"], [-1, 5], "weights[0]"),
            (["a", "b"], [1.5, 5], "weights[0]"),
            ([f"g{i}" for i in range(6)], [1] * 6, "target_groups"),
            (["a", "b"], [0, 0], "weights"),
            (["a"], [1, 2], "weights"),
        ],
    )
    def test_forward_config_refuses_what_elb_would(
        self, arns: list[str], weights: list[Any], field: str
    ) -> None:
        """Weight 1000, a negative or fractional weight, a 6th group, all zero: SpecError naming the field."""
        with pytest.raises(SpecError) as err:
            forward_config(arns, weights)
        assert err.value.field == field

    def test_five_groups_and_edge_weights_pass(self) -> None:
        """The documented bounds themselves are accepted."""
        cfg = forward_config([f"g{i}" for i in range(5)], [0, 999, 1, 2, 3])
        assert [g["Weight"] for g in cfg["TargetGroups"]] == [0, 999, 1, 2, 3]

    def test_modify_listener_request_is_the_documented_shape(self) -> None:
        """Stubber (botocore's model validates every member): a forward action with ForwardConfig.TargetGroups of
        {TargetGroupArn, Weight} and stickiness off, and nothing else."""
        import boto3
        from botocore.stub import Stubber

        from mlops_lb.aws._rollout_run import _Run

        elb = boto3.client("elbv2", region_name=REGION)
        arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/demo{}/0123456789abcdef"
        listener = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/demo/0123456789abcdef/fedcba9876543210"
        outputs = {
            "listener_arn": listener,
            "slots": {s: {"target_group_arn": arn.format(s)} for s in "ab"},
        }
        saved: list[SlotPlan] = []
        seams = RolloutSeams(elbv2=elb, cloudwatch=None, autoscaling=None, save=saved.append, up=lambda s: {})
        run = _Run(
            fleet_spec=OLD,
            plan=SlotPlan(),
            outputs=outputs,
            seams=seams,
            guard=Guard(),
            feed=None,
            on_output=None,
            on_event=None,
        )
        with Stubber(elb) as stub:
            stub.add_response(
                "modify_listener",
                {"Listeners": []},
                {
                    "ListenerArn": listener,
                    "DefaultActions": [
                        {
                            "Type": "forward",
                            "ForwardConfig": {
                                "TargetGroups": [
                                    {"TargetGroupArn": arn.format("a"), "Weight": 899},
                                    {"TargetGroupArn": arn.format("b"), "Weight": 100},
                                ],
                                "TargetGroupStickinessConfig": {"Enabled": False},
                            },
                        }
                    ],
                },
            )
            run.set_weights(899, 100)
            stub.assert_no_pending_responses()
        assert saved[-1].weights == (899, 100)  # the plan records what AWS was told, after it was told


class TestCanary:
    def test_clean_canary_completes_and_retires_the_old_slot(self, world: World) -> None:
        """10 % for the bake, then 100 %; clean alarms and client stats: slot b serves everything, slot a is at
        capacity 0 and weight 0, the fleet's spec is the new one; each move was saved to the plan."""
        result = _run(world, feed=lambda: GOOD)
        assert result.state == "completed" and result.live == "b" and result.spec == NEW
        assert world.weights() == (0, 999) == result.weights
        assert world.capacity("demo-asg") == (0, 0, 0) and world.capacity("demo-b-asg") == (1, 1, 2)
        states = [(p.state, p.weights) for p in world.saved]
        assert states[0] == ("preparing", (999, 0))
        assert ("baking", (899, 100)) in states and ("baking", (0, 999)) in states
        assert world.saved[-1].live == "b" and world.saved[-1].other_spec == OLD.to_dict()
        assert world.ups == [OLD, NEW]  # bring up slot b; then the stack with the new spec live
        kinds = [e["kind"] for e in result.events]
        assert kinds[:3] == ["start", "ready", "shift"] and kinds[-1] == "complete"

    def test_alarm_breach_sends_the_new_slot_to_zero_in_the_same_interval(self, world: World) -> None:
        """slot b's p99 alarm goes to ALARM during the first bake: the very next poll moves slot b to weight 0
        (no further interval passes), retires it, and says which alarm and why."""
        world.at_sleep[2] = lambda: world.alarm("demo-b-p99-0abc123")
        result = _run(world, strategy=Canary(percent=10, bake_s=60))  # fleet side only: no feed, 10 s polls
        assert result.state == "rolled_back" and result.live == "a"
        assert world.weights() == (999, 0)
        assert result.breach_to_zero_s == 0.0 and world.sleeps == 2  # weight 0 before another interval
        assert "demo-b-p99-0abc123" in result.reason and "Threshold Crossed" in result.reason
        assert world.capacity("demo-b-asg") == (0, 0, 0) and world.capacity("demo-asg")[1] == 1
        assert world.saved[-1].state == "rolled_back" and world.saved[-1].other_capacity == (0, 0, 0)
        assert result.spec == OLD

    def test_client_side_breach_rolls_back_after_breach_intervals(self, world: World) -> None:
        """With a load run attached: a p99 above the guard in 2 consecutive intervals (breach_intervals=2) rolls
        back at the second; the evidence carries both intervals' per-variant stats."""
        result = _run(world, feed=lambda: SLOW)
        assert result.state == "rolled_back" and world.weights() == (999, 0)
        assert world.sleeps == 2  # two intervals judged, then weight 0
        (breach,) = [e for e in result.events if e["kind"] == "breach"]
        assert len(breach["evidence"]) == 2 and breach["evidence"][0]["stats"]["new"]["p99_s"] == 2.0

    def test_a_clean_guard_does_not_roll_back(self, world: World) -> None:
        """The same run with a p99 under the guard completes: the breach path is not taken by default."""
        result = _run(world, feed=lambda: GOOD, strategy=AllAtOnce(bake_s=2))
        assert result.state == "completed" and not [e for e in result.events if e["kind"] == "breach"]

    def test_fleet_side_without_requests_is_no_evidence(self, world: World) -> None:
        """No feed and no RequestCount on slot b during the bake: rolled back ("no evidence is not a pass")."""
        result = _run(world, strategy=AllAtOnce(bake_s=20))
        assert result.state == "rolled_back" and "no evidence" in result.reason

    def test_fleet_side_with_requests_completes(self, _shared_world: World) -> None:
        """RequestCount on slot b's group and LoadBalancer (the dimensions ALB publishes) counts as evidence."""
        world = World("evidence")  # its own groups: the datapoint must not reach the no-evidence test
        dims = [
            {"Name": "TargetGroup", "Value": world.outputs["slots"]["b"]["target_group_arn_suffix"]},
            {"Name": "LoadBalancer", "Value": world.outputs["alb_arn_suffix"]},
        ]
        world.cw.put_metric_data(
            Namespace="AWS/ApplicationELB",
            MetricData=[
                {
                    "MetricName": "RequestCount",
                    "Dimensions": dims,
                    "Value": 500,
                    "Timestamp": datetime.now(timezone.utc) - timedelta(seconds=30),
                }
            ],
        )
        assert _run(world, strategy=AllAtOnce(bake_s=20)).state == "completed"


class TestBadInputAndInterruption:
    def test_a_rollout_while_one_runs_is_refused_before_any_call(self, world: World) -> None:
        """A plan in state baking: SpecError naming the way out; nothing saved, no stack update, weights as
        they were."""
        running = SlotPlan(
            weights=(899, 100), other_spec=NEW.to_dict(), other_capacity=(1, 1, 2), state="baking"
        )
        with pytest.raises(SpecError, match="resume=True"):
            _run(world, plan=running)
        assert world.saved == [] and world.ups == [] and world.sleeps == 0

    def test_resume_or_rollback_without_an_interrupted_rollout(self, world: World) -> None:
        """resume=True on an idle fleet names the problem; both at once are refused."""
        with pytest.raises(SpecError, match="no interrupted rollout"):
            _run(world, resume=True)
        with pytest.raises(SpecError, match="exclude each other"):
            _run(world, resume=True, rollback=True)

    def test_router_tier_fleet_is_refused(self, world: World) -> None:
        """The ALB only sees the routers on a router-tier fleet: weights cannot shift models there."""

        @dataclasses.dataclass(frozen=True)
        class Routing:
            router: Any = "router-tier"

        spec = dataclasses.replace(OLD)
        object.__setattr__(spec, "routing", Routing())
        with pytest.raises(SpecError) as err:
            _run(world, fleet_spec=spec)
        assert err.value.field == "routing.router" and world.saved == []

    def test_shared_part_or_warm_pool_is_refused(self) -> None:
        """A target-group change is the shared balancer's (launch()); a warm pool has one hook name per fleet."""
        from mlops_lb import TargetGroupSpec, WarmPoolSpec
        from mlops_lb.aws._rollout import slot_differences

        with pytest.raises(SpecError) as err:
            slot_differences(OLD, dataclasses.replace(OLD, target_group=TargetGroupSpec(port=9000)))
        assert err.value.field == "target_group.port"
        warm = dataclasses.replace(
            NEW, capacity=CapacitySpec(min=1, desired=1, max=2, warm_pool=WarmPoolSpec())
        )
        with pytest.raises(SpecError, match="warm"):
            slot_differences(OLD, warm)

    def test_ctrl_c_leaves_an_interrupted_serving_state_that_resumes(self, world: World) -> None:
        """Ctrl-C in the canary's bake: both slots keep serving at 899/100, the plan says interrupted; resume
        finishes the rollout from that step."""

        def interrupt() -> None:
            raise KeyboardInterrupt

        world.at_sleep[2] = interrupt
        with pytest.raises(KeyboardInterrupt):
            _run(world, feed=lambda: GOOD)
        plan = world.saved[-1]
        assert plan.state == "interrupted" and plan.weights == (899, 100) == world.weights()
        result = run_rollout(
            fleet_spec=OLD,
            plan=plan,
            outputs=world.outputs,
            seams=world.seams(),
            resume=True,
            feed=lambda: GOOD,
        )
        assert result.state == "completed" and world.weights() == (0, 999)

    def test_interrupted_rollout_can_be_rolled_back(self, world: World) -> None:
        """rollback=True after an interruption: slot b to weight 0 and capacity 0, the old spec still live."""
        world.at_sleep[1] = lambda: (_ for _ in ()).throw(KeyboardInterrupt)
        with pytest.raises(KeyboardInterrupt):
            _run(world, feed=lambda: GOOD)
        result = run_rollout(
            fleet_spec=OLD, plan=world.saved[-1], outputs=world.outputs, seams=world.seams(), rollback=True
        )
        assert result.state == "rolled_back" and world.weights() == (999, 0)
        assert world.capacity("demo-b-asg") == (0, 0, 0) and result.spec == OLD

    def test_linear_steps_each_shift_and_bake(self, world: World) -> None:
        """Linear(25 %): four shifts 25/50/75/100 % -> weights 749/250, 499/500, 250/749, 0/999."""
        result = _run(world, feed=lambda: GOOD, strategy=Linear(step_percent=25, bake_s=1))
        shifts = [p.weights for p in world.saved if p.state == "baking"]
        assert shifts == [(749, 250), (499, 500), (250, 749), (0, 999)]
        assert result.state == "completed"
        assert math.isclose(result.events[-1]["percent"], 100.0)


class TestAwsFleetRolloutArguments:
    """``AwsFleet.rollout`` checks every argument before the stack or AWS is touched (no pulumi CLI needed)."""

    @pytest.fixture
    def fleet(self, fake_wheel: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
        from mlops_lb.aws import AwsFleet

        f = AwsFleet(OLD.replace(region=REGION), wheel=fake_wheel)

        def no_stack(*a: Any, **k: Any) -> Any:
            raise AssertionError("the stack was read before the arguments were checked")

        monkeypatch.setattr(f, "rollout_plan", no_stack)
        monkeypatch.setattr(f, "_get_stack", no_stack)
        return f

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"new": {"target_group": {"port": 9000}}}, "new.target_group"),
            ({"new": {}}, "new"),
            ({"new": {"instance": {"type": "t3.small"}}}, "new"),  # changes nothing
            (
                {"new": {"instance": {"type": "t3.medium"}}, "strategy": {"kind": "canary", "percent": 80}},
                "strategy.percent",
            ),
            ({"new": {"instance": {"type": "t3.medium"}}, "guard": {"ttft_p99_s": 0.5}}, "guard.ttft_p99_s"),
        ],
    )
    def test_bad_input_names_the_field_before_any_call(
        self, fleet: Any, kwargs: dict[str, Any], field: str
    ) -> None:
        """A shared part, nothing to change, a canary above 50 %, a TTFT guard on the (non-streaming) model server."""
        with pytest.raises(SpecError) as err:
            fleet.rollout(**kwargs)
        assert err.value.field == field

    def test_closed_fleet_is_refused(self, fleet: Any) -> None:
        """A closed handle cannot start a rollout."""
        fleet.close()
        with pytest.raises(SpecError, match="closed"):
            fleet.rollout({"instance": {"type": "t3.medium"}})


class TestClientFeed:
    def test_load_run_records_judge_the_new_slot_by_instance_id(self, world: World) -> None:
        """A ClientFeed (what run_load(on_records=feed) fills): records whose X-Target-Id is slot b's instance
        are the new variant; 2 s latencies there for 2 intervals roll back, the old slot's 50 ms do not count."""
        import pandas as pd

        from mlops_lb.rollouts import ClientFeed

        feed = ClientFeed()

        def records() -> None:
            ids = {
                slot: [
                    i["InstanceId"]
                    for g in world.asg.describe_auto_scaling_groups(
                        AutoScalingGroupNames=[world.outputs["slots"][slot]["asg_name"]]
                    )["AutoScalingGroups"]
                    for i in g["Instances"]
                ]
                for slot in "ab"
            }
            rows = [(ids["a"][0], 0.05)] * 90 + [(ids["b"][0], 2.0)] * 30
            now = pd.Timestamp.now(tz="UTC")
            feed(
                pd.DataFrame(
                    {
                        "sent_at": now,
                        "done_at": now,
                        "latency_s": [r[1] for r in rows],
                        "error": "",
                        "target": [r[0] for r in rows],
                    }
                )
            )

        world.at_sleep[1] = records
        world.at_sleep[2] = records
        result = _run(world, feed=feed)
        assert result.state == "rolled_back" and world.weights() == (999, 0) and world.sleeps == 2
        (breach,) = [e for e in result.events if e["kind"] == "breach"]
        assert breach["evidence"][-1]["stats"]["new"]["requests"] == 30
        assert breach["evidence"][-1]["stats"]["old"]["p99_s"] == pytest.approx(0.05)


class TestStatus:
    def test_status_lists_both_slots_instances_and_the_rollout_state(
        self, world: World, fake_wheel: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """fleet.status() after slot b came up: one row per instance of either group, its slot, and the plan's
        state in attrs (what an interrupted rollout shows)."""
        from mlops_lb.aws import AwsFleet

        world.asg.update_auto_scaling_group(
            AutoScalingGroupName="demo-b-asg", MinSize=1, MaxSize=2, DesiredCapacity=1
        )
        fleet = AwsFleet(OLD.replace(region=REGION), wheel=fake_wheel)
        slots = world.outputs["slots"]
        fleet._outputs = {
            **world.outputs,
            "asg_name": slots["a"]["asg_name"],
            "target_group_arn": slots["a"]["target_group_arn"],
        }
        plan = SlotPlan(
            weights=(899, 100), other_spec=NEW.to_dict(), other_capacity=(1, 1, 2), state="interrupted"
        )
        monkeypatch.setattr(fleet, "rollout_plan", lambda: plan)
        df = fleet.status()
        assert sorted(df["slot"]) == ["a", "b"]
        assert df.attrs["rollout"] == {
            "state": "interrupted",
            "live": "a",
            "weights": (899, 100),
            "reason": "",
        }
