"""What replaces instances, by AWS's and pulumi-aws's documented rules: a tag edit must not; health replacements and
refreshes launch before they terminate.

Rules encoded here:
* pulumi-aws ``GroupInstanceRefresh.triggers`` (installed SDK 7.51, read 2026-12-07): "A refresh will always be
  triggered by a change in any of launch_configuration, launch_template, or mixed_instances_policy", plus the
  properties named in ``triggers``. A launch template gets a new version when its version data changes (everything
  but the template resource's own ``tags``), and the group points at the latest version.
* https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-instance-maintenance-policy.html (read
  2026-12-07): with an instance maintenance policy Auto Scaling "first launches a new instance and then waits for it
  to be fully ready before terminating the unhealthy instance"; without one it terminates and launches together.

Old code: ``triggers=["tag"]`` and the spec's tags in the template's tag specifications (version data): editing one
tag replaced every instance. No ``instance_maintenance_policy``: an unhealthy instance was terminated first.
"""

from __future__ import annotations

from typing import Any

from mlops_lb import FleetSpec

LT = "aws:ec2/launchTemplate:LaunchTemplate"
ASG = "aws:autoscaling/group:Group"
_ALWAYS = ("launchConfiguration", "launchTemplate", "mixedInstancesPolicy")
_TRIGGER_PROPS = {"tag": "tags"}  # a trigger name -> the group input it watches


def _new_template_version(a: dict[str, Any], b: dict[str, Any]) -> bool:
    strip = {"tags", "tagsAll", "name", "updateDefaultVersion"}
    return {k: v for k, v in a.items() if k not in strip} != {k: v for k, v in b.items() if k not in strip}


def refreshes(before: Any, after: Any) -> list[str]:
    """Why the update from ``before`` to ``after`` starts an instance refresh ([] = it does not)."""
    why = []
    if _new_template_version(before.one(LT), after.one(LT)):
        why.append("new launch-template version")
    ga, gb = before.one(ASG), after.one(ASG)
    why += [f"group {k} changed" for k in _ALWAYS if ga.get(k) != gb.get(k)]
    for trig in (gb.get("instanceRefresh") or {}).get("triggers") or []:
        prop = _TRIGGER_PROPS.get(trig, trig)
        if ga.get(prop) != gb.get(prop):
            why.append(f"trigger {trig}: group {prop} changed")
    return why


def test_a_tag_edit_starts_no_instance_refresh(run_program: Any) -> None:
    """Changing the value of one spec tag changes the group's tags (propagated to new instances) and nothing that
    starts a refresh."""
    before = run_program(FleetSpec(name="tags", tags={"team": "a"}))
    after = run_program(FleetSpec(name="tags", tags={"team": "b"}))
    assert any(t["value"] == "b" for t in after.one(ASG)["tags"])  # the edit did reach the group
    assert refreshes(before, after) == []


def test_a_code_change_still_refreshes(run_program: Any, fake_wheel: Any, tmp_path: Any) -> None:
    """The other direction: new user data is a new template version, hence a refresh."""
    from mlops_lb.aws.program import Assets

    other = tmp_path / fake_wheel.name
    other.write_bytes(fake_wheel.read_bytes() + b"\0")
    spec = FleetSpec(name="code")
    before = run_program(spec)
    after = run_program(spec, assets=Assets(wheel=other))
    assert refreshes(before, after) == ["new launch-template version"]


def test_health_replacements_launch_before_they_terminate(run_program: Any) -> None:
    """The group carries an instance maintenance policy keeping 100 % healthy, up to 200 % during replacement."""
    g = run_program(FleetSpec(name="mp")).one(ASG)
    assert g["instanceMaintenancePolicy"] == {"minHealthyPercentage": 100, "maxHealthyPercentage": 200}
