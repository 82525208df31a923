"""FleetSpec: one validated description of a load-balanced inference fleet, for both backends.

**Why one module (over 500 lines).** The parts are validated by one ``_Part`` machinery (field paths, "did you
mean", the YAML round trip) and ``FleetSpec`` checks rules that span every part, so the parts, their checker and
the whole are one unit; split, each file would need all the others.

Every part is a frozen, keyword-only dataclass that validates itself on construction, with AWS's own ranges
(see ``docs/design.md``). ``FleetSpec(name="demo")`` is complete: every other field has a working default.

Example::

    import mlops_lb as ml
    spec = ml.FleetSpec(name="demo", capacity=ml.CapacitySpec(min=1, desired=2, max=6))
    spec.scaling.alb_target_value          # requests per target per *minute*, what AWS wants
    ml.FleetSpec.from_yaml(spec.to_yaml()) == spec   # True
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import logging
import numbers
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypedDict

from ._redact import REDACTED, is_secret_name, redact_env
from .errors import SpecError

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "ALGORITHMS",
    "ROUTING_POLICIES",
    "SCALING_METRICS",
    "SERVER_KINDS",
    "SPOT_ALLOCATION_STRATEGIES",
    "AwsSpec",
    "CapacitySpec",
    "FleetSpec",
    "HealthCheckSpec",
    "InstanceSpec",
    "LlmEmulatorSpec",
    "LocalSpec",
    "ModelSpec",
    "NetworkSpec",
    "RouterTierSpec",
    "RoutingSpec",
    "ScaleChange",
    "ScalingPolicySpec",
    "ServerSpec",
    "SpotInstanceType",
    "SpotSpec",
    "TargetGroupSpec",
    "WarmPoolSpec",
    "is_gpu_instance_type",
    "register_spec_check",
]

log = logging.getLogger(__name__)

Algorithm = Literal["round_robin", "least_outstanding_requests", "weighted_random"]
ALGORITHMS: tuple[str, ...] = typing.get_args(Algorithm)
ScalingMetric = Literal["request_count_per_target", "concurrency_per_target"]
SCALING_METRICS: tuple[str, ...] = typing.get_args(ScalingMetric)

# A fleet's name is a DNS label (RFC 1035 §2.3.1: at most 63 letters, digits and inner hyphens), which every
# backend can use in resource names, file names and HAProxy sections. A backend with a shorter limit says so in
# its own check_spec (AWS: 24, so ALB and target-group names fit 32 with Pulumi's suffix).
MAX_NAME_LEN = 63
_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$")
_MATCHER_RE = re.compile(r"^\d{3}(?:-\d{3})?(?:,\d{3}(?:-\d{3})?)*$")
_TAG_KEY_RE = re.compile(r"^[\w .:/=+\-@]{1,128}$")

# Each backend's own spec rules, as "module:function" (imported on first use), registered by
# mlops_lb.fleet.register_backend: FleetSpec.check(backend=...) reads this table, so a new backend brings its rules
# without editing this module and without spec.py importing a backend.
_SPEC_CHECKS: dict[str, str | None] = {}


def register_spec_check(backend: str, target: str | None) -> None:
    """Record ``backend``'s spec rules (``"module:function"`` taking a FleetSpec, or None for none).

    Example::

        register_spec_check("k8s", "mypkg.k8s:check_spec")
    """
    _SPEC_CHECKS[backend] = target


# --------------------------------------------------------------------------- checks with readable messages
# The checks live in mlops_lb._validate, shared by every module that validates; spec.py keeps its short names.
from . import _validate  # noqa: E402

_fail = _validate.fail
_show = _validate.show
_int = _validate.check_int
_num = _validate.check_num
_range = _validate.check_range
_str = _validate.check_str
_opt_str = _validate.check_opt_str
_bool = _validate.check_bool
_cidr = _validate.check_cidr
_str_tuple = _validate.check_str_tuple
_unknown_field = _validate.unknown_field


class _Part:
    """Mixin: validation on construction, plus dict round-trip for nested dataclasses."""

    _path: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self._validate(self._path)

    def _validate(self, p: str) -> None:  # pragma: no cover - overridden
        pass

    def _set(self, name: str, value: Any) -> None:
        """Store a normalised value (the dataclass is frozen; validation runs inside ``__init__``)."""
        object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of builtins (tuples become lists), suitable for JSON and YAML."""
        return _validate.to_plain_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, _path: str | None = None) -> Any:
        """Build from a dict, naming unknown keys (with a suggestion) and wrong types as SpecError."""
        hints = _type_hints(cls)

        def part(key: str, value: Any, where: str) -> Any:
            sub = _part_type(hints[key])
            return (
                sub.from_dict(value, _path=where) if sub is not None and isinstance(value, Mapping) else value
            )

        return cls(
            **_validate.fields_from_dict(cls, data, cls._path if _path is None else _path, nested=part)
        )


_HINTS: dict[type, dict[str, Any]] = {}


def _type_hints(cls: type) -> dict[str, Any]:
    """``typing.get_type_hints(cls)``, evaluated once per class: the annotations are strings (``from __future__
    import annotations``) and evaluating them compiles each one, about 3 ms per part for every ``from_dict``."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


_SPEC_LOADER: Any = None
# YAML 1.1 (PyYAML) reads a float only with a dot and a signed exponent: `1e12` and `1.5e3` would be strings.
# YAML 1.2's core schema reads them as floats (https://yaml.org/spec/1.2.2/#1022-tag-resolution); so do we.
_EXP_FLOAT_RE = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


def _spec_loader() -> Any:
    """A SafeLoader that refuses duplicate keys (naming the line of both) and reads ``1e12`` as a number."""
    global _SPEC_LOADER
    if _SPEC_LOADER is not None:
        return _SPEC_LOADER
    import yaml

    class SpecLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            # PyYAML keeps the last of two equal keys: a second `capacity:` block would silently replace the
            # first whole. Merge keys (`<<`) may be overridden on purpose, so only explicit keys count.
            if isinstance(node, yaml.MappingNode):
                first: dict[Any, Any] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        prev = first.setdefault(key, key_node)
                    except TypeError:  # an unhashable key: the base class names it
                        continue
                    if prev is not key_node:
                        raise yaml.constructor.ConstructorError(
                            None,
                            None,
                            f"duplicate key {_show(key)} (first at line {prev.start_mark.line + 1}, again at "
                            f"line {key_node.start_mark.line + 1}); keep one",
                            key_node.start_mark,
                        )
            return super().construct_mapping(node, deep=deep)

    SpecLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXP_FLOAT_RE, list("-+0123456789."))
    _SPEC_LOADER = SpecLoader
    return SpecLoader


class ScaleChange(TypedDict, total=False):
    """The keywords of ``fleet.scale(...)`` and :meth:`FleetSpec.rescaled`, every backend's one list; an absent
    or ``None`` value leaves that setting as it is.

    Example::

        change: ScaleChange = {"desired": 3, "max": 6}
        fleet.scale(**change)                 # the same as fleet.scale(desired=3, max=6)
    """

    min: int | None
    desired: int | None
    max: int | None
    target_rps_per_target: float | None


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


_SPEC_DUMPER: Any = None


def _spec_dumper() -> Any:
    """A SafeDumper that quotes every string :func:`_spec_loader` would read back as a number (``"1e3"``)."""
    global _SPEC_DUMPER
    if _SPEC_DUMPER is None:
        import yaml

        class SpecDumper(yaml.SafeDumper):
            pass

        SpecDumper.add_implicit_resolver("tag:yaml.org,2002:float", _EXP_FLOAT_RE, list("-+0123456789."))
        _SPEC_DUMPER = SpecDumper
    return _SPEC_DUMPER


def _part_type(hint: Any) -> type[_Part] | None:
    candidates = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for c in candidates:
        if isinstance(c, type) and issubclass(c, _Part):
            return c
    return None


# --------------------------------------------------------------------------- the parts
@dataclass(frozen=True, kw_only=True)
class InstanceSpec(_Part):
    """EC2 instance settings. The AMI comes from a public SSM parameter unless ``ami`` pins one.

    Example::

        InstanceSpec(type="c7i.large", root_volume_gb=30)
    """

    _path: ClassVar[str] = "instance"
    type: str = "t3.small"
    ami: str | None = None
    ami_ssm_parameter: str = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    root_volume_gb: int = 20
    ssh_cidrs: tuple[str, ...] = ()  # SSH stays closed unless you list where from

    def _validate(self, p: str) -> None:
        # What an instance type looks like is the backend's rule (AWS: mlops_lb.aws.spec_rules); a string here.
        if not _str(f"{p}.type", self.type):
            _fail(f"{p}.type", "must not be empty (e.g. t3.small on AWS)")
        if self.ami is not None and not re.fullmatch(r"ami-[0-9a-f]{8,17}", _str(f"{p}.ami", self.ami)):
            _fail(f"{p}.ami", f"must be an AMI id such as ami-0123456789abcdef0 (got {_show(self.ami)})")
        if not _str(f"{p}.ami_ssm_parameter", self.ami_ssm_parameter).startswith("/"):
            _fail(
                f"{p}.ami_ssm_parameter",
                f"must be an SSM parameter path starting with / (got {_show(self.ami_ssm_parameter)})",
            )
        self._set("root_volume_gb", _int(f"{p}.root_volume_gb", self.root_volume_gb, 8, 16384))
        cidrs = tuple(
            _cidr(f"{p}.ssh_cidrs[{i}]", c)
            for i, c in enumerate(_str_tuple(f"{p}.ssh_cidrs", self.ssh_cidrs))
        )
        for i, c in enumerate(cidrs):
            if c.endswith("/0"):  # SSH to every instance from the whole internet is never what anyone means
                _fail(
                    f"{p}.ssh_cidrs[{i}]",
                    f"must not open SSH to the whole internet (got {c!r}); list your own network, e.g. 203.0.113.0/24",
                )
        self._set("ssh_cidrs", cidrs)


WarmPoolState = Literal["stopped", "hibernated", "running"]
WARM_POOL_STATES: tuple[str, ...] = typing.get_args(WarmPoolState)


@dataclass(frozen=True, kw_only=True)
class WarmPoolSpec(_Part):
    """An Auto Scaling warm pool: instances booted ahead of need, kept ``state`` until a scale-out takes them.

    ``min_size`` instances stay in the pool; ``max_group_prepared_capacity`` caps group + pool (None: the
    group's max). ``reuse_on_scale_in`` returns scaled-in instances to the pool instead of terminating them.

    Example::

        CapacitySpec(min=1, desired=1, max=6, warm_pool=WarmPoolSpec(min_size=2, state="stopped"))
    """

    _path: ClassVar[str] = "capacity.warm_pool"
    min_size: int = 0
    state: WarmPoolState = "stopped"
    reuse_on_scale_in: bool = False
    max_group_prepared_capacity: int | None = None

    def _validate(self, p: str) -> None:
        self._set("min_size", _int(f"{p}.min_size", self.min_size, 0, 1000))
        if not isinstance(self.state, str) or self.state not in WARM_POOL_STATES:
            _fail(f"{p}.state", f"must be one of {', '.join(WARM_POOL_STATES)} (got {_show(self.state)})")
        _bool(f"{p}.reuse_on_scale_in", self.reuse_on_scale_in)
        if self.max_group_prepared_capacity is not None:
            cap = _int(f"{p}.max_group_prepared_capacity", self.max_group_prepared_capacity, 0, 1000)
            self._set("max_group_prepared_capacity", cap)


# Spot allocation strategies of an Auto Scaling group's InstancesDistribution (the rules table cites the page).
SpotAllocationStrategy = Literal[
    "price-capacity-optimized", "capacity-optimized", "capacity-optimized-prioritized", "lowest-price"
]
SPOT_ALLOCATION_STRATEGIES: tuple[str, ...] = typing.get_args(SpotAllocationStrategy)


@dataclass(frozen=True, kw_only=True)
class SpotInstanceType(_Part):
    """One interchangeable instance type of a spot fleet, with its ``weight`` (AWS ``WeightedCapacity``).

    With weights, capacity (``min``/``desired``/``max``, the on-demand base) is counted in **units**, not
    instances: a type of weight 2 fills two units. Either every type has a weight or none has (AWS's rule).

    Example::

        SpotInstanceType(type="c7i.xlarge", weight=2)
    """

    _path: ClassVar[str] = "capacity.spot.instance_types[]"
    type: str
    weight: int | None = None

    def _validate(self, p: str) -> None:
        if not _str(f"{p}.type", self.type):
            _fail(f"{p}.type", "must not be empty (e.g. c7i.large)")
        if self.weight is not None:
            self._set("weight", _int(f"{p}.weight", self.weight, 1, 999))


@dataclass(frozen=True, kw_only=True)
class SpotSpec(_Part):
    """Spot capacity: an Auto Scaling mixed instances policy (on AWS) and emulated interruptions (locally).

    ``on_demand_base`` units are always on-demand; of the capacity above it, ``on_demand_percent`` % is
    on-demand and the rest spot. ``instance_types`` lists interchangeable types, each a name or
    ``{type, weight}``; empty means ``[instance.type]``. With weights, every capacity number of the group is in
    units (see :class:`SpotInstanceType`). ``capacity_rebalance`` launches a replacement when EC2 recommends
    rebalancing, before the interruption notice. A spot instance gets a two-minute notice; its agent
    deregisters it from the target group at once and lets in-flight requests finish (docs/spot.md).

    The ``local_*`` fields drive the local backend's interruptions (AWS ignores them): at the listed times
    (AWS seconds after launch, on the compressed clock), at random with ``local_interruptions_per_hour``
    per spot instance (seeded by ``local_seed``), or on demand with ``fleet.interrupt(target)``.
    ``local_rebalance_lead_s`` is how long before the notice the rebalance recommendation arrives (0: with it).

    Example::

        SpotSpec(on_demand_base=1, on_demand_percent=0,
                 instance_types=("c7i.large", {"type": "c6i.large"}), capacity_rebalance=True)
    """

    _path: ClassVar[str] = "capacity.spot"
    on_demand_base: int = 0
    on_demand_percent: int = 0
    instance_types: tuple[SpotInstanceType, ...] = ()
    allocation_strategy: SpotAllocationStrategy = "price-capacity-optimized"
    capacity_rebalance: bool = True
    local_interrupt_at_s: tuple[float, ...] = ()
    local_interruptions_per_hour: float = 0.0
    local_rebalance_lead_s: float = 0.0
    local_seed: int = 0

    def _validate(self, p: str) -> None:
        self._set("on_demand_base", _int(f"{p}.on_demand_base", self.on_demand_base, 0, 1000))
        from ._aws_rules import cite

        pct = self.on_demand_percent
        if _is_int(pct) and not 0 <= pct <= 100:
            _fail(
                f"{p}.on_demand_percent", cite("spot-distribution", f"must be between 0 and 100 (got {pct})")
            )
        self._set("on_demand_percent", _int(f"{p}.on_demand_percent", pct, 0, 100))
        raw = self.instance_types
        if isinstance(raw, (str, Mapping, SpotInstanceType)) or not isinstance(raw, (list, tuple)):
            _fail(
                f"{p}.instance_types",
                f"must be a list of instance types, each a name or {{type, weight}} (got {_show(raw)})",
            )
        types_: list[SpotInstanceType] = []
        for i, item in enumerate(raw):
            where = f"{p}.instance_types[{i}]"
            if isinstance(item, SpotInstanceType):
                types_.append(item)
            elif isinstance(item, str):
                types_.append(SpotInstanceType(type=item))
            elif isinstance(item, Mapping):
                types_.append(SpotInstanceType.from_dict(item, _path=where))
            else:
                _fail(where, f"must be an instance type name or {{type, weight}} (got {_show(item)})")
        names = [t.type for t in types_]
        for i, n in enumerate(names):
            if n in names[:i]:
                _fail(f"{p}.instance_types[{i}]", f"lists {n!r} twice; keep one")
        weighted = [t.weight is not None for t in types_]
        if any(weighted) and not all(weighted):
            i = weighted.index(False)
            _fail(
                f"{p}.instance_types[{i}].weight",
                cite(
                    "spot-overrides",
                    "must be set when any type has a weight: AWS needs WeightedCapacity on every "
                    "type or none",
                ),
            )
        self._set("instance_types", tuple(types_))
        if not isinstance(self.allocation_strategy, str) or (
            self.allocation_strategy not in SPOT_ALLOCATION_STRATEGIES
        ):
            _fail(
                f"{p}.allocation_strategy",
                f"must be one of {', '.join(SPOT_ALLOCATION_STRATEGIES)} (got {_show(self.allocation_strategy)})",
            )
        _bool(f"{p}.capacity_rebalance", self.capacity_rebalance)
        at = self.local_interrupt_at_s
        if isinstance(at, (int, float)) and not isinstance(at, bool):
            at = (at,)
        if not isinstance(at, (list, tuple)):
            _fail(f"{p}.local_interrupt_at_s", f"must be a list of seconds (got {_show(at)})")
        times = tuple(_num(f"{p}.local_interrupt_at_s[{i}]", t, 0, 10**7) for i, t in enumerate(at))
        self._set("local_interrupt_at_s", tuple(sorted(times)))
        self._set(
            "local_interruptions_per_hour",
            _num(f"{p}.local_interruptions_per_hour", self.local_interruptions_per_hour, 0, 3600),
        )
        self._set(
            "local_rebalance_lead_s",
            _num(f"{p}.local_rebalance_lead_s", self.local_rebalance_lead_s, 0, 3600),
        )
        self._set("local_seed", _int(f"{p}.local_seed", self.local_seed, 0, 2**31 - 1))

    def types_for(self, instance_type: str) -> tuple[SpotInstanceType, ...]:
        """The fleet's instance types: ``instance_types``, or ``instance_type`` alone when the list is empty.

        Example::

            SpotSpec().types_for("c7i.large")   # (SpotInstanceType(type='c7i.large', weight=None),)
        """
        return self.instance_types or (SpotInstanceType(type=instance_type),)

    @property
    def weighted(self) -> bool:
        """Whether capacity is counted in weight units rather than instances."""
        return any(t.weight is not None for t in self.instance_types)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict; an unweighted type is written as its bare name (what a user writes in YAML)."""
        out = super().to_dict()
        out["instance_types"] = [t.type if t.weight is None else t.to_dict() for t in self.instance_types]
        return out


@dataclass(frozen=True, kw_only=True)
class CapacitySpec(_Part):
    """Auto Scaling group bounds. Always ``min <= desired <= max``.

    ``spot`` (a :class:`SpotSpec`) mixes spot and on-demand instances of interchangeable types; when its types
    carry weights, ``min``/``desired``/``max`` count weight units, not instances.

    Example::

        CapacitySpec(min=1, desired=2, max=6)
        CapacitySpec(min=1, desired=2, max=6, spot={"instance_types": ["c7i.large", "c6i.large"]})
    """

    _path: ClassVar[str] = "capacity"
    min: int = 1
    desired: int = 1
    max: int = 4
    warm_pool: WarmPoolSpec | None = None
    spot: SpotSpec | None = None

    def _validate(self, p: str) -> None:
        if isinstance(self.spot, Mapping):
            self._set("spot", SpotSpec.from_dict(self.spot))
        elif self.spot is not None and not isinstance(self.spot, SpotSpec):
            _fail(f"{p}.spot", f"must be a SpotSpec, a mapping or null (got {_show(self.spot)})")
        if isinstance(self.warm_pool, Mapping):
            self._set("warm_pool", WarmPoolSpec.from_dict(self.warm_pool))
        elif self.warm_pool is not None and not isinstance(self.warm_pool, WarmPoolSpec):
            _fail(
                f"{p}.warm_pool", f"must be a WarmPoolSpec, a mapping or null (got {_show(self.warm_pool)})"
            )
        self._set("min", _int(f"{p}.min", self.min, 0, 1000))
        self._set("desired", _int(f"{p}.desired", self.desired, 0, 1000))
        self._set("max", _int(f"{p}.max", self.max, 1, 1000))
        if self.min > self.max:
            _fail(f"{p}.min", f"must be <= capacity.max (got min={self.min}, max={self.max})")
        if not self.min <= self.desired <= self.max:
            _fail(
                f"{p}.desired",
                f"must be between capacity.min and capacity.max (got min={self.min}, desired={self.desired}, max={self.max})",
            )


@dataclass(frozen=True, kw_only=True)
class HealthCheckSpec(_Part):
    """Target-group health check, with the ALB's ranges and defaults.

    Example::

        HealthCheckSpec(path="/health", interval_s=10, timeout_s=3, healthy_threshold=2)
    """

    _path: ClassVar[str] = "health_check"
    path: str = "/health"
    interval_s: int = 30
    timeout_s: int = 5
    healthy_threshold: int = 5
    unhealthy_threshold: int = 2
    matcher: str = "200"
    # ASG: ignore ELB health this long after launch. 420 s = the AWS boot on paper (150 s) + 5 x 30 s of checks +
    # a stated margin of 75 s (half the boot: a slow mirror, a throttled burstable CPU); 300 s had none.
    grace_period_s: int = 420

    def _validate(self, p: str) -> None:
        path = _str(f"{p}.path", self.path)
        if not path.startswith("/") or any(c.isspace() for c in path) or len(path) > 1024:
            _fail(f"{p}.path", f"must be a URL path starting with / without spaces (got {_show(path)})")
        self._set("interval_s", _int(f"{p}.interval_s", self.interval_s, 5, 300))
        self._set("timeout_s", _int(f"{p}.timeout_s", self.timeout_s, 2, 120))
        if self.timeout_s >= self.interval_s:
            _fail(
                f"{p}.timeout_s",
                f"must be less than health_check.interval_s (got timeout_s={self.timeout_s}, interval_s={self.interval_s})",
            )
        self._set("healthy_threshold", _int(f"{p}.healthy_threshold", self.healthy_threshold, 2, 10))
        self._set("unhealthy_threshold", _int(f"{p}.unhealthy_threshold", self.unhealthy_threshold, 2, 10))
        m = _str(f"{p}.matcher", self.matcher)
        ranges = (
            [tuple(int(c) for c in part.split("-")) for part in m.split(",")]
            if _MATCHER_RE.fullmatch(m)
            else []
        )
        if (
            not ranges
            or any(not 200 <= c <= 499 for r in ranges for c in r)
            or any(r[0] > r[-1] for r in ranges)
        ):
            _fail(
                f"{p}.matcher", f"must be HTTP codes 200-499 such as 200, 200,202 or 200-299 (got {_show(m)})"
            )
        self._set("grace_period_s", _int(f"{p}.grace_period_s", self.grace_period_s, 0, 7200))

    def matcher_codes(self) -> list[int]:
        """Every status code the matcher accepts (``"200-202,204"`` -> ``[200, 201, 202, 204]``)."""
        codes: list[int] = []
        for part in self.matcher.split(","):
            lo, _, hi = part.partition("-")
            codes.extend(range(int(lo), int(hi or lo) + 1))
        return codes


@dataclass(frozen=True, kw_only=True)
class TargetGroupSpec(_Part):
    """Target group: app port, routing algorithm, deregistration delay and slow start.

    Example::

        TargetGroupSpec(algorithm="least_outstanding_requests", deregistration_delay_s=30)
    """

    _path: ClassVar[str] = "target_group"
    port: int = 8080
    algorithm: Algorithm = "round_robin"
    deregistration_delay_s: int = 300
    slow_start_s: int = 0

    def _validate(self, p: str) -> None:
        self._set("port", _int(f"{p}.port", self.port, 1, 65535))
        if not isinstance(self.algorithm, str) or self.algorithm not in ALGORITHMS:
            _fail(f"{p}.algorithm", f"must be one of {', '.join(ALGORITHMS)} (got {_show(self.algorithm)})")
        self._set(
            "deregistration_delay_s",
            _int(f"{p}.deregistration_delay_s", self.deregistration_delay_s, 0, 3600),
        )
        self._set("slow_start_s", _int(f"{p}.slow_start_s", self.slow_start_s, 0, 900))
        if 0 < self.slow_start_s < 30:
            _fail(f"{p}.slow_start_s", f"must be 0 (off) or between 30 and 900 (got {self.slow_start_s})")
        if self.slow_start_s and self.algorithm == "least_outstanding_requests":
            _fail(
                f"{p}.slow_start_s",
                "cannot be used with algorithm least_outstanding_requests (AWS rule); set it to 0 or use round_robin",
            )


@dataclass(frozen=True, kw_only=True)
class ScalingPolicySpec(_Part):
    """Target tracking on requests per target (stored **per second**; AWS's ALBRequestCountPerTarget is per minute)
    or, with ``metric: concurrency_per_target``, on the average in-flight requests per target.

    Example::

        ScalingPolicySpec(target_rps_per_target=20).alb_target_value   # 1200.0 requests/target/minute
        ScalingPolicySpec(metric="concurrency_per_target", target_concurrency_per_target=4)
    """

    _path: ClassVar[str] = "scaling"
    target_rps_per_target: float = 50.0
    warmup_s: int = 300
    scale_in_enabled: bool = True
    cpu_target_percent: float | None = None
    # What target tracking follows: requests per target (ALBRequestCountPerTarget), or the average number of
    # in-flight requests per target (what Ray Serve, Knative and SageMaker scale LLM servers on), whose target is
    # ``target_concurrency_per_target``.
    metric: ScalingMetric = "request_count_per_target"
    target_concurrency_per_target: float | None = None

    def _validate(self, p: str) -> None:
        self._set(
            "target_rps_per_target",
            _num(f"{p}.target_rps_per_target", self.target_rps_per_target, 0.01, 1_000_000),
        )
        if not isinstance(self.metric, str) or self.metric not in SCALING_METRICS:
            _fail(f"{p}.metric", f"must be one of {', '.join(SCALING_METRICS)} (got {_show(self.metric)})")
        if self.metric == "concurrency_per_target":
            if self.target_concurrency_per_target is None:
                _fail(
                    f"{p}.target_concurrency_per_target",
                    "is required with metric concurrency_per_target (average in-flight requests per target, e.g. 4)",
                )
            self._set(
                "target_concurrency_per_target",
                _num(f"{p}.target_concurrency_per_target", self.target_concurrency_per_target, 0.01, 100_000),
            )
        elif self.target_concurrency_per_target is not None:
            _fail(
                f"{p}.target_concurrency_per_target",
                "has no effect with metric request_count_per_target; set scaling.metric: concurrency_per_target",
            )
        self._set("warmup_s", _int(f"{p}.warmup_s", self.warmup_s, 0, 3600))
        _bool(f"{p}.scale_in_enabled", self.scale_in_enabled)
        if self.cpu_target_percent is not None:
            self._set("cpu_target_percent", _num(f"{p}.cpu_target_percent", self.cpu_target_percent, 1, 100))

    @property
    def alb_target_value(self) -> float:
        """The target-tracking TargetValue for ALBRequestCountPerTarget: requests per target per minute."""
        return self.target_rps_per_target * 60.0


@dataclass(frozen=True, kw_only=True)
class ModelSpec(_Part):
    """Which model the servers load: ``"demo"``, ``"demo.onnx"`` or a path/URI to a joblib/pkl/skops/onnx file.

    A pickle (``.joblib``/``.pkl``) runs any code it holds when it is loaded, so it needs ``allow_pickle: true``;
    a ``.skops`` file loads only the types skops trusts, scikit-learn classes, and the types named
    in ``trusted_types`` (see ``mlops_lb.serving.model``).

    Example::

        ModelSpec(source="models/churn.skops", trusted_types=["mypkg.ChurnModel"])
        ModelSpec(source="models/rf.joblib", allow_pickle=True)      # only for a file you made or trust
    """

    _path: ClassVar[str] = "model"
    source: str = "demo"
    trusted_types: tuple[str, ...] = ()
    allow_pickle: bool = False

    def _validate(self, p: str) -> None:
        s = _str(f"{p}.source", self.source)
        if s != "demo" and not re.search(
            r"\.(joblib|pkl|skops|onnx)\Z", s
        ):  # \Z: "$" would allow a trailing newline
            _fail(
                f"{p}.source",
                f"must be 'demo' or a path/URI ending in .joblib, .pkl, .skops or .onnx (got {_show(s)})",
            )
        if "\0" in s:
            _fail(f"{p}.source", "must not contain a NUL character")
        self._set("allow_pickle", _bool(f"{p}.allow_pickle", self.allow_pickle))
        types_ = _str_tuple(f"{p}.trusted_types", self.trusted_types)
        for i, t in enumerate(types_):
            if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", t):
                _fail(
                    f"{p}.trusted_types[{i}]",
                    f"must be a dotted type name such as mypkg.models.ChurnModel (got {_show(t)})",
                )
        self._set("trusted_types", types_)
        if re.search(r"\.(joblib|pkl)\Z", s) and not self.allow_pickle:
            _fail(
                f"{p}.allow_pickle",
                f"must be true to serve {_show(s)}: a .joblib/.pkl file is a pickle, and loading a pickle runs "
                "any code it holds. Set it only for a file you made or trust, or save the model with skops "
                "(.skops) or as ONNX (.onnx)",
            )


ServerKind = Literal["model", "llm-emulator", "command"]
SERVER_KINDS: tuple[str, ...] = typing.get_args(ServerKind)
# Placeholders a server command may use; the same values also reach the process as environment variables.
SERVER_PLACEHOLDERS: Mapping[str, str] = {
    "port": "PORT",
    "host": "HOST",
    "target_id": "TARGET_ID",
    "model": "MODEL_PATH",
}
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# server.ports names: each gives the placeholder {port_<name>} and the variable PORT_<NAME>.
_PORT_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
# A placeholder in an env value or the working directory: only known names are replaced there, so a JSON value
# such as '{"a": 1}' passes through; an identifier in braces close to a known name is a typo and fails validation.
_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET_SOURCES = ("ssm", "secretsmanager", "env")
_WARNED_SECRET_ENV: set[str] = set()


class _Env(dict):  # type: ignore[type-arg]
    """``server.env``: a plain dict whose repr shows secret-looking values as ``***`` (reprs reach notebooks,
    logs and tracebacks; the values must still reach the targets, so only the display is redacted)."""

    def __repr__(self) -> str:
        return repr(redact_env(self))

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython
        p.text(repr(self))


def _warn_secret_env(p: str, env: Mapping[str, str]) -> None:
    """Warn once per name about a secret-looking ``server.env`` entry (logging: specs are built in tight loops)."""
    for k, v in env.items():
        if v == REDACTED and f"{k}={REDACTED}" not in _WARNED_SECRET_ENV:
            _WARNED_SECRET_ENV.add(f"{k}={REDACTED}")
            log.warning(
                "%s.env.%s is %r: this spec was saved with its secret values hidden (to_yaml, spec.json), so a "
                "target would get %r; give the value again, or a reference in %s.secrets.%s",
                p, k, REDACTED, REDACTED, p, k,
            )  # fmt: skip
        if is_secret_name(k) and k not in _WARNED_SECRET_ENV:
            _WARNED_SECRET_ENV.add(k)
            log.warning(
                "%s.env.%s looks like a secret: it is shown as %s in reprs, YAML, bundles and reports, but on AWS "
                "it is written into the instances' user data; give it by reference instead: %s.secrets.%s: "
                "{ssm: /param/name} | {secretsmanager: arn-or-name} | {env: LAUNCHER_VAR} (local fleet)",
                p, k, REDACTED, p, k,
            )  # fmt: skip


# NVIDIA GPU families (g4dn, g5, g6, g6e, gr6, p3, p4d, p5, ...): what `docker run --gpus` can use.
_GPU_FAMILY_RE = re.compile(r"^(g|gr|p)\d")


def is_gpu_instance_type(instance_type: str) -> bool:
    """True for EC2 GPU families (``g4dn.xlarge``, ``g6.2xlarge``, ``p5.48xlarge``...).

    Example::

        is_gpu_instance_type("g6.xlarge"), is_gpu_instance_type("t3.small")   # (True, False)
    """
    return bool(_GPU_FAMILY_RE.match(instance_type.split(".", 1)[0]))


@dataclass(frozen=True, kw_only=True)
class LlmEmulatorSpec(_Part):
    """Options of our OpenAI-compatible LLM emulator (``server.kind: llm-emulator``); None keeps its own default.

    Each field becomes the flag of the same name (``max_num_seqs`` -> ``--max-num-seqs``).

    Example::

        LlmEmulatorSpec(max_num_seqs=8, decode_ms_per_token=20, seed=1)
        LlmEmulatorSpec(prefix_cache_blocks=2048, block_size=16)    # a 32,768-token prefix cache per target
    """

    _path: ClassVar[str] = "server.llm"
    max_num_seqs: int | None = None
    prefill_ms_per_token: float | None = None
    decode_ms_per_token: float | None = None
    decode_slowdown_per_seq: float | None = None
    max_model_len: int | None = None
    seed: int | None = None
    # The emulator's prefix cache (mlops_lb.serving.prefix_cache): size in blocks (0 = off) of block_size tokens.
    prefix_cache_blocks: int | None = None
    block_size: int | None = None

    def _validate(self, p: str) -> None:
        for name, lo, hi in (
            ("max_num_seqs", 1, 4096),
            ("max_model_len", 1, 10_000_000),
            ("seed", 0, 2**32 - 1),
            ("prefix_cache_blocks", 0, 100_000_000),
            ("block_size", 1, 1_000_000),
        ):
            if getattr(self, name) is not None:
                self._set(name, _int(f"{p}.{name}", getattr(self, name), lo, hi))
        for name in ("prefill_ms_per_token", "decode_ms_per_token", "decode_slowdown_per_seq"):
            if getattr(self, name) is not None:
                self._set(name, _num(f"{p}.{name}", getattr(self, name), 0, 60_000))

    def flags(self) -> list[str]:
        """The emulator's command-line flags for the fields that are set."""
        out: list[str] = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is not None:
                out += [f"--{f.name.replace('_', '-')}", repr(v) if isinstance(v, float) else str(v)]
        return out


@dataclass(frozen=True, kw_only=True)
class ServerSpec(_Part):
    """What each target runs. Whatever it is, a target is healthy when it answers the health check (the ALB's rule).

    * ``kind: model`` (default): our ``mlops-lb serve`` with ``model.source`` and, locally, emulated capacity.
    * ``kind: llm-emulator``: our OpenAI-compatible LLM emulator, with the options in ``llm``.
    * ``kind: command``: the user's own server. ``command`` is an argv list or one shell-free string (split with
      ``shlex``); placeholders ``{port}``, ``{host}``, ``{target_id}``, ``{model}`` are filled per target and the
      same values arrive as env ``PORT``, ``HOST``, ``TARGET_ID``, ``MODEL_PATH``. ``ports: {grpc: 0}`` gives each
      target another port (0: a free one per target locally) as ``{port_grpc}`` and ``PORT_GRPC``; placeholders are
      filled in ``env`` values and in ``workdir`` (the target's working directory; ``runs/{target_id}`` gives each
      its own, created when missing) too. On AWS ``image`` (with
      ``container_port``, ``gpus``, ``registry_auth``) runs a container instead; ``command`` then is its arguments.

    ``secrets`` hands a target a secret by *reference*; only the reference is ever stored or shown. Each entry is
    ``NAME: {"ssm": "/param/name"}`` (SSM Parameter Store), ``{"secretsmanager": "arn-or-name", "key": "json key"}``
    (``key`` optional) or, for the local fleet, ``{"env": "VAR"}`` (read from the launching process's environment
    at launch). On AWS the instance fetches ssm/secretsmanager values at boot. ``env`` is plain configuration:
    values whose names look secret (TOKEN, KEY, SECRET, PASSWORD, CREDENTIAL...) are shown as ``***`` in the repr,
    ``to_dict``/``to_yaml``, bundles and reports, and a warning suggests ``secrets``.

    ``kind`` defaults to ``command`` when ``command`` or ``image`` is given, else ``model``. ``startup_timeout_s``
    (real seconds: a boot takes as long here as there; None: the backend's default) bounds launch to first
    passing check; ``drain_timeout_s`` is how long a SIGTERMed server may finish in-flight requests before SIGKILL.

    Example::

        ServerSpec(command="python app.py --port {port}", startup_timeout_s=60)
        ServerSpec(image="vllm/vllm-openai:v0.6.3", command=["--model", "{model}"], container_port=8000, gpus="all")
        ServerSpec(command="app --port {port}", secrets={"HF_TOKEN": {"ssm": "/team/hf-token"}})
    """

    _path: ClassVar[str] = "server"
    kind: ServerKind | None = None
    command: tuple[str, ...] | str | None = None
    image: str | None = None
    container_port: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    gpus: str | int | None = None
    registry_auth: str | None = None
    install: str | None = None
    startup_timeout_s: int | None = None
    drain_timeout_s: int = 30
    metrics_path: str | None = None
    llm: LlmEmulatorSpec = field(default_factory=LlmEmulatorSpec)
    ports: Mapping[str, int] = field(default_factory=dict)
    workdir: str | None = None

    def _validate(self, p: str) -> None:
        kind = self.kind
        if kind is None:
            kind = "command" if self.command is not None or self.image is not None else "model"
        if not isinstance(kind, str) or kind not in SERVER_KINDS:
            _fail(f"{p}.kind", f"must be one of {', '.join(SERVER_KINDS)} (got {_show(kind)})")
        self._set("kind", kind)
        self._validate_ports(p)
        self._set("command", self._argv(p))
        if kind != "command":
            for name in ("command", "image", "install", "registry_auth", "gpus", "container_port"):
                if getattr(self, name) is not None:
                    _fail(f"{p}.{name}", f"is for kind 'command' (the user's own server), not {kind!r}")
        elif self.command is None and self.image is None:
            _fail(f"{p}.command", "is required for kind 'command' (or, on AWS, server.image)")
        if self.image is not None:
            img = _str(f"{p}.image", self.image)
            if any(c.isspace() for c in img) or img.startswith("-"):
                _fail(
                    f"{p}.image",
                    f"must be an image reference such as vllm/vllm-openai:v0.6.3 (got {_show(img)})",
                )
        else:
            for name in ("container_port", "gpus", "registry_auth"):
                if getattr(self, name) is not None:
                    _fail(f"{p}.{name}", "applies to server.image only (a command sees the machine directly)")
        if self.container_port is not None:
            self._set("container_port", _int(f"{p}.container_port", self.container_port, 1, 65535))
        if self.gpus is not None and self.gpus != "all":
            if isinstance(self.gpus, str):
                _fail(f"{p}.gpus", f"must be 'all' or a number of GPUs (got {_show(self.gpus)})")
            self._set("gpus", _int(f"{p}.gpus", self.gpus, 1, 16))
        if self.registry_auth is not None and not re.fullmatch(
            r"arn:aws[\w-]*:secretsmanager:[\w-]+:\d{12}:secret:[\w/+=.@-]+",
            _str(f"{p}.registry_auth", self.registry_auth),
        ):
            _fail(
                f"{p}.registry_auth",
                "must be the ARN of a Secrets Manager secret with the registry's username and password "
                f"(ECR images need none: the instance role pulls them) (got {_show(self.registry_auth)})",
            )
        if self.install is not None and "\0" in _str(f"{p}.install", self.install):
            _fail(f"{p}.install", "must not contain a NUL character")
        if not isinstance(self.env, Mapping):
            _fail(f"{p}.env", f"must be a mapping of variable names to strings (got {_show(self.env)})")
        for k, v in self.env.items():
            where = f"{p}.env.{k if isinstance(k, str) else _show(k)}"
            if not isinstance(k, str) or not _ENV_NAME_RE.fullmatch(k):
                _fail(
                    where,
                    "must be an environment variable name (letters, digits, _; not starting with a digit)",
                )
            if k in SERVER_PLACEHOLDERS.values():
                _fail(
                    where, f"is set by the fleet for each target ({', '.join(SERVER_PLACEHOLDERS.values())})"
                )
            if not isinstance(v, str):
                # The value is not shown: under a secret-looking name it is likely a credential.
                shown = "a value" if is_secret_name(k) else _show(v)
                _fail(where, f"must be a string (got {shown}); quote numbers in YAML")
            if "\0" in v:
                _fail(where, "must not contain a NUL character (no process environment can hold one)")
        self._set("env", _Env(self.env))
        _warn_secret_env(p, self.env)
        self._set("secrets", self._secrets(p))
        for k, v in self.env.items():
            self._check_placeholders(f"{p}.env.{k}", v)
        if self.workdir is not None:
            _str(f"{p}.workdir", self.workdir)
            if self.kind != "command":
                _fail(f"{p}.workdir", f"is for kind 'command' (the user's own server), not {self.kind!r}")
            self._check_placeholders(f"{p}.workdir", self.workdir)
        if self.startup_timeout_s is not None:
            self._set("startup_timeout_s", _int(f"{p}.startup_timeout_s", self.startup_timeout_s, 1, 3600))
        self._set("drain_timeout_s", _int(f"{p}.drain_timeout_s", self.drain_timeout_s, 0, 3600))
        if self.metrics_path is not None:
            mp = _str(f"{p}.metrics_path", self.metrics_path)
            if not mp.startswith("/") or any(c.isspace() for c in mp):
                _fail(f"{p}.metrics_path", f"must be a URL path starting with / (got {_show(mp)})")
        if isinstance(self.llm, Mapping):
            self._set("llm", LlmEmulatorSpec.from_dict(self.llm, _path=f"{p}.llm"))
        elif not isinstance(self.llm, LlmEmulatorSpec):
            _fail(f"{p}.llm", f"must be a mapping of emulator options (got {_show(self.llm)})")
        if kind != "llm-emulator" and self.llm != LlmEmulatorSpec():
            _fail(f"{p}.llm", f"is for kind 'llm-emulator' (got kind {kind!r})")

    def _validate_ports(self, p: str) -> None:
        if not isinstance(self.ports, Mapping):
            _fail(
                f"{p}.ports",
                f"must be a mapping of names to ports, such as {{grpc: 0}} (got {_show(self.ports)})",
            )
        for name, port in self.ports.items():
            where = f"{p}.ports.{name if isinstance(name, str) else _show(name)}"
            if not isinstance(name, str) or not _PORT_NAME_RE.fullmatch(name):
                _fail(where, "must be a lower-case name (letters, digits, _), e.g. grpc or metrics")
            _int(where, port, 0, 65535)
            if self.kind != "command":
                _fail(where, f"is for kind 'command' (the user's own server), not {self.kind!r}")
            if isinstance(self.env, Mapping) and f"PORT_{name.upper()}" in self.env:
                _fail(
                    f"{p}.env.PORT_{name.upper()}",
                    f"is set by the fleet for each target from {p}.ports.{name}",
                )
        self._set("ports", dict(self.ports))

    @property
    def placeholders(self) -> list[str]:
        """Every placeholder this server's command, env values and workdir may use (``port_<name>`` included)."""
        return [*SERVER_PLACEHOLDERS, *(f"port_{n}" for n in self.ports)]

    def _check_placeholders(self, where: str, text: str) -> None:
        known = self.placeholders
        for n in _PLACEHOLDER_RE.findall(text):
            if n in known:
                continue
            close = difflib.get_close_matches(n, known, n=1, cutoff=0.7)
            if close or n.startswith("port_"):
                hint = (
                    f"declare it in server.ports ({n[5:]}: 0)"
                    if n.startswith("port_")
                    else f"did you mean {{{close[0]}}}?"
                )
                _fail(
                    where,
                    f"has an unknown placeholder {{{n}}} (known: {', '.join('{' + k + '}' for k in known)}; {hint})",
                )

    def _argv(self, p: str) -> tuple[str, ...] | None:
        import shlex
        import string

        cmd = self.command
        if cmd is None:
            return None
        if isinstance(cmd, str):
            try:
                cmd = tuple(shlex.split(cmd))
            except ValueError as exc:
                _fail(f"{p}.command", f"cannot be split into arguments ({exc}) (got {_show(cmd)})")
        argv = _str_tuple(f"{p}.command", cmd)
        if not argv:
            _fail(f"{p}.command", "must not be empty")
        for i, arg in enumerate(argv):
            if "\0" in arg:
                _fail(f"{p}.command[{i}]", "must not contain a NUL character (no argument can hold one)")
            try:
                names = [n for _, n, _, _ in string.Formatter().parse(arg) if n is not None]
            except ValueError as exc:
                _fail(
                    f"{p}.command[{i}]",
                    f"has a malformed placeholder ({exc}); write {{{{ for a literal brace",
                )
            known = self.placeholders
            for n in names:
                if n not in known:
                    close = difflib.get_close_matches(n, known, n=1)
                    hint = f"did you mean {{{close[0]}}}?" if close else "write {{ and }} for literal braces"
                    if n.startswith("port_"):
                        hint = f"declare it in server.ports ({n[5:]}: 0)"
                    _fail(
                        f"{p}.command[{i}]",
                        f"has an unknown placeholder {{{n}}} (known: {', '.join('{' + k + '}' for k in known)}; {hint})",
                    )
        return argv

    def _secrets(self, p: str) -> dict[str, dict[str, str]]:
        """``secrets`` checked: valid names, not also in env, exactly one source each, references only."""
        if not isinstance(self.secrets, Mapping):
            _fail(
                f"{p}.secrets",
                f"must be a mapping of variable names to references (got {_show(self.secrets)})",
            )
        out: dict[str, dict[str, str]] = {}
        for name, ref in self.secrets.items():
            where = f"{p}.secrets.{name if isinstance(name, str) else _show(name)}"
            if not isinstance(name, str) or not _ENV_NAME_RE.fullmatch(name):
                _fail(
                    where,
                    "must be an environment variable name (letters, digits, _; not starting with a digit)",
                )
            if name in SERVER_PLACEHOLDERS.values():
                _fail(
                    where, f"is set by the fleet for each target ({', '.join(SERVER_PLACEHOLDERS.values())})"
                )
            if name in self.env:
                _fail(where, f"is also in {p}.env: give it in one place (here, as a reference)")
            if not isinstance(ref, Mapping):
                # Not shown: a plain value written here is most likely the secret itself.
                _fail(
                    where,
                    f"must be a reference such as {{ssm: /param/name}} or {{env: LAUNCHER_VAR}}, not a value "
                    f"(got a {type(ref).__name__})",
                )
            sources = [k for k in ref if k in _SECRET_SOURCES]
            extra = [k for k in ref if k not in (*_SECRET_SOURCES, "key")]
            if len(sources) != 1 or extra:
                _fail(
                    where,
                    "must name exactly one source: {ssm: /param/name}, {secretsmanager: arn-or-name, key: "
                    f"optional json key}} or {{env: LAUNCHER_VAR}} (got keys {sorted(map(str, ref))})",
                )
            source = sources[0]
            for k, v in ref.items():
                if not isinstance(v, str) or not v.strip() or "\0" in v or any(c.isspace() for c in v):
                    _fail(f"{where}.{k}", f"must be a name without spaces (got {_show(v, 60)})")
            if "key" in ref and source != "secretsmanager":
                _fail(f"{where}.key", "applies to secretsmanager only (the JSON key inside the secret)")
            if source == "env" and not _ENV_NAME_RE.fullmatch(ref["env"]):
                _fail(f"{where}.env", f"must be an environment variable name (got {_show(ref['env'])})")
            if source == "ssm" and not re.fullmatch(
                r"(arn:aws[\w-]*:ssm:[\w-]+:\d{12}:parameter)?/?[\w.\-/]{1,2048}", ref["ssm"]
            ):
                _fail(
                    f"{where}.ssm",
                    f"must be a parameter name such as /team/hf-token (got {_show(ref['ssm'])})",
                )
            if source == "secretsmanager" and not re.fullmatch(
                r"[\w/+=.@:\-]{1,2048}", ref["secretsmanager"]
            ):
                _fail(
                    f"{where}.secretsmanager",
                    f"must be a secret's ARN or name (got {_show(ref['secretsmanager'])})",
                )
            out[name] = dict(ref)
        return out

    def to_dict(self) -> dict[str, Any]:
        """As :meth:`_Part.to_dict`, with the values of secret-looking ``env`` names shown as ``***``.

        What lands in ``spec.json``, ``to_yaml()`` and the report; the live value stays on ``env`` for the targets.
        """
        out = super().to_dict()
        out["env"] = redact_env(self.env)
        out["secrets"] = {k: dict(v) for k, v in self.secrets.items()}
        return out

    @property
    def default_metrics_path(self) -> str | None:
        """``metrics_path``, or ``/metrics`` for our own servers (they always expose Prometheus metrics)."""
        return self.metrics_path or (None if self.kind == "command" else "/metrics")

    @property
    def install_kind(self) -> Literal["requirements", "wheel", "project"] | None:
        """What ``install`` names: a requirements file (``.txt``), a wheel (``.whl``) or a project directory."""
        if self.install is None:
            return None
        if self.install.endswith(".whl"):
            return "wheel"
        return "requirements" if self.install.endswith(".txt") else "project"

    def _values(
        self, port: int, host: str, target_id: str, model: str, ports: Mapping[str, int] | None
    ) -> dict[str, Any]:
        values: dict[str, Any] = {"port": port, "host": host, "target_id": target_id, "model": model}
        given = dict(self.ports) if ports is None else dict(ports)
        for name in self.ports:
            if name not in given:
                raise SpecError(f"server.ports.{name}", "has no port for this target (pass ports=)")
            values[f"port_{name}"] = given[name]
        return values

    def render_command(
        self, *, port: int, host: str, target_id: str, model: str, ports: Mapping[str, int] | None = None
    ) -> list[str]:
        """``command`` with its placeholders filled for one target (``[]`` when there is none).

        ``ports`` gives each ``server.ports`` name its port for this target (default: the spec's values).

        Example::

            ServerSpec(command="app --port {port}").render_command(port=9001, host="127.0.0.1", target_id="i-1",
                                                                   model="demo")   # ['app', '--port', '9001']
        """
        values = self._values(port, host, target_id, model, ports)
        return [a.format(**values) for a in (self.command or ())]

    def environment(
        self, *, port: int, host: str, target_id: str, model: str, ports: Mapping[str, int] | None = None
    ) -> dict[str, str]:
        """The variables a target gets on top of the machine's: ``env`` (its placeholders filled) plus PORT, HOST,
        TARGET_ID, MODEL_PATH and ``PORT_<NAME>`` for each of ``ports``. ``secrets`` are not here: each backend
        resolves its references (the local fleet from its own environment, an instance at boot).

        Example::

            ServerSpec(command="app", ports={"grpc": 0}, env={"GRPC_ADDR": "{host}:{port_grpc}"}).environment(
                port=9001, host="127.0.0.1", target_id="i-1", model="demo", ports={"grpc": 9002})
            # {'GRPC_ADDR': '127.0.0.1:9002', 'PORT': '9001', ..., 'PORT_GRPC': '9002'}
        """
        values = self._values(port, host, target_id, model, ports)
        env = {k: self._fill(v, values) for k, v in self.env.items()}
        env.update({var: str(values[k]) for k, var in SERVER_PLACEHOLDERS.items()})
        env.update({f"PORT_{n.upper()}": str(values[f"port_{n}"]) for n in self.ports})
        return env

    def render_workdir(
        self, *, port: int, host: str, target_id: str, model: str, ports: Mapping[str, int] | None = None
    ) -> str | None:
        """``workdir`` with its placeholders filled (``runs/{target_id}`` gives each target its own), or None."""
        if self.workdir is None:
            return None
        return self._fill(self.workdir, self._values(port, host, target_id, model, ports))

    @staticmethod
    def _fill(text: str, values: Mapping[str, Any]) -> str:
        return _PLACEHOLDER_RE.sub(lambda m: str(values[m[1]]) if m[1] in values else m[0], text)


@dataclass(frozen=True, kw_only=True)
class LocalSpec(_Part):
    """The local fleet's compressed clock and emulated instance capacity.

    One CloudWatch period (60 s on AWS) lasts ``period_s`` here, and every count, interval, warm-up and delay in
    the spec is scaled by ``period_s / 60``. Each worker emulates an instance with ``slots`` concurrent requests
    and at least ``min_service_ms`` per request (extra requests queue), whatever this machine is doing.

    Example::

        LocalSpec(period_s=2, slots=2, min_service_ms=20)   # ~100 rps per target, one AWS minute = 2 s
    """

    _path: ClassVar[str] = "local"
    period_s: float = 2.0
    slots: int = 4
    min_service_ms: float = 10.0
    workers_per_target: int = 1

    def _validate(self, p: str) -> None:
        self._set("period_s", _num(f"{p}.period_s", self.period_s, 0.5, 60))
        self._set("slots", _int(f"{p}.slots", self.slots, 1, 1024))
        self._set("min_service_ms", _num(f"{p}.min_service_ms", self.min_service_ms, 0, 60_000))
        self._set("workers_per_target", _int(f"{p}.workers_per_target", self.workers_per_target, 1, 1))

    @property
    def time_scale(self) -> float:
        """Local seconds per AWS second (``period_s / 60``)."""
        return self.period_s / 60.0

    @property
    def capacity_rps(self) -> float:
        """Requests per second one emulated instance serves at most (``slots / min_service``)."""
        return float("inf") if self.min_service_ms == 0 else self.slots * 1000.0 / self.min_service_ms


@dataclass(frozen=True, kw_only=True)
class NetworkSpec(_Part):
    """VPC and exposure. Empty ``vpc_id``/``subnet_ids`` means the default VPC and its subnets.

    Example::

        NetworkSpec(client_cidrs=("203.0.113.0/24",), internal=False)
    """

    _path: ClassVar[str] = "network"
    vpc_id: str | None = None
    subnet_ids: tuple[str, ...] = ()
    client_cidrs: tuple[str, ...] = ("0.0.0.0/0",)
    internal: bool = False
    certificate_arn: str | None = None
    idle_timeout_s: int = 60

    def _validate(self, p: str) -> None:
        if self.vpc_id is not None and not re.fullmatch(
            r"vpc-[0-9a-f]{8,17}", _str(f"{p}.vpc_id", self.vpc_id)
        ):
            _fail(f"{p}.vpc_id", f"must be a VPC id such as vpc-0123abcd (got {_show(self.vpc_id)})")
        subnets = _str_tuple(f"{p}.subnet_ids", self.subnet_ids)
        for i, s in enumerate(subnets):
            if not re.fullmatch(r"subnet-[0-9a-f]{8,17}", s):
                _fail(f"{p}.subnet_ids[{i}]", f"must be a subnet id such as subnet-0123abcd (got {_show(s)})")
        if subnets and len(subnets) < 2:
            _fail(
                f"{p}.subnet_ids",
                f"must list at least two subnets in different zones for an ALB (got {len(subnets)})",
            )
        if subnets and self.vpc_id is None:
            _fail(f"{p}.vpc_id", "must be set when network.subnet_ids is given")
        cidrs = _str_tuple(f"{p}.client_cidrs", self.client_cidrs)
        if not cidrs:
            _fail(f"{p}.client_cidrs", "must list at least one CIDR block")
        self._set("client_cidrs", tuple(_cidr(f"{p}.client_cidrs[{i}]", c) for i, c in enumerate(cidrs)))
        self._set("subnet_ids", subnets)
        _bool(f"{p}.internal", self.internal)
        if self.certificate_arn is not None and not re.fullmatch(
            r"arn:aws[\w-]*:acm:[\w-]+:\d{12}:certificate/[\w-]+",
            _str(f"{p}.certificate_arn", self.certificate_arn),
        ):
            _fail(
                f"{p}.certificate_arn", f"must be an ACM certificate ARN (got {_show(self.certificate_arn)})"
            )
        self._set("idle_timeout_s", _int(f"{p}.idle_timeout_s", self.idle_timeout_s, 1, 4000))


RoutingPolicy = Literal["alb", "consistent_hash", "sticky_cookie"]
ROUTING_POLICIES: tuple[str, ...] = typing.get_args(RoutingPolicy)
# An HTTP header name / cookie name is an RFC 9110 "token" (https://www.rfc-editor.org/rfc/rfc9110#name-tokens).
_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# ALB application-based stickiness (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/
# sticky-sessions.html, checked 2026-12-07): the AWSALB, AWSALBAPP and AWSALBTG cookie-name prefixes are reserved,
# and the stickiness duration is 1 second to 1 week (604800 s).
_ALB_RESERVED_COOKIE_PREFIXES = ("AWSALB", "AWSALBAPP", "AWSALBTG")
_ALB_STICKINESS_S = (1, 604_800)


@dataclass(frozen=True, kw_only=True)
class RouterTierSpec(_Part):
    """AWS only: a small Auto Scaling group of HAProxy routers behind the ALB, for cache-aware routing there.

    The AWS backend owns the rules (instance types, prices, user data); the local fleet's own HAProxy already
    plays the router, so the local backend ignores this part.

    Example::

        RoutingSpec(policy="consistent_hash", router=RouterTierSpec(instance_type="t3.small", min=1, max=2))
    """

    _path: ClassVar[str] = "routing.router"
    instance_type: str = "t3.small"
    min: int = 1
    desired: int = 1
    max: int = 2

    def _validate(self, p: str) -> None:
        _str(f"{p}.instance_type", self.instance_type)
        self._set("min", _int(f"{p}.min", self.min, 1, 100))
        self._set("desired", _int(f"{p}.desired", self.desired, 1, 100))
        self._set("max", _int(f"{p}.max", self.max, 1, 100))
        if not self.min <= self.desired <= self.max:
            _fail(
                f"{p}.desired",
                f"must be between routing.router.min and routing.router.max (got min={self.min}, "
                f"desired={self.desired}, max={self.max})",
            )


@dataclass(frozen=True, kw_only=True)
class RoutingSpec(_Part):
    """How the load balancer picks a target for each request.

    * ``policy: alb`` (default): the ALB's own ``target_group.algorithm`` (round robin, least outstanding
      requests, weighted random).
    * ``policy: consistent_hash``: prefix/session affinity. Requests carrying the same ``key_header`` value go to
      the same target (HAProxy ``balance hdr(<key_header>)`` + ``hash-type consistent``), with bounded load:
      no target takes more than ``hash_balance_factor`` percent of the average in-flight requests (0 =
      unbounded). The CLIENT computes the key: our load generator sends a hash of the request's first prompt
      blocks (or its session id); a request without the header falls back to round robin. On AWS this needs the
      router tier (``router``), since an ALB cannot hash a header.
    * ``policy: sticky_cookie``: session stickiness the way an ALB does it with an application cookie: the first
      request of a session is placed by ``target_group.algorithm``, later ones carrying the same
      ``cookie_name`` value stick to that target for ``cookie_duration_s``.

    A cache-aware policy (``consistent_hash``, ``sticky_cookie``) on a workload that sends no key is refused
    before any request is sent (see ``ml.compare_routing``).

    Example::

        FleetSpec(name="llm", server={"kind": "llm-emulator"}, routing=RoutingSpec(policy="consistent_hash"))
        RoutingSpec(policy="sticky_cookie", cookie_name="session", cookie_duration_s=600)
    """

    _path: ClassVar[str] = "routing"
    policy: RoutingPolicy = "alb"
    key_header: str = "X-Prefix-Key"
    hash_balance_factor: int = 125
    cookie_name: str = "mlops-session"
    cookie_duration_s: int = 3600
    router: RouterTierSpec | None = None

    def _validate(self, p: str) -> None:
        if not isinstance(self.policy, str) or self.policy not in ROUTING_POLICIES:
            close = difflib.get_close_matches(str(self.policy), ROUTING_POLICIES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            _fail(
                f"{p}.policy",
                f"must be one of {', '.join(ROUTING_POLICIES)} (got {_show(self.policy)}){hint}; the ALB's own "
                "algorithms are chosen with target_group.algorithm under policy alb",
            )
        key = _str(f"{p}.key_header", self.key_header)
        if not _TOKEN_RE.fullmatch(key) or len(key) > 64:
            _fail(
                f"{p}.key_header", f"must be an HTTP header name of at most 64 characters (got {_show(key)})"
            )
        # HAProxy 2.6 hash-balance-factor: 0 disables bounded load, otherwise a percentage above 100
        # (https://docs.haproxy.org/2.6/configuration.html#4-hash-balance-factor).
        factor = _int(f"{p}.hash_balance_factor", self.hash_balance_factor, 0, 10_000)
        if 0 < factor <= 100:
            _fail(
                f"{p}.hash_balance_factor",
                f"must be 0 (unbounded) or a percentage above 100 such as 125 or 150 (got {factor})",
            )
        self._set("hash_balance_factor", factor)
        cookie = _str(f"{p}.cookie_name", self.cookie_name)
        if not _TOKEN_RE.fullmatch(cookie) or len(cookie) > 256:
            _fail(f"{p}.cookie_name", f"must be a cookie name (letters, digits, -_.!) (got {_show(cookie)})")
        if cookie.upper().startswith(_ALB_RESERVED_COOKIE_PREFIXES):
            _fail(
                f"{p}.cookie_name",
                f"must not start with AWSALB, AWSALBAPP or AWSALBTG (reserved by the ALB) (got {_show(cookie)})",
            )
        self._set(
            "cookie_duration_s", _int(f"{p}.cookie_duration_s", self.cookie_duration_s, *_ALB_STICKINESS_S)
        )
        if isinstance(self.router, Mapping):
            self._set("router", RouterTierSpec.from_dict(self.router))
        elif self.router is not None and not isinstance(self.router, RouterTierSpec):
            _fail(f"{p}.router", f"must be a RouterTierSpec, a mapping or null (got {_show(self.router)})")

    @property
    def cache_aware(self) -> bool:
        """True for the policies that route on a key the client sends (``consistent_hash``, ``sticky_cookie``)."""
        return self.policy != "alb"


@dataclass(frozen=True, kw_only=True)
class AwsSpec(_Part):
    """Values that apply only on AWS; the local backend ignores this section.

    ``health_check`` holds any HealthCheckSpec fields to use on AWS instead of the top-level ones: a local worker
    is ready in a second, an instance needs minutes to boot and install (see docs/aws.md, "Boot time"), so a
    spec tuned for the local clock can carry AWS-safe values here.

    Example::

        FleetSpec(name="demo", aws=AwsSpec(health_check={"grace_period_s": 600, "interval_s": 15}))
        spec.aws_health_check.grace_period_s     # 600 (what the AWS program uses)
    """

    _path: ClassVar[str] = "aws"
    health_check: Mapping[str, Any] = field(default_factory=dict)

    def _validate(self, p: str) -> None:
        if not isinstance(self.health_check, Mapping):
            _fail(
                f"{p}.health_check",
                f"must be a mapping of health_check fields (got {_show(self.health_check)})",
            )
        names = {f.name for f in dataclasses.fields(HealthCheckSpec)}
        for key in self.health_check:
            if key not in names:
                _unknown_field(f"{p}.health_check", key, names)
        self._set("health_check", dict(self.health_check))


@dataclass(frozen=True, kw_only=True)
class FleetSpec(_Part):
    """A whole fleet: load balancer, target group, Auto Scaling group, scaling policy and model.

    Example::

        spec = FleetSpec(name="demo")                        # every other field has a working default
        spec = FleetSpec.from_yaml("fleet.yaml")
        spec.replace(capacity=CapacitySpec(min=1, desired=3, max=6))
    """

    _path: ClassVar[str] = ""
    name: str
    region: str | None = None
    instance: InstanceSpec = field(default_factory=InstanceSpec)
    capacity: CapacitySpec = field(default_factory=CapacitySpec)
    health_check: HealthCheckSpec = field(default_factory=HealthCheckSpec)
    target_group: TargetGroupSpec = field(default_factory=TargetGroupSpec)
    scaling: ScalingPolicySpec = field(default_factory=ScalingPolicySpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    server: ServerSpec = field(default_factory=ServerSpec)
    local: LocalSpec = field(default_factory=LocalSpec)
    network: NetworkSpec = field(default_factory=NetworkSpec)
    tags: Mapping[str, str] = field(default_factory=dict)
    aws: AwsSpec = field(default_factory=AwsSpec)
    routing: RoutingSpec = field(default_factory=RoutingSpec)

    def _validate(self, p: str) -> None:
        name = _str("name", self.name)
        if len(name) > MAX_NAME_LEN:
            _fail("name", f"must be at most {MAX_NAME_LEN} characters (got {len(name)}: {_show(name)})")
        if not _NAME_RE.fullmatch(name):
            _fail("name", f"must use letters, digits and inner hyphens only (got {_show(name)})")
        # Which regions exist is the backend's rule (AWS: us-east-1, ...; spec.check(backend=...)).
        _opt_str("region", self.region)
        for fname, ftype in (
            ("instance", InstanceSpec),
            ("capacity", CapacitySpec),
            ("health_check", HealthCheckSpec),
            ("target_group", TargetGroupSpec),
            ("scaling", ScalingPolicySpec),
            ("model", ModelSpec),
            ("server", ServerSpec),
            ("local", LocalSpec),
            ("network", NetworkSpec),
            ("aws", AwsSpec),
            ("routing", RoutingSpec),
        ):
            value = getattr(self, fname)
            if isinstance(value, Mapping):  # FleetSpec(name="x", capacity={"max": 6}) works like from_dict
                self._set(fname, ftype.from_dict(value, _path=fname))
            elif not isinstance(value, ftype):
                _fail(
                    fname,
                    f"must be a {ftype.__name__} or a mapping of its fields (got {_show(getattr(self, fname))})",
                )
        if not isinstance(self.tags, Mapping):
            _fail("tags", f"must be a mapping of strings to strings (got {_show(self.tags)})")
        if len(self.tags) > 40:
            _fail("tags", f"must have at most 40 entries (got {len(self.tags)})")
        for k, v in self.tags.items():
            where = f"tags.{k if isinstance(k, str) else _show(k)}"
            if not isinstance(k, str) or not _TAG_KEY_RE.fullmatch(k) or k.lower().startswith("aws:"):
                _fail(where, "key must be 1-128 letters, digits, spaces or _.:/=+-@ and not start with aws:")
            if not isinstance(v, str) or len(v) > 256:
                _fail(where, f"value must be a string of at most 256 characters (got {_show(v)})")
        self._set("tags", dict(self.tags))
        if self.server.gpus is not None and not is_gpu_instance_type(self.instance.type):
            _fail(
                "server.gpus",
                f"needs a GPU instance type such as g5.xlarge or g6.xlarge (instance.type is {self.instance.type!r})",
            )
        if self.routing.router is not None and self.server.kind == "model":
            _fail(
                "routing.router",
                "needs an LLM server (server.kind llm-emulator, or your own with kind command): a router tier "
                "routes on prompt prefixes, which server.kind model has none of; remove routing.router",
            )
        self._check_spot()
        try:
            self.aws_health_check  # noqa: B018 - validates the aws: overrides against HealthCheckSpec's rules
        except SpecError as exc:
            raise SpecError(f"aws.{exc.field}" if exc.field else "aws", str(exc).split(" ", 1)[-1]) from None

    def _check_spot(self) -> None:
        # Rules that hold on every backend (the local ASG emulates AWS's): the AWS-only ones (architectures,
        # type names, offerings) are in mlops_lb.aws.spec_rules and the preflight.
        from . import _aws_rules as rules

        spot = self.capacity.spot
        if spot is None:
            return
        if self.capacity.warm_pool is not None:
            _fail(
                "capacity.warm_pool",
                rules.cite(
                    "spot-warm-pool",
                    "must be null when capacity.spot is set: AWS refuses a warm pool on a group with a mixed "
                    "instances policy or Spot Instances; drop one of the two",
                ),
            )
        delay = self.target_group.deregistration_delay_s
        if delay > rules.SPOT_DEREGISTRATION_DELAY_MAX:
            _fail(
                "target_group.deregistration_delay_s",
                rules.cite(
                    "spot-deregistration-delay",
                    f"must be <= {rules.SPOT_DEREGISTRATION_DELAY_MAX} s with capacity.spot (got {delay}; AWS's "
                    f"default is 300): a spot instance gets a {rules.SPOT_NOTICE_S} s notice, and draining must "
                    "end before EC2 reclaims it, or in-flight requests fail; set e.g. 60",
                ),
            )
        types_ = spot.types_for(self.instance.type)
        if spot.on_demand_base > self.capacity.max:
            unit = "units" if spot.weighted else "instances"
            _fail(
                "capacity.spot.on_demand_base",
                f"must be <= capacity.max ({self.capacity.max} {unit}) (got {spot.on_demand_base})",
            )
        if len(types_) > rules.SPOT_MAX_OVERRIDES:
            _fail(
                "capacity.spot.instance_types",
                rules.cite(
                    "spot-overrides",
                    f"must list at most {rules.SPOT_MAX_OVERRIDES} instance types (got {len(types_)})",
                ),
            )

    @property
    def aws_health_check(self) -> HealthCheckSpec:
        """The health check the AWS program uses: ``health_check`` with the ``aws.health_check`` overrides."""
        if not self.aws.health_check:
            return self.health_check
        return HealthCheckSpec(**{**self.health_check.to_dict(), **self.aws.health_check})

    # ------------------------------------------------------------------ conveniences
    def check(self, *, backend: str) -> FleetSpec:
        """Apply ``backend``'s own rules to this spec (names, regions, instance types it refuses); returns ``self``.

        ``open_fleet`` runs the same check before any process or cloud call, so calling it is only needed to
        validate a spec for a backend without opening a fleet. A backend without rules of its own accepts every
        valid spec.

        Example::

            FleetSpec(name="sg-demo").check(backend="local")   # fine: only EC2 refuses sg- names
            FleetSpec(name="sg-demo").check(backend="aws")     # SpecError: name must not start with 'sg-' ...
        """
        if backend not in _SPEC_CHECKS:
            close = difflib.get_close_matches(str(backend), list(_SPEC_CHECKS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            _fail("backend", f"must be one of {', '.join(_SPEC_CHECKS)} (got {_show(backend)}){hint}")
        target = _SPEC_CHECKS[backend]
        if target is not None:
            module, _, attr = target.partition(":")
            getattr(importlib.import_module(module), attr)(self)
        return self

    def replace(self, **changes: Any) -> FleetSpec:
        """A copy with some top-level fields changed, validated again."""
        names = [f.name for f in dataclasses.fields(self)]
        for key in changes:
            if key not in names:
                _unknown_field("", key, names)
        return dataclasses.replace(self, **changes)

    def rescaled(self, **changes: Unpack[ScaleChange]) -> FleetSpec:
        """A validated copy with new capacity bounds, desired capacity or tracking target (see :class:`ScaleChange`).

        This is the one place ``scale()`` arguments are checked and clamped, for every backend: without
        ``desired``, the current desired capacity is clamped into the new bounds, as AWS does when only min or
        max changes. Values are stored as plain ints and floats (a numpy integer is fine; a bool or a float
        where an integer belongs, or an unknown keyword, is a SpecError naming the field).

        Example::

            spec = FleetSpec(name="demo", capacity=CapacitySpec(min=1, desired=3, max=6))
            spec.rescaled(max=2).capacity        # CapacitySpec(min=1, desired=2, max=2)
        """
        for key in changes:
            if key not in ScaleChange.__annotations__:
                _unknown_field("", key, ScaleChange.__annotations__)
        cap = self.capacity
        asked_min, desired, asked_max = changes.get("min"), changes.get("desired"), changes.get("max")
        new_min = cap.min if asked_min is None else asked_min
        new_max = cap.max if asked_max is None else asked_max
        if desired is None:
            desired = cap.desired
            if _is_int(new_min) and _is_int(new_max) and new_min <= new_max:
                desired = max(new_min, min(new_max, cap.desired))
        parts: dict[str, Any] = {
            "capacity": dataclasses.replace(cap, min=new_min, desired=desired, max=new_max)
        }
        target_rps_per_target = changes.get("target_rps_per_target")
        if target_rps_per_target is not None:
            if self.scaling.metric != "request_count_per_target":
                raise SpecError(
                    "target_rps_per_target",
                    f"does not apply: this fleet's policy tracks {self.scaling.metric} "
                    f"(target {self.scaling.target_concurrency_per_target:g} in-flight requests per target)",
                )
            parts["scaling"] = dataclasses.replace(self.scaling, target_rps_per_target=target_rps_per_target)
        return dataclasses.replace(self, **parts)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, _path: str | None = None) -> FleetSpec:
        """Build from a plain dict (what ``to_dict`` returns, or parsed YAML/JSON)."""
        return super().from_dict(data, _path="")  # type: ignore[no-any-return]

    def to_yaml(self, path: str | Path | None = None) -> str:
        """YAML text of ``to_dict()``; also written to ``path`` when given."""
        import yaml

        text = yaml.dump(self.to_dict(), Dumper=_spec_dumper(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, source: str | Path) -> FleetSpec:
        """Load from a YAML file path, or from YAML text when ``source`` contains a newline.

        A path is never guessed from the text (``C:\\specs\\a.yaml`` has a colon too): one-line YAML needs a
        trailing newline, ``FleetSpec.from_yaml("name: demo\\n")``.
        """
        import yaml

        if not isinstance(source, (str, Path)):
            raise SpecError(None, f"from_yaml takes a path or YAML text (got {type(source).__name__})")
        text: str
        if isinstance(source, Path) or "\n" not in source:
            p = Path(source)
            try:
                text = p.read_text()
            except (OSError, ValueError) as exc:  # missing, a directory, unreadable, or a NUL in the name
                hint = " (to pass YAML text, end it with a newline)" if ":" in str(source) else ""
                raise SpecError(None, f"spec file {_show(str(p))} cannot be read: {exc}{hint}") from exc
        else:
            text = source
        try:
            data = yaml.load(text, Loader=_spec_loader())  # a SafeLoader subclass: safe
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise SpecError(None, f"spec is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from exc
        except (ValueError, RecursionError) as exc:  # e.g. an integer too long to convert, absurd nesting
            raise SpecError(
                None, f"spec YAML holds a value that cannot be read: {_show(str(exc), 120)}"
            ) from exc
        if not isinstance(data, Mapping):
            raise SpecError(
                None, f"spec YAML must be a mapping with at least 'name' (got {type(data).__name__})"
            )
        return cls.from_dict(data)

    @classmethod
    def example(cls, which: str = "demo") -> FleetSpec:
        """A bundled example spec (``demo``: tuned so scaling is visible on two cores)."""
        from importlib.resources import files

        folder = files("mlops_lb.examples")
        names = sorted(f.name[: -len(".yaml")] for f in folder.iterdir() if f.name.endswith(".yaml"))
        if which not in names:
            raise SpecError(None, f"there is no example spec {_show(which)} (available: {', '.join(names)})")
        return cls.from_yaml(folder.joinpath(f"{which}.yaml").read_text())
