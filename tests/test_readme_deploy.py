"""The README's deploy section, deploy/DEPLOY.md and docs/releasing.md work as written: the button,
the fork instructions in plain rendered words, the commands they name, and the links between them."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from deploy import build_template as bt
from deploy import release

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DEPLOY_MD = REPO / "deploy" / "DEPLOY.md"
RELEASING_MD = REPO / "docs" / "releasing.md"


def deploy_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- section:deploy -->") + len("<!-- section:deploy -->")
    return text[start : text.index("<!-- /section:deploy -->")]


def markdown_section(document: Path, heading: str) -> str:
    """The text under `## heading`, up to the next heading of that level."""
    text = document.read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors."""
    found = set()
    for heading in re.findall(r"(?m)^#{1,6} (.+)$", markdown):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_section_says_everything_in_rendered_text() -> None:
    section = deploy_section()
    assert "<!--" not in section, "instructions must render: no HTML comments in the deploy section"
    assert "In a fork" in section and "nothing needs editing" in section
    assert "replaced by your" in section


def test_the_button_opens_the_latest_release_of_whatever_repository_shows_it() -> None:
    section = deploy_section()
    first = re.search(r"\[!\[Deploy to Azure\]\(([^)]+)\)\]\(([^)]+)\)", section)
    assert first is not None
    image, target = first.groups()
    assert image == release.BUTTON_IMAGE
    # Relative to README.md on GitHub (/<owner>/<repo>/blob/<branch>/README.md): the repository's
    # own latest release, in a fork as much as here, whose notes carry the pinned button.
    assert target == "../../releases/latest"


def test_the_direct_link_pattern_is_the_latest_release_button() -> None:
    section = deploy_section()
    (pattern,) = re.findall(r"https://portal\.azure\.com/#create/\S+", section)
    assert pattern.count("OWNER%2FREPO") == 2, "the fork replaces OWNER and REPO in both URLs"
    filled = pattern.replace("OWNER%2FREPO", "octo-org%2Fnordpass")
    assert f"]({filled})" in release.readme_button("octo-org/nordpass")
    template, form = re.fullmatch(
        r"https://portal\.azure\.com/#create/Microsoft\.Template/uri/(.+)/createUIDefinitionUri/(.+)", filled
    ).groups()  # type: ignore[union-attr]
    assert (
        unquote(template) == "https://github.com/octo-org/nordpass/releases/latest/download/azuredeploy.json"
    )
    assert (
        unquote(form)
        == "https://github.com/octo-org/nordpass/releases/latest/download/createUiDefinition.json"
    )
    assert "--readme-button" in section


@pytest.mark.parametrize("document", [README, DEPLOY_MD, RELEASING_MD], ids=lambda p: p.name)
def test_local_links_and_anchors_resolve(document: Path) -> None:
    text = deploy_section() if document == README else document.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "../../releases")):
            continue
        path, _, anchor = target.partition("#")
        resolved = (document.parent / path).resolve() if path else document
        assert resolved.is_file(), f"{document.name}: {target} points nowhere"
        if anchor:
            assert anchor in anchors(resolved.read_text(encoding="utf-8")), f"{document.name}: #{anchor}"


def test_named_commands_and_files_exist() -> None:
    text = deploy_section() + DEPLOY_MD.read_text(encoding="utf-8") + RELEASING_MD.read_text(encoding="utf-8")
    for module in set(re.findall(r"python -m (deploy\.\w+)", text)):
        assert (REPO / (module.replace(".", "/") + ".py")).is_file(), module
    for flag in set(re.findall(r"python -m deploy\.from_clone[^`\n]*", text)):
        for option in re.findall(r"--[a-z-]+", flag):
            assert option in (REPO / "deploy" / "from_clone.py").read_text(encoding="utf-8"), option
    for name in (
        release.TEMPLATE,
        release.UI_DEFINITION,
        release.CONTENT_TEMPLATE,
        release.CHECKSUMS,
        release.NOTES,
    ):
        assert name in text
    assert (REPO / ".github" / "workflows" / "release.yml").is_file()
    assert "make release REPO=<owner>/<repo> TAG=v<x.y.z>" in deploy_section()


def test_rotation_steps_write_the_setting_the_template_writes() -> None:
    """DEPLOY.md holds the in-place rotation commands; the README's short path links to them."""
    text = markdown_section(DEPLOY_MD, "Rotate the NordPass token")
    assert "az keyvault secret set" in text and "az functionapp config appsettings set" in text
    (setting,) = re.findall(r'"NORDPASS_TOKEN=(@Microsoft\.KeyVault\(SecretUri=\$\w+\))"', text)
    template = bt.build_template(bt.SentinelContent())
    site = next(r for r in template["resources"] if r["type"] == "Microsoft.Web/sites")
    value = next(
        s["value"] for s in site["properties"]["siteConfig"]["appSettings"] if s["name"] == "NORDPASS_TOKEN"
    )
    assert value.startswith("[format('@Microsoft.KeyVault(SecretUri={0})'")
    assert setting.startswith("@Microsoft.KeyVault(SecretUri=")
    # The id that `az keyvault secret set --query id` returns is the versioned URI.
    assert "--query id" in text
    # The README says, in rendered words, that a new secret version alone does nothing, and where
    # the two commands are.
    readme = deploy_section()
    rotate = readme[readme.index("### Rotate the NordPass token") :]
    assert "az keyvault secret set" in rotate and "not** enough" in rotate
    assert "(deploy/DEPLOY.md#rotate-the-nordpass-token)" in rotate
    for document in (rotate, text):
        words = " ".join(document.split()).lower()
        assert "redeploy" in words and "secret version" in words
