"""The AWS limits mlops_lb relies on: one table, each rule with the documentation it comes from.

Spec validation (``mlops_lb.spec``), the preflight (``mlops_lb.aws.preflight``) and the Pulumi mocks of the tests
(``tests/aws/conftest.py``) all read this module, so a rule written once is enforced everywhere. It imports
nothing but the standard library: ``import mlops_lb`` stays cheap and ``spec.py`` can use it.

Example::

    from mlops_lb._aws_rules import RULES, partition_for_region, resource_violations
    RULES["s3-object-tags"].source          # the AWS doc URL
    partition_for_region("us-gov-west-1")   # 'aws-us-gov'
    resource_violations("aws:s3/bucketObjectv2:BucketObjectv2", "x", {"tags": {str(i): "" for i in range(11)}})
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ALB_MIN_AZS",
    "ALB_NAME_MAX",
    "AUTONAME_SUFFIX_LEN",
    "FORWARD_TARGET_GROUPS_MAX",
    "FORWARD_WEIGHT",
    "MAX_NAME_PREFIX",
    "RESOURCE_TAGS_MAX",
    "RULES",
    "S3_OBJECT_TAGS_MAX",
    "SPOT_DEREGISTRATION_DELAY_MAX",
    "SPOT_MAX_OVERRIDES",
    "SPOT_NOTICE_S",
    "SPOT_WEIGHT",
    "Rule",
    "alb_name_problem",
    "app_cookie_problem",
    "cite",
    "ecr_image",
    "forward_problems",
    "instance_architecture",
    "partition_for_region",
    "policy_arn",
    "resource_violations",
    "security_group_name_problem",
    "stickiness_problems",
    "tag_problems",
]


@dataclass(frozen=True)
class Rule:
    """One documented AWS limit: a short id, what it says, and the page that says it."""

    id: str
    text: str
    source: str


_RULES = (
    Rule(
        "s3-object-tags",
        "An S3 object carries at most 10 tags (keys unique, key <= 128, value <= 256 characters).",
        "https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-tagging.html",
    ),
    Rule(
        "resource-tags",
        "Other resources: at most 50 user tags; key 1-128 and value 0-256 characters of letters, digits, spaces "
        "and _ . : / = + - @; the aws: prefix is reserved.",
        "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Using_Tags.html#tag-restrictions",
    ),
    Rule(
        "sg-name",
        "A security-group name is up to 255 characters of a-z A-Z 0-9 spaces ._-:/()#,@[]+=&;{}!$* and cannot "
        "start with sg-.",
        "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSecurityGroup.html",
    ),
    Rule(
        "alb-name",
        "ALB and target-group names: at most 32 alphanumerics or hyphens, not starting or ending with a hyphen; "
        "an ALB name must not start with internal-. Pulumi autonames add '-' + 7 characters, so our prefix "
        "is at most 24.",
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateLoadBalancer.html",
    ),
    Rule(
        "alb-subnets",
        "An Application Load Balancer takes only one subnet per Availability Zone and subnets from at least two "
        "Availability Zones.",
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateLoadBalancer.html",
    ),
    Rule(
        "instance-type-offerings",
        "Not every instance type is offered in every Availability Zone (DescribeInstanceTypeOfferings, "
        "location type availability-zone); an Auto Scaling group must only use subnets in zones that offer it.",
        "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeInstanceTypeOfferings.html",
    ),
    Rule(
        "partition",
        "ARNs carry the partition of the region: aws (commercial), aws-cn (China, cn-*), aws-us-gov (GovCloud, "
        "us-gov-*); AWS managed policy ARNs are arn:<partition>:iam::aws:policy/<name>.",
        "https://docs.aws.amazon.com/whitepapers/latest/aws-fault-isolation-boundaries/partitions.html",
    ),
    Rule(
        "tg-health-check",
        "ALB target-group health checks: protocol HTTP or HTTPS (requests are GET), interval 5-300 s, timeout "
        "2-120 s and below the interval, healthy/unhealthy thresholds 2-10, matcher codes 200-499.",
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateTargetGroup.html",
    ),
    Rule(
        "instance-refresh",
        "Refresh preferences: MinHealthyPercentage 0-100, MaxHealthyPercentage 100-200, both given and at most "
        "100 apart. Only Min 100 with Max above 100 launches before terminating (keeps capacity); the default "
        "is 90/100.",
        "https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_InstanceMaintenancePolicy.html",
    ),
    Rule(
        "al2023-ami",
        "The public SSM parameter of the AL2023 AMI names the architecture: "
        "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64 or ...-arm64.",
        "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-systems-manager-parameter-to-find-AMI.html",
    ),
    Rule(
        "warm-pool-hook",
        "Instances entering a warm pool are stopped without waiting for user data; a lifecycle hook on "
        "autoscaling:EC2_INSTANCE_LAUNCHING holds them until CompleteLifecycleAction.",
        "https://docs.aws.amazon.com/autoscaling/ec2/userguide/warm-pool-instance-lifecycle.html",
    ),
    Rule(
        "user-data-size",
        "User data is limited to 16 KB in raw form, before base64 encoding (a launch template takes it base64).",
        "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-add-user-data.html",
    ),
    Rule(
        "vcpu-quota",
        "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances are limited in vCPUs by the service "
        "quota L-1216C47A (service code ec2).",
        "https://docs.aws.amazon.com/ec2/latest/instancetypes/ec2-instance-quotas.html",
    ),
    Rule(
        "gpu-vcpu-quota",
        "Running On-Demand G and VT instances are limited in vCPUs by quota L-DB2E81BA, P instances by "
        "L-417A185B (service code ec2); new accounts often start at 0 for both.",
        "https://docs.aws.amazon.com/ec2/latest/instancetypes/ec2-instance-quotas.html",
    ),
    Rule(
        "deregistration-delay",
        "A target group's deregistration delay is 0-3600 s (default 300): the ALB stops sending new requests to "
        "a deregistering target and waits up to the delay for in-flight requests; Auto Scaling terminates the "
        "instance only after that.",
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-target-groups.html#deregistration-delay",
    ),
    Rule(
        "iam-no-resource-level",
        "cloudwatch:PutMetricData, ecr:GetAuthorizationToken and autoscaling:Describe* support no resource-level "
        'permissions: a statement granting them must name Resource "*" (PutMetricData may be narrowed with the '
        "cloudwatch:namespace condition key).",
        "https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/iam-cw-condition-keys-namespace.html",
    ),
    Rule(
        "ecr-pull",
        "Docker cannot use IAM directly: the instance gets a 12-hour token with ecr:GetAuthorizationToken "
        "(aws ecr get-login-password | docker login) and pulls with ecr:BatchGetImage and "
        "ecr:GetDownloadUrlForLayer on the repository.",
        "https://docs.aws.amazon.com/AmazonECR/latest/userguide/registry_auth.html",
    ),
    Rule(
        "custom-metric-tracking",
        "Target tracking on a customized metric names namespace, metric name, dimensions and a statistic "
        "(Average, Minimum, Maximum, SampleCount or Sum), and not a predefined metric as well; the metric must "
        "change in proportion to the group's size (an average per instance).",
        "https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_CustomizedMetricSpecification.html",
    ),
    Rule(
        "lifecycle-heartbeat",
        "A lifecycle hook's HeartbeatTimeout is 30-7200 s (default 3600); RecordLifecycleActionHeartbeat extends "
        "a waiting action by that much (read 2026-12-06).",
        "https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_PutLifecycleHook.html",
    ),
    Rule(
        "vcpu-quota-families",
        "Each family has its own On-Demand vCPU quota, by name: Standard (A, C, D, H, I, M, R, T, Z), F, G and VT, "
        "Inf (L-1945791B), P, Trn, DL, HPC, X, High Memory; mac instances run on Dedicated Hosts, counted in hosts "
        "(read 2026-12-07).",
        "https://docs.aws.amazon.com/ec2/latest/instancetypes/ec2-instance-quotas.html",
    ),
    Rule(
        "gpu-ami-families",
        "The Deep Learning Base OSS Nvidia Driver GPU AMI (Amazon Linux 2023) supports G4dn, G5, G6, Gr6, G6e, G7e, "
        "P4d, P4de, P5, P5e, P5en, P6-B200, P6-B300 (x86_64 release 20260519) and G5g, P6e-GB200, P6e-GB300 (arm64, "
        "20260917); not G4ad (AMD GPUs) nor P3 (read 2026-12-07).",
        "https://docs.amazonaws.cn/dlami/latest/devguide/aws-deep-learning-ami-gpubaseoss-al2023-2026-05-20.md",
    ),
    Rule(
        "hibernation-root",
        "Hibernation is enabled only at launch (HibernationOptions.Configured) and needs an encrypted EBS root "
        "volume large enough for the RAM; instances over 150 GB of RAM cannot hibernate (read 2026-12-06).",
        "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/hibernating-prerequisites.html",
    ),
    Rule(
        "forward-target-groups",
        "A forward action takes at most 5 target groups (quota 'Target Groups per Action per Application Load "
        "Balancer', 5, not adjustable); with TargetGroupArn as well, ForwardConfig may name only that one group.",
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-limits.html",
    ),
    Rule(
        "forward-weight",
        "Each target group of a weighted forward action has an integer weight from 0 to 999 (TargetGroupTuple).",
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_TargetGroupTuple.html",
    ),
    Rule(
        "tracking-resource-label",
        "ALBRequestCountPerTarget's resource label is app/<alb>/<id>/targetgroup/<tg>/<id>, and it may only name a "
        "target group attached to the policy's Auto Scaling group: one policy per group and target group.",
        "https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_PredefinedMetricSpecification.html",
    ),
    Rule(
        "metric-alarm",
        "PutMetricAlarm on a metric takes Statistic or ExtendedStatistic (p99), not both; Period 10, 20, 30 or a "
        "multiple of 60; DatapointsToAlarm (M) at most EvaluationPeriods (N); TreatMissingData breaching, "
        "notBreaching, ignore or missing.",
        "https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html",
    ),
    Rule(
        "alb-metric-dimensions",
        "AWS/ApplicationELB target metrics (TargetResponseTime, HTTPCode_Target_5XX_Count) are published per "
        "LoadBalancer, per AvailabilityZone+LoadBalancer, per TargetGroup+LoadBalancer and per "
        "TargetGroup+AvailabilityZone+LoadBalancer: a TargetGroup dimension needs its LoadBalancer. They are "
        "reported only while requests flow (missing, not 0, otherwise).",
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-cloudwatch-metrics.html",
    ),
    Rule(
        "app-cookie-stickiness",
        "Application-based stickiness (stickiness.type app_cookie) names the application's cookie in "
        "stickiness.app_cookie.cookie_name; names starting with AWSALB, AWSALBAPP or AWSALBTG are reserved for the "
        "load balancer. stickiness.app_cookie.duration_seconds is 1-604800 s (1 week; default 86400) (read "
        "2026-12-07).",
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_TargetGroupAttribute.html",
    ),
    Rule(
        "target-not-in-use",
        "A target of a target group that no load balancer uses reports state unused with reason Target.NotInUse "
        "(also: a target in an Availability Zone the load balancer does not enable) (read 2026-12-07).",
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_TargetHealth.html",
    ),
    Rule(
        "describe-no-resource-level",
        "autoscaling:DescribeAutoScalingGroups and ec2:DescribeInstances have no resource types in the Service "
        'Authorization Reference: a statement granting them must name Resource "*" (read 2026-12-07).',
        "https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2autoscaling.html",
    ),
    Rule(
        "put-metric-namespace",
        "PutMetricData namespaces may not start with AWS/ (reserved for AWS services).",
        "https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricData.html",
    ),
    # Spot capacity (issue 30; read 2026-12-07).
    Rule(
        "spot-warm-pool",
        "A warm pool cannot be added to an Auto Scaling group that has a mixed instances policy or a launch "
        "template that requests Spot Instances (PutWarmPool).",
        "https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_PutWarmPool.html",
    ),
    Rule(
        "spot-notice",
        "A Spot Instance interruption notice comes two minutes before EC2 stops or terminates the instance, as "
        "an EventBridge event and the IMDS item spot/instance-action; AWS recommends checking every 5 seconds.",
        "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html",
    ),
    Rule(
        "spot-deregistration-delay",
        "A target group's deregistration delay is 0-3600 s, default 300 s: a deregistering target drains "
        "in-flight requests that long. With spot it must end inside the two-minute notice; we require <= 90 s "
        "(30 s for the agent to see the notice and for the last responses).",
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-target-group-attributes.html"
        "#deregistration-delay",
    ),
    Rule(
        "spot-distribution",
        "InstancesDistribution: OnDemandBaseCapacity >= 0 (in the group's units when types are weighted), "
        "OnDemandPercentageAboveBaseCapacity 0-100 (default 100), SpotAllocationStrategy one of "
        "price-capacity-optimized, capacity-optimized, capacity-optimized-prioritized, lowest-price.",
        "https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_InstancesDistribution.html",
    ),
    Rule(
        "spot-overrides",
        "A mixed instances policy lists at most 40 instance types (launch template overrides); WeightedCapacity "
        "is 1-999 and, given for one type, must be given for all; with weights, min/desired/max are in units.",
        "https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_LaunchTemplateOverrides.html",
    ),
    Rule(
        "spot-architecture",
        "One launch template's AMI runs only on instance types of its architecture: Graviton (arm64) types such "
        "as c6g cannot use the x86_64 AMI of c5/c5a (a second launch template would be needed).",
        "https://docs.aws.amazon.com/autoscaling/ec2/userguide/"
        "ec2-auto-scaling-mixed-instances-groups-launch-template-overrides.html",
    ),
    Rule(
        "asg-template-source",
        "CreateAutoScalingGroup takes exactly one of LaunchTemplate, MixedInstancesPolicy, "
        "LaunchConfigurationName or InstanceId.",
        "https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_CreateAutoScalingGroup.html",
    ),
    Rule(
        "deregister-scope",
        "elasticloadbalancing:DeregisterTargets supports the targetgroup resource type: the instance role names "
        "its own target group's ARN, never '*' (least privilege; an instance must not drain another fleet).",
        "https://docs.aws.amazon.com/service-authorization/latest/reference/list_awselasticloadbalancingv2.html",
    ),
    Rule(
        "spot-offerings",
        "Each override's instance type must be supported in the group's Region and Availability Zones "
        "(DescribeInstanceTypeOfferings with LocationType availability-zone lists them).",
        "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeInstanceTypeOfferings.html",
    ),
)
RULES: dict[str, Rule] = {r.id: r for r in _RULES}

S3_OBJECT_TAGS_MAX = 10
RESOURCE_TAGS_MAX = 50
TAG_KEY_MAX = 128
TAG_VALUE_MAX = 256
ALB_NAME_MAX = 32
AUTONAME_SUFFIX_LEN = 8  # Pulumi's "-" + 7 random characters
MAX_NAME_PREFIX = ALB_NAME_MAX - AUTONAME_SUFFIX_LEN
ALB_MIN_AZS = 2
SG_NAME_MAX = 255
USER_DATA_MAX = 16 * 1024
HEALTH_INTERVAL = (5, 300)
HEALTH_TIMEOUT = (2, 120)
HEALTH_THRESHOLD = (2, 10)
MATCHER_CODES = (200, 499)
REFRESH_MIN_HEALTHY = (0, 100)
REFRESH_MAX_HEALTHY = (100, 200)
FORWARD_TARGET_GROUPS_MAX = 5
FORWARD_WEIGHT = (0, 999)
ALARM_TREAT_MISSING = ("breaching", "notBreaching", "ignore", "missing")
# The dimension sets AWS/ApplicationELB publishes target metrics under (rule alb-metric-dimensions).
ALB_TARGET_METRIC_DIMENSIONS = (
    frozenset({"LoadBalancer"}),
    frozenset({"AvailabilityZone", "LoadBalancer"}),
    frozenset({"TargetGroup", "LoadBalancer"}),
    frozenset({"TargetGroup", "AvailabilityZone", "LoadBalancer"}),
)
SPOT_MAX_OVERRIDES = 40
SPOT_WEIGHT = (1, 999)
SPOT_DEREGISTRATION_DELAY_MAX = 90  # s: the two-minute notice minus the agent's poll and the last responses
SPOT_NOTICE_S = 120

_TAG_CHARS = re.compile(r"^[\w .:/=+\-@]*$")
_SG_CHARS = re.compile(r"^[a-zA-Z0-9 ._\-:/()#,@\[\]+=&;{}!$*]+$")
_ALB_CHARS = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$")


_ECR_RE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repository>[a-z0-9][a-z0-9._/-]*?)(?::[\w.-]+)?(?:@sha256:[0-9a-f]{64})?$"
)
# Actions without resource-level permissions (rule iam-no-resource-level).
_STAR_ONLY = ("cloudwatch:PutMetricData", "ecr:GetAuthorizationToken", "autoscaling:Describe", "ec2:Describe")
CUSTOM_METRIC_STATISTICS = ("Average", "Minimum", "Maximum", "SampleCount", "Sum")


def ecr_image(image: str) -> dict[str, str] | None:
    """``{"registry", "account", "region", "repository"}`` of a private ECR image reference, else None.

    Example::

        ecr_image("123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1")["repository"]   # 'app'
        ecr_image("vllm/vllm-openai:v0.6.3")                                             # None
    """
    m = _ECR_RE.match(image)
    if not m:
        return None
    return {"registry": image.split("/", 1)[0], **m.groupdict()}


def cite(rule: str, msg: str) -> str:
    """``msg`` followed by the rule id and its source URL, as every error built on this table ends.

    Example::

        cite("spot-warm-pool", "capacity.warm_pool must be null with capacity.spot")
    """
    return _cite(rule, msg)


def instance_architecture(instance_type: str) -> str:
    """``arm64`` for a Graviton type (c6g, m7gd, t4g, g5g, a1, ...), else ``x86_64``.

    The spec check's offline guess; the preflight asks DescribeInstanceTypes for the real answer.

    Example::

        instance_architecture("c7g.large"), instance_architecture("g5.xlarge")   # ('arm64', 'x86_64')
    """
    head, _, _ = instance_type.partition(".")
    fam = re.match(r"^([a-z]+)(\d+)([a-z]*)", head)
    if head == "a1" or (fam is not None and "g" in fam.group(3)):
        return "arm64"
    return "x86_64"


def _cite(rule: str, msg: str) -> str:
    return f"{msg} [{rule}: {RULES[rule].source}]"


def partition_for_region(region: str) -> str:
    """The ARN partition of a region: ``aws-us-gov`` for us-gov-*, ``aws-cn`` for cn-*, else ``aws``."""
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith("cn-"):
        return "aws-cn"
    return "aws"


def policy_arn(name: str, region: str) -> str:
    """The ARN of an AWS managed IAM policy in the region's partition."""
    return f"arn:{partition_for_region(region)}:iam::aws:policy/{name}"


def tag_problems(tags: Mapping[Any, Any], *, limit: int = RESOURCE_TAGS_MAX) -> list[str]:
    """Why ``tags`` break AWS's tag rules (empty when they do not)."""
    rule = "s3-object-tags" if limit == S3_OBJECT_TAGS_MAX else "resource-tags"
    out: list[str] = []
    if len(tags) > limit:
        out.append(_cite(rule, f"{len(tags)} tags, at most {limit} allowed"))
    for k, v in tags.items():
        if not isinstance(k, str) or not 1 <= len(k) <= TAG_KEY_MAX or not _TAG_CHARS.fullmatch(k):
            out.append(
                _cite("resource-tags", f"tag key {k!r} must be 1-{TAG_KEY_MAX} of letters, digits, _.:/=+-@")
            )
        elif k.lower().startswith("aws:"):
            out.append(_cite("resource-tags", f"tag key {k!r} uses the reserved aws: prefix"))
        if not isinstance(v, str) or len(v) > TAG_VALUE_MAX:
            out.append(_cite("resource-tags", f"tag {k!r} value must be a string of at most {TAG_VALUE_MAX}"))
    return out


def security_group_name_problem(name: str) -> str | None:
    """Why EC2 would refuse ``name`` as a security-group name (None when it would not)."""
    if name.lower().startswith("sg-"):
        return _cite("sg-name", f"security-group name {name!r} starts with sg-")
    if not 1 <= len(name) <= SG_NAME_MAX or not _SG_CHARS.fullmatch(name):
        return _cite("sg-name", f"security-group name {name!r} has a length or character EC2 refuses")
    return None


def alb_name_problem(name: str, *, kind: str = "load balancer") -> str | None:
    """Why ELB would refuse ``name`` for a load balancer or target group (None when it would not)."""
    if len(name) > ALB_NAME_MAX or not _ALB_CHARS.fullmatch(name):
        return _cite(
            "alb-name", f"{kind} name {name!r} must be 1-{ALB_NAME_MAX} alphanumerics or inner hyphens"
        )
    if kind == "load balancer" and name.lower().startswith("internal-"):
        return _cite("alb-name", f"load balancer name {name!r} starts with internal-")
    return None


def _autoname(resource_name: str, inputs: Mapping[str, Any]) -> str:
    """The physical name Pulumi would give: the explicit ``name``, ``namePrefix`` + 7, or ``<name>-xxxxxxx``."""
    if inputs.get("name"):
        return str(inputs["name"])
    if inputs.get("namePrefix"):
        return f"{inputs['namePrefix']}abcdef1"
    return f"{resource_name}-abcdef1"


def _in(lo_hi: tuple[int, int], value: Any) -> bool:
    # Pulumi hands mocks numbers as floats (protobuf Struct): 30.0 is the integer 30.
    whole = isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer()
    return whole and lo_hi[0] <= value <= lo_hi[1]


def _health_check_problems(hc: Mapping[str, Any]) -> list[str]:
    out = []
    if hc.get("protocol", "HTTP") not in ("HTTP", "HTTPS"):
        out.append(
            _cite("tg-health-check", f"health-check protocol {hc.get('protocol')!r} is not HTTP/HTTPS")
        )
    interval, timeout = hc.get("interval", 30), hc.get("timeout", 5)
    if not _in(HEALTH_INTERVAL, interval):
        out.append(_cite("tg-health-check", f"health-check interval {interval!r} outside 5-300"))
    if not _in(HEALTH_TIMEOUT, timeout) or (isinstance(interval, (int, float)) and timeout >= interval):
        out.append(_cite("tg-health-check", f"health-check timeout {timeout!r} outside 2-120 or >= interval"))
    for key in ("healthyThreshold", "unhealthyThreshold"):
        if key in hc and not _in(HEALTH_THRESHOLD, hc[key]):
            out.append(_cite("tg-health-check", f"health-check {key} {hc[key]!r} outside 2-10"))
    matcher = str(hc.get("matcher", "200"))
    codes = [int(c) for c in re.findall(r"\d+", matcher)] if re.fullmatch(r"[\d,-]+", matcher) else []
    if not codes or any(not MATCHER_CODES[0] <= c <= MATCHER_CODES[1] for c in codes):
        out.append(_cite("tg-health-check", f"health-check matcher {matcher!r} must be codes 200-499"))
    return out


def _refresh_problems(prefs: Mapping[str, Any]) -> list[str]:
    lo, hi = prefs.get("minHealthyPercentage", 90), prefs.get("maxHealthyPercentage", 100)
    out = []
    if not _in(REFRESH_MIN_HEALTHY, lo) or not _in(REFRESH_MAX_HEALTHY, hi) or hi - lo > 100:
        out.append(_cite("instance-refresh", f"refresh min/max healthy {lo}/{hi} outside AWS's ranges"))
    if lo < 100 or hi <= 100:
        out.append(
            _cite("instance-refresh", f"refresh min/max healthy {lo}/{hi} can drop below desired capacity")
        )
    return out


def resource_violations(
    typ: str,
    name: str,
    inputs: Mapping[str, Any],
    *,
    region: str = "us-east-1",
    subnet_azs: Mapping[str, str] | None = None,
    offered_azs: Mapping[str, set[str]] | None = None,
    instance_type: str | None = None,
    group_target_groups: Mapping[str, Any] | None = None,
) -> list[str]:
    """Every rule of the table that the Pulumi resource ``typ``/``name`` with ``inputs`` breaks.

    ``inputs`` use Pulumi's camelCase names (what a mock's ``new_resource`` receives). ``subnet_azs`` (subnet id
    -> AZ) lets the ALB and group checks see zones; ``offered_azs`` (instance type -> AZs offering it) lets the
    group check see offerings of ``instance_type`` (the launch template's). Unknown subnets are a violation when ``subnet_azs`` is given: the program must
    only use what the preflight resolved. ``group_target_groups`` (Auto Scaling group name -> the target group ARNs
    attached to it) lets a target-tracking policy's resource label be checked against its own group.
    """
    out: list[str] = []
    tags = inputs.get("tags")
    if isinstance(tags, Mapping):
        limit = S3_OBJECT_TAGS_MAX if typ.startswith("aws:s3/bucketObject") else RESOURCE_TAGS_MAX
        out += tag_problems(tags, limit=limit)
    if typ == "aws:ec2/securityGroup:SecurityGroup":
        problem = security_group_name_problem(_autoname(name, inputs))
        out += [problem] if problem else []
    if typ in ("aws:lb/loadBalancer:LoadBalancer", "aws:lb/targetGroup:TargetGroup"):
        kind = "load balancer" if typ.endswith("LoadBalancer") else "target group"
        problem = alb_name_problem(_autoname(name, inputs), kind=kind)
        out += [problem] if problem else []
    if typ == "aws:lb/loadBalancer:LoadBalancer" and subnet_azs is not None:
        subnets = list(inputs.get("subnets") or [])
        unknown = [s for s in subnets if s not in subnet_azs]
        azs = [subnet_azs[s] for s in subnets if s in subnet_azs]
        if unknown:
            out.append(_cite("alb-subnets", f"ALB subnets {unknown} are not in the account"))
        if len(set(azs)) != len(azs):
            out.append(
                _cite("alb-subnets", f"ALB subnets {subnets} put two subnets in one AZ ({sorted(azs)})")
            )
        if len(set(azs)) < ALB_MIN_AZS:
            out.append(_cite("alb-subnets", f"ALB subnets {subnets} span {len(set(azs))} AZ(s), need 2"))
    if typ == "aws:lb/targetGroup:TargetGroup" and isinstance(inputs.get("healthCheck"), Mapping):
        out += _health_check_problems(inputs["healthCheck"])
    if typ == "aws:lb/targetGroup:TargetGroup" and isinstance(inputs.get("stickiness"), Mapping):
        out += stickiness_problems(inputs["stickiness"])
    if typ == "aws:iam/rolePolicyAttachment:RolePolicyAttachment":
        arn = str(inputs.get("policyArn", ""))
        want = f"arn:{partition_for_region(region)}:"
        if not arn.startswith(want):
            out.append(_cite("partition", f"policy ARN {arn!r} is not in {region}'s partition ({want}...)"))
    if typ == "aws:ec2/launchTemplate:LaunchTemplate" and inputs.get("userData"):
        import base64
        import binascii

        try:
            raw = base64.b64decode(str(inputs["userData"]), validate=True)
        except (binascii.Error, ValueError):
            out.append(_cite("user-data-size", "launch-template user data is not base64"))
        else:
            if len(raw) > USER_DATA_MAX:
                out.append(_cite("user-data-size", f"user data is {len(raw)} bytes, at most {USER_DATA_MAX}"))
    if typ in ("aws:autoscaling/lifecycleHook:LifecycleHook", "aws:autoscaling/group:Group"):
        hooks = [inputs] if typ.endswith("LifecycleHook") else list(inputs.get("initialLifecycleHooks") or [])
        for h in hooks:
            if "heartbeatTimeout" in h and not _in((30, 7200), h["heartbeatTimeout"]):
                out.append(
                    _cite(
                        "lifecycle-heartbeat", f"heartbeat timeout {h['heartbeatTimeout']!r} outside 30-7200"
                    )
                )
    if typ == "aws:ec2/launchTemplate:LaunchTemplate" and (inputs.get("hibernationOptions") or {}).get(
        "configured"
    ):
        roots = [b.get("ebs") or {} for b in inputs.get("blockDeviceMappings") or []]
        if not roots or str(roots[0].get("encrypted")).lower() != "true":
            out.append(_cite("hibernation-root", "hibernation needs an encrypted root volume"))
    delay = inputs.get("deregistrationDelay", 300)
    if typ == "aws:lb/targetGroup:TargetGroup" and not _in((0, 3600), delay):
        out.append(
            _cite(
                "deregistration-delay",
                f"deregistration delay {inputs['deregistrationDelay']!r} outside 0-3600",
            )
        )
    if typ == "aws:iam/rolePolicy:RolePolicy" and isinstance(inputs.get("policy"), str):
        out += _policy_problems(inputs["policy"], region)
    if typ == "aws:autoscaling/policy:Policy" and isinstance(
        inputs.get("targetTrackingConfiguration"), Mapping
    ):
        out += _tracking_problems(inputs["targetTrackingConfiguration"])
    if typ in ("aws:lb/listener:Listener", "aws:lb/listenerRule:ListenerRule"):
        for action in inputs.get("defaultActions") or inputs.get("actions") or []:
            out += forward_problems(action)
    if typ == "aws:cloudwatch/metricAlarm:MetricAlarm":
        out += _alarm_problems(inputs)
    if typ == "aws:autoscaling/policy:Policy" and group_target_groups is not None:
        out += _label_problems(inputs, group_target_groups)
    if typ == "aws:autoscaling/group:Group" and inputs.get("mixedInstancesPolicy"):
        out += _mixed_policy_problems(inputs, subnet_azs=subnet_azs, offered_azs=offered_azs)
    if typ == "aws:autoscaling/group:Group":
        refresh = inputs.get("instanceRefresh")
        if isinstance(refresh, Mapping):
            out += _refresh_problems(refresh.get("preferences") or {})
        maintenance = inputs.get("instanceMaintenancePolicy")
        if isinstance(maintenance, Mapping):  # the same ranges as a refresh's (API_InstanceMaintenancePolicy)
            out += _refresh_problems(maintenance)
        if subnet_azs is not None and offered_azs is not None:
            itype = instance_type or ""
            offered = offered_azs.get(itype)
            for s in inputs.get("vpcZoneIdentifiers") or []:
                az = subnet_azs.get(s)
                if az is None:
                    out.append(_cite("instance-type-offerings", f"group subnet {s} is not in the account"))
                elif offered is not None and az not in offered:
                    out.append(
                        _cite("instance-type-offerings", f"group subnet {s} is in {az}, no {itype} there")
                    )
    return out


APP_COOKIE_RESERVED_PREFIXES = ("AWSALB", "AWSALBAPP", "AWSALBTG")
APP_COOKIE_DURATION = (1, 604800)


def app_cookie_problem(name: str, duration_s: Any) -> str | None:
    """Why ELB would refuse application-cookie stickiness on ``name`` for ``duration_s`` (None when it would not).

    Example::

        app_cookie_problem("AWSALBAPP-1", 3600)   # '... reserved for the load balancer ...'
        app_cookie_problem("mlops-session", 3600) # None
    """
    if not name:
        return _cite("app-cookie-stickiness", "app_cookie stickiness needs a cookie name")
    reserved = [p for p in APP_COOKIE_RESERVED_PREFIXES if name.startswith(p)]
    if reserved:
        return _cite(
            "app-cookie-stickiness",
            f"cookie name {name!r} starts with {reserved[-1]!r}, reserved for the load balancer",
        )
    if not _in(APP_COOKIE_DURATION, duration_s):
        return _cite("app-cookie-stickiness", f"app_cookie duration {duration_s!r} outside 1-604800 s")
    return None


def stickiness_problems(st: Mapping[str, Any]) -> list[str]:
    """Why a target group's ``stickiness`` block (Pulumi camelCase inputs) breaks the rules (empty when not)."""
    if st.get("enabled") is False:
        return []
    typ = st.get("type")
    if typ not in ("lb_cookie", "app_cookie"):
        return [_cite("app-cookie-stickiness", f"ALB stickiness type {typ!r} is not lb_cookie or app_cookie")]
    if typ == "app_cookie":
        problem = app_cookie_problem(str(st.get("cookieName") or ""), st.get("cookieDuration", 86400))
        return [problem] if problem else []
    return []


def _mixed_policy_problems(
    inputs: Mapping[str, Any],
    *,
    subnet_azs: Mapping[str, str] | None,
    offered_azs: Mapping[str, set[str]] | None,
) -> list[str]:
    """A group's mixed instances policy against rules spot-overrides, spot-distribution, spot-warm-pool,
    asg-template-source and spot-offerings."""
    out: list[str] = []
    mip = inputs["mixedInstancesPolicy"]
    if inputs.get("launchTemplate"):
        out.append(_cite("asg-template-source", "group has both launchTemplate and mixedInstancesPolicy"))
    if inputs.get("warmPool"):
        out.append(_cite("spot-warm-pool", "group has a warm pool and a mixed instances policy"))
    lt = mip.get("launchTemplate") or {}
    overrides = list(lt.get("overrides") or [])
    if not lt.get("launchTemplateSpecification"):
        out.append(_cite("spot-overrides", "mixed instances policy has no launch template specification"))
    if len(overrides) > SPOT_MAX_OVERRIDES:
        out.append(_cite("spot-overrides", f"{len(overrides)} overrides, at most {SPOT_MAX_OVERRIDES}"))
    weights = [o.get("weightedCapacity") for o in overrides]
    given = [w for w in weights if w not in (None, "")]
    if given and len(given) != len(weights):
        out.append(_cite("spot-overrides", "WeightedCapacity given for some overrides but not all"))
    for w in given:
        if not str(w).isdigit() or not _in(SPOT_WEIGHT, int(str(w))):
            out.append(_cite("spot-overrides", f"WeightedCapacity {w!r} outside 1-999"))
    dist = mip.get("instancesDistribution") or {}
    pct = dist.get("onDemandPercentageAboveBaseCapacity", 100)
    if not _in((0, 100), pct):
        out.append(_cite("spot-distribution", f"OnDemandPercentageAboveBaseCapacity {pct!r} outside 0-100"))
    base = dist.get("onDemandBaseCapacity", 0)
    if not _in((0, 10**6), base):
        out.append(_cite("spot-distribution", f"OnDemandBaseCapacity {base!r} is negative"))
    strategy = dist.get("spotAllocationStrategy", "lowest-price")
    if strategy not in (
        "price-capacity-optimized",
        "capacity-optimized",
        "capacity-optimized-prioritized",
        "lowest-price",
    ):
        out.append(_cite("spot-distribution", f"SpotAllocationStrategy {strategy!r} is not one AWS knows"))
    if subnet_azs is not None and offered_azs is not None:
        for o in overrides:
            itype = str(o.get("instanceType") or "")
            offered = offered_azs.get(itype)
            for sub in inputs.get("vpcZoneIdentifiers") or []:
                az = subnet_azs.get(sub)
                if offered is not None and az is not None and az not in offered:
                    out.append(
                        _cite("spot-offerings", f"override {itype} is not offered in {az} (subnet {sub})")
                    )
    return out


def _policy_problems(text: str, region: str) -> list[str]:
    import json

    out: list[str] = []
    try:
        doc = json.loads(text)
    except ValueError:
        return [_cite("iam-no-resource-level", "role policy is not JSON")]
    for st in doc.get("Statement", []):
        actions = st.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = st.get("Resource", [])
        resources = [resources] if isinstance(resources, str) else resources
        for a in actions:
            if a.startswith(_STAR_ONLY) and resources != ["*"]:
                rule = (
                    "describe-no-resource-level" if a.startswith("ec2:Describe") else "iam-no-resource-level"
                )
                out.append(_cite(rule, f'{a} granted on {resources}, it only works with "*"'))
            if a == "cloudwatch:PutMetricData":
                ns = (st.get("Condition") or {}).get("StringEquals", {}).get("cloudwatch:namespace", "")
                if str(ns).startswith("AWS/"):
                    out.append(_cite("put-metric-namespace", f"PutMetricData namespace {ns!r} is reserved"))
        want = f"arn:{partition_for_region(region)}:"
        out += [
            _cite("partition", f"policy resource {r!r} is not in {region}'s partition")
            for r in resources
            if r != "*" and r.startswith("arn:") and not r.startswith(want)
        ]
        if "elasticloadbalancing:DeregisterTargets" in actions and not all(
            re.fullmatch(r"arn:[\w-]+:elasticloadbalancing:[\w-]+:\d{12}:targetgroup/[\w-]+/[0-9a-f]+", r)
            for r in resources
        ):
            out.append(
                _cite("deregister-scope", f"DeregisterTargets must name target groups (got {resources})")
            )
        pulls = any(a.startswith("ecr:") and a != "ecr:GetAuthorizationToken" for a in actions)
        if pulls and not all(
            re.fullmatch(r"arn:[\w-]+:ecr:[\w-]+:\d{12}:repository/.+", r) for r in resources
        ):
            out.append(_cite("ecr-pull", f"ECR pull actions must name repositories (got {resources})"))
    return out


def _tracking_problems(ttc: Mapping[str, Any]) -> list[str]:
    custom = ttc.get("customizedMetricSpecification")
    if not isinstance(custom, Mapping):
        return []
    out: list[str] = []
    if ttc.get("predefinedMetricSpecification"):
        out.append(_cite("custom-metric-tracking", "a policy has both a predefined and a customized metric"))
    if not custom.get("metricName") or not custom.get("namespace"):
        out.append(_cite("custom-metric-tracking", "customized metric needs a namespace and a metric name"))
    if custom.get("statistic") not in CUSTOM_METRIC_STATISTICS:
        out.append(
            _cite(
                "custom-metric-tracking",
                f"statistic {custom.get('statistic')!r} is not one of {CUSTOM_METRIC_STATISTICS}",
            )
        )
    dims = [d.get("name") for d in custom.get("metricDimensions") or []]
    if dims != ["AutoScalingGroupName"]:
        out.append(
            _cite(
                "custom-metric-tracking",
                f"an average per instance of the group needs the AutoScalingGroupName dimension (got {dims})",
            )
        )
    return out


def forward_problems(action: Mapping[str, Any]) -> list[str]:
    """Why ELB would refuse the forward ``action`` (Pulumi camelCase: ``targetGroupArn``, ``forward.targetGroups``
    of ``{arn, weight}``); empty when it would not.

    Example::

        forward_problems({"type": "forward", "forward": {"targetGroups": [{"arn": "a", "weight": 1000}]}})
        # ['target group weight 1000 outside 0-999 [forward-weight: https://...]']
    """
    if action.get("type") != "forward" or not isinstance(action.get("forward"), Mapping):
        return []
    groups = list(action["forward"].get("targetGroups") or [])
    out: list[str] = []
    if not 1 <= len(groups) <= FORWARD_TARGET_GROUPS_MAX:
        out.append(
            _cite(
                "forward-target-groups",
                f"a forward action names {len(groups)} target groups, 1-{FORWARD_TARGET_GROUPS_MAX} allowed",
            )
        )
    for g in groups:
        if "weight" in g and not _in(FORWARD_WEIGHT, g["weight"]):
            out.append(_cite("forward-weight", f"target group weight {g['weight']!r} outside 0-999"))
    single = action.get("targetGroupArn")
    if single and (len(groups) != 1 or groups[0].get("arn") != single):
        out.append(
            _cite(
                "forward-target-groups",
                "with targetGroupArn, the forward config may name only that same one target group",
            )
        )
    return out


def _alarm_problems(a: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    queries = a.get("metricQueries")
    if queries:  # metric math: each metric query names its own stat and period; one query returns data
        if sum(1 for q in queries if q.get("returnData")) != 1:
            out.append(_cite("metric-alarm", "a metric-math alarm needs exactly one query with returnData"))
        for q in queries:
            if isinstance(q.get("metric"), Mapping):
                m = q["metric"]
                out += _alarm_problems(
                    {
                        **m,
                        "statistic": m.get("stat"),
                        "evaluationPeriods": a.get("evaluationPeriods"),
                        "datapointsToAlarm": a.get("datapointsToAlarm"),
                        "treatMissingData": a.get("treatMissingData", "missing"),
                    }
                )
        return out
    if bool(a.get("statistic")) == bool(a.get("extendedStatistic")):
        out.append(
            _cite("metric-alarm", "an alarm on a metric needs exactly one of statistic / extendedStatistic")
        )
    period = a.get("period")
    p = int(period) if _in((10, 10**9), period) else 0  # type: ignore[arg-type]
    if not (p in (10, 20, 30) or (p >= 60 and p % 60 == 0)):
        out.append(_cite("metric-alarm", f"alarm period {period!r} must be 10, 20, 30 or a multiple of 60"))
    n, m = a.get("evaluationPeriods"), a.get("datapointsToAlarm", a.get("evaluationPeriods"))
    if not _in((1, 10_000), n) or not _in((1, 10_000), m) or m > n:
        out.append(_cite("metric-alarm", f"datapoints to alarm {m!r} must be 1..evaluation periods {n!r}"))
    missing = a.get("treatMissingData", "missing")
    if missing not in ALARM_TREAT_MISSING:
        out.append(_cite("metric-alarm", f"treatMissingData {missing!r} is not one of {ALARM_TREAT_MISSING}"))
    if a.get("namespace") == "AWS/ApplicationELB":
        dims = frozenset((a.get("dimensions") or {}).keys())
        if dims not in ALB_TARGET_METRIC_DIMENSIONS:
            out.append(
                _cite(
                    "alb-metric-dimensions",
                    f"AWS/ApplicationELB publishes no {a.get('metricName')} with dimensions {sorted(dims)}",
                )
            )
    return out


def _label_problems(policy: Mapping[str, Any], group_target_groups: Mapping[str, Any]) -> list[str]:
    ttc = policy.get("targetTrackingConfiguration")
    spec = ttc.get("predefinedMetricSpecification") if isinstance(ttc, Mapping) else None
    if not isinstance(spec, Mapping) or spec.get("predefinedMetricType") != "ALBRequestCountPerTarget":
        return []
    label = str(spec.get("resourceLabel") or "")
    _, sep, tg_suffix = label.partition("/targetgroup/")
    if not label.startswith("app/") or not sep:
        return [_cite("tracking-resource-label", f"resource label {label!r} is not app/.../targetgroup/...")]
    group = str(policy.get("autoscalingGroupName") or "")
    attached = [str(a) for a in group_target_groups.get(group) or []]
    if not any(a.endswith(":targetgroup/" + tg_suffix) for a in attached):
        return [
            _cite(
                "tracking-resource-label",
                f"policy on group {group!r} tracks target group {tg_suffix!r}, which is not attached to that group",
            )
        ]
    return []
