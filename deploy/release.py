"""Build the assets of one release: everything the GitHub release publishes and the button needs.

    make release REPO=<owner>/<name> TAG=v<x.y.z>
    python -m deploy.release --repo <owner>/<name> --tag v<x.y.z> [--out DIR]

Writes one folder, `dist/release/<tag>/` unless `--out` says otherwise:

| Asset | What |
|---|---|
| `nordpass-sentinel-connector-<version>.zip` (+ `.sha256`) | the function package, built reproducibly (deploy/package.py) |
| `azuredeploy.json` | the template stamped for this release: `packageUri` defaults to this release's zip, and its SHA-256 is in the metadata and the `packageSha256` output |
| `createUiDefinition.json` | the portal form |
| `sentinel-content.json` | the tables and Sentinel content alone (redeploy content without the connector) |
| `SHA256SUMS` | the SHA-256 of every asset above (`sha256sum -c SHA256SUMS`) |
| `release-notes.md` | the release's body: a Deploy to Azure button for exactly this release |

The tag must be `v` + `nordpass_connector.__version__`: the zip's name, the template's metadata and
the function app's version tag all carry that version, so a tag that says otherwise would publish a
package under the wrong name. The same repository and tag always give the same bytes, so anyone can
rebuild a release and compare its SHA256SUMS.

Bad input (a missing or malformed repository or tag, a version mismatch) ends with one line on
stderr and exit code 2; a failed build with one line and exit code 1.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from deploy import OneLineParser, package
from deploy import build_template as bt

REPO_ROOT = bt.REPO_ROOT
USAGE = "make release REPO=<owner>/<name> TAG=v<x.y.z>"

TEMPLATE = "azuredeploy.json"
UI_DEFINITION = "createUiDefinition.json"
CONTENT_TEMPLATE = "sentinel-content.json"
CHECKSUMS = "SHA256SUMS"
NOTES = "release-notes.md"

PORTAL = "https://portal.azure.com"
GOVERNMENT_PORTAL = "https://portal.azure.us"
BUTTON_IMAGE = "https://aka.ms/deploytoazurebutton"
GOVERNMENT_BUTTON_IMAGE = "https://aka.ms/deploytoazuregovbutton"

# Why the release notes carry no Azure Government (portal.azure.us) button. The template itself
# names no public-cloud endpoint (storage, Key Vault and DCR endpoints all come from reference()),
# but the deployment as a whole would not work there. Empty this when both are solved; the notes
# then carry the Government twin of the button.
GOVERNMENT_BLOCKERS: tuple[str, ...] = (
    "the connector requests its Logs Ingestion token for the public-cloud audience "
    "(https://monitor.azure.com, the azure-monitor-ingestion default), while Azure Government needs "
    "https://monitor.azure.us",
    "the template runs on Flex Consumption (Microsoft.Web/sites functionAppConfig, API 2024-11-01), "
    "whose availability in Azure Government regions has not been verified",
)

_REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_TAG = re.compile(r"^v\d+\.\d+\.\d+$")


class ReleaseError(Exception):
    """A release that cannot be built; `exit_code` 2 for bad input, 1 for a failed build."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Asset:
    name: str
    size: int
    sha256: str


def validate(repository: str | None, tag: str | None, root: Path = REPO_ROOT) -> tuple[str, str]:
    """The repository and tag, or a ReleaseError that says what to pass instead."""
    version = package.connector_version(root)
    if not repository:
        raise ReleaseError(f"REPO is missing: {USAGE} (the GitHub repository the release is published in)")
    if not _REPOSITORY.match(repository):
        raise ReleaseError(
            f"REPO {repository!r} is not <owner>/<name> (for example octo-org/nordpass-sentinel-connector)"
        )
    if not tag:
        raise ReleaseError(f"TAG is missing: {USAGE} (for this source: TAG=v{version})")
    if not _TAG.match(tag):
        raise ReleaseError(f"TAG {tag!r} is not v<major>.<minor>.<patch> (for this source: v{version})")
    if tag != f"v{version}":
        raise ReleaseError(
            f"TAG {tag} does not match the connector version {version} (nordpass_connector/__init__.py): "
            f"release v{version}, or set __version__ and pyproject.toml to {tag[1:]} first"
        )
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    if project != version:
        raise ReleaseError(
            f"pyproject.toml says version {project} but nordpass_connector/__init__.py says {version}: "
            "make them equal first"
        )
    return repository, tag


def asset_url(repository: str, tag: str, name: str) -> str:
    return f"https://github.com/{repository}/releases/download/{tag}/{name}"


def latest_url(repository: str, name: str) -> str:
    return f"https://github.com/{repository}/releases/latest/download/{name}"


def portal_url(template_url: str, ui_definition_url: str | None = None, portal: str = PORTAL) -> str:
    """The Deploy to Azure link: the portal's template blade with URL-encoded template (and form) URLs."""
    url = f"{portal}/#create/Microsoft.Template/uri/{quote(template_url, safe='')}"
    if ui_definition_url is not None:
        url += f"/createUIDefinitionUri/{quote(ui_definition_url, safe='')}"
    return url


def button(template_url: str, ui_definition_url: str | None, *, government: bool = False) -> str:
    portal, image = (GOVERNMENT_PORTAL, GOVERNMENT_BUTTON_IMAGE) if government else (PORTAL, BUTTON_IMAGE)
    label = "Deploy to Azure Government" if government else "Deploy to Azure"
    return f"[![{label}]({image})]({portal_url(template_url, ui_definition_url, portal)})"


def readme_button(repository: str) -> str:
    """The button for a README: always the repository's latest release (its template and form)."""
    return button(latest_url(repository, TEMPLATE), latest_url(repository, UI_DEFINITION))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def release_notes(
    repository: str,
    tag: str,
    assets: Sequence[Asset],
    government_blockers: Sequence[str] = GOVERNMENT_BLOCKERS,
) -> str:
    """The release's body, in Markdown: the button for exactly this release first."""
    template_url = asset_url(repository, tag, TEMPLATE)
    form_url = asset_url(repository, tag, UI_DEFINITION)
    content_url = asset_url(repository, tag, CONTENT_TEMPLATE)
    lines = [
        f"# NordPass → Microsoft Sentinel connector {tag}",
        "",
        button(template_url, form_url),
        "",
        "The button opens the Azure portal with this release's template and form: pick the Sentinel "
        "workspace, the NordPass region and paste the Activity API token. The template installs "
        f"`{package.zip_name(tag[1:])}` from this release, pinned by URL and SHA-256.",
        "",
    ]
    if government_blockers:
        lines += [
            "**Azure Government:** no button for this release (portal.azure.us), because:",
            "",
            *(
                f"- {blocker};" if i < len(government_blockers) - 1 else f"- {blocker}."
                for i, blocker in enumerate(government_blockers)
            ),
            "",
        ]
    else:
        lines += [button(template_url, form_url, government=True), ""]
    lines += [
        "## Assets",
        "",
        "| File | Bytes | SHA-256 |",
        "|---|---:|---|",
        *(f"| `{a.name}` | {a.size} | `{a.sha256}` |" for a in assets),
        "",
        f"Check a download with `sha256sum -c {CHECKSUMS}`. Rebuilding gives the same bytes: "
        f"`git checkout {tag} && make release REPO={repository} TAG={tag}`.",
        "",
        "## From the command line",
        "",
        "```bash",
        "az deployment group create --resource-group <connector-resource-group> \\",
        f"  --template-uri {template_url} \\",
        "  --parameters workspaceName=<workspace> workspaceResourceGroup=<workspace-resource-group> \\",
        f"    nordPassEndpointUrl={bt.EU_ENDPOINT}",
        "```",
        "",
        "`az` then asks for `nordPassToken` without echoing it, so the token stays out of your shell "
        f"history. US organisations: `nordPassEndpointUrl={bt.US_ENDPOINT}`.",
        "",
        "## Redeploy only the Sentinel content",
        "",
        f"The connector never waits for the Sentinel content ({bt.CONTENT_KINDS}). If it failed (for "
        "example while a new table was not yet queryable), deploy it alone into the workspace's "
        "resource group; this needs no token and touches no connector resource:",
        "",
        button(content_url, None),
        "",
        "```bash",
        "az deployment group create --resource-group <workspace-resource-group> \\",
        f"  --template-uri {content_url} --parameters workspaceName=<workspace>",
        "```",
        "",
    ]
    return "\n".join(lines)


def _prepare(out: Path, names: Iterable[str]) -> None:
    """An empty output folder; only files a release writes are ever removed from it."""
    expected = set(names)
    if out.exists():
        if not out.is_dir():
            raise ReleaseError(f"{out} exists and is not a folder")
        strangers = sorted(p.name for p in out.iterdir() if p.name not in expected)
        if strangers:
            raise ReleaseError(
                f"{out} holds files a release does not write ({', '.join(strangers)}); choose another --out"
            )
        for name in expected:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def write_assets(out: Path, repository: str, tag: str, zip_path: Path, digest: str) -> list[Asset]:
    """Everything except the zip (already built into `out`); deterministic for the same inputs."""
    pin = bt.ReleasePin(repository, tag, digest)
    content = bt.SentinelContent.load()
    from deploy import ui_definition

    documents = {
        TEMPLATE: bt.render(bt.build_template(content, pin)),
        UI_DEFINITION: bt.render(ui_definition.build_ui_definition()),
        CONTENT_TEMPLATE: bt.render(bt.build_content_template(content)),
    }
    for name, text in documents.items():
        (out / name).write_text(text, encoding="utf-8")
    assets = [
        Asset(name, (out / name).stat().st_size, _sha256(out / name))
        for name in (zip_path.name, TEMPLATE, UI_DEFINITION, CONTENT_TEMPLATE)
    ]
    if assets[0].sha256 != digest:
        raise ReleaseError(f"{zip_path.name} changed while the release was written", exit_code=1)
    (out / CHECKSUMS).write_text("".join(f"{a.sha256}  {a.name}\n" for a in assets), encoding="utf-8")
    (out / NOTES).write_text(release_notes(repository, tag, assets), encoding="utf-8")
    return assets


def build_release(repository: str, tag: str, out: Path, cache_dir: Path) -> list[Path]:
    version = tag[1:]
    zip_file = package.zip_name(version)
    _prepare(
        out, [zip_file, f"{zip_file}.sha256", TEMPLATE, UI_DEFINITION, CONTENT_TEMPLATE, CHECKSUMS, NOTES]
    )
    try:
        zip_path, digest = package.build(dist_dir=out, cache_dir=cache_dir)
    except subprocess.CalledProcessError as exc:
        raise ReleaseError(
            f"building the function package failed: pip exited {exc.returncode} (its output is above); "
            "check that the package index is reachable",
            exit_code=1,
        ) from None
    write_assets(out, repository, tag, zip_path, digest)
    return sorted(out.iterdir())


def main(argv: Iterable[str] | None = None) -> int:
    parser = OneLineParser(
        prog="python -m deploy.release",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repo", help="GitHub repository <owner>/<name> the release is published in")
    parser.add_argument("--tag", help="release tag, v<major>.<minor>.<patch>")
    parser.add_argument("--out", type=Path, help="output folder (default: dist/release/<tag>)")
    parser.add_argument("--cache-dir", type=Path, default=package.DEFAULT_CACHE, help="pip download cache")
    parser.add_argument(
        "--readme-button",
        action="store_true",
        help="print the Markdown button for the latest release of --repo (for a README) and exit",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.readme_button:
        if not args.repo or not _REPOSITORY.match(args.repo):
            print(
                f"release: --readme-button needs --repo <owner>/<name> (got {args.repo!r})", file=sys.stderr
            )
            return 2
        print(readme_button(args.repo))
        return 0
    try:
        repository, tag = validate(args.repo, args.tag)
        out = args.out if args.out is not None else REPO_ROOT / "dist" / "release" / tag
        files = build_release(repository, tag, out.resolve(), args.cache_dir)
    except ReleaseError as exc:
        print(f"release: {exc}", file=sys.stderr)
        return exc.exit_code
    except ValueError as exc:  # content that cannot be built into a template
        print(f"release: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"release: {exc.strerror or exc} ({exc.filename})", file=sys.stderr)
        return 1
    print(f"release {tag} of {repository} in {out}:")
    for path in files:
        print(f"  {path.name}  {path.stat().st_size} bytes")
    print(
        f"Deploy to Azure: {portal_url(asset_url(repository, tag, TEMPLATE), asset_url(repository, tag, UI_DEFINITION))}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
