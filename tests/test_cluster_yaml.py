"""cluster.yaml and deploy/serve_config.yaml pass Ray's own validation.

Pure and offline: no Ray cluster, no AWS, no network. The cluster config goes
through the same steps `ray up` runs before it first calls AWS
(``prepare_config`` then ``validate_config``: Ray's defaults merge and its
ray-schema.json). Ray treats ``node_config`` as a free-form object, so the
EC2 part is also checked against botocore's RunInstances input model, which
Ray's ``create_instances(**node_config)`` call sends. The Serve config goes
through ``ServeDeploySchema``, the model that `serve deploy` validates with.
"""

from __future__ import annotations

import ast
import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pydantic
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster.yaml"
SERVE_YAML = REPO / "deploy" / "serve_config.yaml"
CLUSTER_ROUTER_YAML = REPO / "config" / "router.cluster.yaml"


# --------------------------------------------------------------------------- helpers


def load_cluster() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def load_serve() -> dict:
    return yaml.safe_load(SERVE_YAML.read_text())


def ray_validate_cluster(config: dict) -> dict:
    """What `ray up` does to the file before it talks to AWS; returns the result."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def ec2_errors(node_config: dict) -> str:
    """botocore's offline check of node_config as RunInstances parameters ('' if valid)."""
    import botocore.session
    from botocore.validate import ParamValidator

    shape = botocore.session.get_session().get_service_model("ec2").operation_model("RunInstances").input_shape
    # Ray adds MinCount/MaxCount (and tags) itself when it launches a node.
    report = ParamValidator().validate({**node_config, "MinCount": 1, "MaxCount": 1}, shape)
    return report.generate_report() if report.has_errors() else ""


def worker_types(config: dict) -> dict:
    return {name: t for name, t in config["available_node_types"].items() if name != config["head_node_type"]}


def ray_start_line(commands: list[str]) -> str:
    lines = [c for c in commands if "ray start" in c]
    assert len(lines) == 1, commands
    return lines[0]


def serve_unknown_keys(data: dict) -> list[str]:
    """Keys ServeDeploySchema would silently ignore (it allows extras on purpose)."""
    from ray.serve.schema import HTTPOptionsSchema, ServeApplicationSchema, ServeDeploySchema

    def unknown(model, mapping, where):
        known = set(model.model_fields) | {f.alias for f in model.model_fields.values() if f.alias}
        return [f"{where}{key}" for key in mapping if key not in known]

    found = unknown(ServeDeploySchema, data, "")
    found += unknown(HTTPOptionsSchema, data.get("http_options") or {}, "http_options.")
    for i, app in enumerate(data.get("applications") or []):
        found += unknown(ServeApplicationSchema, app, f"applications[{i}].")
    return found


# --------------------------------------------------------------------------- cluster.yaml: Ray's validation


def test_cluster_yaml_passes_rays_own_validation():
    ray_validate_cluster(load_cluster())


def test_cluster_yaml_matches_the_shipped_json_schema_as_written():
    # Ray's schema applied to the file alone, before Ray's defaults fill in anything.
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(load_cluster(), schema)


def test_node_configs_are_valid_run_instances_parameters():
    import botocore.session

    instance_types = (
        botocore.session.get_session()
        .get_service_model("ec2")
        .operation_model("RunInstances")
        .input_shape.members["InstanceType"]
        .enum
    )
    for name, node_type in load_cluster()["available_node_types"].items():
        assert ec2_errors(node_type["node_config"]) == "", name
        assert node_type["node_config"]["InstanceType"] in instance_types, name


def test_rays_aws_defaults_do_not_leak_in():
    # Ray fills every key the file leaves out from aws/defaults.yaml, which
    # installs a Ray nightly wheel and launches spot workers.
    config = load_cluster()
    prepared = ray_validate_cluster(config)
    for key in ("setup_commands", "head_setup_commands", "worker_setup_commands", "initialization_commands",
                "head_start_ray_commands", "worker_start_ray_commands", "file_mounts"):
        assert key in config, f"{key} not set: Ray would use its AWS default"
    assert prepared["head_setup_commands"] == config["setup_commands"] + config["head_setup_commands"]
    assert prepared["worker_setup_commands"] == config["setup_commands"] + config["worker_setup_commands"]
    assert set(prepared["available_node_types"]) == set(config["available_node_types"])
    text = json.dumps(prepared)
    assert "ray-wheels" not in text and "InstanceMarketOptions" not in text


# --------------------------------------------------------------------------- cluster.yaml: what we rely on


def test_provider_is_aws_us_west_2():
    config = load_cluster()
    assert config["cluster_name"] == "nemo-router"
    assert config["provider"]["type"] == "aws"
    assert config["provider"]["region"] == "us-west-2"


def test_head_and_worker_node_types():
    config = load_cluster()
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head.get("max_workers", 0) == 0  # exactly one head
    workers = worker_types(config)
    assert workers, "no worker node type"
    for name, node_type in workers.items():
        assert 1 <= node_type["min_workers"] <= node_type["max_workers"] <= config["max_workers"], name
    assert sum(t.get("min_workers", 0) for t in workers.values()) <= config["max_workers"]
    for node_type in types.values():
        # CPU instances: no GPU families.
        assert not re.match(r"(p|g|inf|trn|dl)\d", node_type["node_config"]["InstanceType"])


def test_setup_installs_the_project_on_every_node():
    config = load_cluster()
    remote = next(remote for remote, local in config["file_mounts"].items() if local == ".")
    assert remote == "~/nemo-router"
    installs = [c for c in config["setup_commands"] if re.search(r"pip install\b.*\s~/nemo-router\s*$", c)]
    assert installs, "setup_commands (all nodes) do not pip-install ~/nemo-router"
    assert not any("git+" in c for c in config["setup_commands"])
    # The copy must not drag the local venv or .git along.
    assert ".venv" in config["rsync_exclude"] and ".git" in config["rsync_exclude"]


def test_start_commands_stop_then_start_with_the_serve_flags():
    config = load_cluster()
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        commands = config[key]
        assert commands[0].strip() == "ray stop", key
        start = ray_start_line(commands)
        for flag in ("RAY_SERVE_ENABLE_HA_PROXY=1", "RAY_SERVE_THROUGHPUT_OPTIMIZED=1"):
            # Set on the ray start command itself, so every Ray process inherits it.
            assert re.search(rf"(^|[\s;&]){flag}\s[^;]*ray start", start), (key, flag)
    head = ray_start_line(config["head_start_ray_commands"])
    for arg in ("--head", "--port=6379", "--dashboard-host=0.0.0.0", "--autoscaling-config=~/ray_bootstrap_config.yaml"):
        assert arg in head.split(), arg
    worker = ray_start_line(config["worker_start_ray_commands"])
    assert "--address=$RAY_HEAD_IP:6379" in worker.split()


def test_provider_keys_come_from_outside_the_file_and_repo():
    config = load_cluster()
    text = CLUSTER_YAML.read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret_access_key|sk-[A-Za-z0-9_-]{16,}|gsk_[A-Za-z0-9]{16,}", text)
    assert "aws_credentials" not in config["provider"]
    keys_remote, keys_local = next((r, l) for r, l in config["file_mounts"].items() if l != ".")
    assert not Path(keys_local).expanduser().resolve().is_relative_to(REPO)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = ray_start_line(config[key])
        # Sourced (exported) before ray start, and a missing file stops ray start.
        assert f"set -a && . {keys_remote} && set +a &&" in start, key


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_every_command_is_valid_bash():
    config = load_cluster()
    keys = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
            "head_start_ray_commands", "worker_start_ray_commands")
    for key in keys:
        for command in config[key]:
            # Ray runs each one as `bash --login -c -i '... && (COMMAND)'`.
            result = subprocess.run(["bash", "-n", "-c", f"({command})"], capture_output=True, text=True)
            assert result.returncode == 0, (key, command, result.stderr)


def test_every_node_type_has_its_own_instance_profile():
    # Without one on the head Ray attaches its broad default; without one on a
    # worker its replicas have no credentials (tests/test_cluster_iam.py checks the policies).
    config = load_cluster()
    head = config["head_node_type"]
    for name, node_type in config["available_node_types"].items():
        profile = node_type["node_config"].get("IamInstanceProfile")
        assert profile == {"Name": "nemo-router-head" if name == head else "nemo-router-worker"}, name


# --------------------------------------------------------------------------- the cluster's router config


def test_cluster_router_config_logs_to_s3_with_a_spool_on_each_node():
    from router.config import load_config

    cluster = load_cluster()
    config = load_config(CLUSTER_ROUTER_YAML, environ={})
    turn_log = config.turn_log
    assert turn_log.sink == "s3"
    assert turn_log.s3.bucket and turn_log.s3.prefix.strip("/")
    assert turn_log.s3.endpoint_url is None  # real S3, through the instance profile
    assert turn_log.s3.region == cluster["provider"]["region"]
    assert turn_log.wal.enabled and turn_log.wal.path is None  # the WAL lives in the spool folder
    # The spool is a folder on each node, writable by the SSH user, and not in
    # the repo copy that `ray up` re-syncs.
    home = Path(f"/home/{cluster['auth']['ssh_user']}")
    repo_copy = home / next(r for r, l in cluster["file_mounts"].items() if l == ".").removeprefix("~/")
    spool = Path(turn_log.spool.path)
    assert spool.is_absolute() and spool.is_relative_to(home) and not spool.is_relative_to(repo_copy)


def test_the_laptop_example_still_logs_to_a_local_folder():
    from router.config import load_config

    assert load_config(REPO / "config" / "router.example.yaml", environ={}).turn_log.sink == "local"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_head_setup_stops_on_the_example_bucket(tmp_path):
    # The cluster config names a placeholder bucket; ray up must stop until it is changed.
    guard = next(c for c in load_cluster()["head_setup_commands"] if "grep" in c)
    config = tmp_path / "nemo-router" / "config" / "router.yaml"
    config.parent.mkdir(parents=True)

    def run_guard(text: str) -> int:
        config.write_text(text)
        env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
        return subprocess.run(["bash", "-c", f"({guard})"], env=env, capture_output=True).returncode

    example = CLUSTER_ROUTER_YAML.read_text()
    assert run_guard(example) != 0
    from router.config import load_config

    bucket = load_config(CLUSTER_ROUTER_YAML, environ={}).turn_log.s3.bucket
    assert run_guard(example.replace(bucket, "acme-voice-turns")) == 0


# --------------------------------------------------------------------------- cluster.yaml: the validator is real


def _rename(mapping: dict, old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


def _worker(config: dict) -> dict:
    return next(iter(worker_types(config).values()))


SCHEMA_ERROR = jsonschema.ValidationError
BROKEN_CLUSTERS = {  # how to break it, what Ray raises
    "misspelled top-level key": (lambda c: _rename(c, "max_workers", "max_worker"), SCHEMA_ERROR),
    "wrong type": (lambda c: c.__setitem__("max_workers", "four"), SCHEMA_ERROR),
    "misspelled node-type key": (lambda c: _rename(_worker(c), "min_workers", "min_worker"), SCHEMA_ERROR),
    "command not a string": (lambda c: c["setup_commands"].append({"pip": "install"}), SCHEMA_ERROR),
    "node type without resources": (lambda c: _worker(c).pop("resources"), SCHEMA_ERROR),
    "unknown head node type": (lambda c: c.__setitem__("head_node_type", "no-such-type"), ValueError),
    "min_workers above global max": (lambda c: _worker(c).__setitem__("min_workers", c["max_workers"] + 1), ValueError),
    # Ray looks up its defaults by provider type before the schema runs.
    "provider without type": (lambda c: c["provider"].pop("type"), KeyError),
}


@pytest.mark.parametrize("break_it, error", BROKEN_CLUSTERS.values(), ids=BROKEN_CLUSTERS.keys())
def test_broken_cluster_yaml_fails_rays_validation(break_it, error):
    config = load_cluster()
    break_it(config)
    with pytest.raises(error):
        ray_validate_cluster(config)


@pytest.mark.parametrize(
    "break_it",
    [
        lambda n: _rename(n, "InstanceType", "InstanceTyp"),
        lambda n: n["BlockDeviceMappings"][0]["Ebs"].__setitem__("VolumeSize", "64GB"),
    ],
    ids=["misspelled EC2 key", "wrong EC2 type"],
)
def test_broken_node_config_fails_the_ec2_check(break_it):
    node_config = copy.deepcopy(_worker(load_cluster())["node_config"])
    break_it(node_config)
    assert ec2_errors(node_config) != ""


# --------------------------------------------------------------------------- serve_config.yaml


def test_serve_config_passes_serve_deploy_schema():
    from ray.serve.config import ProxyLocation
    from ray.serve.schema import ServeDeploySchema

    data = load_serve()
    schema = ServeDeploySchema.model_validate(data)
    assert serve_unknown_keys(data) == []
    assert schema.proxy_location == ProxyLocation.EveryNode
    assert (schema.http_options.host, schema.http_options.port) == ("0.0.0.0", 8000)
    [app] = schema.applications
    assert app.name == "nemo-router"
    assert app.route_prefix == "/"
    assert app.import_path == "deployments.app:app"
    assert list(app.args) == ["config_path"]


def test_serve_import_path_names_the_app_builder():
    # Without importing it (that needs Ray Serve): the module defines `app`.
    module, attr = load_serve()["applications"][0]["import_path"].split(":")
    source = REPO.joinpath(*module.split(".")).with_suffix(".py")
    tree = ast.parse(source.read_text())
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    defined |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    assert attr in defined


def test_serve_config_path_is_where_cluster_yaml_puts_the_repo():
    cluster = load_cluster()
    remote = next(remote for remote, local in cluster["file_mounts"].items() if local == ".")
    home = f"/home/{cluster['auth']['ssh_user']}"
    config_path = load_serve()["applications"][0]["args"]["config_path"]
    assert config_path == remote.replace("~", home, 1) + "/config/router.yaml"
    # ... and the file the operator copies it from is in the repo, named by
    # cluster.yaml's instructions and its head_setup check.
    assert CLUSTER_ROUTER_YAML.exists()
    assert "cp config/router.cluster.yaml config/router.yaml" in CLUSTER_YAML.read_text()
    assert "copy config/router.cluster.yaml" in cluster["head_setup_commands"][0]


def _app(data: dict) -> dict:
    return data["applications"][0]


BROKEN_SERVE = {
    "two colons in import_path": lambda d: _app(d).__setitem__("import_path", "deployments.app:app:x"),
    "import_path without module": lambda d: _app(d).__setitem__("import_path", "app"),
    "unknown proxy_location": lambda d: d.__setitem__("proxy_location", "Everywhere"),
    "port not a number": lambda d: d["http_options"].__setitem__("port", "eighty"),
    "args not a mapping": lambda d: _app(d).__setitem__("args", ["config_path"]),
    "no applications": lambda d: d.pop("applications"),
    "duplicate application": lambda d: d["applications"].append(copy.deepcopy(_app(d))),
    "misspelled import_path": lambda d: _rename(_app(d), "import_path", "improt_path"),
}


@pytest.mark.parametrize("break_it", BROKEN_SERVE.values(), ids=BROKEN_SERVE.keys())
def test_broken_serve_config_fails_serve_deploy_schema(break_it):
    from ray.serve.schema import ServeDeploySchema

    data = load_serve()
    break_it(data)
    with pytest.raises(pydantic.ValidationError):
        ServeDeploySchema.model_validate(data)


def test_serve_deploy_schema_ignores_misspelled_optional_keys_so_we_check_them():
    # Ray allows unknown keys for forward compatibility: a typo in an optional
    # key (here route_prefix) passes its validation and is silently dropped.
    from ray.serve.schema import ServeDeploySchema

    data = load_serve()
    _rename(_app(data), "route_prefix", "route_prefx")
    data["http_options"]["prot"] = data["http_options"].pop("port")
    ServeDeploySchema.model_validate(data)  # Ray accepts it ...
    assert serve_unknown_keys(data) == ["http_options.prot", "applications[0].route_prefx"]  # ... we do not
