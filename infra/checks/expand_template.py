"""Expands template.yaml with the AWS SAM translator, offline, as `sam validate`
and `sam deploy` do, and writes plain CloudFormation (JSON) for cfn-lint and
checkov: cfn-lint does not check a function's `Events:` entries, but the
translator fails on a bad one, and the expanded template shows the scanners the
roles, permissions, rules and stages that SAM generates.

Usage: expand_template.py TEMPLATE OUTPUT
"""

import json
import os
import sys

from cfnlint.decode import cfn_yaml
from samtranslator.translator.transform import transform


class OfflinePolicies:
    """The translator asks IAM for AWS managed policy ARNs only when a function
    names one by its short name; vigil's do not, so no call is ever needed."""

    def load(self):
        return {}


def local_code_to_s3(template):
    # `sam build` uploads each CodeUri; the translator only accepts s3:// here.
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Function" and not str(props.get("CodeUri", "")).startswith("s3://"):
            props["CodeUri"] = "s3://vigil-build/code.zip"


def main(source, target):
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-3")
    template = cfn_yaml.load(source)
    template = json.loads(json.dumps(template))  # plain dicts and strings
    local_code_to_s3(template)
    expanded = transform(template, {}, OfflinePolicies(), passthrough_metadata=True)
    with open(target, "w", encoding="utf-8") as out:
        json.dump(expanded, out, indent=1, sort_keys=True)
    kinds = sorted({r["Type"] for r in expanded["Resources"].values()})
    print(f"expanded {source}: {len(expanded['Resources'])} resources ({', '.join(kinds)})")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    try:
        main(sys.argv[1], sys.argv[2])
    except Exception as error:  # the translator's errors name the resource and property
        sys.exit(f"the SAM translator rejected {sys.argv[1]}: {error}")
