"""CloudWatch readers: catalogue, period rules, batching and pages (Stubber), values (moto), errors, retries."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from mlops_lb.aws import FleetDimensions, arn_suffix, read_fleet_metrics, read_target_health
from mlops_lb.aws.cloudwatch import MAX_POINTS_PER_CALL, build_queries, choose_period
from mlops_lb.errors import MetricsError
from mlops_lb.frames import check_metric_frame

REGION = "us-east-1"
LB_ARN = f"arn:aws:elasticloadbalancing:{REGION}:123456789012:loadbalancer/app/demo-abc1234/50dc6c495c0c9188"
TG_ARN = f"arn:aws:elasticloadbalancing:{REGION}:123456789012:targetgroup/demo-def5678/73e2d6bc24d8a067"
ASG = "demo-asg-123"
DIMS = FleetDimensions.from_arns(load_balancer_arn=LB_ARN, target_group_arn=TG_ARN, asg_name=ASG)
QUERIES = build_queries(DIMS)
ID = {(q.metric.metric, q.stat): q.id for q in QUERIES}


def _contract() -> Any:
    """The shared MetricFrame contract (tests/contract.py), the same assertions the local fleet passes."""
    from contract import assert_metric_frame_contract

    return assert_metric_frame_contract


def _shared_contract(df: Any, expect: tuple[str, ...] = ()) -> None:
    check_metric_frame(df)
    if len(df):
        _contract()(df, expect=expect)


class _Recorder:
    """Stubber parameter matcher that equals anything and keeps what it was compared with."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def __eq__(self, other: object) -> bool:
        self.seen.append(other)
        return True

    __hash__ = None  # type: ignore[assignment]


@pytest.fixture
def cw() -> Iterator[tuple[Any, Any]]:
    """A real CloudWatch client under botocore's Stubber (validates every request against the service model)."""
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("cloudwatch", region_name=REGION)
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def _params(token: str | None = None, queries: Any = None) -> dict[str, Any]:
    from botocore.stub import ANY

    p = {
        "MetricDataQueries": queries if queries is not None else ANY,
        "StartTime": ANY,
        "EndTime": ANY,
        "ScanBy": "TimestampAscending",
    }
    if token:
        p["NextToken"] = token
    return p


def _minutes(now: datetime, *ago: int) -> list[datetime]:
    base = now.replace(second=0, microsecond=0)
    return [base - timedelta(minutes=m) for m in ago]


NOW = datetime.now(timezone.utc).replace(second=0, microsecond=0)


class TestDimensions:
    def test_arn_suffixes_are_the_cloudwatch_dimensions(self) -> None:
        """LoadBalancer is app/<name>/<id>; TargetGroup is targetgroup/<name>/<id>; the label joins them with /."""
        assert arn_suffix(LB_ARN) == "app/demo-abc1234/50dc6c495c0c9188"
        assert arn_suffix(TG_ARN) == "targetgroup/demo-def5678/73e2d6bc24d8a067"
        assert (
            DIMS.resource_label
            == "app/demo-abc1234/50dc6c495c0c9188/targetgroup/demo-def5678/73e2d6bc24d8a067"
        )

    @pytest.mark.parametrize(
        ("kw", "arg"),
        [
            ({"load_balancer_arn": "app/demo/123"}, "load_balancer_arn"),
            ({"load_balancer_arn": TG_ARN}, "load_balancer_arn"),
            ({"target_group_arn": LB_ARN}, "target_group_arn"),
            (
                {
                    "target_group_arn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/n/1"
                },
                "target_group_arn",
            ),
        ],
    )
    def test_wrong_arns_name_the_argument(self, kw: dict[str, str], arg: str) -> None:
        """A malformed or swapped ARN is a MetricsError naming the offending argument, before any call."""
        args = {"load_balancer_arn": LB_ARN, "target_group_arn": TG_ARN, "asg_name": ASG, **kw}
        with pytest.raises(MetricsError) as info:
            read_fleet_metrics(**args, cloudwatch_client=object())
        assert str(info.value).startswith(arg)

    def test_catalogue_queries_use_the_right_dimensions(self) -> None:
        """Host counts use TargetGroup+LoadBalancer, ALB metrics LoadBalancer, ASG/EC2 metrics the group name."""
        by = {(q.metric.metric, q.stat): q for q in QUERIES}
        assert dict(by[("HealthyHostCount", "Minimum")].dimensions) == {
            "TargetGroup": DIMS.target_group,
            "LoadBalancer": DIMS.load_balancer,
        }
        assert dict(by[("RequestCountPerTarget", "Sum")].dimensions)["TargetGroup"] == DIMS.target_group
        assert dict(by[("RequestCount", "Sum")].dimensions) == {"LoadBalancer": DIMS.load_balancer}
        assert dict(by[("GroupInServiceInstances", "Average")].dimensions) == {"AutoScalingGroupName": ASG}
        assert dict(by[("CPUUtilization", "Average")].dimensions) == {"AutoScalingGroupName": ASG}
        assert {s for (m, s) in by if m == "TargetResponseTime"} == {"Average", "p50", "p90", "p99"}
        assert 20 <= len(QUERIES) <= 25
        per_instance = build_queries(DIMS, ["i-0abc", "i-0def", "i-0abc"])
        # CPU and the agent's concurrency, one series per instance each (repeats dropped)
        assert [q.target for q in per_instance[len(QUERIES) :]] == ["i-0abc", "i-0def"] * 2


class TestPeriod:
    @pytest.mark.parametrize(
        ("age", "window", "n", "expected"),
        [
            (timedelta(hours=1), timedelta(hours=1), 22, 60),
            (timedelta(days=15), timedelta(days=15), 22, 300),  # 22 x 4320 = 95,040 points: one call
            (timedelta(days=15), timedelta(days=15), 1, 60),  # 21,600 points
            (timedelta(days=20), timedelta(hours=2), 22, 300),  # older than 15 days: multiples of 300
            (timedelta(days=70), timedelta(hours=2), 22, 3600),  # older than 63 days: multiples of 3600
        ],
    )
    def test_auto_period_is_the_smallest_valid_one_within_the_point_limit(
        self, age: timedelta, window: timedelta, n: int, expected: int
    ) -> None:
        """period_s=None picks the smallest period allowed by the data's age that keeps a call <= 100,800 points."""
        start = NOW - age
        period = choose_period(start, start + window, n_queries=n, now=NOW)
        assert period == expected
        assert n * (window.total_seconds() / period) <= MAX_POINTS_PER_CALL

    @pytest.mark.parametrize(
        ("age", "period", "needs"),
        [
            (timedelta(hours=1), 90, "60"),
            (timedelta(days=20), 60, "300"),
            (timedelta(days=70), 300, "3600"),
            (timedelta(hours=1), 0, "60"),
        ],
    )
    def test_invalid_explicit_period_says_what_would_do(
        self, age: timedelta, period: int, needs: str
    ) -> None:
        """An explicit period that AWS would reject is a MetricsError naming the multiple required."""
        with pytest.raises(MetricsError) as info:
            choose_period(NOW - age, NOW - age + timedelta(minutes=30), period_s=period, now=NOW)
        assert f"multiple of {needs} s" in str(info.value) and info.value.code == "InvalidParameter"

    def test_empty_window_is_refused(self) -> None:
        """end before start is a MetricsError, not an empty frame."""
        with pytest.raises(MetricsError, match="end must be after start"):
            choose_period(NOW, NOW - timedelta(minutes=5))


class TestGetMetricData:
    def test_percentiles_and_averages_land_in_one_tidy_frame(self, cw: tuple[Any, Any]) -> None:
        """p50/p90/p99 and Average of TargetResponseTime come back as rows with unit Seconds; one call, 22 metrics."""
        client, stub = cw
        ts = _minutes(NOW, 3, 2)
        results = [
            {
                "Id": ID[("TargetResponseTime", "p99")],
                "Timestamps": ts,
                "Values": [0.250, 0.300],
                "StatusCode": "Complete",
            },
            {
                "Id": ID[("TargetResponseTime", "p50")],
                "Timestamps": ts,
                "Values": [0.020, 0.021],
                "StatusCode": "Complete",
            },
            {
                "Id": ID[("TargetResponseTime", "p90")],
                "Timestamps": ts,
                "Values": [0.090, 0.095],
                "StatusCode": "Complete",
            },
            {
                "Id": ID[("TargetResponseTime", "Average")],
                "Timestamps": ts,
                "Values": [0.04, 0.05],
                "StatusCode": "Complete",
            },
            {
                "Id": ID[("RequestCount", "Sum")],
                "Timestamps": ts[:1],
                "Values": [1200.0],
                "StatusCode": "Complete",
            },
            {
                "Id": ID[("HealthyHostCount", "Average")],
                "Timestamps": ts[:1],
                "Values": [2.0],
                "StatusCode": "Complete",
            },
        ]
        recorder = _Recorder()
        stub.add_response("get_metric_data", {"MetricDataResults": results}, _params(queries=recorder))
        df = read_fleet_metrics(
            load_balancer_arn=LB_ARN,
            target_group_arn=TG_ARN,
            asg_name=ASG,
            start=NOW - timedelta(minutes=5),
            end=NOW,
            cloudwatch_client=client,
            now=NOW,
        )
        _shared_contract(df, expect=("RequestCount", "TargetResponseTime", "HealthyHostCount"))
        p99 = df[(df.metric == "TargetResponseTime") & (df.stat == "p99")]
        assert list(p99["value"]) == [0.25, 0.3] and set(p99["unit"]) == {"Seconds"}
        assert df.attrs["api_calls"] == 1 and df.attrs["metrics_requested"] == len(QUERIES)
        sent = recorder.seen[0]
        assert {q["MetricStat"]["Stat"] for q in sent} >= {"p99", "p90", "p50", "Average", "Sum", "Minimum"}
        assert all(q["MetricStat"]["Period"] == 60 for q in sent)

    def test_missing_count_points_are_zero_and_gauges_stay_missing(self, cw: tuple[Any, Any]) -> None:
        """Minutes with no requests read RequestCount Sum = 0; HealthyHostCount is not invented."""
        client, stub = cw
        ts = _minutes(NOW, 4)
        stub.add_response(
            "get_metric_data",
            {
                "MetricDataResults": [
                    {
                        "Id": ID[("RequestCount", "Sum")],
                        "Timestamps": ts,
                        "Values": [10.0],
                        "StatusCode": "Complete",
                    },
                    {
                        "Id": ID[("HealthyHostCount", "Average")],
                        "Timestamps": ts,
                        "Values": [1.0],
                        "StatusCode": "Complete",
                    },
                ]
            },
            _params(),
        )
        df = read_fleet_metrics(
            load_balancer_arn=LB_ARN,
            target_group_arn=TG_ARN,
            asg_name=ASG,
            start=NOW - timedelta(minutes=5),
            end=NOW,
            cloudwatch_client=client,
            now=NOW,
        )
        rc = df[df.metric == "RequestCount"].set_index("timestamp")["value"]
        assert len(rc) == 5 and rc.sum() == 10.0 and (rc == 0).sum() == 4
        assert len(df[(df.metric == "HealthyHostCount") & (df.stat == "Average")]) == 1
        assert df[df.metric == "TargetResponseTime"].empty  # a time, not a count: never 0-filled
        _shared_contract(df)

    def test_pages_are_followed_once_each_and_merged(self, cw: tuple[Any, Any]) -> None:
        """NextToken pages cost exactly one call each; a point repeated across pages (PartialData) is kept once."""
        client, stub = cw
        t = _minutes(NOW, 3, 2, 1)
        rid = ID[("RequestCount", "Sum")]
        stub.add_response(
            "get_metric_data",
            {
                "NextToken": "page-2",
                "MetricDataResults": [
                    {"Id": rid, "Timestamps": t[:2], "Values": [5.0, 6.0], "StatusCode": "PartialData"}
                ],
            },
            _params(),
        )
        stub.add_response(
            "get_metric_data",
            {
                "NextToken": "page-3",
                "MetricDataResults": [
                    {"Id": rid, "Timestamps": [t[1], t[2]], "Values": [6.0, 7.0], "StatusCode": "PartialData"}
                ],
            },
            _params("page-2"),
        )
        stub.add_response(
            "get_metric_data",
            {
                "MetricDataResults": [
                    {
                        "Id": ID[("TargetResponseTime", "p99")],
                        "Timestamps": t,
                        "Values": [0.1, 0.2, 0.3],
                        "StatusCode": "Complete",
                    }
                ]
            },
            _params("page-3"),
        )
        df = read_fleet_metrics(
            load_balancer_arn=LB_ARN,
            target_group_arn=TG_ARN,
            asg_name=ASG,
            start=NOW - timedelta(minutes=3),
            end=NOW,
            cloudwatch_client=client,
            now=NOW,
        )
        assert df.attrs["api_calls"] == 3
        rc = df[df.metric == "RequestCount"]
        assert list(rc["value"]) == [5.0, 6.0, 7.0] and rc["timestamp"].is_monotonic_increasing
        _shared_contract(df)

    def test_fifteen_day_fleet_read_is_one_call(self, cw: tuple[Any, Any]) -> None:
        """A read of every catalogue series over 15 days is one GetMetricData call: the auto period is the smallest
        whole minute that fits 100,800 points (300 s for 20-23 series; derived here, so a new metric keeps it)."""
        client, stub = cw
        recorder = _Recorder()
        stub.add_response("get_metric_data", {"MetricDataResults": []}, _params(queries=recorder))
        df = read_fleet_metrics(
            load_balancer_arn=LB_ARN,
            target_group_arn=TG_ARN,
            asg_name=ASG,
            start=NOW - timedelta(days=15),
            end=NOW,
            period_s=None,
            cloudwatch_client=client,
            now=NOW,
        )
        period, points = df.attrs["period_s"], len(QUERIES) * 15 * 86400
        assert df.attrs["api_calls"] == 1 and period % 60 == 0
        assert points / period <= MAX_POINTS_PER_CALL < points / (period - 60)
        assert len(recorder.seen[0]) == len(QUERIES) <= 500

    def test_more_than_500_series_are_batched(self, cw: tuple[Any, Any]) -> None:
        """Per-instance CPU and concurrency for 300 instances (600 series) go out in batches of at most 500."""
        client, stub = cw
        recorder = _Recorder()
        stub.add_response("get_metric_data", {"MetricDataResults": []}, _params(queries=recorder))
        stub.add_response("get_metric_data", {"MetricDataResults": []}, _params(queries=recorder))
        ids = [f"i-{n:017x}" for n in range(300)]
        df = read_fleet_metrics(
            load_balancer_arn=LB_ARN,
            target_group_arn=TG_ARN,
            asg_name=ASG,
            start=NOW - timedelta(minutes=10),
            end=NOW,
            instance_ids=ids,
            cloudwatch_client=client,
            now=NOW,
        )
        assert [len(b) for b in recorder.seen] == [500, len(QUERIES) + 600 - 500]
        assert df.attrs["api_calls"] == 2 and df.attrs["metrics_requested"] == len(QUERIES) + 600

    def test_access_denied_is_a_metrics_error_with_code_and_hint(self, cw: tuple[Any, Any]) -> None:
        """AccessDenied becomes MetricsError(code="AccessDenied") with an IAM hint; the ClientError is chained."""
        import botocore.exceptions

        client, stub = cw
        stub.add_client_error(
            "get_metric_data",
            service_error_code="AccessDenied",
            http_status_code=403,
            service_message="not authorized to perform: cloudwatch:GetMetricData",
        )
        with pytest.raises(MetricsError) as info:
            read_fleet_metrics(
                load_balancer_arn=LB_ARN,
                target_group_arn=TG_ARN,
                asg_name=ASG,
                start=NOW - timedelta(minutes=5),
                end=NOW,
                cloudwatch_client=client,
                now=NOW,
            )
        assert info.value.code == "AccessDenied" and "IAM" in (info.value.hint or "")
        assert isinstance(info.value.__cause__, botocore.exceptions.ClientError)


class TestAgainstMoto:
    def test_put_then_read_sum_and_average(self) -> None:
        """Values put into (moto) CloudWatch come back as Sum and Average rows of a valid MetricFrame."""
        import boto3
        from moto import mock_aws

        now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
        with mock_aws():
            cw = boto3.client("cloudwatch", region_name=REGION)
            lb = [{"Name": "LoadBalancer", "Value": DIMS.load_balancer}]
            tg_lb = [{"Name": "TargetGroup", "Value": DIMS.target_group}, *lb]
            asg = [{"Name": "AutoScalingGroupName", "Value": ASG}]
            data = []
            for m in (3, 2):
                ts = now - timedelta(minutes=m)
                data += [
                    {
                        "MetricName": "RequestCount",
                        "Dimensions": lb,
                        "Timestamp": ts,
                        "Value": 100.0 * m,
                        "Unit": "Count",
                    },
                    {
                        "MetricName": "RequestCount",
                        "Dimensions": lb,
                        "Timestamp": ts,
                        "Value": 1.0,
                        "Unit": "Count",
                    },
                    {
                        "MetricName": "HealthyHostCount",
                        "Dimensions": tg_lb,
                        "Timestamp": ts,
                        "Value": 2.0,
                        "Unit": "Count",
                    },
                ]
            cw.put_metric_data(Namespace="AWS/ApplicationELB", MetricData=data)
            cw.put_metric_data(
                Namespace="AWS/AutoScaling",
                MetricData=[
                    {
                        "MetricName": "GroupInServiceInstances",
                        "Dimensions": asg,
                        "Timestamp": now - timedelta(minutes=2),
                        "Value": 3.0,
                    }
                ],
            )
            df = read_fleet_metrics(
                load_balancer_arn=LB_ARN,
                target_group_arn=TG_ARN,
                asg_name=ASG,
                start=now - timedelta(minutes=5),
                end=now,
                region=REGION,
            )
        _shared_contract(df, expect=("RequestCount", "HealthyHostCount", "GroupInServiceInstances"))
        rc = df[df.metric == "RequestCount"].set_index("timestamp")["value"]
        assert rc[now - timedelta(minutes=3)] == 301.0 and rc[now - timedelta(minutes=2)] == 201.0
        assert rc.sum() == 502.0  # other minutes of the window are 0, not missing
        hh = df[(df.metric == "HealthyHostCount") & (df.stat == "Average")]
        assert list(hh["value"]) == [2.0, 2.0]
        assert df[df.metric == "GroupInServiceInstances"]["value"].tolist() == [3.0]
        assert df.attrs["api_calls"] == 1

    def test_throttling_is_retried_by_the_sdk_standard_mode(self) -> None:
        """Two Throttling responses then success: the read succeeds, one logical call, the SDK retried twice."""
        import boto3
        from botocore.awsrequest import AWSResponse
        from moto import mock_aws

        from mlops_lb.aws._boto import client

        sent: list[int] = []

        class _Raw:
            def __init__(self, body: bytes) -> None:
                self.body = body

            def stream(self, **_: Any) -> Iterator[bytes]:
                yield self.body

        def throttle(request: Any, **_: Any) -> Any:
            sent.append(1)
            if len(sent) <= 2:  # an HTTP-level answer, so botocore's retry handler sees a real 400 Throttling
                return AWSResponse(
                    request.url,
                    400,
                    {"x-amzn-query-error": "Throttling;Sender", "Content-Type": "application/x-amz-json-1.0"},
                    _Raw(b'{"__type": "Throttling", "message": "Rate exceeded"}'),
                )
            return None  # moto answers the third attempt

        with mock_aws():
            cw = client("cloudwatch", session=boto3.session.Session(), region=REGION)
            cw.meta.events.register_first("before-send.cloudwatch.GetMetricData", throttle)
            df = read_fleet_metrics(
                load_balancer_arn=LB_ARN,
                target_group_arn=TG_ARN,
                asg_name=ASG,
                start=datetime.now(timezone.utc) - timedelta(minutes=5),
                cloudwatch_client=cw,
            )
        assert len(sent) == 3 and df.attrs["api_calls"] == 1
        check_metric_frame(df)

    def test_target_health_snapshot(self) -> None:
        """read_target_health maps AWS states to the contract's health words and keeps the AWS state."""
        import boto3
        from moto import mock_aws

        with mock_aws():
            ec2 = boto3.client("ec2", region_name=REGION)
            elb = boto3.client("elbv2", region_name=REGION)
            vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
            tg = elb.create_target_group(Name="tg-demo", Protocol="HTTP", Port=8080, VpcId=vpc)[
                "TargetGroups"
            ][0]
            inst = ec2.run_instances(ImageId="ami-12c6146b", MinCount=2, MaxCount=2)["Instances"]
            elb.register_targets(
                TargetGroupArn=tg["TargetGroupArn"], Targets=[{"Id": i["InstanceId"]} for i in inst]
            )
            df = read_target_health(tg["TargetGroupArn"], region=REGION)
        assert sorted(df["target"]) == sorted(i["InstanceId"] for i in inst)
        assert set(df["health"]) <= {"initial", "healthy", "unhealthy", "draining", "unused"}
        assert list(df.columns) == ["target", "port", "health", "aws_state", "reason", "description"]


def test_the_agents_concurrency_reads_back_under_the_local_fleets_name(cw: tuple[Any, Any]) -> None:
    """MlopsLb/ConcurrencyPerTarget (AutoScalingGroupName for the group, InstanceId per instance, Average) lands in
    the MetricFrame as metric ConcurrencyPerTarget: the name the local fleet's HAProxy sampler gives it."""
    client, stub = cw
    seen: list[Any] = []

    class Capture:
        def __eq__(self, other: Any) -> bool:
            seen.append(other)
            return True

    queries = build_queries(DIMS, ["i-0abc"])
    group = next(q for q in queries if q.metric.name == "ConcurrencyPerTarget" and not q.target)
    inst = next(q for q in queries if q.metric.name == "ConcurrencyPerTarget" and q.target)
    t = NOW - timedelta(minutes=5)
    stub.add_response(
        "get_metric_data",
        {
            "MetricDataResults": [
                {"Id": group.id, "Timestamps": [t], "Values": [3.5], "StatusCode": "Complete"},
                {"Id": inst.id, "Timestamps": [t], "Values": [4.0], "StatusCode": "Complete"},
            ]
        },
        _params(queries=Capture()),
    )
    df = read_fleet_metrics(
        load_balancer_arn=LB_ARN,
        target_group_arn=TG_ARN,
        asg_name=ASG,
        start=NOW - timedelta(minutes=10),
        end=NOW,
        instance_ids=["i-0abc"],
        cloudwatch_client=client,
        now=NOW,
    )
    sent = {q["Id"]: q["MetricStat"] for q in seen[0]}
    assert sent[group.id]["Metric"] == {
        "Namespace": "MlopsLb",
        "MetricName": "ConcurrencyPerTarget",
        "Dimensions": [{"Name": "AutoScalingGroupName", "Value": ASG}],
    }
    assert sent[inst.id]["Metric"]["Dimensions"] == [{"Name": "InstanceId", "Value": "i-0abc"}]
    assert sent[group.id]["Stat"] == "Average"
    conc = df[df["metric"] == "ConcurrencyPerTarget"].set_index("target")
    assert conc.loc["", "value"] == 3.5 and conc.loc["i-0abc", "value"] == 4.0
    assert set(conc["stat"]) == {"Average"} and set(conc["unit"]) == {"Count"}
