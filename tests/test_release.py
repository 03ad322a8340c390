"""`make release`: the assets of one release, built for real, and what they promise.

The release is built twice through the real command line (`python -m deploy.release`) with the
package cache of tests/test_package.py, so it downloads wheels once per machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

from deploy import build_template as bt
from deploy import package, release

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".sandbox" / "pip-cache"
REPOSITORY = "example/nordpass-sentinel-connector"
VERSION = package.connector_version(REPO)
TAG = f"v{VERSION}"
ZIP = package.zip_name(VERSION)
ASSETS = {
    ZIP,
    f"{ZIP}.sha256",
    release.TEMPLATE,
    release.UI_DEFINITION,
    release.CONTENT_TEMPLATE,
    release.CHECKSUMS,
    release.NOTES,
}


def _release(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.release", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two releases of the same source into two folders."""
    folders = []
    for name in ("first", "second"):
        out = tmp_path_factory.mktemp("release") / name
        result = _release("--repo", REPOSITORY, "--tag", TAG, "--out", str(out), "--cache-dir", str(CACHE))
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"release {TAG} of {REPOSITORY}" in result.stdout
        folders.append(out)
    return folders[0], folders[1]


@pytest.fixture(scope="module")
def assets(built: tuple[Path, Path]) -> Path:
    return built[0]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_writes_exactly_the_release_assets(assets: Path) -> None:
    assert {p.name for p in assets.iterdir()} == ASSETS


@pytest.mark.slow
def test_release_is_reproducible(built: tuple[Path, Path]) -> None:
    first, second = built
    for name in sorted(ASSETS):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


@pytest.mark.slow
def test_stamped_template_pins_this_zip(assets: Path) -> None:
    digest = _sha(assets / ZIP)
    assert (assets / f"{ZIP}.sha256").read_text(encoding="utf-8") == f"{digest}  {ZIP}\n"
    template = json.loads((assets / release.TEMPLATE).read_text(encoding="utf-8"))
    package_uri = template["parameters"]["packageUri"]["defaultValue"]
    assert package_uri == f"https://github.com/{REPOSITORY}/releases/download/{TAG}/{ZIP}"
    assert package_uri.rsplit("/", 1)[1] == ZIP  # the asset this release uploads
    for found in (
        template["parameters"]["packageUri"]["metadata"]["packageSha256"],
        template["metadata"]["packageSha256"],
        template["variables"]["defaultPackageSha256"],
    ):
        assert found == digest
    assert template["variables"]["defaultPackageUri"] == package_uri
    assert template["metadata"]["releaseTag"] == TAG and template["metadata"]["repository"] == REPOSITORY
    onedeploy = next(r for r in template["resources"] if r["type"] == "Microsoft.Web/sites/extensions")
    assert onedeploy["properties"]["packageUri"] == "[parameters('packageUri')]"
    # Exactly the generator's stamped output: nothing hand-edited on the way.
    pin = bt.ReleasePin(REPOSITORY, TAG, digest)
    assert template == bt.build_template(bt.SentinelContent.load(), pin)


@pytest.mark.slow
def test_form_and_content_template_are_the_committed_ones(assets: Path) -> None:
    assert (assets / release.UI_DEFINITION).read_bytes() == bt.UI_DEFINITION_PATH.read_bytes()
    assert (assets / release.CONTENT_TEMPLATE).read_bytes() == bt.CONTENT_TEMPLATE_PATH.read_bytes()


@pytest.mark.slow
def test_checksums_cover_every_published_file(assets: Path) -> None:
    lines = (assets / release.CHECKSUMS).read_text(encoding="utf-8").splitlines()
    listed = dict(reversed(line.split("  ", 1)) for line in lines)
    assert set(listed) == {ZIP, release.TEMPLATE, release.UI_DEFINITION, release.CONTENT_TEMPLATE}
    for name, digest in listed.items():
        assert _sha(assets / name) == digest, name


BUTTON = re.compile(
    r"\]\((?P<portal>https://portal\.azure\.(?:com|us))/#create/Microsoft\.Template/uri/(?P<template>[^/)\s]+)"
    r"(?:/createUIDefinitionUri/(?P<form>[^/)\s]+))?\)"
)


@pytest.mark.slow
def test_notes_button_decodes_to_this_releases_template_and_form(assets: Path) -> None:
    notes = (assets / release.NOTES).read_text(encoding="utf-8")
    buttons = list(BUTTON.finditer(notes))
    main = buttons[0]
    assert main["portal"] == "https://portal.azure.com"
    template_url, form_url = unquote(main["template"]), unquote(main["form"])
    assert template_url == f"https://github.com/{REPOSITORY}/releases/download/{TAG}/{release.TEMPLATE}"
    assert form_url == f"https://github.com/{REPOSITORY}/releases/download/{TAG}/{release.UI_DEFINITION}"
    # The encoded URLs carry no raw separator that the portal would split on.
    assert "/" not in main["template"] and ":" not in main["template"]
    for url in (template_url, form_url):
        assert (assets / url.rsplit("/", 1)[1]).is_file(), "the button names an asset of this release"
    # The content-only button, without a form.
    content = next(b for b in buttons[1:] if b["form"] is None)
    assert unquote(content["template"]).endswith(f"/releases/download/{TAG}/{release.CONTENT_TEMPLATE}")
    # No Government twin while the connector cannot run there, and the notes say why.
    assert not [b for b in buttons if b["portal"] == "https://portal.azure.us"]
    assert "Azure Government" in notes and "monitor.azure.us" in notes
    for asset in (ZIP, release.TEMPLATE):
        assert _sha(assets / asset) in notes


def test_government_twin_appears_when_nothing_blocks_it() -> None:
    assets = [release.Asset(release.TEMPLATE, 1, "0" * 64)]
    notes = release.release_notes(REPOSITORY, TAG, assets, government_blockers=())
    portals = [m["portal"] for m in BUTTON.finditer(notes) if m["form"]]
    assert portals == ["https://portal.azure.com", "https://portal.azure.us"]
    twin = next(m for m in BUTTON.finditer(notes) if m["portal"] == "https://portal.azure.us")
    assert unquote(twin["template"]).endswith(f"/download/{TAG}/{release.TEMPLATE}")
    assert "aka.ms/deploytoazuregovbutton" in notes


def test_notes_are_deterministic() -> None:
    assets = [release.Asset(ZIP, 10, "a" * 64)]
    assert release.release_notes(REPOSITORY, TAG, assets) == release.release_notes(REPOSITORY, TAG, assets)


# --- bad input: one line, a non-zero exit, nothing built ------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), "REPO is missing"),
        (("--repo", "", "--tag", TAG), "REPO is missing"),
        (("--repo", REPOSITORY), "TAG is missing"),
        (("--repo", "not-a-repo", "--tag", TAG), "is not <owner>/<name>"),
        (("--repo", "a/b/c", "--tag", TAG), "is not <owner>/<name>"),
        (("--repo", REPOSITORY, "--tag", VERSION), "is not v<major>.<minor>.<patch>"),
        (("--repo", REPOSITORY, "--tag", f"{TAG}-rc1"), "is not v<major>.<minor>.<patch>"),
        (("--repo", REPOSITORY, "--tag", "v999.0.0"), f"does not match the connector version {VERSION}"),
        (("--repo", REPOSITORY, "--tag", TAG, "--unknown"), "unrecognized arguments"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    out = tmp_path / "out"
    result = _release(*args, "--out", str(out))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0] and "Traceback" not in result.stderr
    assert not out.exists(), "nothing is built on bad input"


def test_make_release_without_arguments_says_what_to_pass() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    env = {**os.environ, "REPO": "", "TAG": ""}
    result = subprocess.run(
        ["make", "--no-print-directory", "release"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("release:")]
    assert ours == [
        "release: REPO is missing: make release REPO=<owner>/<name> TAG=v<x.y.z> "
        "(the GitHub repository the release is published in)"
    ]
    assert "Traceback" not in result.stderr


def test_refuses_to_clear_a_folder_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    result = _release("--repo", REPOSITORY, "--tag", TAG, "--out", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "notes.txt" in result.stderr
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_a_failed_build_is_one_line_and_exit_1(tmp_path: Path) -> None:
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be", encoding="utf-8")
    result = _release(
        "--repo", REPOSITORY, "--tag", TAG, "--out", str(tmp_path / "out"), "--cache-dir", str(blocked)
    )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("release: ")
    assert "Traceback" not in result.stderr


def test_pyproject_and_package_versions_must_agree(tmp_path: Path) -> None:
    (tmp_path / "nordpass_connector").mkdir()
    (tmp_path / "nordpass_connector" / "__init__.py").write_text('__version__ = "1.2.3"\n', encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text('[project]\nversion = "1.2.4"\n', encoding="utf-8")
    with pytest.raises(release.ReleaseError, match=r"pyproject\.toml says version 1\.2\.4"):
        release.validate(REPOSITORY, "v1.2.3", root=tmp_path)
    assert release.validate(REPOSITORY, TAG) == (REPOSITORY, TAG)


def test_portal_url_encodes_both_urls() -> None:
    url = release.portal_url("https://e.x/a b/t.json", "https://e.x/f.json")
    assert url == (
        "https://portal.azure.com/#create/Microsoft.Template/uri/https%3A%2F%2Fe.x%2Fa%20b%2Ft.json"
        "/createUIDefinitionUri/https%3A%2F%2Fe.x%2Ff.json"
    )


def test_readme_button_is_the_latest_release_of_the_repository() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "deploy.release", "--repo", "octo-org/connector", "--readme-button"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    (match,) = BUTTON.finditer(result.stdout)
    assert (
        unquote(match["template"])
        == "https://github.com/octo-org/connector/releases/latest/download/azuredeploy.json"
    )
    assert unquote(match["form"]) == (
        "https://github.com/octo-org/connector/releases/latest/download/createUiDefinition.json"
    )
    bad = subprocess.run(
        [sys.executable, "-m", "deploy.release", "--readme-button"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
