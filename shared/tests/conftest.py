from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from ember_devkit.testing.plugin import TestEnv, database_beside, drop_database


@pytest.fixture
def catalog_database(ember_env: TestEnv) -> Iterator[str]:
    """A database of its own, migrated for a catalog this test runs as a real process."""
    url = database_beside(ember_env.database_url, "_served_catalog")
    env = {**os.environ, "DATABASE_URL": url}
    migrated = subprocess.run(
        [sys.executable, "-m", "ember_shared.migrations", "upgrade", "catalog"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    yield url
    drop_database(url)
