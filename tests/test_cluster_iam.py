"""The cluster's IAM policies (deploy/iam/) grant what the code uses, and no more.

Pure and offline. Three checks of the same claim:
- the policies' shape: no wildcard action, no ``*`` resource except where AWS
  allows nothing narrower, S3 only below the turn log's prefix;
- every S3 call in the code is in ``nemo_turnlog.s3_client.S3_CALLS``, and the
  real sink, reader and spend ledger, run against an in-memory S3 that records
  each request, make only requests the rendered policies allow (a small IAM
  evaluator below: Allow statements, ``*``/``?`` wildcards, StringEquals and
  StringLike), while requests beside the prefix are refused;
- Ray's own AWS node provider, run against moto's in-process EC2, makes only
  EC2 calls the head's policy allows, and the head may pass the worker's role
  and no other.
"""

from __future__ import annotations

import ast
import io
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
IAM = REPO / "deploy" / "iam"
BUCKET, PREFIX, ACCOUNT = "acme-voice-turns", "prod/turnlog", "123456789012"
CODE_DIRS = (REPO / "logging" / "nemo_turnlog", REPO / "deployments", REPO / "router")
TEST_ONLY = {"testing.py", "export_testing.py"}  # helpers that create buckets for tests


def cluster() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def render_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("nemo_iam_render", IAM / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def template(name: str) -> dict:
    return json.loads((IAM / f"{name}-policy.json").read_text())


def rendered(name: str) -> dict:
    values = {"BUCKET": BUCKET, "PREFIX": PREFIX, "REGION": cluster()["provider"]["region"], "ACCOUNT_ID": ACCOUNT}
    return render_module().render((IAM / f"{name}-policy.json").read_text(), values)


def profile_name(node_type: dict) -> str:
    return node_type["node_config"]["IamInstanceProfile"]["Name"]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


# --------------------------------------------------------------------------- a small IAM evaluator


def _wildcard(pattern: str, value: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def _condition_holds(condition: dict, context: dict[str, str]) -> bool:
    for operator, tests in condition.items():
        match = {"StringEquals": str.__eq__, "StringLike": lambda want, got: _wildcard(want, got)}[operator]
        for key, wanted in tests.items():
            if key not in context or not any(match(w, context[key]) for w in as_list(wanted)):
                return False
    return True


def allowed(policy: dict, action: str, resource: str, context: dict[str, str] | None = None) -> bool:
    """True if an Allow statement matches (the policies have no Deny)."""
    for st in policy["Statement"]:
        if (
            st["Effect"] == "Allow"
            and any(_wildcard(a.lower(), action.lower()) for a in as_list(st["Action"]))
            and any(_wildcard(r, resource) for r in as_list(st["Resource"]))
            and _condition_holds(st.get("Condition", {}), context or {})
        ):
            return True
    return False


def test_the_evaluator_is_not_a_rubber_stamp():
    policy = {"Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b",
                             "Condition": {"StringEquals": {"s3:prefix": ["p/"]}}}]}
    assert allowed(policy, "s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "p/"})
    assert not allowed(policy, "s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "q/"})
    assert not allowed(policy, "s3:ListBucket", "arn:aws:s3:::b")  # no prefix sent: the condition fails
    assert not allowed(policy, "s3:ListBucket", "arn:aws:s3:::bb", {"s3:prefix": "p/"})
    assert not allowed(policy, "s3:GetObject", "arn:aws:s3:::b", {"s3:prefix": "p/"})


# --------------------------------------------------------------------------- the policies' shape


POLICY_NAMES = ("head", "worker")


@pytest.mark.parametrize("name", [*POLICY_NAMES, "trust"])
def test_policy_documents_are_plain_allow_lists(name):
    policy = json.loads((IAM / f"{name}-policy.json").read_text())
    assert policy["Version"] == "2012-10-17"
    sids = [st["Sid"] for st in policy["Statement"]]
    assert len(sids) == len(set(sids))
    for st in policy["Statement"]:
        assert st["Effect"] == "Allow"
        assert not {"NotAction", "NotResource", "NotPrincipal"} & set(st), st["Sid"]


def test_trust_policy_lets_only_ec2_assume_the_roles():
    [st] = json.loads((IAM / "trust-policy.json").read_text())["Statement"]
    assert st["Principal"] == {"Service": "ec2.amazonaws.com"} and st["Action"] == "sts:AssumeRole"


# AWS accepts only Resource "*" for these (no resource-level permissions).
NO_RESOURCE_LEVEL = {"ec2:DescribeInstances"}


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_no_wildcard_actions_and_no_star_resources_beyond_what_aws_forces(name):
    for st in template(name)["Statement"]:
        for action in as_list(st["Action"]):
            assert "*" not in action and "?" not in action, (st["Sid"], action)
        if "*" in as_list(st["Resource"]):
            assert set(as_list(st["Action"])) <= NO_RESOURCE_LEVEL, st["Sid"]
            assert st["Resource"] == "*"
            # ... and only in the cluster's region.
            assert st["Condition"] == {"StringEquals": {"aws:RequestedRegion": "${REGION}"}}
        for resource in as_list(st["Resource"]):
            # Every ARN names the account or region it is in, never "any".
            assert ":*:" not in resource and not resource.startswith("arn:aws:*"), resource


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_s3_grants_stay_below_the_turn_log_prefix(name):
    for st in template(name)["Statement"]:
        actions = as_list(st["Action"])
        if not any(a.startswith("s3:") for a in actions):
            continue
        assert all(a.startswith("s3:") for a in actions), st["Sid"]
        for resource in as_list(st["Resource"]):
            if resource == "arn:aws:s3:::${BUCKET}":
                # The bucket itself: listing only, and only of the prefix.
                assert actions == ["s3:ListBucket"] or actions == "s3:ListBucket", st["Sid"]
                [(operator, tests)] = st["Condition"].items()
                assert operator == "StringEquals" and list(tests) == ["s3:prefix"]
                assert all(p.startswith("${PREFIX}/") for p in as_list(tests["s3:prefix"]))
            else:
                assert resource.startswith("arn:aws:s3:::${BUCKET}/${PREFIX}/"), resource
                assert "s3:ListBucket" not in actions


def test_worker_has_the_turn_log_rights_only_and_the_head_the_same_plus_the_autoscalers():
    worker, head = template("worker")["Statement"], template("head")["Statement"]
    assert {a.split(":")[0] for st in worker for a in as_list(st["Action"])} == {"s3"}
    s3_of_head = [st for st in head if all(a.startswith("s3:") for a in as_list(st["Action"]))]
    assert s3_of_head == worker
    others = {a for st in head for a in as_list(st["Action"]) if not a.startswith("s3:")}
    assert others == {"ec2:DescribeInstances", "ec2:RunInstances", "ec2:CreateTags", "ec2:TerminateInstances",
                      "iam:PassRole", "ssm:GetParameters"}


def test_the_head_changes_only_this_clusters_workers():
    from ray.autoscaler.tags import NODE_KIND_WORKER, TAG_RAY_CLUSTER_NAME, TAG_RAY_NODE_KIND

    name = cluster()["cluster_name"]
    this_clusters_workers = {f"aws:ResourceTag/{TAG_RAY_CLUSTER_NAME}": name,
                             f"aws:ResourceTag/{TAG_RAY_NODE_KIND}": NODE_KIND_WORKER}
    for st in template("head")["Statement"]:
        actions = as_list(st["Action"])
        if "ec2:TerminateInstances" in actions:
            assert st["Condition"] == {"StringEquals": this_clusters_workers}
        if "ec2:CreateTags" in actions:
            assert st["Condition"] in ({"StringEquals": this_clusters_workers},
                                       {"StringEquals": {"ec2:CreateAction": "RunInstances"}})
        if "ec2:RunInstances" in actions and any(r.endswith(":instance/*") for r in as_list(st["Resource"])):
            assert st["Condition"] == {"StringEquals": {k.replace("ResourceTag", "RequestTag"): v
                                                        for k, v in this_clusters_workers.items()}}


# --------------------------------------------------------------------------- cluster.yaml's profiles


def test_ray_does_not_attach_its_broad_default_profile_to_the_head(monkeypatch):
    # What `ray up` does before launching the head: with a profile in the
    # head's node_config it returns before creating or attaching
    # ray-autoscaler-v1 (AmazonEC2FullAccess + AmazonS3FullAccess).
    from ray.autoscaler._private.aws import config as aws_config

    def no_aws(*args, **kwargs):
        raise AssertionError("Ray would call IAM to set up its default profile")

    monkeypatch.setattr(aws_config, "_client", no_aws)
    monkeypatch.setattr(aws_config, "_resource", no_aws)
    monkeypatch.setattr(aws_config, "_get_instance_profile", no_aws)
    config = cluster()
    config["head_node"] = {}
    result = aws_config._configure_iam_role(config)
    assert result["head_node"] == {}
    # Without it, Ray would go and set up its default (the check above is real).
    del config["available_node_types"][config["head_node_type"]]["node_config"]["IamInstanceProfile"]
    with pytest.raises(AssertionError, match="default profile"):
        aws_config._configure_iam_role(config)


def test_the_head_may_pass_the_worker_role_and_no_other():
    config = cluster()
    policy = rendered("head")
    worker_profiles = {profile_name(t) for n, t in config["available_node_types"].items() if n != config["head_node_type"]}
    head_profile = profile_name(config["available_node_types"][config["head_node_type"]])
    # README: each role has an instance profile of the same name.
    ec2 = {"iam:PassedToService": "ec2.amazonaws.com"}
    for name in worker_profiles:
        assert allowed(policy, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/{name}", ec2)
    assert not allowed(policy, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/{head_profile}", ec2)
    assert not allowed(policy, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/ray-autoscaler-v1", ec2)
    assert not allowed(policy, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/{next(iter(worker_profiles))}",
                       {"iam:PassedToService": "lambda.amazonaws.com"})
    assert not allowed(rendered("worker"), "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/{next(iter(worker_profiles))}", ec2)


def test_the_head_may_resolve_the_ami_parameter_the_node_types_name():
    region = cluster()["provider"]["region"]
    for node_type in cluster()["available_node_types"].values():
        image = node_type["node_config"]["ImageId"]
        if image.startswith("resolve:ssm:"):
            arn = f"arn:aws:ssm:{region}::parameter{image.removeprefix('resolve:ssm:')}"
            assert allowed(rendered("head"), "ssm:GetParameters", arn)
            assert not allowed(rendered("worker"), "ssm:GetParameters", arn)


# --------------------------------------------------------------------------- S3: the code's calls


def _s3_method_names() -> dict[str, str]:
    """boto3 S3 client method name -> S3 operation name, plus boto3's transfer helpers."""
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model("s3")
    names = {xform_name(op): op for op in model.operation_names}
    names.update({m: m for m in ("upload_file", "upload_fileobj", "download_file", "download_fileobj")})
    return names


def s3_operations_in_code() -> dict[str, set[str]]:
    """S3 operation -> the files that make it: client method calls and get_paginator("...")."""
    methods = _s3_method_names()
    found: dict[str, set[str]] = {}
    for folder in CODE_DIRS:
        for path in folder.rglob("*.py"):
            if path.name in TEST_ONLY:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                name = node.func.attr
                if name == "get_paginator" and node.args and isinstance(node.args[0], ast.Constant):
                    name = node.args[0].value
                if name in methods:
                    found.setdefault(methods[name], set()).add(path.relative_to(REPO).as_posix())
    return found


def test_every_s3_call_in_the_code_is_listed_in_s3_calls():
    from nemo_turnlog.s3_client import S3_CALLS

    in_code = s3_operations_in_code()
    assert set(in_code) == set(S3_CALLS), in_code
    # Each listed call is made by the sink, the reader or the ledger.
    assert {f for files in in_code.values() for f in files} <= {
        "logging/nemo_turnlog/s3_sink.py", "logging/nemo_turnlog/reader.py", "logging/nemo_turnlog/ledger.py"}


def test_the_scan_would_see_a_new_call():
    assert "DeleteObject" in _s3_method_names().values()
    assert _s3_method_names()["delete_object"] == "DeleteObject"


def _grant_target(operation: str, place: str) -> tuple[str, dict]:
    if operation == "ListObjectsV2":
        return f"arn:aws:s3:::{BUCKET}", {"s3:prefix": f"{PREFIX}/{place}"}
    return f"arn:aws:s3:::{BUCKET}/{PREFIX}/{place.replace('*', 'x/y.parquet')}", {}


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_s3_calls_are_granted_on_exactly_their_places(name):
    from nemo_turnlog.s3_client import S3_CALLS

    policy = rendered(name)
    for operation, (action, places) in S3_CALLS.items():
        for place in places:
            assert allowed(policy, action, *_grant_target(operation, place)), (operation, place)
    granted = {a for st in policy["Statement"] for a in as_list(st["Action"]) if a.startswith("s3:")}
    assert granted == {action for action, _ in S3_CALLS.values()}


class RecordingS3:
    """An in-memory S3 client with only the methods the turn log may call; records each request."""

    def __init__(self):
        self.objects: dict[tuple[str, str], bytes] = {}
        self.requests: list[tuple[str, str, str]] = []  # (operation, bucket, key or listing prefix)

    def put_object(self, *, Bucket, Key, Body, ContentType=None):
        self.requests.append(("PutObject", Bucket, Key))
        self.objects[Bucket, Key] = bytes(Body)
        return {}

    def get_object(self, *, Bucket, Key):
        self.requests.append(("GetObject", Bucket, Key))
        return {"Body": io.BytesIO(self.objects[Bucket, Key])}

    def get_paginator(self, name):
        assert name == "list_objects_v2", name
        outer = self

        class Paginator:
            def paginate(self, *, Bucket, Prefix="", StartAfter=""):
                outer.requests.append(("ListObjectsV2", Bucket, Prefix))
                keys = sorted(k for b, k in outer.objects if b == Bucket and k.startswith(Prefix) and k > StartAfter)
                yield {"Contents": [{"Key": k} for k in keys]}

        return Paginator()

    def close(self):
        pass


def _turn(request_id: str, at: datetime):
    from nemo_turnlog import TurnRecord

    return TurnRecord(request_id=request_id, timestamp=at, model_group="voice-fast", endpoint="e", provider="openai",
                      model="m", streamed=True, status="ok", http_status=200, error_type=None, ttft_s=0.1,
                      total_s=0.4, prompt_tokens=3, completion_tokens=5, total_tokens=8, api_key_id="trial",
                      cost_usd=0.01)


def run_the_turn_log_against(client: RecordingS3) -> None:
    """What the replicas do with S3: callers write, the keystore recovers spend and stores top-ups."""
    from nemo_turnlog import S3ParquetSink, read_turn_log
    from nemo_turnlog.ledger import LedgerEntry, LedgerStore, read_spend

    now = datetime.now(timezone.utc)
    sink = S3ParquetSink(BUCKET, PREFIX, "caller-1", client=client)
    sink.write([_turn("a", now - timedelta(hours=2)), _turn("b", now)])
    url = f"s3://{BUCKET}/{PREFIX}"
    assert read_turn_log(url, client=client).num_rows == 2
    assert [r.request_id for r in read_spend(url, since=now - timedelta(minutes=5), client=client)] == ["b"]
    store = LedgerStore(url, client=client)
    store.append(LedgerEntry.top_up("trial", 5.0))
    assert [e.amount_usd for e in store.read()] == [5.0]


def _as_iam_request(operation: str, bucket: str, where: str) -> tuple[str, str, dict]:
    from nemo_turnlog.s3_client import S3_CALLS

    action = S3_CALLS[operation][0]
    if operation == "ListObjectsV2":
        return action, f"arn:aws:s3:::{bucket}", {"s3:prefix": where}
    return action, f"arn:aws:s3:::{bucket}/{where}", {}


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_every_s3_request_of_the_sink_reader_and_ledger_is_allowed(name):
    client = RecordingS3()
    run_the_turn_log_against(client)
    assert {op for op, _, _ in client.requests} == {"PutObject", "GetObject", "ListObjectsV2"}
    policy = rendered(name)
    for request in client.requests:
        assert allowed(policy, *_as_iam_request(*request)), request


BESIDE_THE_PREFIX = [
    ("PutObject", BUCKET, "other/dt=2026-01-01/hour=00/x.parquet"),
    ("PutObject", BUCKET, f"{PREFIX}-evil/dt=2026-01-01/hour=00/x.parquet"),
    ("PutObject", BUCKET, f"{PREFIX}/notes.txt"),
    ("GetObject", "another-bucket", f"{PREFIX}/dt=2026-01-01/hour=00/x.parquet"),
    ("GetObject", BUCKET, f"{PREFIX}/_wal/x"),
    ("ListObjectsV2", BUCKET, ""),
    ("ListObjectsV2", BUCKET, "prod/"),
    ("ListObjectsV2", BUCKET, f"{PREFIX}-evil/"),
]


@pytest.mark.parametrize("name", POLICY_NAMES)
@pytest.mark.parametrize("request_", BESIDE_THE_PREFIX, ids=[f"{o} {k or '(bucket)'}" for o, _, k in BESIDE_THE_PREFIX])
def test_requests_beside_the_prefix_are_refused(name, request_):
    assert not allowed(rendered(name), *_as_iam_request(*request_))


@pytest.mark.parametrize("action", ["s3:DeleteObject", "s3:PutObjectAcl", "s3:GetBucketPolicy", "s3:PutBucketPolicy"])
def test_no_other_s3_action_is_granted(action):
    for name in POLICY_NAMES:
        assert not allowed(rendered(name), action, f"arn:aws:s3:::{BUCKET}/{PREFIX}/dt=2026-01-01/hour=00/x.parquet")
        assert not allowed(rendered(name), action, f"arn:aws:s3:::{BUCKET}")


# --------------------------------------------------------------------------- EC2: Ray's autoscaler


@pytest.fixture
def moto_aws(monkeypatch):
    from nemo_turnlog.testing import AWS_ENV_TO_CLEAR, FAKE_AWS_ENV

    for name in AWS_ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    for name, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    # moto's ~1,300 default AMIs would cost every EC2 call seconds here.
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    from moto import mock_aws

    with mock_aws():
        yield


def test_rays_aws_node_provider_makes_only_calls_the_head_policy_allows(moto_aws, monkeypatch):
    # The head's autoscaler drives AWSNodeProvider: launch workers, list them,
    # retag them as they come up, terminate them. Run it against moto's EC2,
    # record every API call it makes, and evaluate each against the policy.
    import boto3
    import botocore.client
    from ray.autoscaler._private.aws.node_provider import AWSNodeProvider
    from ray.autoscaler.tags import (NODE_KIND_WORKER, STATUS_UNINITIALIZED, STATUS_UP_TO_DATE, TAG_RAY_LAUNCH_CONFIG,
                                     TAG_RAY_NODE_KIND, TAG_RAY_NODE_NAME, TAG_RAY_NODE_STATUS, TAG_RAY_USER_NODE_TYPE)

    config = cluster()
    region = config["provider"]["region"]
    [(worker_type, worker)] = [(n, t) for n, t in config["available_node_types"].items() if n != config["head_node_type"]]
    ec2 = boto3.client("ec2", region_name=region)
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    # moto cannot resolve resolve:ssm:, so the worker launches from an image registered here.
    image = ec2.register_image(Name="ubuntu-22.04", RootDeviceName="/dev/sda1")["ImageId"]
    iam = boto3.client("iam", region_name=region)
    iam.create_role(RoleName=profile_name(worker), AssumeRolePolicyDocument=(IAM / "trust-policy.json").read_text())
    iam.create_instance_profile(InstanceProfileName=profile_name(worker))
    iam.add_role_to_instance_profile(InstanceProfileName=profile_name(worker), RoleName=profile_name(worker))

    calls: list[tuple[str, dict]] = []
    real_call = botocore.client.BaseClient._make_api_call

    def recording(self, operation, params):
        calls.append((operation, params))
        return real_call(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recording)
    provider = AWSNodeProvider(config["provider"], config["cluster_name"])
    node_config = {**worker["node_config"], "ImageId": image, "SubnetIds": [subnet]}
    tags = {TAG_RAY_NODE_NAME: f"ray-{config['cluster_name']}-worker", TAG_RAY_NODE_KIND: NODE_KIND_WORKER,
            TAG_RAY_NODE_STATUS: STATUS_UNINITIALIZED, TAG_RAY_LAUNCH_CONFIG: "hash", TAG_RAY_USER_NODE_TYPE: worker_type}
    provider.create_node(node_config, tags, 1)
    [node] = provider.non_terminated_nodes({TAG_RAY_NODE_KIND: NODE_KIND_WORKER})
    provider.set_node_tags(node, {TAG_RAY_NODE_STATUS: STATUS_UP_TO_DATE})
    provider.terminate_nodes([node])
    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", real_call)

    instance_tags = {t["Key"]: t["Value"] for r in ec2.describe_instances()["Reservations"]
                     for i in r["Instances"] for t in i.get("Tags", [])}
    policy = rendered("head")
    arn = f"arn:aws:ec2:{region}:{ACCOUNT}"
    made = set()
    for operation, params in calls:
        action = f"ec2:{operation}"
        made.add(operation)
        if operation == "DescribeInstances":
            assert allowed(policy, action, "*", {"aws:RequestedRegion": region})
        elif operation == "RunInstances":
            [spec] = params["TagSpecifications"]
            request_tags = {f"aws:RequestTag/{t['Key']}": t["Value"] for t in spec["Tags"]}
            assert allowed(policy, action, f"{arn}:instance/i-0123", request_tags)
            for resource in (f"arn:aws:ec2:{region}::image/{image}", f"{arn}:subnet/{subnet}",
                             f"{arn}:volume/vol-0123", f"{arn}:network-interface/eni-0123",
                             f"{arn}:security-group/sg-0123", f"{arn}:key-pair/ray-autoscaler"):
                assert allowed(policy, action, resource), resource
            # Tagging at launch, and passing the worker's role to EC2.
            assert allowed(policy, "ec2:CreateTags", f"{arn}:instance/i-0123", {"ec2:CreateAction": "RunInstances"})
            role = params["IamInstanceProfile"]["Name"]
            assert allowed(policy, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/{role}",
                           {"iam:PassedToService": "ec2.amazonaws.com"})
        elif operation in ("CreateTags", "TerminateInstances"):
            ids = params["Resources" if operation == "CreateTags" else "InstanceIds"]
            context = {f"aws:ResourceTag/{k}": v for k, v in instance_tags.items()}
            for instance in ids:
                assert allowed(policy, action, f"{arn}:instance/{instance}", context), operation
            # The same call on the head, or on another cluster's worker, is refused.
            assert not allowed(policy, action, f"{arn}:instance/{ids[0]}", {**context, f"aws:ResourceTag/{TAG_RAY_NODE_KIND}": "head"})
            assert not allowed(policy, action, f"{arn}:instance/{ids[0]}", {**context, "aws:ResourceTag/ray-cluster-name": "other"})
        else:
            pytest.fail(f"the node provider called {operation}, which the head policy does not cover")
    assert made == {"RunInstances", "DescribeInstances", "CreateTags", "TerminateInstances"}
    # Launching is allowed only for tagged workers of this cluster.
    assert not allowed(policy, "ec2:RunInstances", f"{arn}:instance/i-0123", {})
    assert not allowed(rendered("worker"), "ec2:RunInstances", f"{arn}:instance/i-0123", {})


# --------------------------------------------------------------------------- render.py


def test_render_fills_every_placeholder_from_the_cluster_config():
    from router.config import load_config

    render = render_module()
    router_config = yaml.safe_load((REPO / "config" / "router.cluster.yaml").read_text())
    s3 = load_config(REPO / "config" / "router.cluster.yaml", environ={}).turn_log.s3
    assert render.turn_log_location(router_config) == (s3.bucket, s3.prefix)
    for name in POLICY_NAMES:
        text = json.dumps(rendered(name))
        assert "${" not in text and BUCKET in text and PREFIX in text


def test_render_default_prefix_is_the_configs():
    from router.config_observability import S3Config

    render = render_module()
    assert render.DEFAULT_PREFIX == S3Config.model_fields["prefix"].default
    assert render.turn_log_location({"turn_log": {"sink": "s3", "s3": {"bucket": "b-1"}}}) == ("b-1", "turnlog")


@pytest.mark.parametrize("turn_log", [
    {"sink": "local", "path": "/tmp/x"},
    {"sink": "s3", "s3": {"bucket": "b-1", "prefix": "/"}},
    {"sink": "s3"},
])
def test_render_refuses_a_config_it_cannot_confine(turn_log):
    with pytest.raises(ValueError):
        render_module().turn_log_location({"turn_log": turn_log})


def test_render_refuses_missing_or_odd_values():
    render = render_module()
    text = (IAM / "worker-policy.json").read_text()
    with pytest.raises(KeyError):
        render.render(text, {"BUCKET": BUCKET})
    with pytest.raises(ValueError):
        render.render(text, {"BUCKET": 'b", "Resource": "*', "PREFIX": PREFIX, "REGION": "us-west-2", "ACCOUNT_ID": ACCOUNT})


def test_render_cli_writes_the_policy(tmp_path, capsys):
    config = tmp_path / "router.yaml"
    config.write_text((REPO / "config" / "router.cluster.yaml").read_text().replace("my-nemo-turnlog", BUCKET))
    assert render_module().main(["worker", "--account-id", ACCOUNT, "--config", str(config)]) == 0
    policy = json.loads(capsys.readouterr().out)
    assert allowed(policy, "s3:PutObject", f"arn:aws:s3:::{BUCKET}/turnlog/dt=2026-01-01/hour=00/x.parquet")
    with pytest.raises(SystemExit):
        render_module().main(["worker", "--account-id", "12", "--config", str(config)])
