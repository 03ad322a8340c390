"""Deploying from a clone with no release: `python -m deploy.from_clone --dry-run` prints the exact
commands, and they fit the committed template and the package builder."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import build_template as bt
from deploy import package

REPO = Path(__file__).resolve().parent.parent


def _from_clone(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.from_clone", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def _commands(stdout: str) -> list[str]:
    return [
        line
        for line in stdout.splitlines()
        if line and not line.startswith("#") and line != "set -euo pipefail"
    ]


@pytest.fixture(scope="module")
def printed() -> str:
    result = _from_clone(
        "--resource-group",
        "rg-nordpass",
        "--workspace",
        "law-soc",
        "--workspace-resource-group",
        "rg-sentinel",
        "--region",
        "us",
        "--location",
        "westeurope",
        "--dry-run",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def test_prints_build_deploy_and_push(printed: str) -> None:
    build, deploy, push = _commands(printed)
    assert printed.startswith("#!/usr/bin/env bash\n")
    assert shlex.split(build) == ["make", "package"]
    assert deploy.startswith("FUNCTION_APP=$(") and deploy.endswith(")")
    args = shlex.split(deploy[len("FUNCTION_APP=$(") : -1])
    assert args[:4] == ["az", "deployment", "group", "create"]
    assert args[args.index("--resource-group") + 1] == "rg-nordpass"
    template_file = REPO / args[args.index("--template-file") + 1]
    assert template_file == bt.TEMPLATE_PATH
    template = json.loads(template_file.read_text(encoding="utf-8"))
    start = args.index("--parameters") + 1
    end = next(i for i in range(start, len(args)) if args[i].startswith("--"))
    parameters = dict(arg.split("=", 1) for arg in args[start:end])
    assert parameters == {
        "workspaceName": "law-soc",
        "workspaceResourceGroup": "rg-sentinel",
        "nordPassEndpointUrl": bt.US_ENDPOINT,
        "location": "westeurope",
    }
    assert set(parameters) <= set(template["parameters"]), "only parameters the template has"
    required = {name for name, spec in template["parameters"].items() if "defaultValue" not in spec}
    assert required - set(parameters) == {"nordPassToken"}, (
        "az prompts for the token, nothing else is missing"
    )
    query = args[args.index("--query") + 1]
    assert query == "properties.outputs.functionAppName.value"
    assert "functionAppName" in template["outputs"]
    assert args[args.index("--output") + 1] == "tsv"

    push_args = shlex.split(push)
    assert push_args[:5] == ["az", "functionapp", "deployment", "source", "config-zip"]
    assert push_args[push_args.index("--resource-group") + 1] == "rg-nordpass"
    assert '--name "$FUNCTION_APP"' in push, "the app name from step 2, quoted"
    zip_path = push_args[push_args.index("--src") + 1]
    # `make package` writes here (deploy/package.py's default dist folder and zip name).
    assert zip_path == f"dist/{package.zip_name(package.connector_version(REPO))}"


def test_the_committed_template_is_the_one_without_a_package(printed: str) -> None:
    """From a clone the code comes from the push, so the template must not also install a package."""
    template = json.loads(bt.TEMPLATE_PATH.read_text(encoding="utf-8"))
    assert "packageUri" not in template["parameters"]
    assert "Microsoft.Web/sites/extensions" not in {r["type"] for r in template["resources"]}
    # The token is never a value in the commands: az prompts for it.
    assert not [line for line in _commands(printed) if "nordPassToken" in line]


def test_the_printed_script_is_valid_bash(printed: str, tmp_path: Path) -> None:
    script = tmp_path / "deploy.sh"
    script.write_text(printed, encoding="utf-8")
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("region", "endpoint"),
    [
        ("eu", bt.EU_ENDPOINT),
        ("EU", bt.EU_ENDPOINT),
        ("https://np.example/activities/query", "https://np.example/activities/query"),
    ],
)
def test_region_maps_to_the_endpoint(region: str, endpoint: str) -> None:
    result = _from_clone("--resource-group", "rg", "--workspace", "ws", "--region", region, "--dry-run")
    assert result.returncode == 0
    assert f"nordPassEndpointUrl={endpoint}" in result.stdout
    assert "workspaceResourceGroup" not in result.stdout  # defaults to the deployment's group


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--workspace", "ws", "--region", "eu", "--dry-run"), "required: --resource-group"),
        (("--resource-group", "rg", "--workspace", "ws", "--region", "asia", "--dry-run"), "--region 'asia'"),
        (
            ("--resource-group", "rg", "--workspace", "ws", "--region", "http://np.example", "--dry-run"),
            "https://",
        ),
    ],
)
def test_bad_input_gets_one_line(args: tuple[str, ...], expected: str) -> None:
    result = _from_clone(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr


def test_without_dry_run_and_without_az_says_so(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # no az (and no make) on this PATH
    result = _from_clone("--resource-group", "rg", "--workspace", "ws", "--region", "eu", env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "python -m deploy.from_clone: az (the Azure CLI) is not on PATH: install it, or use --dry-run to "
        "print the commands"
    )


def test_without_az_login_says_so_before_building_anything(tmp_path: Path) -> None:
    # An az that knows no account, as right after installing the CLI (`az account show` exits 1),
    # and a make; both log their arguments, so the test sees that nothing else was started.
    calls = tmp_path / "calls"
    for name, code in (("az", 1), ("make", 0)):
        tool = tmp_path / name
        tool.write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\nexit {code}\n')
        tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    result = _from_clone("--resource-group", "rg", "--workspace", "ws", "--region", "eu", env=env)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "python -m deploy.from_clone: the Azure CLI is not signed in: run `az login` (and `az account set "
        "--subscription <id>`), then run this again"
    )
    assert calls.read_text().splitlines() == ["az account show --output none"]
