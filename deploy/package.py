"""Build the function-app zip that the template's `onedeploy` resource installs.

    python -m deploy.package                       # dist/nordpass-sentinel-connector-<version>.zip + .sha256
    python -m deploy.package --update-constraints  # re-resolve deploy/constraints.txt first

A release (`make release`, deploy/release.py) builds the same zip and stamps its SHA-256 into the
release's template.

The zip is what Flex Consumption runs with `remoteBuild: false`: the app files at the root and every
dependency, built for Linux x86_64 CPython 3.11, under `.python_packages/lib/site-packages`. Builds
are reproducible: same sources and constraints give the same bytes (sorted entries, fixed
timestamps and modes, no bytecode, no build-machine paths), so a published SHA-256 can be checked
by rebuilding.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS_PATH = REPO_ROOT / "deploy" / "constraints.txt"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nordpass-packaging" / "pip"

APP_FILES = ("function_app.py", "host.json", "requirements.txt")
PACKAGE_DIR = "nordpass_connector"
SITE_PACKAGES = ".python_packages/lib/site-packages"
EXCLUDED_DIRS = {"__pycache__", "tests", "sandbox", ".pytest_cache", ".mypy_cache"}
EXCLUDED_SUFFIXES = (".pyc", ".pyo")

PLATFORM = "manylinux2014_x86_64"
PYTHON_VERSION = "3.11"
# 1980-01-01 is the earliest time a zip entry can carry.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def connector_version(source_root: Path) -> str:
    """`__version__` read as text, so packaging never imports (or half-imports) the app."""
    text = (source_root / PACKAGE_DIR / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', text, re.MULTILINE)
    if not match:
        raise ValueError(f"no __version__ in {source_root / PACKAGE_DIR / '__init__.py'}")
    return match.group(1)


def zip_name(version: str) -> str:
    return f"nordpass-sentinel-connector-{version}.zip"


def _pip_install(requirements: Path, target: Path, cache_dir: Path, constraints: Path | None) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--target",
        str(target),
        "--platform",
        PLATFORM,
        "--implementation",
        "cp",
        "--python-version",
        PYTHON_VERSION,
        "--only-binary=:all:",
        # Bytecode embeds timestamps and is rebuilt on the host anyway.
        "--no-compile",
        "--cache-dir",
        str(cache_dir),
        "-r",
        str(requirements),
    ]
    if constraints is not None:
        command += ["-c", str(constraints)]
    subprocess.run(command, check=True)


def _strip_build_machine_traces(site_packages: Path) -> None:
    """Drop console scripts and their RECORD lines: their shebangs name this machine's Python,
    which would make the zip differ between machines, and Functions never runs them."""
    shutil.rmtree(site_packages / "bin", ignore_errors=True)
    for record in site_packages.glob("*.dist-info/RECORD"):
        lines = record.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line in lines if not line.startswith("../")]
        if kept != lines:
            record.write_text("".join(kept), encoding="utf-8")
    for cache in list(site_packages.rglob("__pycache__")):
        shutil.rmtree(cache, ignore_errors=True)


def _resolved_distributions(site_packages: Path) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for metadata in site_packages.glob("*.dist-info/METADATA"):
        name = version = ""
        for line in metadata.read_text(encoding="utf-8").splitlines():
            if line.startswith("Name: "):
                name = line[6:].strip()
            elif line.startswith("Version: "):
                version = line[9:].strip()
            if name and version:
                break
        found.append((re.sub(r"[-_.]+", "-", name).lower(), version))
    return sorted(found)


def write_constraints(site_packages: Path, path: Path = CONSTRAINTS_PATH) -> None:
    lines = [
        "# Every distribution in the function zip, pinned so a rebuild resolves the same set.",
        "# Regenerate with `python -m deploy.package --update-constraints` after changing requirements.txt.",
        *(f"{name}=={version}" for name, version in _resolved_distributions(site_packages)),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _app_files(source_root: Path) -> Iterator[tuple[str, Path]]:
    for name in APP_FILES:
        path = source_root / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; the function zip needs it")
        yield name, path
    package = source_root / PACKAGE_DIR
    for path in package.rglob("*"):
        relative = path.relative_to(source_root)
        if not path.is_file() or EXCLUDED_DIRS & set(relative.parts) or path.suffix in EXCLUDED_SUFFIXES:
            continue
        yield relative.as_posix(), path


def _tree_files(root: Path, prefix: str) -> Iterator[tuple[str, Path]]:
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if path.is_file() and "__pycache__" not in relative.parts and path.suffix not in EXCLUDED_SUFFIXES:
            yield f"{prefix}/{relative.as_posix()}", path


def write_zip(entries: Iterable[tuple[str, Path]], destination: Path) -> None:
    """A zip whose bytes depend only on entry names and contents."""
    with zipfile.ZipFile(destination, "w") as archive:
        for name, path in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.create_system = 3  # Unix, so the mode below is honoured on extraction
            info.external_attr = (0o100644 & 0xFFFF) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes(), compresslevel=9)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build(
    source_root: Path = REPO_ROOT,
    dist_dir: Path | None = None,
    cache_dir: Path = DEFAULT_CACHE,
    constraints: Path | None = CONSTRAINTS_PATH,
    update_constraints: bool = False,
) -> tuple[Path, str]:
    """Build the zip; returns its path and SHA-256 (also written next to it as `<zip>.sha256`)."""
    dist_dir = source_root / "dist" if dist_dir is None else dist_dir
    version = connector_version(source_root)
    dist_dir.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    use_constraints = constraints if constraints is not None and constraints.is_file() else None
    with tempfile.TemporaryDirectory(prefix="nordpass-package-") as staging_text:
        site_packages = Path(staging_text) / "site-packages"
        _pip_install(
            source_root / "requirements.txt",
            site_packages,
            cache_dir,
            None if update_constraints else use_constraints,
        )
        _strip_build_machine_traces(site_packages)
        if update_constraints and constraints is not None:
            write_constraints(site_packages, constraints)
        destination = dist_dir / zip_name(version)
        write_zip([*_app_files(source_root), *_tree_files(site_packages, SITE_PACKAGES)], destination)
    digest = sha256_of(destination)
    (dist_dir / f"{destination.name}.sha256").write_text(f"{digest}  {destination.name}\n", encoding="utf-8")
    return destination, digest


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dist", type=Path, default=REPO_ROOT / "dist", help="output directory")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="pip download cache")
    parser.add_argument(
        "--update-constraints",
        action="store_true",
        help="resolve requirements.txt afresh and rewrite deploy/constraints.txt",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    path, digest = build(
        dist_dir=args.dist, cache_dir=args.cache_dir, update_constraints=args.update_constraints
    )
    print(path)
    print(f"sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
