"""The sandbox's ``aws`` command: serves ``s3 cp`` from a folder holding the stack's real uploaded assets and
records every other call (the recorded calls are the assertion: moto 5 does not implement CompleteLifecycleAction).

Answers follow the AWS CLI v2's documented behaviour (https://docs.aws.amazon.com/cli/latest/topic/return-codes.html,
read 2026-12-06): exit 0 on success, 1 when an ``s3`` transfer fails, 254 when the service answered with an error;
``--output text`` with ``--query`` prints the bare value (``None`` for a missing one).

The Auto Scaling side is driven by the test through files in ``$SANDBOX_ROOT/asg``: ``group`` (this instance's group,
absent = the group does not know the instance yet), ``pending-action`` (a lifecycle action is waiting:
CompleteLifecycleAction and RecordLifecycleActionHeartbeat succeed only then; completing removes it, as AWS
answers "No active Lifecycle Action found" afterwards). ``ssm get-parameter`` and ``secretsmanager
get-secret-value`` read ``$SANDBOX_ROOT/secrets.json`` and answer as the API does (GetParameter
``{"Parameter": {"Value": ...}}``, GetSecretValue ``{"SecretString": ...}``), or the bare value with ``--query``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(os.environ["SANDBOX_ROOT"])


def opt(argv: list[str], name: str) -> str | None:
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def record(argv: list[str], rc: int) -> None:
    with (ROOT / "aws-calls.jsonl").open("a") as f:
        f.write(json.dumps({"t": time.time(), "argv": argv, "rc": rc}) + "\n")


def s3_cp(argv: list[str]) -> int:
    words = [a for i, a in enumerate(argv) if not a.startswith("--") and argv[i - 1] not in ("--region",)]
    src, dest = words[-2], words[-1]
    if not src.startswith("s3://"):
        print(f"sandbox aws: only downloads are served (got {src})", file=sys.stderr)
        return 1
    local = ROOT / "s3" / src[len("s3://") :]
    if "--recursive" in argv:
        if not local.is_dir():
            return 1
        for f in sorted(p for p in local.rglob("*") if p.is_file()):
            target = Path(dest) / f.relative_to(local)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
        return 0
    if not local.is_file():
        print(
            f"fatal error: An error occurred (404) when calling the HeadObject operation: Key {src}",
            file=sys.stderr,
        )
        return 1
    target = Path(dest) if not dest.endswith("/") else Path(dest) / local.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(local, target)
    return 0


def describe(op: str, argv: list[str]) -> dict[str, object]:
    """DescribeAutoScalingGroups / DescribeInstances as the APIs answer (--output json): ``asg/models.json`` holds
    ``{"group": name, "instances": [{"InstanceId", "LifecycleState", "PrivateIpAddress"}]}``; an unknown group
    answers no group, unknown instance ids no reservation (API_DescribeAutoScalingGroups, API_DescribeInstances)."""
    path = ROOT / "asg" / "models.json"
    models = json.loads(path.read_text()) if path.is_file() else {"group": "", "instances": []}
    if op == "describe-auto-scaling-groups":
        if opt(argv, "--auto-scaling-group-names") != models["group"]:
            return {"AutoScalingGroups": []}
        members = [{k: i[k] for k in ("InstanceId", "LifecycleState")} for i in models["instances"]]
        return {"AutoScalingGroups": [{"AutoScalingGroupName": models["group"], "Instances": members}]}
    ids: set[str] = set()
    for a in argv[argv.index("--instance-ids") + 1 :] if "--instance-ids" in argv else []:
        if a.startswith("--"):  # the ids end where the next option starts
            break
        ids.add(a)
    found = [
        {
            "InstanceId": i["InstanceId"],
            "PrivateIpAddress": i["PrivateIpAddress"],
            "State": {"Name": "running"},
        }
        for i in models["instances"]
        if i["InstanceId"] in ids
    ]
    return {"Reservations": [{"Instances": found}]} if found else {"Reservations": []}


def main(argv: list[str]) -> int:
    asg = ROOT / "asg"
    service, op = [*argv, "", ""][:2]
    rc = 0
    out = ""
    if (service, op) == ("s3", "cp"):
        rc = s3_cp(argv[2:])
    elif (service, op) == ("autoscaling", "describe-auto-scaling-instances"):
        group = asg / "group"
        out = group.read_text().strip() if group.is_file() else "None"
    elif (service, op) in (
        ("autoscaling", "complete-lifecycle-action"),
        ("autoscaling", "record-lifecycle-action-heartbeat"),
    ):
        pending = asg / "pending-action"
        if not pending.is_file() or pending.read_text().strip() != opt(argv, "--lifecycle-hook-name"):
            print(
                f"An error occurred (ValidationError) when calling the {op} operation: "
                f"No active Lifecycle Action found with instance ID {opt(argv, '--instance-id')}",
                file=sys.stderr,
            )
            rc = 254
        elif op == "complete-lifecycle-action":
            pending.unlink()
    elif (service, op) == ("cloudwatch", "put-metric-data"):
        pass
    elif (service, op) in (("autoscaling", "describe-auto-scaling-groups"), ("ec2", "describe-instances")):
        out = json.dumps(describe(op, argv))  # the router tier's discovery (asg/models.json, test-driven)
    elif (service, op) == ("elbv2", "deregister-targets"):
        # DeregisterTargets succeeds for a target that is not registered too (API_DeregisterTargets); the recorded
        # call (target group ARN, Id=<instance>,Port=<port>) is what the spot test asserts.
        pass
    elif (service, op) in (("ssm", "get-parameter"), ("secretsmanager", "get-secret-value")):
        store = json.loads((ROOT / "secrets.json").read_text()) if (ROOT / "secrets.json").is_file() else {}
        name = opt(argv, "--name") or opt(argv, "--secret-id") or ""
        if name not in store:
            print(
                f"An error occurred (ResourceNotFoundException) when calling the {op} operation",
                file=sys.stderr,
            )
            rc = 254
        elif opt(argv, "--query"):  # --query SecretString --output text: the bare value
            out = store[name]
        elif service == "ssm":  # the GetParameter answer the CLI prints with --output json
            out = json.dumps({"Parameter": {"Name": name, "Type": "SecureString", "Value": store[name]}})
        else:  # GetSecretValue's answer
            out = json.dumps({"Name": name, "SecretString": store[name]})
    else:
        print(f"sandbox aws: not emulated: {' '.join(argv)}", file=sys.stderr)
        rc = 252
    record(argv, rc)
    if out:
        print(out)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
