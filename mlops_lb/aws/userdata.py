"""The EC2 user data that turns an Amazon Linux 2023 instance into one target of the fleet.

Amazon Linux 2023 keeps ``/usr/bin/python3`` at 3.9 for its whole life and system tools (dnf) depend on it, so
Python 3.11 is installed side by side and this package lives in its own venv; the symlink is never touched.
Everything pip installs comes from the stack's private bucket: this package's wheel and a *wheelhouse* of the
exact versions of the environment that launched the fleet, installed with ``--no-index`` (boot never depends
on PyPI and two instances never differ). Every network step retries with backoff; the script logs to the
console (``fleet.logs(target)`` reads it through EC2 GetConsoleOutput) and to ``/var/log/mlops-lb-bootstrap.log``.

With a warm pool, instances are stopped as soon as they launch, *without waiting for user data*, and cloud-init
runs user data on the first boot only (DESIGN §4). So the server is a systemd unit enabled at boot, and a second
unit, ``mlops-lb-ready``, runs on *every* boot: it waits for the local health check and then completes the
``EC2_INSTANCE_LAUNCHING`` lifecycle action, so an instance leaves ``Pending:Wait`` only when it can serve.

The script is a pure function of its arguments: the same inputs give the same bytes (no timestamps, no random
values), so a second ``pulumi up`` leaves the launch template alone.

Example::

    script = render_user_data(bucket="mlops-lb-assets-1a2b3c", region="us-east-1",
                              wheel_key="wheels/0123abcd/mlops_lb-0.1.0-py3-none-any.whl", port=8080)
"""

from __future__ import annotations

import shlex

__all__ = [
    "BOOT_STEPS",
    "EXPECTED_BOOT_S",
    "SERVE_REQUIREMENTS",
    "SERVICE_NAME",
    "VENV",
    "render_user_data",
]

VENV = "/opt/mlops_lb"
SERVICE_NAME = "mlops-lb"
LOG_FILE = "/var/log/mlops-lb-bootstrap.log"
# What `mlops-lb serve` needs (pyproject's `serve` extra; a test keeps the two equal). The launching environment
# pins their whole closure (mlops_lb.aws.assets.pinned_requirements) into the wheelhouse.
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
    ("dnf install python3.11 (repo metadata + packages, retried)", 40),
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
) -> str:
    """The cloud-init shell script (plain text; the launch template base64-encodes it).

    ``model_key`` is the bucket key of a user model; without it the server loads the bundled demo model.
    ``wheelhouse_prefix`` is the bucket prefix holding the pinned wheels and their ``requirements.txt``;
    ``lifecycle_hook`` names the launching hook the ready unit completes (warm pools). The keys are
    content-addressed, so a changed wheel or model changes the script (and rolls the instances) and nothing
    else does.
    """
    q = shlex.quote
    wheel_name = wheel_key.rsplit("/", 1)[-1]
    wheel_path = f"{VENV}/dist/{wheel_name}"
    s3 = f"aws s3 cp --region {q(region)}"
    model_arg = "demo"
    fetch = [f"retry 8 {s3} {q(f's3://{bucket}/{wheel_key}')} {q(wheel_path)}"]
    if model_key:
        model_arg = f"{VENV}/model/{model_key.rsplit('/', 1)[-1]}"
        fetch.append(f"retry 8 {s3} {q(f's3://{bucket}/{model_key}')} {q(model_arg)}")
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
    ready = _ready_unit(region=region, port=port, health_path=health_path, lifecycle_hook=lifecycle_hook)
    fetch_lines = "\n".join(fetch)
    return f"""#!/bin/bash
# mlops_lb instance bootstrap
set -euo pipefail
# Console (GetConsoleOutput, fleet.logs()) and a file, with timestamps from the journal.
exec > >(tee -a {LOG_FILE} | logger -t mlops-lb-bootstrap -s 2>/dev/console) 2>&1
set -x
{_RETRY}

# Side-by-side Python: AL2023's system python3 (3.9) stays as it is; dnf needs it.
retry 5 dnf install -y python3.11 python3.11-pip

mkdir -p {VENV}/dist {VENV}/model {VENV}/wheelhouse
{fetch_lines}
python3.11 -m venv {VENV}
{install}

# IMDSv2 (http_tokens=required): a session token first, then the instance id.
TOKEN=$(retry 5 curl -sSf -X PUT http://169.254.169.254/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
INSTANCE_ID=$(retry 5 curl -sSf -H "X-aws-ec2-metadata-token: $TOKEN" http://169.254.169.254/latest/meta-data/instance-id)
echo "TARGET_ID=$INSTANCE_ID" > /etc/{SERVICE_NAME}.env

cat > /etc/systemd/system/{SERVICE_NAME}.service <<'UNIT'
[Unit]
Description=mlops_lb model server
After=network-online.target
Wants=network-online.target

[Service]
EnvironmentFile=/etc/{SERVICE_NAME}.env
ExecStart={VENV}/bin/mlops-lb serve --host 0.0.0.0 --port {int(port)} --model {model_arg} --target-id ${{TARGET_ID}}
Restart=always
RestartSec=2
# An unprivileged throw-away user; a writable HOME for caches; low ports allowed without root.
DynamicUser=yes
CacheDirectory={SERVICE_NAME}
Environment=HOME=/var/cache/{SERVICE_NAME}
AmbientCapabilities=CAP_NET_BIND_SERVICE
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
UNIT
{ready}
systemctl daemon-reload
# Enabled at boot: a warm-pool instance is stopped after this script and must serve again when started.
systemctl enable --now {SERVICE_NAME}.service
systemctl enable --now {SERVICE_NAME}-ready.service
echo "mlops-lb: bootstrap done"
"""


def _ready_unit(*, region: str, port: int, health_path: str, lifecycle_hook: str | None) -> str:
    """A oneshot unit, run on every boot: wait for local health, then complete the launching lifecycle action."""
    q = shlex.quote
    complete = ""
    if lifecycle_hook:
        complete = f"""
TOKEN=$(curl -sSf -X PUT http://169.254.169.254/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
ID=$(curl -sSf -H "X-aws-ec2-metadata-token: $TOKEN" http://169.254.169.254/latest/meta-data/instance-id)
for i in 1 2 3 4 5 6; do
  GROUP=$(aws autoscaling describe-auto-scaling-instances --region {q(region)} --instance-ids "$ID" \\
          --query 'AutoScalingInstances[0].AutoScalingGroupName' --output text) && break
  sleep $((i * 5))
done
# No pending action (the instance was launched straight into service) is not an error worth failing on.
for i in 1 2 3 4 5 6; do
  aws autoscaling complete-lifecycle-action --region {q(region)} --lifecycle-hook-name {q(lifecycle_hook)} \\
      --auto-scaling-group-name "$GROUP" --instance-id "$ID" --lifecycle-action-result CONTINUE && break
  sleep $((i * 5))
done"""
    return f"""
cat > {VENV}/ready.sh <<'READY'
#!/bin/bash
# Every boot: wait until the server answers its health check (up to 10 minutes), then release the instance.
for i in $(seq 1 300); do
  curl -sf -o /dev/null http://127.0.0.1:{int(port)}{health_path} && break
  sleep 2
done{complete}
exit 0
READY
chmod 0755 {VENV}/ready.sh
cat > /etc/systemd/system/{SERVICE_NAME}-ready.service <<'UNIT'
[Unit]
Description=mlops_lb: release the instance when the server is healthy
After={SERVICE_NAME}.service network-online.target
Wants=network-online.target

[Service]
Type=oneshot
ExecStart={VENV}/ready.sh

[Install]
WantedBy=multi-user.target
UNIT"""
