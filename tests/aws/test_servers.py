"""What the instances run for each server kind, under the strict Pulumi mocks: user data (text checks and
``bash -n``), the role's extra permissions (each only when needed), concurrency scaling and examples/vllm-g6.yaml.

AWS rules behind them are in mlops_lb/_aws_rules.py (ecr-pull, iam-no-resource-level, custom-metric-tracking,
put-metric-namespace, deregistration-delay, gpu-vcpu-quota), each with its doc URL; the mocks reject breaking them.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mlops_lb import FleetSpec
from mlops_lb.errors import SpecError

LT = "aws:ec2/launchTemplate:LaunchTemplate"
POLICY = "aws:autoscaling/policy:Policy"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
OBJ = "aws:s3/bucketObjectv2:BucketObjectv2"
ROOT = Path(__file__).parents[2]
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1.2"


def _ud(rec: Any) -> str:
    return base64.b64decode(rec.one(LT)["userData"]).decode()


def _statements(rec: Any) -> list[dict[str, Any]]:
    return json.loads(rec.one(ROLE_POLICY)["policy"])["Statement"]


def _actions(rec: Any) -> set[str]:
    return {a for s in _statements(rec) for a in s["Action"]}


# Files user data writes from base64 (what carries spec values), by the name their here-document used to have.
_B64_FILES = {
    "/opt/mlops_lb/server.sh": "SERVER",
    "/etc/mlops-lb.env": "ENV",
    "/opt/mlops_lb/fetch-secrets.py": "PY",
}


def _heredocs(script: str) -> dict[str, str]:
    docs = {m.group(1): m.group(2) for m in re.finditer(r"<<'(\w+)'\n(.*?)\n\1\n", script, re.S)}
    for m in re.finditer(r"base64 -d >>? (\S+) <<'B64-END'\n(.*?)\nB64-END\n", script, re.S):
        docs[_B64_FILES[m.group(1)]] = base64.b64decode("".join(m.group(2).split())).decode()
    return docs


def _bash_ok(script: str) -> None:
    """The script and every script it writes (server.sh, ready.sh, metrics-agent.sh) parse as bash."""
    bash = shutil.which("bash")
    assert bash
    for name, text in [("user data", script), *_heredocs(script).items()]:
        if name in ("UNIT", "ENV", "PY"):
            continue
        r = subprocess.run([bash, "-n"], input=text, text=True, capture_output=True, check=False)
        assert r.returncode == 0, (name, r.stderr)


def _spec(**kw: Any) -> FleetSpec:
    return FleetSpec.from_dict({"name": "byo", **kw})


class TestCommand:
    def test_the_users_command_runs_as_a_systemd_unit_with_placeholders_filled(
        self, run_program: Any, tmp_path: Path
    ) -> None:
        """{port} {host} {model} are filled when rendering, {target_id} on the instance ("${TARGET_ID}" from
        IMDSv2); PORT/HOST/TARGET_ID/MODEL_PATH and server.env reach the process; SIGTERM, drain, SIGKILL."""
        req = tmp_path / "requirements.txt"
        req.write_text("fastapi\nuvicorn\n")
        spec = _spec(
            server={
                "command": ["python", "app.py", "--port", "{port}", "--host", "{host}", "--id={target_id}"],
                "env": {"APP_MODE": "prod it's"},
                "install": str(req),
                "drain_timeout_s": 45,
            },
            target_group={"port": 9000, "deregistration_delay_s": 60},
        )
        rec = run_program(spec)
        ud = _ud(rec)
        _bash_ok(ud)
        server_sh = _heredocs(ud)["SERVER"]
        assert (
            "exec 'python' 'app.py' '--port' '9000' '--host' '0.0.0.0' '--id='\"${TARGET_ID}\"''" in server_sh
        )
        assert "TARGET_ID=$INSTANCE_ID" in ud and "X-aws-ec2-metadata-token" in ud
        env = _heredocs(ud)["ENV"]
        assert 'PORT="9000"' in env and 'HOST="0.0.0.0"' in env and 'MODEL_PATH="demo"' in env
        assert 'APP_MODE="prod it\'s"' in env
        unit = ud.split("mlops-lb.service <<'UNIT'")[1].split("UNIT\n")[0]
        assert "ExecStart=/opt/mlops_lb/server.sh" in unit and "Restart=always" in unit
        assert "KillMode=mixed" in unit and "TimeoutStopSec=45" in unit
        # install: the requirements file, content-addressed in the bucket, pip-installed into the venv
        (key,) = [i["key"] for _, i in rec.of_type(OBJ) if i["key"].startswith("install/")]
        assert re.fullmatch(r"install/[0-9a-f]{16}/requirements\.txt", key)
        assert (
            f"s3://{rec.outputs['bucket']}/{key}" in ud and "pip install --disable-pip-version-check -r" in ud
        )
        # our package is not installed for a user's server: no wheel fetch, no mlops-lb serve
        assert "mlops-lb serve" not in ud and "mlops_lb-0.1.0" not in ud
        assert "ecr:" not in json.dumps(_statements(rec)) and "cloudwatch:PutMetricData" not in _actions(rec)

    def test_a_project_directory_is_archived_reproducibly_and_unpacked_at_its_path(
        self, run_program: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """install: a directory -> a content-addressed .tar.gz; the same files give byte-identical user data."""
        proj = tmp_path / "examples" / "svc"
        proj.mkdir(parents=True)
        (proj / "app.py").write_text("print('hi')\n")
        (proj / "requirements.txt").write_text("fastapi\n")
        (proj / "__pycache__").mkdir()
        (proj / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"x")
        monkeypatch.chdir(tmp_path)
        spec = _spec(
            server={"command": "python examples/svc/app.py --port {port}", "install": "examples/svc"}
        )
        first, second = run_program(spec), run_program(spec)
        assert _ud(first) == _ud(second)  # same files, same archive hash, same launch template
        ud = _ud(first)
        assert "tar -xzf" in ud and "/opt/mlops_lb/app/examples/svc" in ud
        assert "WorkingDirectory=/opt/mlops_lb/app" in ud  # relative paths resolve as they did locally
        (proj / "app.py").write_text("print('changed')\n")
        assert _ud(run_program(spec)) != ud

    def test_concurrency_needs_a_metrics_path_for_a_users_server(self) -> None:
        """The agent scrapes the server's gauges: a user's server without metrics_path is refused up front."""
        from mlops_lb.aws.program import fleet_program

        spec = _spec(
            server={"command": "app --port {port}"},
            scaling={"metric": "concurrency_per_target", "target_concurrency_per_target": 4},
        )
        with pytest.raises(SpecError) as info:
            fleet_program(spec)
        assert info.value.field == "server.metrics_path"


class TestImage:
    def test_public_image_runs_under_docker_with_gpus_and_no_registry_permissions(
        self, run_program: Any
    ) -> None:
        """image: docker installed if missing, pulled at boot, run by systemd (restart always) with -p port:container
        port, env via -e, --gpus on a GPU type; docker stop --time drain; the role gains nothing for a public image."""
        spec = _spec(
            instance={"type": "g6.xlarge", "root_volume_gb": 100},
            server={
                "image": "vllm/vllm-openai:v0.6.3",
                "command": ["--model", "m", "--port", "{port}"],
                "container_port": 8000,
                "gpus": "all",
                "env": {"HF_HOME": "/cache"},
                "drain_timeout_s": 20,
            },
        )
        rec = run_program(spec)
        ud = _ud(rec)
        _bash_ok(ud)
        assert "command -v docker >/dev/null || retry 5 dnf install -y docker" in ud
        assert "retry 5 docker pull vllm/vllm-openai:v0.6.3" in ud and "python3.11" not in ud
        # no venv for an image, but the directory of server.sh exists before it is written (it did not, once)
        assert ud.index("mkdir -p /opt/mlops_lb\n") < ud.index("base64 -d > /opt/mlops_lb/server.sh")
        run = _heredocs(ud)["SERVER"]
        assert "'-p' '8080:8000'" in run and "'--gpus' 'all'" in run
        assert "'-e' 'HF_HOME'" in run and "'-e' 'TARGET_ID'" in run
        assert run.rstrip().endswith("'vllm/vllm-openai:v0.6.3' '--model' 'm' '--port' '8000'")
        assert (
            "ExecStop=/usr/bin/docker stop --time 20 mlops-lb-server" in ud
            and "Requires=docker.service" in ud
        )
        assert "Restart=always" in ud
        assert not [a for a in _actions(rec) if a.startswith(("ecr:", "secretsmanager:"))]

    def test_no_gpus_flag_without_gpus(self, run_program: Any) -> None:
        """A CPU image gets no --gpus (docker would fail without the NVIDIA runtime)."""
        ud = _ud(run_program(_spec(server={"image": "nginx:1.27", "container_port": 80})))
        run = _heredocs(ud)["SERVER"]  # the docker run line, carried base64-encoded
        assert "--gpus" not in ud + run and "'-p' '8080:80'" in run

    def test_ecr_image_logs_in_with_the_role_which_may_pull_that_repository_only(
        self, run_program: Any
    ) -> None:
        """ECR: get-login-password | docker login; GetAuthorizationToken on "*" (no resource-level permission),
        the pull actions on the repository's ARN (rule ecr-pull)."""
        rec = run_program(_spec(server={"image": ECR, "container_port": 8000}))
        ud = _ud(rec)
        _bash_ok(ud)
        assert (
            "aws ecr get-login-password --region us-east-1 | docker login --username AWS --password-stdin 123456789012.dkr.ecr.us-east-1.amazonaws.com"
            in ud
        )
        by_action = {a: s["Resource"] for s in _statements(rec) for a in s["Action"]}
        assert by_action["ecr:GetAuthorizationToken"] == ["*"]
        repo = "arn:aws:ecr:us-east-1:123456789012:repository/team/app"
        assert by_action["ecr:BatchGetImage"] == [repo] and by_action["ecr:GetDownloadUrlForLayer"] == [repo]

    def test_registry_auth_reads_that_secret_only(self, run_program: Any) -> None:
        """registry_auth: a Secrets Manager secret {"username", "password"}; the role may read that secret only."""
        arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ghcr-AbCdEf"
        rec = run_program(
            _spec(server={"image": "ghcr.io/me/app:1", "container_port": 80, "registry_auth": arn})
        )
        ud = _ud(rec)
        _bash_ok(ud)
        assert "secretsmanager get-secret-value" in ud and "docker login --username" in ud and "ghcr.io" in ud
        by_action = {a: s["Resource"] for s in _statements(rec) for a in s["Action"]}
        assert by_action["secretsmanager:GetSecretValue"] == [arn]


class TestModelsAndOurServers:
    def test_s3_model_is_read_by_the_instance_with_getobject_on_that_object_only(
        self, run_program: Any
    ) -> None:
        """model.source s3://bucket/key: not copied into the stack's bucket; the instance downloads it with the
        role, which may GetObject that one object (in the region's partition)."""
        rec = run_program(
            _spec(model={"source": "s3://team-models/churn/v3/model.joblib", "allow_pickle": True})
        )
        ud = _ud(rec)
        assert "s3://team-models/churn/v3/model.joblib /opt/mlops_lb/model/model.joblib" in ud
        assert "--model /opt/mlops_lb/model/model.joblib" in ud
        assert not [i for _, i in rec.of_type(OBJ) if i["key"].startswith("model/")]
        model_reads = [s for s in _statements(rec) if "arn:aws:s3:::team-models" in json.dumps(s)]
        assert model_reads == [
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": ["arn:aws:s3:::team-models/churn/v3/model.joblib"],
            }
        ]

    def test_a_users_server_gets_the_model_from_the_bucket_or_s3_mounted_into_its_container(
        self, run_program: Any, tmp_path: Path
    ) -> None:
        """{model} / MODEL_PATH is the downloaded file on the instance, for a command and (mounted read-only at the
        same path) for an image; an uploaded model comes from the stack's bucket, an s3:// one with GetObject."""
        model = tmp_path / "m.joblib"
        model.write_bytes(b"m")
        rec = run_program(
            _spec(
                model={"source": str(model), "allow_pickle": True}, server={"command": "app --model {model}"}
            )
        )
        ud = _ud(rec)
        (key,) = [i["key"] for _, i in rec.of_type(OBJ) if i["key"].startswith("model/")]
        assert f"s3://{rec.outputs['bucket']}/{key} /opt/mlops_lb/model/m.joblib" in ud
        assert "'--model' '/opt/mlops_lb/model/m.joblib'" in _heredocs(ud)["SERVER"]
        img = run_program(
            _spec(
                model={"source": "s3://models/x/m.joblib", "allow_pickle": True},
                server={"image": "me/app:1", "container_port": 80, "command": ["--model", "{model}"]},
            )
        )
        run = _heredocs(_ud(img))["SERVER"]
        assert (
            "'-v' '/opt/mlops_lb/model:/opt/mlops_lb/model:ro'" in run
            and "'/opt/mlops_lb/model/m.joblib'" in run
        )
        reads = [s["Resource"] for s in _statements(img) if s["Action"] == ["s3:GetObject"]]
        assert ["arn:aws:s3:::models/x/m.joblib"] in reads

    def test_bundled_demo_onnx_is_served_without_an_upload(self, run_program: Any) -> None:
        """model.source demo.onnx (no such local file): the wheel carries it; `serve --model demo.onnx`."""
        rec = run_program(_spec(model={"source": "demo.onnx"}))
        assert "--model demo.onnx --target-id" in _ud(rec)
        assert not [i for _, i in rec.of_type(OBJ) if i["key"].startswith("model/")]

    def test_llm_emulator_runs_serve_llm_with_its_flags(self, run_program: Any) -> None:
        """kind llm-emulator: our package's `serve --llm` with the spec's emulator options, as a systemd unit."""
        ud = _ud(run_program(_spec(server={"kind": "llm-emulator", "llm": {"max_num_seqs": 8, "seed": 3}})))
        _bash_ok(ud)
        assert re.search(
            r"ExecStart=/opt/mlops_lb/bin/mlops-lb serve --llm --host 0\.0\.0\.0 --port 8080 --target-id \$\{TARGET_ID\} "
            r'"--max-num-seqs" "8" "--seed" "3"',
            ud,
        )
        assert "TimeoutStopSec=30" in ud and "mlops_lb-0.1.0-py3-none-any.whl" in ud


class TestConcurrencyScaling:
    def _spec(self, **kw: Any) -> FleetSpec:
        return _spec(scaling={"metric": "concurrency_per_target", "target_concurrency_per_target": 4}, **kw)

    def test_target_tracking_follows_the_agents_metric(self, run_program: Any) -> None:
        """customized_metric_specification: MlopsLb/ConcurrencyPerTarget, AutoScalingGroupName = the group,
        statistic Average, target = in-flight per target (no x60); no ALBRequestCountPerTarget policy."""
        rec = run_program(self._spec())
        (name,) = [n for n, _ in rec.of_type(POLICY)]
        ttc = rec.one(POLICY, name)["targetTrackingConfiguration"]
        custom = ttc["customizedMetricSpecification"]
        assert (custom["namespace"], custom["metricName"], custom["statistic"]) == (
            "MlopsLb",
            "ConcurrencyPerTarget",
            "Average",
        )
        assert custom["metricDimensions"] == [
            {"name": "AutoScalingGroupName", "value": rec.outputs["asg_name"]}
        ]
        assert ttc["targetValue"] == 4.0 and "predefinedMetricSpecification" not in ttc

    def test_the_role_may_put_metric_data_in_our_namespace_only(self, run_program: Any) -> None:
        """cloudwatch:PutMetricData on "*" (no resource-level permission) with cloudwatch:namespace = MlopsLb."""
        rec = run_program(self._spec())
        (put,) = [s for s in _statements(rec) if "cloudwatch:PutMetricData" in s["Action"]]
        assert put["Action"] == ["cloudwatch:PutMetricData"] and put["Resource"] == ["*"]
        assert put["Condition"] == {"StringEquals": {"cloudwatch:namespace": "MlopsLb"}}
        from mlops_lb.frames import metric_by_name

        assert metric_by_name("ConcurrencyPerTarget").namespace == "MlopsLb"  # what the reader queries

    @pytest.mark.parametrize(
        ("server", "gauges"),
        [
            ({}, "mlops_in_flight_requests"),
            ({"kind": "llm-emulator"}, "vllm:num_requests_running vllm:num_requests_waiting"),
        ],
    )
    def test_the_agent_scrapes_the_kinds_gauges(
        self, run_program: Any, server: dict[str, Any], gauges: str
    ) -> None:
        """The agent is a systemd service enabled at boot; its gauges follow server.kind."""
        ud = _ud(run_program(self._spec(server=server)))
        _bash_ok(ud)
        agent = _heredocs(ud)["AGENT"]
        assert f"GAUGES={shlex.quote(gauges)}" in agent and "URL=http://127.0.0.1:8080/metrics" in agent
        assert "put-metric-data" in agent and "systemctl enable --now mlops-lb-metrics.service" in ud

    def test_the_agents_awk_sums_the_gauges_of_prometheus_text(self) -> None:
        """The scrape, run for real: labels (with spaces) stripped, comments skipped, the named gauges summed."""
        from mlops_lb.aws.userdata import MetricsAgent, _agent_units

        agent = _agent_units(
            MetricsAgent(url="http://x/metrics", gauges=("a:run", "a:wait")), region="us-east-1"
        )
        program = agent.split('awk -v names="$GAUGES" \'')[1].split("')")[0]
        text = (
            "# HELP a:run running\n# TYPE a:run gauge\n"
            'a:run{model_name="m one"} 3\na:wait{model_name="m one"} 2.5\na:runs 100\nother 7\n'
        )
        out = subprocess.run(
            ["awk", "-v", "names=a:run a:wait", program],
            input=text,
            text=True,
            capture_output=True,
            check=True,
        )
        assert float(out.stdout) == 5.5
        none = subprocess.run(
            ["awk", "-v", "names=a:run", program], input="x 1\n", text=True, capture_output=True
        )
        assert none.stdout == ""  # no sample (the server is not up): nothing is published


class TestRulesTheMocksEnforce:
    def test_star_only_actions_must_name_star(self) -> None:
        """iam-no-resource-level: PutMetricData / GetAuthorizationToken on a resource ARN do nothing; refused."""
        from mlops_lb._aws_rules import resource_violations

        doc = {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["cloudwatch:PutMetricData"],
                    "Resource": ["arn:aws:cloudwatch:::x"],
                }
            ]
        }
        assert (
            "iam-no-resource-level" in resource_violations(ROLE_POLICY, "r", {"policy": json.dumps(doc)})[0]
        )
        ecr = {"Statement": [{"Effect": "Allow", "Action": ["ecr:BatchGetImage"], "Resource": ["*"]}]}
        assert "ecr-pull" in resource_violations(ROLE_POLICY, "r", {"policy": json.dumps(ecr)})[0]
        ns = {"Statement": [{"Effect": "Allow", "Action": ["cloudwatch:PutMetricData"], "Resource": ["*"],
                             "Condition": {"StringEquals": {"cloudwatch:namespace": "AWS/EC2"}}}]}  # fmt: skip
        assert "put-metric-namespace" in resource_violations(ROLE_POLICY, "r", {"policy": json.dumps(ns)})[0]

    def test_customized_metric_needs_a_valid_statistic_and_the_group_dimension(self) -> None:
        """custom-metric-tracking: statistic one of Average/Minimum/Maximum/SampleCount/Sum; not both kinds."""
        from mlops_lb._aws_rules import resource_violations

        good = {"namespace": "MlopsLb", "metricName": "C", "statistic": "Average",
                "metricDimensions": [{"name": "AutoScalingGroupName", "value": "g"}]}  # fmt: skip
        assert (
            resource_violations(
                POLICY, "p", {"targetTrackingConfiguration": {"customizedMetricSpecification": good}}
            )
            == []
        )
        bad = {**good, "statistic": "p99"}
        assert resource_violations(
            POLICY, "p", {"targetTrackingConfiguration": {"customizedMetricSpecification": bad}}
        )
        both = {
            "customizedMetricSpecification": good,
            "predefinedMetricSpecification": {"predefinedMetricType": "X"},
        }
        assert resource_violations(POLICY, "p", {"targetTrackingConfiguration": both})

    def test_deregistration_delay_range(self) -> None:
        """deregistration-delay: 0-3600 s."""
        from mlops_lb._aws_rules import resource_violations

        tg = "aws:lb/targetGroup:TargetGroup"
        assert resource_violations(tg, "demo", {"deregistrationDelay": 3600}) == []
        assert "deregistration-delay" in resource_violations(tg, "demo", {"deregistrationDelay": 3601})[0]


def test_each_family_is_checked_against_its_own_vcpu_quota() -> None:
    """gpu-vcpu-quota: G and VT -> L-DB2E81BA, P -> L-417A185B, Standard -> L-1216C47A; X by its quota's name
    (vcpu-quota-families; more families in test_preflight_families.py)."""
    from mlops_lb.aws._preflight import _quota_code

    assert [
        (_quota_code(t) or ("",))[0]
        for t in ("g6.xlarge", "vt1.3xlarge", "p5.48xlarge", "t3.small", "x2idn.16xlarge")
    ] == [
        "L-DB2E81BA",
        "L-DB2E81BA",
        "L-417A185B",
        "L-1216C47A",
        "",  # X: looked up by its name, "Running On-Demand X instances"
    ]
    assert _quota_code("x2idn.16xlarge") == ("", "Running On-Demand X instances")


class TestPreflight:
    def _quota_stub(
        self, monkeypatch: pytest.MonkeyPatch, code: str, value: float, ami: bool = False
    ) -> list[str]:
        from botocore.stub import Stubber

        from mlops_lb.aws import _boto
        from mlops_lb.aws._preflight import GPU_AMI_PARAMETERS

        real, asked = _boto.client, []

        def client(service: str, **kw: Any) -> Any:
            c = real(service, **kw)
            if service == "service-quotas":
                stub = Stubber(c)
                stub.add_response(
                    "get_service_quota",
                    {"Quota": {"Value": value}},
                    {"ServiceCode": "ec2", "QuotaCode": code},
                )
                stub.activate()
                asked.append(code)
            if service == "ssm" and ami:  # moto does not carry the DLAMI's public parameter
                stub = Stubber(c)
                stub.add_response(
                    "get_parameter",
                    {"Parameter": {"Name": GPU_AMI_PARAMETERS["x86_64"], "Value": "ami-0123456789abcdef0"}},
                    {"Name": GPU_AMI_PARAMETERS["x86_64"]},
                )
                stub.activate()
            return c

        monkeypatch.setattr("mlops_lb.aws._preflight.client", client)
        return asked

    def test_drain_longer_than_the_deregistration_delay_fails(self, moto_account: Any) -> None:
        """The ALB closes in-flight requests when the delay ends: drain_timeout_s above it fails with the fix."""
        from mlops_lb.aws import preflight

        spec = _spec(
            region="us-east-1", server={"drain_timeout_s": 120}, target_group={"deregistration_delay_s": 30}
        )
        pf = preflight(spec)
        (row,) = [r for r in pf.rows if r["check"] == "drain"]
        assert row["ok"] is False and "deregistration_delay_s: 120" in row["fix"]

    def test_vllm_g6_example_under_the_mocks(self, run_program: Any) -> None:
        """examples/vllm-g6.yaml declares cleanly under the strict mocks: GPU docker run, concurrency policy."""
        spec = FleetSpec.from_yaml(ROOT / "examples" / "vllm-g6.yaml")
        rec = run_program(spec)
        ud = _ud(rec)
        _bash_ok(ud)
        run = _heredocs(ud)["SERVER"]
        assert "'--gpus' 'all'" in run and "'-p' '8000:8000'" in run and "vllm:num_requests_waiting" in ud
        assert len(ud.encode()) < 16 * 1024
        assert rec.one("aws:lb/targetGroup:TargetGroup")["deregistrationDelay"] == 120
        assert "TimeoutStopSec=135" in ud  # docker stop --time 120 plus a margin
        # no warm pool: no lifecycle hook to hold (the 900 s grace period alone covers the model load)
        assert "complete-lifecycle-action" not in ud and "mlops-lb-lifecycle" not in ud

    def test_vllm_g6_example_preflight_on_a_fresh_account(
        self, moto_account: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """On a fresh account (G and VT quota L-DB2E81BA = 0) the only failure is the GPU quota, named with its
        fix; the NVIDIA AMI is picked for g6, the 100 GB root volume passes, the drain and grace checks pass."""
        from mlops_lb.aws import preflight
        from mlops_lb.aws._preflight import GPU_AMI_PARAMETERS

        asked = self._quota_stub(monkeypatch, "L-DB2E81BA", 0.0, ami=True)
        pf = preflight(FleetSpec.from_yaml(ROOT / "examples" / "vllm-g6.yaml"))
        print(pf)
        assert [r["check"] for r in pf.failed] == ["vcpu quota"], pf
        (quota,) = pf.failed
        assert "G and VT" in quota["detail"] and "L-DB2E81BA" in quota["fix"] and asked == ["L-DB2E81BA"]
        assert pf.resolved["ami_parameter"] == GPU_AMI_PARAMETERS["x86_64"] and pf.resolved["gpu"]


def test_the_agents_statistic_set_accumulates_samples() -> None:
    """The per-sample step, run for real: count, sum, min and max of the samples, printed as JSON numbers."""
    from mlops_lb.aws.userdata import MetricsAgent, _agent_units

    agent = _agent_units(MetricsAgent(url="http://x/metrics", gauges=("g",)), region="us-east-1")
    step = agent.split('STATS=$(echo "$STATS $V" | ')[1].split(")\n")[0]
    stats = "0 0 0 0"
    for v in ("2", "0.5", "1234567.25"):
        out = subprocess.run(["bash", "-c", f'echo "{stats} {v}" | {step}'], text=True, capture_output=True)
        stats = out.stdout.strip()
    n, total, lo, hi = stats.split()
    assert (int(n), float(total), float(lo), float(hi)) == (3, 1234569.75, 0.5, 1234567.25)
    json.loads(f"[{n},{total},{lo},{hi}]")
