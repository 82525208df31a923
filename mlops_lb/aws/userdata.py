"""The EC2 user data that turns an Amazon Linux 2023 instance into one target of the fleet.

Amazon Linux 2023 keeps ``/usr/bin/python3`` at 3.9 for its whole life and system tools (dnf) depend on it, so
Python 3.11 is installed side by side and this package lives in its own venv; the symlink is never touched.
The wheel (and a user model) come from the stack's private bucket, because no public package index can be
assumed for this package. The instance id, read through IMDSv2, becomes the server's ``X-Target-Id``.

Example::

    script = render_user_data(bucket="mlops-lb-assets-1a2b3c", region="us-east-1",
                              wheel_key="wheels/mlops_lb-0.1.0-py3-none-any.whl", port=8080)
"""

from __future__ import annotations

import shlex

__all__ = ["SERVE_REQUIREMENTS", "SERVICE_NAME", "VENV", "render_user_data"]

VENV = "/opt/mlops_lb"
SERVICE_NAME = "mlops-lb"
# What `mlops-lb serve` needs (pyproject's `serve` extra; a test keeps the two equal). Instances install these and
# the wheel with --no-deps, skipping pulumi, boto3, pandas and matplotlib: minutes less before the first health
# check passes, well inside the grace period.
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


def render_user_data(
    *,
    bucket: str,
    region: str,
    wheel_key: str,
    port: int,
    model_key: str | None = None,
    wheel_sha256: str = "",
) -> str:
    """The cloud-init shell script (plain text; the launch template base64-encodes it).

    ``model_key`` is the bucket key of a user model; without it the server loads the bundled demo model.
    ``wheel_sha256`` is written into the script so a rebuilt wheel changes the launch template (and so rolls the
    instances through an instance refresh).
    """
    q = shlex.quote
    wheel_name = wheel_key.rsplit("/", 1)[-1]
    model_arg = "demo"
    fetch_model = ""
    if model_key:
        model_arg = f"{VENV}/model/{model_key.rsplit('/', 1)[-1]}"
        fetch_model = f"aws s3 cp --region {q(region)} {q(f's3://{bucket}/{model_key}')} {q(model_arg)}\n"
    return f"""#!/bin/bash
# mlops_lb instance bootstrap (wheel sha256: {wheel_sha256 or "unknown"})
set -euxo pipefail
exec > >(tee -a /var/log/mlops-lb-bootstrap.log) 2>&1

# Side-by-side Python: AL2023's system python3 (3.9) stays as it is; dnf needs it.
dnf install -y python3.11 python3.11-pip

mkdir -p {VENV}/dist {VENV}/model
aws s3 cp --region {q(region)} {q(f"s3://{bucket}/{wheel_key}")} {q(f"{VENV}/dist/{wheel_name}")}
{fetch_model}python3.11 -m venv {VENV}
{VENV}/bin/python -m pip install --upgrade pip
{VENV}/bin/python -m pip install {" ".join(q(r) for r in SERVE_REQUIREMENTS)}
{VENV}/bin/python -m pip install --no-deps {q(f"{VENV}/dist/{wheel_name}")}

# IMDSv2 (http_tokens=required): a session token first, then the instance id.
TOKEN=$(curl -sS -X PUT http://169.254.169.254/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
INSTANCE_ID=$(curl -sS -H "X-aws-ec2-metadata-token: $TOKEN" http://169.254.169.254/latest/meta-data/instance-id)
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

systemctl daemon-reload
systemctl enable --now {SERVICE_NAME}.service
"""
