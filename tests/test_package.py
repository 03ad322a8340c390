"""The function zip: complete, reproducible, and importable by a bare CPython 3.11.

Building downloads Linux wheels (cached under `.sandbox/pip-cache`, which is gitignored), so these
tests are slow; they still run by default because a broken zip is invisible until a customer deploys.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from deploy import package

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".sandbox" / "pip-cache"

STAND_IN_APP = '''"""Stand-in used only when the real function_app.py does not exist yet."""
import azure.functions as func

from nordpass_connector import schema

app = func.FunctionApp()


@app.timer_trigger(schedule="0 */1 * * * *", arg_name="timer", run_on_startup=False, use_monitor=True)
def tick(timer: func.TimerRequest) -> None:
    del timer, schema
'''
STAND_IN_HOST = '{"version": "2.0"}\n'


def _source_root(tmp: Path) -> Path:
    """The repository, or (while function_app.py/host.json are still being written) a temporary
    copy of it with stand-ins; stand-ins never touch the repository."""
    if all((REPO / name).is_file() for name in package.APP_FILES):
        return REPO
    root = tmp / "source"
    root.mkdir()
    shutil.copytree(REPO / package.PACKAGE_DIR, root / package.PACKAGE_DIR)
    shutil.copy2(REPO / "requirements.txt", root / "requirements.txt")
    for name, text in (("function_app.py", STAND_IN_APP), ("host.json", STAND_IN_HOST)):
        source = REPO / name
        (root / name).write_text(
            source.read_text(encoding="utf-8") if source.is_file() else text, encoding="utf-8"
        )
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    tmp = tmp_path_factory.mktemp("package")
    source = _source_root(tmp)
    first, digest = package.build(source_root=source, dist_dir=tmp / "dist1", cache_dir=CACHE)
    second, digest_again = package.build(source_root=source, dist_dir=tmp / "dist2", cache_dir=CACHE)
    assert first.name == second.name
    assert first.read_bytes() == second.read_bytes(), "two builds of the same sources differ"
    assert digest == digest_again
    return first, digest, tmp


@pytest.mark.slow
def test_zip_name_checksum_and_layout(built: tuple[Path, str, Path]) -> None:
    zip_path, digest, _ = built
    version = package.connector_version(REPO)
    assert zip_path.name == f"nordpass-sentinel-connector-{version}.zip"
    checksum = zip_path.with_name(zip_path.name + ".sha256").read_text(encoding="utf-8")
    assert checksum == f"{digest}  {zip_path.name}\n"
    assert package.sha256_of(zip_path) == digest

    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        infos = archive.infolist()
    assert names == sorted(names)
    assert {"function_app.py", "host.json", "requirements.txt", "nordpass_connector/__init__.py"} <= set(
        names
    )
    assert "nordpass_connector/schema.py" in names
    site = package.SITE_PACKAGES + "/"
    for top in (
        "azure/functions",
        "azure/identity",
        "azure/monitor/ingestion",
        "azure/data/tables",
        "azure/core",
    ):
        assert any(n.startswith(f"{site}{top}/") for n in names), top
    for top in ("httpx", "pydantic", "pydantic_core", "orjson", "cryptography"):
        assert any(n.startswith(f"{site}{top}/") for n in names), top
    # Linux x86_64 CPython 3.11 binaries, not whatever the build machine is.
    binaries = [n for n in names if n.endswith(".so")]
    assert binaries and all("cpython-311-x86_64-linux-gnu" in n or "abi3" in n for n in binaries)
    for name in names:
        parts = name.split("/")
        assert "__pycache__" not in parts and not name.endswith((".pyc", ".pyo")), name
        assert parts[0] not in {"tests", "sandbox", ".venv", "deploy", "content"}, name
        assert not name.startswith(f"{site}bin/"), name
        assert name != "local.settings.json"
    assert {info.date_time for info in infos} == {package.ZIP_EPOCH}


@pytest.mark.slow
def test_zip_imports_function_app_in_clean_venv(built: tuple[Path, str, Path]) -> None:
    zip_path, _, tmp = built
    app_dir = tmp / "wwwroot"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(app_dir)
    venv_dir = tmp / "clean-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv_dir)], check=True)
    site = app_dir / package.SITE_PACKAGES
    probe = (
        "import azure.functions, function_app, nordpass_connector;"
        "print(azure.functions.__file__);"
        "print(len(function_app.app.get_functions()))"
    )
    # An empty environment: no settings, no credentials, nothing from this machine. Importing must
    # still succeed, because the host indexes functions by importing function_app.py.
    result = subprocess.run(
        [str(venv_dir / "bin" / "python"), "-c", probe],
        cwd=app_dir,
        env={"PYTHONPATH": f"{app_dir}:{site}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    module_file, function_count = result.stdout.split()
    assert Path(module_file).resolve().is_relative_to(site.resolve()), (
        "azure.functions came from outside the zip"
    )
    assert int(function_count) >= 1, "function_app.py registers no function"


def test_zip_writer_is_deterministic(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("b", encoding="utf-8")
    (tmp_path / "a.txt").write_text("a", encoding="utf-8")
    entries = [("b.txt", tmp_path / "b.txt"), ("a.txt", tmp_path / "a.txt")]
    package.write_zip(entries, tmp_path / "one.zip")
    (tmp_path / "a.txt").touch()
    package.write_zip(list(reversed(entries)), tmp_path / "two.zip")
    assert (tmp_path / "one.zip").read_bytes() == (tmp_path / "two.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "one.zip") as archive:
        assert archive.namelist() == ["a.txt", "b.txt"]


def test_app_files_exclude_caches_and_tests(tmp_path: Path) -> None:
    root = tmp_path / "src"
    (root / "nordpass_connector" / "__pycache__").mkdir(parents=True)
    (root / "nordpass_connector" / "tests").mkdir()
    (root / "nordpass_connector" / "__init__.py").write_text('__version__ = "9.9.9"\n', encoding="utf-8")
    (root / "nordpass_connector" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"")
    (root / "nordpass_connector" / "tests" / "test_x.py").write_text("", encoding="utf-8")
    for name in package.APP_FILES:
        (root / name).write_text("{}", encoding="utf-8")
    names = sorted(name for name, _ in package._app_files(root))
    assert names == ["function_app.py", "host.json", "nordpass_connector/__init__.py", "requirements.txt"]
    assert package.connector_version(root) == "9.9.9"


def test_constraints_pin_every_runtime_requirement() -> None:
    pinned = {
        line.split("==")[0]
        for line in package.CONSTRAINTS_PATH.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    }
    for line in (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name = line.split("==")[0].split("[")[0].strip().lower().replace("_", "-")
            assert name in pinned, f"{name} is in requirements.txt but not in deploy/constraints.txt"
