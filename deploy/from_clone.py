"""Deploy from a clone, without any release: the committed template, then a locally built package.

    python -m deploy.from_clone --resource-group <rg> --workspace <name> --region eu --dry-run
    python -m deploy.from_clone --resource-group <rg> --workspace <name> --region eu

The committed `deploy/azuredeploy.json` creates everything but installs no code (only a release
build can pin a package by URL and SHA-256). From a clone the code is a zip built here and pushed
to the function app:

1. `make package` builds `dist/nordpass-sentinel-connector-<version>.zip` (reproducible, Linux
   x86_64, CPython 3.11, dependencies included);
2. `az deployment group create --template-file deploy/azuredeploy.json ...` deploys the resources
   (az asks for the NordPass token without echoing it) and returns the function app's name;
3. `az functionapp deployment source config-zip ...` pushes the zip. On Flex Consumption the
   Azure CLI sends it to the app's one-deploy endpoint (`/api/publish`) with your Entra sign-in;
   for a Python app it asks the platform to build (install requirements.txt) too.

`--dry-run` prints these commands as a bash script instead of running them. Run `az login` (and
`az account set --subscription ...`) first.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from deploy import OneLineParser, package
from deploy import build_template as bt

REPO_ROOT = bt.REPO_ROOT
REGIONS = {"eu": bt.EU_ENDPOINT, "us": bt.US_ENDPOINT}
DEPLOYMENT_NAME = "nordpass-connector"


class UsageError(Exception):
    pass


class NotSignedIn(Exception):
    """The Azure CLI has no account to deploy with (exit code 1, like a failed az command)."""


def endpoint_for(region: str) -> str:
    if region.lower() in REGIONS:
        return REGIONS[region.lower()]
    if region.startswith("https://") and len(region) > len("https://") and " " not in region:
        return region
    raise UsageError(f"--region {region!r} is neither eu, us nor an https:// URL of the Activity API")


def commands(
    resource_group: str,
    workspace: str,
    workspace_resource_group: str | None,
    endpoint: str,
    location: str | None = None,
) -> tuple[list[str], list[str], list[str]]:
    """(build, deploy, push) argument lists; the push names the app as `$FUNCTION_APP`."""
    zip_path = (Path("dist") / package.zip_name(package.connector_version(REPO_ROOT))).as_posix()
    parameters = [f"workspaceName={workspace}", f"nordPassEndpointUrl={endpoint}"]
    if workspace_resource_group:
        parameters.append(f"workspaceResourceGroup={workspace_resource_group}")
    if location:
        parameters.append(f"location={location}")
    deploy = [
        "az",
        "deployment",
        "group",
        "create",
        "--resource-group",
        resource_group,
        "--name",
        DEPLOYMENT_NAME,
        "--template-file",
        bt.TEMPLATE_PATH.relative_to(REPO_ROOT).as_posix(),
        "--parameters",
        *parameters,
        "--query",
        "properties.outputs.functionAppName.value",
        "--output",
        "tsv",
    ]
    push = [
        "az",
        "functionapp",
        "deployment",
        "source",
        "config-zip",
        "--resource-group",
        resource_group,
        "--name",
        "$FUNCTION_APP",
        "--src",
        zip_path,
    ]
    return ["make", "package"], deploy, push


def script(build: list[str], deploy: list[str], push: list[str]) -> str:
    quoted_push = " ".join('"$FUNCTION_APP"' if arg == "$FUNCTION_APP" else shlex.quote(arg) for arg in push)
    return "\n".join(
        [
            "#!/usr/bin/env bash",
            "# Deploy the NordPass connector from this clone, without a release. Run in the repository's",
            "# root after `az login` (and `az account set --subscription <id>`).",
            "set -euo pipefail",
            "# 1. Build the function package (reproducible; the same sources give the same SHA-256).",
            shlex.join(build),
            "# 2. Deploy the resources; az asks for nordPassToken without echoing it (or append",
            '#    nordPassToken="$NORDPASS_TOKEN" to --parameters). Prints the function app name.',
            f"FUNCTION_APP=$({shlex.join(deploy)})",
            "# 3. Push the package to the function app (Flex Consumption one-deploy, Entra sign-in).",
            quoted_push,
            "",
        ]
    )


def run(build: list[str], deploy: list[str], push: list[str]) -> int:
    if shutil.which("az") is None:
        raise UsageError(
            "az (the Azure CLI) is not on PATH: install it, or use --dry-run to print the commands"
        )
    # Before the build: a missing sign-in is the likeliest failure, and az's own words for it come
    # only after minutes of packaging otherwise.
    try:
        signed_in = (
            subprocess.run(
                ["az", "account", "show", "--output", "none"],
                cwd=REPO_ROOT,
                check=False,
                capture_output=True,
                timeout=60,
            ).returncode
            == 0
        )
    except subprocess.TimeoutExpired:
        signed_in = False
    if not signed_in:
        raise NotSignedIn(
            "the Azure CLI is not signed in: run `az login` (and `az account set --subscription <id>`), "
            "then run this again"
        )
    subprocess.run(build, cwd=REPO_ROOT, check=True)
    app = subprocess.run(deploy, cwd=REPO_ROOT, check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
    if not app:
        raise UsageError(
            "the deployment returned no functionAppName output; see the deployment in the portal"
        )
    subprocess.run([app if arg == "$FUNCTION_APP" else arg for arg in push], cwd=REPO_ROOT, check=True)
    return 0


def main(argv: Iterable[str] | None = None) -> int:
    parser = OneLineParser(
        prog="python -m deploy.from_clone",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--resource-group", required=True, help="resource group for the connector")
    parser.add_argument("--workspace", required=True, help="name of the Sentinel (Log Analytics) workspace")
    parser.add_argument(
        "--workspace-resource-group", help="the workspace's resource group (default: --resource-group)"
    )
    parser.add_argument("--region", required=True, help="NordPass region: eu, us, or the Activity API URL")
    parser.add_argument("--location", help="Azure region for the connector (default: the resource group's)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        build, deploy, push = commands(
            args.resource_group,
            args.workspace,
            args.workspace_resource_group,
            endpoint_for(args.region),
            args.location,
        )
        if args.dry_run:
            print(script(build, deploy, push), end="")
            return 0
        return run(build, deploy, push)
    except UsageError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    except NotSignedIn as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(
            f"{parser.prog}: `{' '.join(exc.cmd[:4])}` failed with exit code {exc.returncode}",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
