"""The contract runs go last: fuzzing writes arbitrary (valid) data that other tests need not see."""

from __future__ import annotations

import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: "tests/contract/" in item.nodeid.replace("\\", "/"))
