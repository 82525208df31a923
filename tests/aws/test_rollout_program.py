"""Two slots behind one ALB (issue 29) in the Pulumi program, under the strict mocks that enforce AWS's rules.

Rules (mlops_lb/_aws_rules.py, each with its source): ``forward-target-groups`` (at most 5 groups per forward
action), ``forward-weight`` (0-999), ``tracking-resource-label`` (the label names a group attached to the policy's
ASG), ``metric-alarm`` and ``alb-metric-dimensions`` (the guard's alarms).
"""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import pytest
from _awsaccount import RuleViolation

from mlops_lb import CapacitySpec, FleetSpec, InstanceSpec, ModelSpec
from mlops_lb._aws_rules import resource_violations
from mlops_lb.aws import _rollout
from mlops_lb.aws._rollout import SlotPlan

TG = "aws:lb/targetGroup:TargetGroup"
LT = "aws:ec2/launchTemplate:LaunchTemplate"
ASG = "aws:autoscaling/group:Group"
POLICY = "aws:autoscaling/policy:Policy"
LISTENER = "aws:lb/listener:Listener"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
OBJ = "aws:s3/bucketObjectv2:BucketObjectv2"

OLD = FleetSpec(name="demo", capacity=CapacitySpec(min=1, desired=2, max=4))
GUARD = {"p99_s": 0.5, "max_error_share": 0.01, "breach_intervals": 2}


def _new(tmp_path: Path) -> FleetSpec:
    model = tmp_path / "v2.skops"
    model.write_bytes(b"not really a model, only uploaded")
    return dataclasses.replace(
        OLD,
        model=ModelSpec(source=str(model)),
        instance=InstanceSpec(type="t3.medium"),
        capacity=CapacitySpec(min=1, desired=1, max=3),
    )


def _run(run_program: Any, spec: FleetSpec, plan: SlotPlan) -> Any:
    return run_program(spec, config={"mlops-lb:rollout": plan.to_json()})


def _ud(lt: dict[str, Any]) -> str:
    return base64.b64decode(lt["userData"]).decode()


class TestTwoSlots:
    def test_canary_weights_second_group_own_template_group_and_policy(
        self, run_program: Any, tmp_path: Path
    ) -> None:
        """Slot b: its own target group, launch template (the new spec), group (the plan's capacity) and policy
        whose resource label names slot b's group; the listener forwards 90/10 to the two groups."""
        new = _new(tmp_path)
        plan = SlotPlan(weights=(90, 10), other_spec=new.to_dict(), other_capacity=(1, 1, 3), guard=GUARD)
        rec = _run(run_program, OLD, plan)
        tgs = dict(rec.of_type(TG))
        assert set(tgs) == {"demo", "demo-b"}
        (listener,) = [i for _, i in rec.of_type(LISTENER)]
        (action,) = listener["defaultActions"]
        assert "targetGroupArn" not in action
        groups = action["forward"]["targetGroups"]
        out = rec.outputs
        assert [(g["arn"], g["weight"]) for g in groups] == [
            (out["slots"]["a"]["target_group_arn"], 90),
            (out["slots"]["b"]["target_group_arn"], 10),
        ]
        lts = dict(rec.of_type(LT))
        assert (lts["demo-lt"]["instanceType"], lts["demo-b-lt"]["instanceType"]) == ("t3.small", "t3.medium")
        assert "/opt/mlops_lb/model/" in _ud(lts["demo-b-lt"]) and "--model demo" in _ud(lts["demo-lt"])
        asgs = dict(rec.of_type(ASG))
        assert (asgs["demo-asg"]["minSize"], asgs["demo-asg"]["maxSize"]) == (1, 4)
        b = asgs["demo-b-asg"]
        assert (b["minSize"], b["desiredCapacity"], b["maxSize"]) == (1, 1, 3)
        assert b["targetGroupArns"] == [out["slots"]["b"]["target_group_arn"]]
        pols = dict(rec.of_type(POLICY))
        for pol, slot in (("demo-requests", "a"), ("demo-b-requests", "b")):
            label = pols[pol]["targetTrackingConfiguration"]["predefinedMetricSpecification"]["resourceLabel"]
            assert label == f"{out['alb_arn_suffix']}/{out['slots'][slot]['target_group_arn_suffix']}"
        keys = [i["key"] for _, i in rec.of_type(OBJ) if i["key"].startswith("model/")]
        assert len(keys) == 1 and keys[0] in _ud(lts["demo-b-lt"])  # the new model uploaded once

    def test_guard_alarms_per_slot_on_documented_metrics_and_dimensions(
        self, run_program: Any, tmp_path: Path
    ) -> None:
        """Per slot: TargetResponseTime p99 > 0.5 s, and the target 5xx share (HTTPCode_Target_5XX_Count over
        RequestCount, metric math) > 1 %; dimensions TargetGroup + LoadBalancer, one-minute periods, 2 of 2
        minutes (the guard's breach_intervals), missing data not breaching (no request flowed is no breach)."""
        plan = SlotPlan(weights=(999, 0), other_spec=_new(tmp_path).to_dict(), guard=GUARD)
        rec = _run(run_program, OLD, plan)
        alarms = dict(rec.of_type(ALARM))
        assert set(alarms) == {"demo-a-p99", "demo-a-5xx", "demo-b-p99", "demo-b-5xx"}
        out = rec.outputs
        for slot in "ab":
            dims = {
                "LoadBalancer": out["alb_arn_suffix"],
                "TargetGroup": out["slots"][slot]["target_group_arn_suffix"],
            }
            p99, errs = alarms[f"demo-{slot}-p99"], alarms[f"demo-{slot}-5xx"]
            assert (p99["metricName"], p99["extendedStatistic"], p99["threshold"]) == (
                "TargetResponseTime",
                "p99",
                0.5,
            )
            assert "statistic" not in p99 and p99["dimensions"] == dims and p99["period"] == 60
            queries = {q["id"]: q for q in errs["metricQueries"]}
            assert queries["share"]["expression"] == "errors / requests" and errs["threshold"] == 0.01
            for qid, metric in (("errors", "HTTPCode_Target_5XX_Count"), ("requests", "RequestCount")):
                m = queries[qid]["metric"]
                assert (m["metricName"], m["stat"], m["period"], m["dimensions"]) == (metric, "Sum", 60, dims)
            for a in (p99, errs):
                assert (a["evaluationPeriods"], a["datapointsToAlarm"]) == (2, 2)
                assert a["treatMissingData"] == "notBreaching"
            names = out["slots"][slot]["alarms"]  # what the rollout polls with DescribeAlarms
            assert [n.rsplit("-", 1)[0] for n in names] == [f"demo-{slot}-p99", f"demo-{slot}-5xx"]

    def test_idle_slot_has_no_capacity_and_no_weight(self, run_program: Any) -> None:
        """After a finished or rolled-back rollout the other slot is capacity 0 / weight 0 (min = max = 0)."""
        rec = _run(
            run_program, OLD, SlotPlan(weights=(999, 0), other_spec=OLD.to_dict(), other_capacity=(0, 0, 0))
        )
        b = dict(rec.of_type(ASG))["demo-b-asg"]
        assert (b["minSize"], b["desiredCapacity"], b["maxSize"]) == (0, 0, 0)
        assert rec.outputs["slots"]["b"]["weight"] == 0 and rec.outputs["live_slot"] == "a"
        assert not rec.of_type(ALARM)  # no guard thresholds: no alarms

    def test_bringing_up_slot_b_leaves_slot_a_byte_identical(self, run_program: Any, tmp_path: Path) -> None:
        """The update that brings up the new slot changes nothing of the live slot: same template (user data),
        same group, same policy as the one-slot fleet, so no instance of the live slot is replaced."""
        one = run_program(OLD)
        two = _run(run_program, OLD, SlotPlan(weights=(100, 0), other_spec=_new(tmp_path).to_dict()))
        for typ, name in ((LT, "demo-lt"), (ASG, "demo-asg"), (POLICY, "demo-requests"), (TG, "demo")):
            assert dict(one.of_type(typ))[name] == dict(two.of_type(typ))[name], name

    def test_live_slot_b_runs_the_fleet_spec_and_is_what_readers_see(
        self, run_program: Any, tmp_path: Path
    ) -> None:
        """After a rollout to b, slot b runs the fleet's spec with minSize/maxSize and the outputs name it; slot a
        keeps the old spec at its plan capacity."""
        new = _new(tmp_path)
        plan = SlotPlan(live="b", weights=(0, 100), other_spec=OLD.to_dict(), other_capacity=(0, 0, 0))
        rec = _run(run_program, new, plan)
        lts = dict(rec.of_type(LT))
        assert (lts["demo-lt"]["instanceType"], lts["demo-b-lt"]["instanceType"]) == ("t3.small", "t3.medium")
        out = rec.outputs
        assert out["asg_name"] == out["slots"]["b"]["asg_name"] and out["live_slot"] == "b"
        assert out["target_group_arn"] == out["slots"]["b"]["target_group_arn"]
        a = dict(rec.of_type(ASG))["demo-asg"]
        assert (a["minSize"], a["maxSize"]) == (0, 0)

    def test_a_long_fleet_name_still_fits_the_target_group_name_limit(self, run_program: Any) -> None:
        """A 24-character name (the longest the spec allows) gets a slot-b group name within AWS's 32."""
        spec = FleetSpec(name="x" * 24)
        rec = _run(
            run_program, spec, SlotPlan(weights=(50, 50), other_spec=spec.to_dict(), other_capacity=(1, 1, 1))
        )
        assert len(rec.of_type(TG)) == 2  # the strict mocks checked both autonames (rule alb-name)


class TestStrictMocksEnforceTheListenerRules:
    @pytest.mark.parametrize(
        ("weights", "rule"), [((1000, 0), "forward-weight"), ((999, -1), "forward-weight")]
    )
    def test_weight_outside_0_999_fails_the_program(
        self, run_program: Any, monkeypatch: pytest.MonkeyPatch, weights: tuple[int, int], rule: str
    ) -> None:
        """With our own check switched off, a weight AWS refuses reaches the mocks, which reject it."""
        monkeypatch.setattr(_rollout, "forward_config", lambda *a, **k: {})
        plan = SlotPlan(weights=weights, other_spec=OLD.to_dict())
        with pytest.raises(RuleViolation, match=rule):
            _run(run_program, OLD, plan)

    def test_sixth_target_group_and_mismatched_single_arn_are_violations(self) -> None:
        """Five groups pass, a sixth breaks the quota; targetGroupArn with another group in forward is refused."""
        five = {
            "type": "forward",
            "forward": {"targetGroups": [{"arn": f"tg{i}", "weight": 1} for i in range(5)]},
        }
        six = {
            "type": "forward",
            "forward": {"targetGroups": [{"arn": f"tg{i}", "weight": 1} for i in range(6)]},
        }
        listener = "aws:lb/listener:Listener"
        assert resource_violations(listener, "l", {"defaultActions": [five]}) == []
        assert "forward-target-groups" in " ".join(
            resource_violations(listener, "l", {"defaultActions": [six]})
        )
        mixed = {"type": "forward", "targetGroupArn": "tg9", "forward": {"targetGroups": [{"arn": "tg0"}]}}
        assert "forward-target-groups" in " ".join(
            resource_violations(listener, "l", {"defaultActions": [mixed]})
        )
        same = {"type": "forward", "targetGroupArn": "tg0", "forward": {"targetGroups": [{"arn": "tg0"}]}}
        assert resource_violations(listener, "l", {"defaultActions": [same]}) == []

    def test_weights_0_and_999_are_allowed(self) -> None:
        """The bounds themselves are valid weights."""
        ok = {
            "type": "forward",
            "forward": {"targetGroups": [{"arn": "a", "weight": 0}, {"arn": "b", "weight": 999}]},
        }
        assert resource_violations(LISTENER, "l", {"defaultActions": [ok]}) == []


class TestAlarmAndLabelRules:
    GOOD: ClassVar[dict[str, Any]] = {
        "namespace": "AWS/ApplicationELB",
        "metricName": "TargetResponseTime",
        "extendedStatistic": "p99",
        "period": 60,
        "evaluationPeriods": 1,
        "datapointsToAlarm": 1,
        "treatMissingData": "notBreaching",
        "dimensions": {"LoadBalancer": "app/x/1", "TargetGroup": "targetgroup/t/2"},
    }

    @pytest.mark.parametrize(
        ("change", "rule"),
        [
            ({"statistic": "Average"}, "metric-alarm"),  # both statistic and extendedStatistic
            ({"extendedStatistic": None}, "metric-alarm"),  # neither
            ({"period": 90}, "metric-alarm"),
            ({"period": 20}, None),  # high-resolution periods are valid
            ({"datapointsToAlarm": 2}, "metric-alarm"),  # M > N
            ({"treatMissingData": "zero"}, "metric-alarm"),
            ({"dimensions": {"TargetGroup": "targetgroup/t/2"}}, "alb-metric-dimensions"),
            ({}, None),
            (
                {
                    "metricQueries": [{"id": "e", "expression": "m", "returnData": True}],
                    "extendedStatistic": None,
                },
                None,
            ),
            ({"metricQueries": [{"id": "e", "expression": "m"}], "extendedStatistic": None}, "metric-alarm"),
        ],
    )
    def test_alarm_rules_both_ways(self, change: dict[str, Any], rule: str | None) -> None:
        """Each alarm rule rejects its breach and accepts the documented shape."""
        inputs = {k: v for k, v in {**self.GOOD, **change}.items() if v is not None}
        problems = resource_violations(ALARM, "a", inputs)
        if rule is None:
            assert problems == []
        else:
            assert problems and all(rule in p for p in problems), problems

    def test_policy_label_must_name_a_group_attached_to_its_asg(self) -> None:
        """ALBRequestCountPerTarget on group g1 may track g1's target group, not g2's."""
        attached = {
            "g1": ["arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/t1/aa"],
            "g2": ["arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/t2/bb"],
        }

        def policy(group: str, tg: str) -> dict[str, Any]:
            spec = {
                "predefinedMetricType": "ALBRequestCountPerTarget",
                "resourceLabel": f"app/x/1/targetgroup/{tg}",
            }
            return {
                "autoscalingGroupName": group,
                "targetTrackingConfiguration": {"predefinedMetricSpecification": spec},
            }

        assert resource_violations(POLICY, "p", policy("g1", "t1/aa"), group_target_groups=attached) == []
        bad = resource_violations(POLICY, "p", policy("g1", "t2/bb"), group_target_groups=attached)
        assert bad and "tracking-resource-label" in bad[0]
