"""What the docs say about the running connector matches what it does now: token rotation through a
versioned Key Vault reference, the checkpoint lease's length, and the health rule that replaced
"No data received". Each claim is read from the docs and held to the code or template it describes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from deploy import build_template as bt
from nordpass_connector.options import LEASE_RENEW_SECONDS, LEASE_SECONDS

REPO = Path(__file__).resolve().parent.parent
DOCS = {
    "README.md": REPO / "README.md",
    "deploy/DEPLOY.md": REPO / "deploy" / "DEPLOY.md",
    "content/README.md": REPO / "content" / "README.md",
    **{f"docs/{p.name}": p for p in sorted((REPO / "docs").glob("*.md"))},
}


def _texts() -> dict[str, str]:
    texts = {name: path.read_text(encoding="utf-8") for name, path in DOCS.items()}
    # The connector page's words, as the portal shows them.
    page = json.loads(
        (REPO / "content" / "data-connectors" / "NordPass.connector.json").read_text(encoding="utf-8")
    )
    texts["connector page"] = (
        page["descriptionMarkdown"] + "\n" + "\n".join(s["description"] for s in page["instructionSteps"])
    )
    return {name: " ".join(text.split()) for name, text in texts.items()}


def _runbook_row(symptom: str) -> str:
    readme = DOCS["README.md"].read_text(encoding="utf-8")
    return next(line for line in readme.splitlines() if line.startswith(f"| `{symptom}`"))


def test_the_template_sets_a_versioned_key_vault_reference() -> None:
    """The fact the docs below describe."""
    template = json.loads(bt.TEMPLATE_PATH.read_text(encoding="utf-8"))
    flat = json.dumps(template)
    assert "NORDPASS_TOKEN" in flat and ".secretUriWithVersion)" in flat
    assert ".secretUri)" not in flat


def test_the_auth_runbook_row_rotates_through_a_new_secret_version() -> None:
    row = _runbook_row("SourceAuthError")
    assert "(#rotate-the-nordpass-token)" in row
    assert "new secret version" in row and "never picked up" in row
    assert "unversioned" not in row and "24 h" not in row


def test_unversioned_references_appear_only_as_the_contrast() -> None:
    """An unversioned reference is what the connector does not use: every sentence that mentions one
    says so ("unlike", "would"), never that the app relies on it."""
    mentions = []
    for name, text in _texts().items():
        for sentence in re.split(r"(?<=[.!?])\s+", text):
            if "unversioned" in sentence.lower():
                mentions.append((name, sentence))
                assert re.search(r"\b(unlike|would|instead of)\b", sentence), (name, sentence)
    assert mentions, "the rotation docs explain why the reference is versioned"


def test_the_lease_length_in_the_docs_is_the_connectors() -> None:
    texts = _texts()
    assert (
        f"holds a {LEASE_SECONDS} s lease on the checkpoint and renews it every {LEASE_RENEW_SECONDS} s"
        in (texts["docs/how-it-works.md"])
    )
    assert f"lease expires within {LEASE_SECONDS} s" in texts["README.md"]
    assert f"holding the checkpoint lease (wait about {LEASE_SECONDS} seconds" in texts["docs/demo.md"]
    demo = " ".join((REPO / "sandbox" / "demo.py").read_text(encoding="utf-8").split())
    assert f"{LEASE_SECONDS} seconds for the lease" in demo
    for name, text in texts.items():
        stale = re.findall(r"[^.]*\blease\b[^.]*\b(?:two|2)[ -]minutes?\b[^.]*", text, re.IGNORECASE)
        stale += re.findall(r"[^.]*\b(?:two|2)[ -]minutes?\b[^.]*\blease\b[^.]*", text, re.IGNORECASE)
        assert not stale, (name, stale)


def test_no_data_received_is_named_only_as_the_rule_it_was() -> None:
    rules = [p.read_text(encoding="utf-8") for p in (REPO / "content" / "analytic-rules").glob("*.yaml")]
    assert not [r for r in rules if re.search(r"^name: .*No data received", r, re.MULTILINE)]
    assert any("name: NordPass - Connector not running (no health rows)" in r for r in rules)
    for name, text in _texts().items():
        for found in re.finditer(r"No data received", text, re.IGNORECASE):
            before = text[max(0, found.start() - 40) : found.start()]
            assert re.search(r"\b(old|changed|replaced?s?)\b", before), (
                name,
                text[found.start() - 80 : found.end() + 40],
            )


def test_the_demo_samples_count_the_rules_that_ship() -> None:
    rules = len(list((REPO / "content" / "analytic-rules").glob("*.yaml")))
    for name in ("README.md", "docs/demo.md"):
        text = DOCS[name].read_text(encoding="utf-8")
        assert re.search(rf"^rules +{rules} analytic rules, {rules} ran locally", text, re.MULTILINE), name


def test_the_module_map_names_every_module_once() -> None:
    text = (REPO / "docs" / "how-it-works.md").read_text(encoding="utf-8")
    section = text.split("## Module map", 1)[1].split("Around it:", 1)[0]
    package = REPO / "nordpass_connector"
    modules = {
        str(p.relative_to(package)) if p.parent != package / "adapters" else p.name
        for p in package.rglob("*.py")
        if p.name != "__init__.py"
    }
    named = re.findall(r"`([a-z_]+\.py)`", section)
    assert sorted(set(named)) == sorted(modules), "the module map and nordpass_connector/ disagree"
    repeated = sorted({m for m in named if named.count(m) > 1})
    assert repeated == [], f"named more than once: {repeated}"
