"""Fill in the placeholders of an IAM policy in this folder and print it.

    python deploy/iam/render.py head   --account-id 123456789012 > /tmp/nemo-head-policy.json
    python deploy/iam/render.py worker --account-id 123456789012 > /tmp/nemo-worker-policy.json

``${BUCKET}`` and ``${PREFIX}`` come from the router config the cluster runs
(``turn_log.s3``, default ``config/router.yaml``), ``${REGION}`` from
``cluster.yaml``'s ``provider.region`` and ``${ACCOUNT_ID}`` from the
argument, so the policy names the same bucket and prefix the replicas write
to. Needs only Python and PyYAML (which the `ray` CLI already brings).
"""

from __future__ import annotations

import argparse
import json
import re
import string
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
POLICIES = {"head": HERE / "head-policy.json", "worker": HERE / "worker-policy.json"}
# router.config_observability.S3Config's default; a test keeps them equal.
DEFAULT_PREFIX = "turnlog"


def turn_log_location(router_config: dict) -> tuple[str, str]:
    """(bucket, prefix) of a router config that logs to S3; ValueError otherwise."""
    turn_log = router_config.get("turn_log") or {}
    if turn_log.get("sink") != "s3" or not (turn_log.get("s3") or {}).get("bucket"):
        raise ValueError("the router config does not log to S3 (turn_log.sink: s3 with s3.bucket)")
    s3 = turn_log["s3"]
    prefix = str(s3.get("prefix", DEFAULT_PREFIX)).strip("/")
    if not prefix:
        # The policies confine every grant to <prefix>/; a bucket-wide turn log would need bucket-wide rights.
        raise ValueError("turn_log.s3.prefix must not be empty")
    return str(s3["bucket"]), prefix


def render(template: str, values: dict[str, str]) -> dict:
    """The policy with every ``${NAME}`` replaced; KeyError if one is missing."""
    for name, value in values.items():
        if not re.fullmatch(r"[A-Za-z0-9._/=-]+", value):
            raise ValueError(f"{name} has characters an ARN cannot hold: {value!r}")
    return json.loads(string.Template(template).substitute(values))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy", choices=sorted(POLICIES))
    parser.add_argument("--account-id", required=True, help="12-digit AWS account id (aws sts get-caller-identity)")
    parser.add_argument("--config", default=str(REPO / "config" / "router.yaml"), help="the router config the cluster runs")
    parser.add_argument("--cluster", default=str(REPO / "cluster.yaml"))
    args = parser.parse_args(argv)
    if not re.fullmatch(r"\d{12}", args.account_id):
        parser.error("--account-id must be 12 digits")
    try:
        bucket, prefix = turn_log_location(yaml.safe_load(Path(args.config).read_text()) or {})
    except (OSError, ValueError) as exc:
        parser.error(f"{args.config}: {exc}")
    region = yaml.safe_load(Path(args.cluster).read_text())["provider"]["region"]
    values = {"BUCKET": bucket, "PREFIX": prefix, "REGION": region, "ACCOUNT_ID": args.account_id}
    json.dump(render(POLICIES[args.policy].read_text(), values), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
