"""A pytest plugin for test_cli: echo.basic raises an AttributeError before its first step, as a
bug in the harness's own code would (`-- -p harness_bug`, with this folder on PYTHONPATH)."""

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    if item.nodeid.endswith("echo.basic"):
        raise AttributeError("'NoneType' object has no attribute 'sock'")
