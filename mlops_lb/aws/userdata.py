"""The EC2 user data that turns an Amazon Linux 2023 instance into one target of the fleet.

(Over 500 lines on purpose: the user data is one bash script that must stay byte-identical when nothing
changed; every piece of it — bootstrap, the unit of each server kind, the metrics agent, the lifecycle watcher — is
rendered here in order, so a diff of this module is a diff of what instances run.)

Amazon Linux 2023 keeps ``/usr/bin/python3`` at 3.9 for its whole life and system tools (dnf) depend on it, so
the instance's Python (3.11-3.14, ``python_version``: what :func:`mlops_lb.aws.assets.instance_python` resolved)
is installed side by side and this package lives in its own venv; the symlink is never touched.
Everything pip installs comes from the stack's private bucket: this package's wheel and a *wheelhouse* of the
exact versions of the environment that launched the fleet, installed with ``--no-index`` (boot never depends
on PyPI and two instances never differ). Every network step retries with backoff; the script logs to the
console (``fleet.logs(target)`` reads it through EC2 GetConsoleOutput) and to ``/var/log/mlops-lb-bootstrap.log``.

With a warm pool, instances are stopped as soon as they launch, *without waiting for user data*, and cloud-init
runs user data on the first boot only (DESIGN §4); leaving a running pool or resuming from hibernation is no boot
at all. So the server is a systemd unit enabled at boot, and a second one, ``mlops-lb-lifecycle``, runs for the
instance's whole life: it polls IMDS ``autoscaling/target-lifecycle-state`` and, each time the instance is headed
for ``Warmed:*`` or ``InService`` and the local health check passes, completes the ``EC2_INSTANCE_LAUNCHING``
lifecycle action (extending it with heartbeats while the server is not healthy yet), so an instance leaves
``Warmed:Pending:Wait`` and ``Pending:Wait`` only when it can serve.

The script is a pure function of its arguments: the same inputs give the same bytes (no timestamps, no random
values), so a second ``pulumi up`` leaves the launch template alone.

Example::

    script = render_user_data(bucket="mlops-lb-assets-1a2b3c", region="us-east-1",
                              wheel_key="wheels/0123abcd/mlops_lb-0.1.0-py3-none-any.whl", port=8080)
"""

from __future__ import annotations

import base64
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "BOOT_STEPS",
    "CONTAINER_NAME",
    "EXPECTED_BOOT_S",
    "SERVE_REQUIREMENTS",
    "SERVICE_NAME",
    "VENV",
    "MetricsAgent",
    "RouterRun",
    "ServerRun",
    "SpotAgentUnit",
    "render_router_user_data",
    "render_user_data",
]

VENV = "/opt/mlops_lb"
# The lifecycle state whose launching action the watcher last completed; the metrics agent reads it.
LIFECYCLE_DONE = f"{VENV}/lifecycle.done"
SERVICE_NAME = "mlops-lb"
LOG_FILE = "/var/log/mlops-lb-bootstrap.log"
CONTAINER_NAME = "mlops-lb-server"
APP_DIR = f"{VENV}/app"  # where server.install's project directory is unpacked; a command's working directory
# systemd's stop: SIGTERM to the main process, TimeoutStopSec= later SIGKILL to what is left of the unit
# (KillMode=mixed, https://www.freedesktop.org/software/systemd/man/latest/systemd.kill.html).
_TARGET_ID = (
    "\x00TARGET_ID\x00"  # stands for the instance id while the command is rendered; NUL is never in argv
)
# What `mlops-lb serve` needs (pyproject's `serve` extra; a test keeps the two equal). The launching environment
# resolves their whole closure for the instance (mlops_lb.aws.assets.resolve_requirements) into the wheelhouse.
SERVE_REQUIREMENTS = (
    "fastapi>=0.110",
    "uvicorn[standard]>=0.29",
    "uvloop>=0.19",
    "httptools>=0.6",
    "scikit-learn>=1.4",
    "joblib>=1.3",
    "skops>=0.10",
    "onnxruntime>=1.17",
    "prometheus-client>=0.20",
    "numpy>=1.26",
    "pyyaml>=6",
)
# The bootstrap on paper (seconds, a t3.small, typical; not measured on AWS here): from RunInstances to the first
# passing check. docs/aws.md lists the same table; preflight fails a grace period shorter than this plus
# healthy_threshold x interval (the default spec, 300 >= 150 + 5 x 30, just fits).
BOOT_STEPS: tuple[tuple[str, int], ...] = (
    ("pending -> running, kernel boot, cloud-init starts user data", 40),
    ("dnf install python3.N (repo metadata + packages, retried)", 40),
    ("aws s3 cp wheel + wheelhouse (+ model) from the stack bucket", 10),
    ("pip install --no-index from the wheelhouse (numpy, scipy, scikit-learn, ...)", 50),
    ("systemd starts the server, model loads, /health answers", 10),
)
EXPECTED_BOOT_S = sum(s for _, s in BOOT_STEPS)

# retry N CMD...: run CMD up to N times, sleeping 2, 4, 8 ... 30 s between attempts.
_RETRY = """retry() {
  local n=$1 i=1 delay=2; shift
  until "$@"; do
    if [ "$i" -ge "$n" ]; then echo "mlops-lb: giving up after $n attempts: $*" >&2; return 1; fi
    echo "mlops-lb: attempt $i/$n failed: $* (retrying in ${delay}s)" >&2
    sleep "$delay"; i=$((i + 1)); delay=$((delay * 2)); if [ "$delay" -gt 30 ]; then delay=30; fi
  done
  return 0
}"""


@dataclass(frozen=True)
class ServerRun:
    """What the instance runs, resolved from the spec's ``server`` and ``model`` sections (see ``_parts``).

    ``secrets`` are references the instance resolves at boot with its role into the 0600 env file; their values
    are never in the user data.

    ``kind``: ``model`` / ``llm-emulator`` (our package, from the wheel), ``command`` (the user's argv, run by
    systemd in the venv, after ``install``) or ``image`` (a container, run by systemd with docker).
    ``model_path`` is what ``{model}`` / MODEL_PATH become on the instance; ``model_s3`` an ``s3://`` object the
    instance downloads there with its role. ``argv`` is the command (or the container's arguments) with
    placeholders still in it; ``port`` is what the server listens on (the container port for an image).

    Example::

        ServerRun(kind="command", argv=("python", "app.py", "--port", "{port}"), port=8080)
    """

    kind: str = "model"
    port: int = 8080
    argv: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    model_path: str = "demo"
    model_s3: str | None = None
    llm_flags: tuple[str, ...] = ()
    model_flags: tuple[
        str, ...
    ] = ()  # `serve --allow-pickle` / `--trust-type NAME` (spec model.allow_pickle...)
    image: str | None = None
    gpus: str | int | None = None
    ecr_registry: str | None = None  # <account>.dkr.ecr.<region>.amazonaws.com: docker login with the role
    registry_auth: str | None = None  # a Secrets Manager secret {"username": ..., "password": ...}
    install_kind: str | None = None  # requirements | wheel | project
    install_key: str | None = None  # its content-addressed bucket key
    install_dir: str = ""  # for a project: its path below APP_DIR (the path it had locally, when relative)
    drain_timeout_s: int = 30
    # server.secrets: (NAME, "ssm" | "secretsmanager", parameter name / secret id, JSON key or ""), read at boot
    secrets: tuple[tuple[str, str, str, str], ...] = ()

    @property
    def needs_package(self) -> bool:
        """True when the instance installs mlops_lb itself (our model server or LLM emulator)."""
        return self.kind in ("model", "llm-emulator")


@dataclass(frozen=True)
class MetricsAgent:
    """The per-instance agent behind ``scaling.metric: concurrency_per_target``.

    Every ``sample_s`` it scrapes ``url`` (Prometheus text) and sums the gauges named in ``gauges``; every
    ``period_s`` it publishes the samples as one statistic set (SampleCount, Sum, Minimum, Maximum) of
    ``metric`` in ``namespace``, once with the ``AutoScalingGroupName`` dimension (what target tracking reads,
    statistic Average = all samples of all instances / their count) and once with ``InstanceId`` (per-target
    rows of the MetricFrame). A scrape that fails (the server is not up yet) adds no sample, so a booting
    instance does not pull the average down.

    Example::

        MetricsAgent(url="http://127.0.0.1:8080/metrics", gauges=("mlops_in_flight_requests",))
    """

    url: str
    gauges: tuple[str, ...]
    namespace: str = "MlopsLb"
    metric: str = "ConcurrencyPerTarget"
    sample_s: int = 5
    period_s: int = 60


@dataclass(frozen=True)
class SpotAgentUnit:
    """The spot agent's unit (``capacity.spot``): :mod:`mlops_lb.serving.spot_agent`, the same file the local
    fleet runs, shipped inside the user data (gzip + base64; stdlib only, so AL2023's ``python3`` runs it for
    every server kind) and started at boot. On the interruption notice it calls ``aws elbv2 deregister-targets``
    on ``target_group_arn`` for ``Id=<instance id>,Port=<port>``.

    Example::

        SpotAgentUnit(target_group_arn="arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/t/1", port=8080)
    """

    target_group_arn: str
    port: int
    # AWS recommends checking at least every 5 s (rule spot-notice); 2 s keeps notice -> DeregisterTargets under
    # 5 s with the CLI's own start-up (the sandbox measured 4.5 s at a 5 s poll: too close).
    poll_s: int = 2


def render_user_data(
    *,
    bucket: str,
    region: str,
    wheel_key: str,
    port: int,
    model_key: str | None = None,
    wheelhouse_prefix: str | None = None,
    lifecycle_hook: str | None = None,
    health_path: str = "/health",
    server: ServerRun | None = None,
    agent: MetricsAgent | None = None,
    ready_wait_s: int = 600,
    python_version: str = "3.11",
    spot: SpotAgentUnit | None = None,
) -> str:
    """The cloud-init shell script (plain text; the launch template base64-encodes it).

    ``model_key`` is the bucket key of a user model; without it the server loads the bundled demo model.
    ``wheelhouse_prefix`` is the bucket prefix holding the pinned wheels and their ``requirements.txt``;
    ``lifecycle_hook`` names the launching hook the lifecycle watcher completes (warm pools). The keys are
    content-addressed, so a changed wheel or model changes the script (and rolls the instances) and nothing
    else does. ``server`` says what runs (default: our model server with ``model_key``); ``agent`` adds the
    concurrency publisher. ``port`` is the instance's port (the target group's). ``python_version`` is the
    AL2023 Python (``3.11``-``3.14``) the venv is made with; the wheelhouse must have been resolved for it.
    """
    py = _python_version(python_version)
    boot_units = _boot_units(
        region=region, port=port, health_path=health_path, lifecycle_hook=lifecycle_hook, wait_s=ready_wait_s,
        agent=agent, spot=spot,
    )  # fmt: skip
    if server is not None and not server.needs_package:
        return _render_byo(
            bucket=bucket, region=region, port=port, server=server, model_key=model_key, boot_units=boot_units,
            py=py,
        )  # fmt: skip
    server = server or ServerRun(port=port)
    q = shlex.quote
    wheel_name = wheel_key.rsplit("/", 1)[-1]
    wheel_path = f"{VENV}/dist/{wheel_name}"
    s3 = f"aws s3 cp --region {q(region)}"
    model_arg = (
        server.model_path
    )  # "demo", or "demo.onnx" (bundled in the wheel), unless a file is fetched below
    fetch = [f"retry 8 {s3} {q(f's3://{bucket}/{wheel_key}')} {q(wheel_path)}"]
    if model_key:
        model_arg = f"{VENV}/model/{model_key.rsplit('/', 1)[-1]}"
        fetch.append(f"retry 8 {s3} {q(f's3://{bucket}/{model_key}')} {q(model_arg)}")
    elif server.model_s3:  # the user's own object, read with the role (GetObject on it only); never copied
        model_arg = server.model_path
        fetch.append(f"retry 8 {s3} {q(server.model_s3)} {q(model_arg)}")
    pip = f"{VENV}/bin/python -m pip install --disable-pip-version-check --no-index"
    if wheelhouse_prefix:
        fetch.append(
            f"retry 8 {s3} --recursive {q(f's3://{bucket}/{wheelhouse_prefix}/')} {VENV}/wheelhouse/"
        )
        install = (
            f"{pip} --find-links {VENV}/wheelhouse -r {VENV}/wheelhouse/requirements.txt\n"
            f"{pip} --no-deps {q(wheel_path)}"
        )
    else:  # no wheelhouse (tests, or a user who opted out): still no index for the package itself
        install = f"{pip} --no-deps {q(wheel_path)}"
    fetch_lines = "\n".join(fetch)
    if server.kind == "llm-emulator":
        exec_start = (
            f"{VENV}/bin/mlops-lb serve --llm --host 0.0.0.0 --port {int(port)} --target-id ${{TARGET_ID}}"
            + "".join(f" {_systemd_word(a)}" for a in server.llm_flags)
        )
        description = "mlops_lb LLM emulator"
    else:
        exec_start = (
            f"{VENV}/bin/mlops-lb serve --host 0.0.0.0 --port {int(port)} --model {_unit_word(model_arg)} "
            "--target-id ${TARGET_ID}" + "".join(f" {_systemd_word(a)}" for a in server.model_flags)
        )
        description = "mlops_lb model server"
    return f"""#!/bin/bash
# mlops_lb instance bootstrap
set -euo pipefail
# Console (GetConsoleOutput, fleet.logs()) and a file, with timestamps from the journal.
exec > >(tee -a {LOG_FILE} | logger -t mlops-lb-bootstrap -s 2>/dev/console) 2>&1
set -x
{_RETRY}

# Side-by-side Python: AL2023's system python3 (3.9) stays as it is; dnf needs it.
retry 5 dnf install -y python{py} python{py}-pip

mkdir -p {VENV}/dist {VENV}/model {VENV}/wheelhouse
{fetch_lines}
python{py} -m venv {VENV}
{install}

# IMDSv2 (http_tokens=required): a session token first, then the instance id.
# The token unlocks the role's credentials in IMDS: tracing stops while it is in use (set -x printed it to the
# console, which GetConsoleOutput and fleet.logs() show).
{{ set +x; }} 2>/dev/null
TOKEN=$(retry 5 curl -sSf -X PUT http://169.254.169.254/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
INSTANCE_ID=$(retry 5 curl -sSf -H "X-aws-ec2-metadata-token: $TOKEN" http://169.254.169.254/latest/meta-data/instance-id)
unset TOKEN
set -x
install -m 0600 /dev/null /etc/{SERVICE_NAME}.env   # root only: it may carry secrets (server.secrets)
echo "TARGET_ID=$INSTANCE_ID" >> /etc/{SERVICE_NAME}.env
{_plain_env_lines(server)}{_secret_lines(server, region=region)}
cat > /etc/systemd/system/{SERVICE_NAME}.service <<'UNIT'
[Unit]
Description={description}
After=network-online.target
Wants=network-online.target
{_NO_START_LIMIT}

[Service]
EnvironmentFile=/etc/{SERVICE_NAME}.env
ExecStart={exec_start}
Restart=always
RestartSec=2
{_stop_lines(server.drain_timeout_s)}
# An unprivileged throw-away user; a writable HOME for caches; low ports allowed without root.
DynamicUser=yes
CacheDirectory={SERVICE_NAME}
Environment=HOME=/var/cache/{SERVICE_NAME}
AmbientCapabilities=CAP_NET_BIND_SERVICE
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
UNIT
{boot_units}"""


def _boot_units(
    *,
    region: str,
    port: int,
    health_path: str,
    lifecycle_hook: str | None,
    wait_s: int,
    agent: MetricsAgent | None,
    spot: SpotAgentUnit | None = None,
) -> str:
    """What follows the server's unit in every bootstrap: with a warm pool's launching hook, the lifecycle watcher
    (a service for the instance's whole life), the metrics agent's unit, and enabling them all."""
    agent_units = _agent_units(agent, region=region, hook=bool(lifecycle_hook)) if agent else ""
    watcher = _lifecycle_watcher(
        region=region, port=port, health_path=health_path, hook=lifecycle_hook, heartbeat_s=max(60, wait_s // 2)
    ) if lifecycle_hook else ""  # fmt: skip
    spot_units = _spot_units(spot, region=region) if spot else ""
    return f"""{watcher}{agent_units}{spot_units}
{_enable(agent, watcher=bool(lifecycle_hook), spot=spot is not None)}"""


# Leaving a running pool or resuming from hibernation is not a boot, so a unit run once per boot never sees it:
# the watcher polls autoscaling/target-lifecycle-state, which Auto Scaling updates before each transition
# (https://docs.aws.amazon.com/autoscaling/ec2/userguide/retrieving-target-lifecycle-state-through-imds.html),
# and completes the launching action each time the instance is headed for Warmed:* or InService and the server
# is healthy: the hook pauses at Warmed:Pending:Wait and again at Pending:Wait
# (https://docs.aws.amazon.com/autoscaling/ec2/userguide/warm-pool-instance-lifecycle.html). While the server is
# not healthy yet it extends the action (RecordLifecycleActionHeartbeat) instead of letting ABANDON terminate it.
def _lifecycle_watcher(*, region: str, port: int, health_path: str, hook: str, heartbeat_s: int) -> str:
    q = shlex.quote
    return f"""
cat > {VENV}/lifecycle.sh <<'WATCH'
#!/bin/bash
# Completes the launching lifecycle action each time Auto Scaling heads this instance for a new state.
REGION={q(region)}; HOOK={q(hook)}; HEALTH={q(f"http://127.0.0.1:{int(port)}{health_path}")}
imds() {{  # IMDSv2: a short-lived token per read (the token never reaches a log)
  local t
  t=$(curl -sf -X PUT http://169.254.169.254/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 60") || return 1
  curl -sf -H "X-aws-ec2-metadata-token: $t" "http://169.254.169.254/latest/meta-data/$1"
}}
ID=$(imds instance-id) || exit 1   # systemd restarts us
GROUP=""; DONE=""; BEAT=0
while true; do
  STATE=$(imds autoscaling/target-lifecycle-state || true)
  case "$STATE" in
    InService|Warmed:*)
      if [ "$STATE" != "$DONE" ]; then
        if [ -z "$GROUP" ] || [ "$GROUP" = None ]; then
          GROUP=$(aws autoscaling describe-auto-scaling-instances --region "$REGION" --instance-ids "$ID" \
                  --query 'AutoScalingInstances[0].AutoScalingGroupName' --output text || true)
        fi
        ARGS=(--region "$REGION" --lifecycle-hook-name "$HOOK" --auto-scaling-group-name "$GROUP" --instance-id "$ID")
        if curl -sf -o /dev/null --max-time 5 "$HEALTH"; then
          if OUT=$(aws autoscaling complete-lifecycle-action "${{ARGS[@]}}" --lifecycle-action-result CONTINUE 2>&1); then
            echo "mlops-lb-lifecycle: $STATE: completed $HOOK"; DONE=$STATE; echo "$STATE" > {LIFECYCLE_DONE}
          elif printf %s "$OUT" | grep -q "No active Lifecycle Action"; then
            DONE=$STATE; echo "$STATE" > {LIFECYCLE_DONE}   # nothing waits (launched straight into service, or done)
          else
            echo "mlops-lb-lifecycle: complete-lifecycle-action failed: $OUT" >&2
          fi
        elif [ $(( $(date +%s) - BEAT )) -ge {int(heartbeat_s)} ]; then
          aws autoscaling record-lifecycle-action-heartbeat "${{ARGS[@]}}" >/dev/null 2>&1 && BEAT=$(date +%s)
        fi
      fi ;;
  esac
  sleep 2
done
WATCH
chmod 0755 {VENV}/lifecycle.sh
cat > /etc/systemd/system/{SERVICE_NAME}-lifecycle.service <<'UNIT'
[Unit]
Description=mlops_lb: complete the launching lifecycle action whenever the instance is headed for service
After={SERVICE_NAME}.service network-online.target
Wants=network-online.target
{_NO_START_LIMIT}

[Service]
ExecStart={VENV}/lifecycle.sh
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
UNIT"""


# Restart=always alone is not "always": systemd.unit(5) stops restarting a unit started more than
# StartLimitBurst= (5) times within StartLimitIntervalSec= (10 s) and leaves it failed for good. With RestartSec=2
# (and more) automatic restarts alone cannot get there (the sandbox measured it: six crashes at start-up, still
# restarted), but manual starts count too and RestartSec may be lowered: no limit, so a unit is never parked.
_NO_START_LIMIT = "# Restart forever (systemd.unit(5) default: 5 starts in 10 s, then failed for good)\nStartLimitIntervalSec=0"


def _python_version(version: str) -> str:
    """``3.N`` exactly (it becomes part of a command name in the script)."""
    major, _, minor = str(version).partition(".")
    if major != "3" or not minor.isdigit():
        raise ValueError(f"python_version must look like 3.11 (got {version!r})")
    return f"3.{int(minor)}"


def _minutes(seconds: int) -> str:
    return f"{seconds // 60} minutes" if seconds % 60 == 0 else f"{seconds} s"


def _systemd_word(arg: str) -> str:
    """One ExecStart= argument: double-quoted, with systemd's specifiers (%) and variables ($) made literal.

    A newline (or any control character) becomes a C escape (``\\n``, ``\\x01``), which systemd.syntax(7)'s
    quoting decodes inside a quoted word: the unit is written by a here-document, where a raw newline followed by
    the terminator line would end it and run the rest as root.
    """
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    escaped = "".join(
        _C_ESCAPES.get(c, f"\\x{ord(c):02x}") if ord(c) < 0x20 or c == "\x7f" else c for c in escaped
    )
    return f'"{escaped}"'


_C_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=+,@")


def _unit_word(arg: str) -> str:
    """``arg`` as it is when it needs no quoting for systemd (the common case keeps its bytes), else quoted."""
    return arg if arg and set(arg) <= _PLAIN else _systemd_word(arg)


def _env_value(value: str) -> str:
    """A value of an ``EnvironmentFile=`` line: double-quoted, ``\\ " $ ` `` backslash-escaped; a newline is kept,
    as systemd.exec(5) lets a double-quoted value span lines (a PEM arrives intact). No specifier or variable
    expansion happens in that file, so ``%`` and ``$`` need no doubling (``$$`` would arrive as two)."""
    escaped = "".join("\\" + c if c in '\\"$`' else c for c in value)
    return f'"{escaped}"'


# Reads server.secrets with the instance role and appends them to the env file (mode 0600 already). Fixed text: the
# references arrive as a base64 JSON argument. AWS CLI v2 JSON answers: GetParameter {"Parameter": {"Value"}}
# (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_GetParameter.html), GetSecretValue
# {"SecretString"} (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html).
# A value never reaches the console: nothing prints it and the bash trace sees only this script's name.
_FETCH_SECRETS = r"""import base64, json, subprocess, sys, time

refs, region, path = json.loads(base64.b64decode(sys.argv[1])), sys.argv[2], sys.argv[3]
lines = []
for name, source, ref, key in refs:
    if source == "ssm":
        cmd = ["aws", "ssm", "get-parameter", "--region", region, "--name", ref, "--with-decryption"]
    else:
        cmd = ["aws", "secretsmanager", "get-secret-value", "--region", region, "--secret-id", ref]
    for attempt in range(5):
        proc = subprocess.run([*cmd, "--output", "json"], capture_output=True, text=True)
        if proc.returncode == 0:
            break
        time.sleep(min(2 ** (attempt + 1), 30))
    else:
        sys.exit(f"mlops-lb: cannot read server.secrets.{name} ({source} {ref}): {proc.stderr.strip()[-400:]}")
    doc = json.loads(proc.stdout)
    value = doc["Parameter"]["Value"] if source == "ssm" else doc.get("SecretString")
    if key:
        value = json.loads(value or "{}").get(key)
    if not isinstance(value, str):
        sys.exit(f"mlops-lb: server.secrets.{name} ({source} {ref}{' key ' + key if key else ''}) has no text value")
    lines.append(name + '="' + "".join("\\" + c if c in '\\"$`' else c for c in value) + '"\n')
with open(path, "a") as f:
    f.write("".join(lines))
"""


def _plain_env_lines(server: ServerRun) -> str:
    """Our servers' ``server.env`` into the env file, base64-carried (nothing, so the same bytes, without any)."""
    if not server.env:
        return ""
    content = "".join(f"{k}={_env_value(v)}\n" for k, v in server.env.items())
    return _b64_write(f">> /etc/{SERVICE_NAME}.env", content) + "\n"


def _secret_lines(server: ServerRun, *, region: str) -> str:
    """Boot lines fetching ``server.secrets`` into the env file (nothing, so the same bytes, without secrets)."""
    if not server.secrets:
        return ""
    refs = base64.b64encode(json.dumps([list(r) for r in server.secrets]).encode()).decode()
    return (
        "# server.secrets: read now with the instance role into the root-only env file; only references are here.\n"
        f"{_b64_write(f'> {VENV}/fetch-secrets.py', _FETCH_SECRETS)}\n"
        f"retry 3 python3 {VENV}/fetch-secrets.py {refs} {shlex.quote(region)} /etc/{SERVICE_NAME}.env\n"
    )


def _b64_write(redirect: str, content: str) -> str:
    """Shell that writes ``content`` with ``redirect`` (``> path`` / ``>> path``), carried base64-encoded.

    What a spec carries (env values, command arguments) is data: encoded, no value can end the here-document or a
    quoted word, and nothing in it is ever parsed by the boot script's shell. The terminator has a ``-``, which is
    outside base64's alphabet, so no encoded line can equal it. Deterministic: same content, same bytes.
    """
    encoded = base64.b64encode(content.encode()).decode()
    lines = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    return f"base64 -d {redirect} <<'B64-END'\n{lines}\nB64-END"


def _stop_lines(drain_timeout_s: int) -> str:
    """SIGTERM to the server, ``drain_timeout_s`` to finish in-flight requests, then SIGKILL (server.drain_timeout_s).

    On a scale-in the ALB has already drained the target for the deregistration delay (preflight checks it is at
    least ``drain_timeout_s``) before Auto Scaling terminates the instance and systemd stops the unit.
    """
    return f"KillMode=mixed\nKillSignal=SIGTERM\nTimeoutStopSec={int(drain_timeout_s)}"


def _enable(agent: MetricsAgent | None, *, watcher: bool = False, spot: bool = False) -> str:
    units = [SERVICE_NAME] + ([f"{SERVICE_NAME}-lifecycle"] if watcher else [])
    units += [f"{SERVICE_NAME}-metrics"] if agent else []
    units += [f"{SERVICE_NAME}-spot"] if spot else []
    lines = [
        "systemctl daemon-reload",
        "# Enabled at boot: a warm-pool instance is stopped after this script and must serve again when started.",
    ]
    lines += [f"systemctl enable --now {u}.service" for u in units]
    return "\n".join(lines) + '\necho "mlops-lb: bootstrap done"\n'


def _header() -> str:
    return f"""#!/bin/bash
# mlops_lb instance bootstrap
set -euo pipefail
# Console (GetConsoleOutput, fleet.logs()) and a file, with timestamps from the journal.
exec > >(tee -a {LOG_FILE} | logger -t mlops-lb-bootstrap -s 2>/dev/console) 2>&1
set -x
{_RETRY}
"""


_IMDS = """# IMDSv2 (http_tokens=required): a session token first, then the instance id.
# The token unlocks the role's credentials in IMDS: tracing stops while it is in use (set -x printed it to the
# console, which GetConsoleOutput and fleet.logs() show).
{ set +x; } 2>/dev/null
TOKEN=$(retry 5 curl -sSf -X PUT http://169.254.169.254/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
INSTANCE_ID=$(retry 5 curl -sSf -H "X-aws-ec2-metadata-token: $TOKEN" http://169.254.169.254/latest/meta-data/instance-id)
unset TOKEN
set -x"""


def _bash_word(arg: str) -> str:
    """``arg`` single-quoted for bash, with the instance id (the {target_id} placeholder) as "${TARGET_ID}"."""
    quoted = "'" + arg.replace("'", "'\"'\"'") + "'"
    return quoted.replace(_TARGET_ID, "'\"${TARGET_ID}\"'")


def _filled(server: ServerRun, *, port: int, host: str) -> list[str]:
    """The argv with {port} {host} {model} filled here and {target_id} left for the instance (bash-quoted)."""
    values = {"port": port, "host": host, "target_id": _TARGET_ID, "model": server.model_path}
    return [_bash_word(a.format(**values)) for a in server.argv]


def _env_file(server: ServerRun, *, port: int, host: str) -> str:
    """Lines of /etc/mlops-lb.env after TARGET_ID: server.env plus PORT, HOST, MODEL_PATH (systemd syntax)."""
    env = {**server.env, "PORT": str(port), "HOST": host, "MODEL_PATH": server.model_path}
    return "".join(f"{k}={_env_value(v)}\n" for k, v in env.items())


def _install_lines(server: ServerRun, *, bucket: str, s3: str) -> list[str]:
    """Fetch ``server.install`` from the stack's bucket and install it into the venv (from the instance's index)."""
    q = shlex.quote
    if not server.install_kind or not server.install_key:
        return []
    name = server.install_key.rsplit("/", 1)[-1]
    local = f"{VENV}/dist/{name}"
    pip = f"{VENV}/bin/python -m pip install --disable-pip-version-check"
    out = [f"retry 8 {s3} {q(f's3://{bucket}/{server.install_key}')} {q(local)}"]
    if server.install_kind == "requirements":
        out.append(f"retry 3 {pip} -r {q(local)}")
    elif server.install_kind == "wheel":
        out.append(f"retry 3 {pip} {q(local)}")
    else:  # a project directory, archived reproducibly: unpack at the path it had, install what it declares
        dest = f"{APP_DIR}/{server.install_dir}".rstrip("/")
        out += [
            f"mkdir -p {q(dest)} && tar -xzf {q(local)} -C {q(dest)}",
            f"if [ -f {q(dest + '/pyproject.toml')} ] || [ -f {q(dest + '/setup.py')} ]; then retry 3 {pip} {q(dest)};"
            f" elif [ -f {q(dest + '/requirements.txt')} ]; then retry 3 {pip} -r {q(dest + '/requirements.txt')}; fi",
        ]
    return out


def _render_byo(
    *,
    bucket: str,
    region: str,
    port: int,
    server: ServerRun,
    model_key: str | None,
    boot_units: str,
    py: str,
) -> str:
    """User data for the user's own server: ``command`` in a venv, or ``image`` under docker; both systemd units."""
    q = shlex.quote
    s3 = f"aws s3 cp --region {q(region)}"
    lines: list[str] = [f"mkdir -p {VENV}"]  # server.sh and the agent live there for every kind
    model_uri = server.model_s3 or (f"s3://{bucket}/{model_key}" if model_key else None)
    if (
        model_uri
    ):  # a model uploaded to the stack's bucket, or the user's own object (never copied), via the role
        lines += [f"mkdir -p {VENV}/model", f"retry 8 {s3} {q(model_uri)} {q(server.model_path)}"]
    if server.kind == "image":
        host, listen = "0.0.0.0", int(server.port)
        lines += _docker_lines(server, region=region)
        run = ["/usr/bin/docker", "run", "--rm", "--name", CONTAINER_NAME, "-p", f"{int(port)}:{listen}"]
        # `-e NAME` hands the container the variable from docker's own environment (systemd's EnvironmentFile):
        # a docker --env-file would keep systemd's quotes as part of the values.
        for var in (*server.env, "PORT", "HOST", "TARGET_ID", "MODEL_PATH"):
            run += ["-e", var]
        if model_uri:  # the same path inside as outside, so {model} / MODEL_PATH mean one thing
            run += ["-v", f"{VENV}/model:{VENV}/model:ro"]
        if server.gpus is not None:  # the NVIDIA Container Toolkit of the GPU AMI; shared memory for PyTorch
            run += ["--gpus", "all" if server.gpus == "all" else str(int(server.gpus)), "--ipc=host"]
        argv = [
            *(_bash_word(a) for a in run),
            _bash_word(str(server.image)),
            *_filled(server, port=listen, host=host),
        ]
        stop = f"ExecStop=/usr/bin/docker stop --time {int(server.drain_timeout_s)} {CONTAINER_NAME}"
        unit_deps = "After=docker.service network-online.target\nRequires=docker.service"
        pre = f"ExecStartPre=-/usr/bin/docker rm -f {CONTAINER_NAME}\n"
        # docker stop waits drain_timeout_s itself; systemd gives it that plus a margin before SIGKILL.
        stop_lines = f"{stop}\nTimeoutStopSec={int(server.drain_timeout_s) + 15}"
        workdir = ""
    else:
        host, listen = "0.0.0.0", int(port)
        lines += [
            f"retry 5 dnf install -y python{py} python{py}-pip",
            f"mkdir -p {VENV}/dist {APP_DIR}",
            f"python{py} -m venv {VENV}",
            *_install_lines(server, bucket=bucket, s3=s3),
        ]
        argv = _filled(server, port=listen, host=host)
        unit_deps = "After=network-online.target"
        pre = ""
        stop_lines = _stop_lines(server.drain_timeout_s)
        workdir = f"WorkingDirectory={APP_DIR}\n"
    launcher = " ".join(argv)
    server_sh = f"#!/bin/bash\nexport PATH={VENV}/bin:$PATH\nexec {launcher}\n"
    body = "\n".join(lines)
    # The launcher: `exec` makes the server systemd's main process, so SIGTERM reaches it first (KillMode=mixed).
    return f"""{_header()}
{body}

{_IMDS}
install -m 0600 /dev/null /etc/{SERVICE_NAME}.env   # root only: it may carry secrets (server.secrets)
echo "TARGET_ID=$INSTANCE_ID" >> /etc/{SERVICE_NAME}.env
# server.env and the command's arguments travel base64-encoded: data, never shell text of this script.
{_b64_write(f">> /etc/{SERVICE_NAME}.env", _env_file(server, port=listen, host=host))}
{_b64_write(f"> {VENV}/server.sh", server_sh)}
chmod 0755 {VENV}/server.sh
{_secret_lines(server, region=region)}
cat > /etc/systemd/system/{SERVICE_NAME}.service <<'UNIT'
[Unit]
Description=mlops_lb target: the user's server ({server.kind})
{unit_deps}
Wants=network-online.target
{_NO_START_LIMIT}

[Service]
EnvironmentFile=/etc/{SERVICE_NAME}.env
{workdir}{pre}ExecStart={VENV}/server.sh
Restart=always
RestartSec=2
TimeoutStartSec=infinity
{stop_lines}
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
UNIT
{boot_units}"""


def _docker_lines(server: ServerRun, *, region: str) -> list[str]:
    """Install docker (present on the NVIDIA AMI), log in to the registry, pull the image once, at boot."""
    q = shlex.quote
    out = [
        "command -v docker >/dev/null || retry 5 dnf install -y docker",
        "systemctl enable --now docker.service",
    ]
    if server.ecr_registry:  # ECR: a 12-hour token from the instance role (ecr:GetAuthorizationToken)
        out.append(
            f"retry 5 bash -c {q(f'aws ecr get-login-password --region {region} | docker login --username AWS --password-stdin {server.ecr_registry}')}"
        )
    elif server.registry_auth:  # any other private registry: {"username", "password"} in Secrets Manager
        get = (
            f"aws secretsmanager get-secret-value --region {region} --secret-id {server.registry_auth} "
            "--query SecretString --output text"
        )
        registry = str(server.image).split("/", 1)[0]
        login = (
            f"S=$({get}); "
            'U=$(printf %s "$S" | python3 -c \'import json,sys; print(json.load(sys.stdin)["username"])\'); '
            'printf %s "$S" | python3 -c \'import json,sys; print(json.load(sys.stdin)["password"])\' | '
            f'docker login --username "$U" --password-stdin {registry}'
        )
        out.append(f"retry 5 bash -c {q(login)}")
    out.append(f"retry 5 docker pull {q(str(server.image))}")
    return out


def _spot_agent_source() -> bytes:
    from importlib.resources import files

    return files("mlops_lb.serving").joinpath("spot_agent.py").read_bytes()


def _spot_units(spot: SpotAgentUnit, *, region: str) -> str:
    """The spot agent: its source (gzip, mtime 0, so the bytes never change by themselves) and a service that
    runs it with the system python3 (AL2023's 3.9; the agent is stdlib only) from boot until it has deregistered
    the instance, restarting if it fails. ``python3`` is looked up in systemd's executable search path (bare
    names are allowed since systemd 239; AL2023 ships 252), which finds /usr/bin/python3."""
    import gzip

    blob = base64.b64encode(gzip.compress(_spot_agent_source(), mtime=0)).decode()
    lines = "\n".join(blob[i : i + 76] for i in range(0, len(blob), 76))
    argv = (
        f"python3 {VENV}/spot_agent.py --target-group-arn {_systemd_word(spot.target_group_arn)} "
        f"--port {int(spot.port)} --region {_systemd_word(region)} --poll-s {int(spot.poll_s)} "
        f"--record /var/log/{SERVICE_NAME}-spot.jsonl"
    )
    return f"""
mkdir -p {VENV}
base64 -d <<'SPOT_AGENT_EOF' | gunzip > {VENV}/spot_agent.py
{lines}
SPOT_AGENT_EOF
chmod 0644 {VENV}/spot_agent.py
cat > /etc/systemd/system/{SERVICE_NAME}-spot.service <<'UNIT'
[Unit]
Description=mlops_lb: on a spot interruption notice, deregister this instance from its target group
After=network-online.target
Wants=network-online.target
{_NO_START_LIMIT}

[Service]
ExecStart={argv}
Restart=on-failure
RestartSec=2
# Its record lines reach the console too: GetConsoleOutput (fleet.logs(target)) shows the notice and the call.
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
UNIT"""


def _agent_units(agent: MetricsAgent, *, region: str, hook: bool = False) -> str:
    """The concurrency publisher: a systemd service (restarted always) running a bash + awk + aws-cli loop.

    It publishes only while the instance is InService (IMDS ``autoscaling/target-lifecycle-state``) and, with a
    launching hook, once the lifecycle watcher has completed the action for InService: AWS leaves warm-pool and
    pending instances out of its own group metrics, not out of a customized metric, so a warmed or booting
    instance's zeros would pull down the average target tracking scales on.
    """
    q = shlex.quote
    gauges = " ".join(agent.gauges)
    # With a hook: the state the watcher last completed (it writes the file), which must be InService too.
    gate = f' && [ "$(cat {LIFECYCLE_DONE} 2>/dev/null)" = InService ]' if hook else ""
    return f"""
cat > {VENV}/metrics-agent.sh <<'AGENT'
#!/bin/bash
# Publishes the average of the server's in-flight gauges ({gauges}) every {agent.period_s} s, while InService.
URL={q(agent.url)}; GAUGES={q(gauges)}; REGION={q(region)}
imds() {{  # IMDSv2: a short-lived token per read (the token never reaches a log)
  local t
  t=$(curl -sf -X PUT http://169.254.169.254/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 60") || return 1
  curl -sf -H "X-aws-ec2-metadata-token: $t" "http://169.254.169.254/latest/meta-data/$1"
}}
in_service() {{ [ "$(imds autoscaling/target-lifecycle-state || true)" = InService ]{gate}; }}
ID=$(imds instance-id) || exit 1   # systemd restarts us
GROUP=$(aws autoscaling describe-auto-scaling-instances --region "$REGION" --instance-ids "$ID" \\
        --query 'AutoScalingInstances[0].AutoScalingGroupName' --output text)
[ -n "$GROUP" ] && [ "$GROUP" != "None" ] || exit 1   # systemd restarts us; the group may not know us yet
STATS="0 0 0 0"; START=$(date +%s)
while true; do
  V=$(curl -sf --max-time 2 "$URL" | awk -v names="$GAUGES" '
    BEGIN {{ n = split(names, a, " "); for (i = 1; i <= n; i++) want[a[i]] = 1 }}
    /^#/ {{ next }}
    {{ sub(/\\{{[^}}]*\\}}/, ""); if ($1 in want) {{ s += $2; found = 1 }} }}
    END {{ if (found) printf "%.6f", s }}')
  if [ -n "$V" ]; then
    STATS=$(echo "$STATS $V" | awk -v OFMT=%.6f '{{ n=$1+1; s=$2+$5; mn=($1==0||$5<$3)?$5:$3; mx=($1==0||$5>$4)?$5:$4; print n, s, mn, mx }}')
  fi
  NOW=$(date +%s)
  if [ $((NOW - START)) -ge {int(agent.period_s)} ]; then
    read -r N S MN MX <<< "$STATS"
    if [ "$N" -gt 0 ] && in_service; then
      SET="{{\\"SampleCount\\":$N,\\"Sum\\":$S,\\"Minimum\\":$MN,\\"Maximum\\":$MX}}"
      aws cloudwatch put-metric-data --region "$REGION" --namespace {q(agent.namespace)} --metric-data \\
        "[{{\\"MetricName\\":\\"{agent.metric}\\",\\"Unit\\":\\"Count\\",\\"StatisticValues\\":$SET,\\"Dimensions\\":[{{\\"Name\\":\\"AutoScalingGroupName\\",\\"Value\\":\\"$GROUP\\"}}]}},{{\\"MetricName\\":\\"{agent.metric}\\",\\"Unit\\":\\"Count\\",\\"StatisticValues\\":$SET,\\"Dimensions\\":[{{\\"Name\\":\\"InstanceId\\",\\"Value\\":\\"$ID\\"}}]}}]" \\
        || echo "mlops-lb-metrics: put-metric-data failed" >&2
    fi
    STATS="0 0 0 0"; START=$NOW
  fi
  sleep {int(agent.sample_s)}
done
AGENT
chmod 0755 {VENV}/metrics-agent.sh
cat > /etc/systemd/system/{SERVICE_NAME}-metrics.service <<'UNIT'
[Unit]
Description=mlops_lb: publish in-flight requests per target to CloudWatch ({agent.namespace}/{agent.metric})
After={SERVICE_NAME}.service network-online.target
Wants=network-online.target
{_NO_START_LIMIT}

[Service]
ExecStart={VENV}/metrics-agent.sh
Restart=always
RestartSec=10

[Install]
WantedBy=multi-user.target
UNIT"""


# ------------------------------------------------------------------------------------------------ router tier
ROUTER_DIR = f"{VENV}/router"
ROUTER_SOCKET = f"{ROUTER_DIR}/admin.sock"
ROUTER_CONFIG = "/etc/haproxy/mlops-lb-router.cfg"
ROUTER_SERVICE = "mlops-lb-router"
# The files of this package the router's agent runs with (mlops_lb/aws/_router_agent.py imports nothing else).
ROUTER_MODULES = ("mlops_lb/haproxy_runtime.py", "mlops_lb/errors.py", "mlops_lb/aws/_router_agent.py")
# server-template (HAProxy 1.8) is the oldest feature the router's config needs; hash-type consistent with
# hash-balance-factor is 1.7, `set server ... addr` on the Runtime API 1.8.
ROUTER_MIN_HAPROXY = "1.8"


@dataclass(frozen=True)
class RouterRun:
    """What a router instance runs: HAProxy hashing ``key_header`` over ``slots`` model slots, kept current from
    the model group ``model_group`` by the sync agent. ``port`` is where the router listens (the ALB's target group
    port) and where the models listen."""

    model_group: str
    port: int
    key_header: str = "X-Prefix-Key"
    hash_balance_factor: int = 125
    slots: int = 64
    health_path: str = "/health"
    check_inter_s: int = 5
    rise: int = 2
    fall: int = 2
    timeout_s: int = 60
    sync_interval_s: int = 5


def _router_config(run: RouterRun) -> str:
    """HAProxy's config for a router (``${LOCAL_IP}`` comes from the unit's environment, read from IMDS)."""
    factor = f"    hash-balance-factor {int(run.hash_balance_factor)}\n" if run.hash_balance_factor else ""
    # No global maxconn: HAProxy derives it from the unit's LimitNOFILE (a fixed one above what the FD limit
    # allows makes it refuse to start: "Cannot raise FD limit", seen in the instance sandbox).
    return f"""global
    user haproxy
    group haproxy
    stats socket {ROUTER_SOCKET} mode 600 level admin

defaults
    mode http
    timeout connect 5s
    # A model that refuses the connection (it just left): try again on another slot, not the client's error.
    retries 2
    option redispatch
    timeout client {int(run.timeout_s)}s
    timeout server {int(run.timeout_s)}s

frontend llm
    # The instance's primary private address: what the ALB's instance target sends to.
    bind "${{LOCAL_IP}}:{int(run.port)}"
    bind 127.0.0.1:{int(run.port)}
    # The ALB's health check of a router: healthy only while some model slot is up.
    monitor-uri {run.health_path}
    monitor fail if {{ nbsrv({_BACKEND}) eq 0 }}
    default_backend {_BACKEND}

backend {_BACKEND}
    # The same key, the same model while it is up (a request without the header is placed round robin).
    balance hdr({run.key_header})
    hash-type consistent
{factor}    option httpchk GET {run.health_path}
    # weight 100: the consistent-hash ring gives a server weight x 16 points, and 16 points spread keys unevenly
    default-server check inter {int(run.check_inter_s)}s rise {int(run.rise)} fall {int(run.fall)} weight 100
    # Slots the sync agent points at the model group's instances; 192.0.2.1 (TEST-NET-1) never answers.
    server-template m 1-{int(run.slots)} 192.0.2.1:{int(run.port)} disabled
"""


_BACKEND = "models"


def render_router_user_data(
    *, bucket: str, region: str, wheel_key: str, router: RouterRun, python_version: str = "3.11"
) -> str:
    """The cloud-init script of a router instance (the router tier of ``routing.policy: consistent_hash``).

    It installs AL2023's HAProxy (refusing one older than 1.8, which lacks ``server-template``), unpacks this
    package's Runtime API client and sync agent from the wheel in the stack's bucket (stdlib only, no pip), writes
    HAProxy's config (checked with ``haproxy -c``) and two units: HAProxy, and the agent that discovers the model
    group's instances and moves HAProxy's slots through the Runtime API.

    Example::

        render_router_user_data(bucket="b", region="us-east-1", wheel_key="wheels/0123/mlops_lb-0.1.0-py3-none-any.whl",
                                router=RouterRun(model_group="llm-asg-1a2b3c", port=8080))
    """
    py = _python_version(python_version)
    q = shlex.quote
    wheel_path = f"{ROUTER_DIR}/dist/{wheel_key.rsplit('/', 1)[-1]}"
    unpack = (
        "import pathlib, sys, zipfile\n"
        f"lib = pathlib.Path({ROUTER_DIR + '/lib'!r})\n"
        "with zipfile.ZipFile(sys.argv[1]) as whl:\n"
        f"    for name in {ROUTER_MODULES!r}:\n"
        "        (lib / name).parent.mkdir(parents=True, exist_ok=True)\n"
        "        (lib / name).write_bytes(whl.read(name))\n"
        "for pkg in ('mlops_lb', 'mlops_lb/aws'):  # empty packages: the package's own __init__ imports too much\n"
        "    (lib / pkg / '__init__.py').write_text('')\n"
    )
    agent = (
        f"{ROUTER_DIR}/venv/bin/python -m mlops_lb.aws._router_agent --group {_unit_word(router.model_group)} "
        f"--region {_unit_word(region)} --port {int(router.port)} --socket {ROUTER_SOCKET} "
        f"--interval {int(router.sync_interval_s)}"
    )
    return f"""#!/bin/bash
# mlops_lb router bootstrap
set -euo pipefail
# Console (GetConsoleOutput, fleet.logs()) and a file, with timestamps from the journal.
exec > >(tee -a {LOG_FILE} | logger -t mlops-lb-bootstrap -s 2>/dev/console) 2>&1
set -x
{_RETRY}

retry 5 dnf install -y haproxy python{py}
HAPROXY_VERSION=$(haproxy -v 2>&1 | sed -n 's/^HA-\\{{0,1\\}}Proxy version \\([0-9]*\\.[0-9]*\\).*/\\1/p' | head -n 1)
if [ "$(printf '%s\\n' {ROUTER_MIN_HAPROXY} "${{HAPROXY_VERSION:-0}}" | sort -V | head -n 1)" != "{ROUTER_MIN_HAPROXY}" ]; then
  echo "mlops-lb: the router needs HAProxy >= {ROUTER_MIN_HAPROXY} (server-template), found ${{HAPROXY_VERSION:-none}}" >&2
  exit 1
fi

mkdir -p {ROUTER_DIR}/dist {ROUTER_DIR}/lib /etc/haproxy
retry 8 aws s3 cp --region {q(region)} {q(f"s3://{bucket}/{wheel_key}")} {q(wheel_path)}
# A venv only for a fixed interpreter path in the unit; the agent needs no pip (stdlib + three files).
python{py} -m venv --without-pip {ROUTER_DIR}/venv
{ROUTER_DIR}/venv/bin/python - {q(wheel_path)} <<'PY'
{unpack}PY

{{ set +x; }} 2>/dev/null
TOKEN=$(retry 5 curl -sSf -X PUT http://169.254.169.254/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
LOCAL_IP=$(retry 5 curl -sSf -H "X-aws-ec2-metadata-token: $TOKEN" http://169.254.169.254/latest/meta-data/local-ipv4)
unset TOKEN
set -x
echo "LOCAL_IP=$LOCAL_IP" > /etc/{ROUTER_SERVICE}.env
cat > {ROUTER_CONFIG} <<'CFG'
{_router_config(router)}CFG
LOCAL_IP="$LOCAL_IP" haproxy -c -q -f {ROUTER_CONFIG}

cat > /etc/systemd/system/{ROUTER_SERVICE}.service <<'UNIT'
[Unit]
Description=mlops_lb router (HAProxy, consistent hashing on {router.key_header})
After=network-online.target
Wants=network-online.target
{_NO_START_LIMIT}

[Service]
EnvironmentFile=/etc/{ROUTER_SERVICE}.env
ExecStart=/usr/sbin/haproxy -db -f {ROUTER_CONFIG}
Restart=always
RestartSec=2
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
UNIT
cat > /etc/systemd/system/{ROUTER_SERVICE}-sync.service <<'UNIT'
[Unit]
Description=mlops_lb router: model instances from their Auto Scaling group into HAProxy's slots
After={ROUTER_SERVICE}.service
{_NO_START_LIMIT}

[Service]
Environment=PYTHONPATH={ROUTER_DIR}/lib
ExecStart={agent}
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now {ROUTER_SERVICE}.service
systemctl enable --now {ROUTER_SERVICE}-sync.service
echo "mlops-lb: router bootstrap done"
"""
