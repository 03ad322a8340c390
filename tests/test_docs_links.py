"""The documentation holds together: every relative link and anchor resolves, the README links
every page of docs/, nothing is hidden in HTML comments, no local absolute path leaks in, the README
stays a guide of a few screens, and the facts pages match the data the code and content use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sandbox import catalog

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS_DIR = REPO / "docs"
DOCUMENTS = [
    README,
    *sorted(DOCS_DIR.glob("*.md")),
    REPO / "deploy" / "DEPLOY.md",
    REPO / "content" / "README.md",
]
# GitHub resolves this one against the page's URL (/<owner>/<repo>/blob/<branch>/README.md): the
# latest release of whichever repository shows the README (tests/test_readme_deploy.py).
GITHUB_RELATIVE = {README: {"../../releases/latest"}}
SECTION_MARKER = re.compile(r"<!-- /?section:[a-z0-9-]+ -->")


def _ids(path: Path) -> str:
    return str(path.relative_to(REPO))


def _prose(markdown: str) -> str:
    """The text outside fenced code blocks and inline code, where links are links."""
    without_fences = re.sub(r"(?ms)^ *(```|~~~).*?^ *\1[^\n]*$", "", markdown)
    return re.sub(r"`[^`\n]*`", "", without_fences)


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a document's headings (duplicates get -1, -2, ...)."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for heading in re.findall(r"(?m)^#{1,6} +(.+?) *#*$", _strip_fences(markdown)):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def _strip_fences(markdown: str) -> str:
    return re.sub(r"(?ms)^ *(```|~~~).*?^ *\1[^\n]*$", "", markdown)


def links(document: Path) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", _prose(document.read_text(encoding="utf-8")))


def test_the_link_finder_and_the_anchors_work_as_github_renders() -> None:
    """The helpers themselves, on known input: links in code are not links, anchors follow GitHub."""
    sample = (
        "# The `doctor`: check a deployment\n## Redeploy (only) the content\n## Redeploy (only) the content\n"
        "See [a](x.md#y) and `[b](not-a-link.md)`.\n```\n[c](also-not.md)\n```\n"
    )
    assert github_anchors(sample) == {
        "the-doctor-check-a-deployment",
        "redeploy-only-the-content",
        "redeploy-only-the-content-1",
    }
    assert re.findall(r"\]\(([^)\s]+)\)", _prose(sample)) == ["x.md#y"]


@pytest.mark.parametrize("document", DOCUMENTS, ids=_ids)
def test_every_relative_link_points_at_an_existing_file_and_anchor(document: Path) -> None:
    for target in links(document):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            assert target.startswith(("https://", "http://", "mailto:")), target
            continue
        if target in GITHUB_RELATIVE.get(document, set()):
            continue
        path, _, anchor = target.partition("#")
        resolved = (document.parent / path).resolve() if path else document
        assert resolved.is_relative_to(REPO), f"{_ids(document)}: {target} leaves the repository"
        assert resolved.is_file(), f"{_ids(document)}: {target} points at no file"
        if anchor:
            assert anchor in github_anchors(resolved.read_text(encoding="utf-8")), (
                f"{_ids(document)}: {target}: no heading #{anchor} in {_ids(resolved)}"
            )


def test_the_readme_links_every_page_of_docs() -> None:
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in links(README)}
    pages = set(DOCS_DIR.glob("*.md"))
    assert pages, "docs/ holds the pages the README points to"
    assert not {p.name for p in pages if p.resolve() not in linked}


@pytest.mark.parametrize("document", DOCUMENTS, ids=_ids)
def test_no_html_comment_hides_text(document: Path) -> None:
    """Only section markers, which tests use to find a section; anything else a comment holds is
    invisible on GitHub, so an instruction there would never reach a reader."""
    text = document.read_text(encoding="utf-8")
    comments = re.findall(r"<!--.*?-->", text, re.DOTALL)
    assert [c for c in comments if not SECTION_MARKER.fullmatch(c)] == []
    assert text.count("<!--") == len(comments), "an unclosed comment hides the rest of the page"


@pytest.mark.parametrize("document", DOCUMENTS, ids=_ids)
def test_no_local_absolute_path(document: Path) -> None:
    text = document.read_text(encoding="utf-8")
    found = re.findall(
        r"(?<![\w.~/-])(/(?:home|root|tmp|work|Users|var/folders)/[^\s`)\"']*|[A-Z]:\\[^\s`]*)", text
    )
    assert not found, f"{_ids(document)}: {found}"


def test_the_readme_is_a_guide_of_a_few_screens() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines: move detail to docs/"
    headings = [line for line in lines if line.startswith("## ")]
    for wanted in ("## Quick start", "## Deploy to Azure", "## Operate", "## Troubleshoot", "## Settings"):
        assert wanted in headings, wanted


def test_the_event_catalog_page_lists_exactly_the_catalog() -> None:
    """docs/event-catalog.md and sandbox/catalog.py (what the simulator generates and the workbook
    tabs hold) are the same 145 pairs, in the same groups."""
    text = (DOCS_DIR / "event-catalog.md").read_text(encoding="utf-8")
    groups = re.split(
        r"(?m)^### ", text[text.index("## The catalog") : text.index("## What the content keys on")]
    )
    found: dict[str, list[tuple[str, str]]] = {}
    for group in groups[1:]:
        title, _, body = group.partition("\n")
        pairs = []
        for event_type, actions in re.findall(r"(?m)^\| `([a-z_0-9]+)` \| (.+) \|$", body):
            pairs += [(event_type, action) for action in re.findall(r"`([a-z_0-9]+)`", actions)]
        count = int(re.search(r"\((\d+) pairs\)", title).group(1))  # type: ignore[union-attr]
        assert count == len(pairs), title
        found[title] = pairs
    assert [pairs for pairs in found.values()] == [catalog.pairs_in(area) for area in catalog.AREAS]
    assert sum(len(p) for p in found.values()) == len(catalog.PAIR_SET) == 145


def test_every_pair_the_content_is_said_to_key_on_is_in_the_catalog() -> None:
    text = (DOCS_DIR / "event-catalog.md").read_text(encoding="utf-8")
    section = text[text.index("## What the content keys on") : text.index("## `metadata` fields")]
    named = {p for p in re.findall(r"`([a-z_0-9]+)\.([a-z_0-9]+)`", section) if p[0] != "metadata"}
    assert len(named) > 50, "the page names pairs as `event_type.action`"
    assert not named - catalog.PAIR_SET


def test_the_asim_pairs_on_the_event_catalog_page_are_the_parsers() -> None:
    text = (DOCS_DIR / "event-catalog.md").read_text(encoding="utf-8")
    section = text[text.index("<!-- section:asim-pairs -->") : text.index("<!-- /section:asim-pairs -->")]
    rows = dict(re.findall(r"(?m)^\| \w+ \(`(vim\w+)`\) \| (.+) \|$", section))
    parsers = sorted((REPO / "content" / "parsers").glob("vim*.yaml"))
    assert set(rows) == {p.stem for p in parsers}
    for parser in parsers:
        in_parser = set(re.findall(r'"([a-z_0-9]+\.[a-z_0-9]+)"', parser.read_text(encoding="utf-8")))
        assert set(re.findall(r"`([a-z_0-9]+\.[a-z_0-9]+)`", rows[parser.stem])) == in_parser, parser.stem
