"""The spec's `server:` section (what each target runs) and `scaling.metric`: validation and YAML round trip."""

from __future__ import annotations

import pytest

import mlops_lb as ml
from mlops_lb.spec import LlmEmulatorSpec, ServerSpec, is_gpu_instance_type


def _spec(server: dict, **top: object) -> ml.FleetSpec:
    return ml.FleetSpec.from_dict({"name": "s", "server": server, **top})


def test_default_is_our_model_server_so_old_specs_keep_working() -> None:
    """A spec without `server:` runs `mlops-lb serve` (kind model); its YAML round-trips."""
    spec = ml.FleetSpec(name="s")
    assert spec.server.kind == "model" and spec.server.command is None
    assert spec.server.default_metrics_path == "/metrics"
    assert ml.FleetSpec.from_yaml(spec.to_yaml()) == spec


def test_command_string_is_split_without_a_shell_and_round_trips() -> None:
    """A command string is split with shlex (quotes kept together, no shell); kind defaults to command."""
    spec = _spec({"command": "python app.py --port {port} --name 'my {target_id}'", "env": {"A": "1"}})
    assert spec.server.kind == "command"
    assert spec.server.command == ("python", "app.py", "--port", "{port}", "--name", "my {target_id}")
    assert spec.server.default_metrics_path is None
    assert ml.FleetSpec.from_yaml(spec.to_yaml()) == spec
    argv = spec.server.render_command(port=9001, host="127.0.0.1", target_id="i-1", model="m.onnx")
    assert argv == ["python", "app.py", "--port", "9001", "--name", "my i-1"]
    env = spec.server.environment(port=9001, host="127.0.0.1", target_id="i-1", model="m.onnx")
    assert env == {"A": "1", "PORT": "9001", "HOST": "127.0.0.1", "TARGET_ID": "i-1", "MODEL_PATH": "m.onnx"}


def test_literal_braces_survive() -> None:
    """`{{` is a literal brace, as in str.format."""
    s = ServerSpec(command=["echo", "{{x}}", "{port}"])
    assert s.render_command(port=1, host="h", target_id="t", model="m") == ["echo", "{x}", "1"]


def test_llm_emulator_options_become_flags() -> None:
    """server.llm fields map to the emulator's flags; unset ones are left to its defaults."""
    s = ServerSpec(kind="llm-emulator", llm={"max_num_seqs": 8, "decode_ms_per_token": 20, "seed": 3})
    assert isinstance(s.llm, LlmEmulatorSpec)
    assert s.llm.flags() == ["--max-num-seqs", "8", "--decode-ms-per-token", "20.0", "--seed", "3"]


def test_image_with_gpus_on_a_gpu_type() -> None:
    """An image with gpus is valid on a GPU instance type and round-trips."""
    spec = _spec(
        {
            "image": "vllm/vllm-openai:v0.6.3",
            "command": ["--model", "{model}"],
            "container_port": 8000,
            "gpus": "all",
        },
        instance={"type": "g6.xlarge"},
    )
    assert spec.server.kind == "command" and spec.server.gpus == "all"
    assert ml.FleetSpec.from_yaml(spec.to_yaml()) == spec
    assert is_gpu_instance_type("g4dn.xlarge") and is_gpu_instance_type("p5.48xlarge")
    assert not is_gpu_instance_type("t3.small") and not is_gpu_instance_type("c7g.large")


@pytest.mark.parametrize(
    ("server", "top", "field", "words"),
    [
        ({"command": "app {prot}"}, {}, "server.command[1]", "did you mean {port}"),
        ({"command": "app 'x"}, {}, "server.command", "No closing quotation"),
        ({"command": []}, {}, "server.command", "must not be empty"),
        ({"kind": "command"}, {}, "server.command", "is required"),
        ({"kind": "model", "command": ["app"]}, {}, "server.command", "kind 'command'"),
        ({"kind": "docker"}, {}, "server.kind", "model, llm-emulator, command"),
        ({"image": "a b"}, {}, "server.image", "image reference"),
        ({"command": ["app"], "gpus": 1}, {}, "server.gpus", "server.image only"),
        ({"image": "x/y:1", "gpus": 1}, {}, "server.gpus", "GPU instance type"),
        ({"image": "x/y:1", "gpus": "two"}, {"instance": {"type": "g5.xlarge"}}, "server.gpus", "'all'"),
        ({"image": "x/y:1", "registry_auth": "hunter2"}, {}, "server.registry_auth", "Secrets Manager"),
        ({"command": ["app"], "env": {"PORT": "1"}}, {}, "server.env.PORT", "set by the fleet"),
        ({"command": ["app"], "env": {"A": 1}}, {}, "server.env.A", "quote numbers"),
        ({"command": ["app"], "env": {"1A": "x"}}, {}, "server.env.1A", "variable name"),
        ({"startup_timeout_s": 0}, {}, "server.startup_timeout_s", "between 1 and 3600"),
        ({"metrics_path": "metrics"}, {}, "server.metrics_path", "starting with /"),
        ({"llm": {"seed": 1}}, {}, "server.llm", "kind 'llm-emulator'"),
        ({"kind": "llm-emulator", "llm": {"maxnumseqs": 2}}, {}, "server.llm.maxnumseqs", "max_num_seqs"),
        ({"comand": ["app"]}, {}, "server.comand", "did you mean 'command'"),
    ],
)
def test_bad_server_sections_name_field_and_fix(server: dict, top: dict, field: str, words: str) -> None:
    """Each mistake is a SpecError naming the field and what to write instead."""
    with pytest.raises(ml.SpecError) as exc:
        _spec(server, **top)
    assert exc.value.field == field and words in str(exc.value), str(exc.value)


def test_scaling_metric_concurrency() -> None:
    """scaling.metric concurrency_per_target needs its target value; request counts refuse it; YAML round-trips."""
    spec = ml.FleetSpec.from_dict(
        {"name": "c", "scaling": {"metric": "concurrency_per_target", "target_concurrency_per_target": 4}}
    )
    assert spec.scaling.target_concurrency_per_target == 4.0
    assert ml.FleetSpec.from_yaml(spec.to_yaml()) == spec
    assert ml.FleetSpec(name="c").scaling.metric == "request_count_per_target"
    for scaling, field in (
        ({"metric": "concurrency_per_target"}, "scaling.target_concurrency_per_target"),
        (
            {"metric": "concurrency_per_target", "target_concurrency_per_target": 0},
            "scaling.target_concurrency_per_target",
        ),
        ({"target_concurrency_per_target": 3}, "scaling.target_concurrency_per_target"),
        ({"metric": "cpu"}, "scaling.metric"),
    ):
        with pytest.raises(ml.SpecError) as exc:
            ml.FleetSpec.from_dict({"name": "c", "scaling": scaling})
        assert exc.value.field == field, scaling


class TestPortsWorkdirAndEnvPlaceholders:
    """server.ports / server.workdir, and placeholders in env values (issue 24 part 5, found running MLServer)."""

    def test_extra_port_fills_command_env_and_workdir(self) -> None:
        """ports: {grpc: 0} gives {port_grpc} and PORT_GRPC; env values and workdir are filled too; round-trips."""
        spec = _spec(
            {
                "command": ["mlserver", "start", ".", "--grpc-port", "{port_grpc}"],
                "ports": {"grpc": 0},
                "env": {
                    "MLSERVER_HTTP_PORT": "{port}",
                    "ADDR": "{host}:{port_grpc}",
                    "JSON": '{"a": {"b": 1}}',
                },
                "workdir": "models/{target_id}",
            }
        )
        s = spec.server
        values = {
            "port": 9001,
            "host": "127.0.0.1",
            "target_id": "i-1",
            "model": "m",
            "ports": {"grpc": 9002},
        }
        assert s.render_command(**values)[-1] == "9002"  # type: ignore[arg-type]
        env = s.environment(**values)  # type: ignore[arg-type]
        # before: "{port}" in an env value reached the server literally
        assert (env["MLSERVER_HTTP_PORT"], env["ADDR"], env["PORT_GRPC"]) == (
            "9001",
            "127.0.0.1:9002",
            "9002",
        )
        assert env["JSON"] == '{"a": {"b": 1}}'  # braces that are not a placeholder pass through
        assert s.render_workdir(**values) == "models/i-1"  # type: ignore[arg-type]
        assert ml.FleetSpec.from_yaml(spec.to_yaml()) == spec

    @pytest.mark.parametrize(
        ("server", "field", "says"),
        [
            ({"command": "app {port_grpc}"}, "server.command[1]", "declare it in server.ports (grpc: 0)"),
            ({"command": "app", "env": {"A": "{prot}"}}, "server.env.A", "did you mean {port}?"),
            ({"command": "app", "workdir": "w/{target}"}, "server.workdir", "did you mean {target_id}?"),
            ({"command": "app", "ports": {"GRPC": 0}}, "server.ports.GRPC", "lower-case name"),
            ({"command": "app", "ports": {"grpc": 70000}}, "server.ports.grpc", "between 0 and 65535"),
            ({"ports": {"grpc": 0}}, "server.ports.grpc", "is for kind 'command'"),
            (
                {"command": "app", "ports": {"grpc": 0}, "env": {"PORT_GRPC": "1"}},
                "server.env.PORT_GRPC",
                "set by",
            ),
        ],
    )
    def test_mistakes_name_the_field(self, server: dict, field: str, says: str) -> None:
        with pytest.raises(ml.SpecError) as exc:
            _spec(server)
        assert exc.value.field == field and says in str(exc.value), str(exc.value)
