"""The meta-test: every reference server passes everything it claims, and every broken
server fails exactly its must-fail cases (plus, at most, its may-fail cases).

All entries run in parallel (one `echoconf run` per entry, CPU-count at a time)."""

from __future__ import annotations

import concurrent.futures
import os
from pathlib import Path
from typing import Any

import pytest

from conftest import load_report, outcomes, run
from echoconf import registry

BAD = {"failed", "error", "xpassed"}
ENTRIES = sorted(registry.load().values(), key=lambda i: (i.broken, i.key))


def _run_entry(impl: registry.Implementation, base: Path) -> dict[str, Any]:
    if impl.builtin and registry.find_binary(impl.builtin) is None:
        return {"missing": f"{impl.builtin} is not built ({registry.BUILD_HINT})"}
    out = base / impl.key
    proc = run("run", "--impl", impl.key, "--report", str(out), "--no-summary", timeout=600)
    res: dict[str, Any] = {"code": proc.returncode, "output": proc.stdout[-4000:] + proc.stderr[-2000:]}
    if (out / "report.json").exists():
        res["outcomes"] = outcomes(load_report(out))
    return res


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    base = tmp_path_factory.mktemp("meta")
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        futs = {i.key: pool.submit(_run_entry, i, base) for i in ENTRIES}
        return {k: f.result() for k, f in futs.items()}


@pytest.mark.parametrize("impl", [i for i in ENTRIES if not i.broken], ids=lambda i: i.key)
def test_reference_passes_what_it_claims(impl: registry.Implementation, results: dict[str, Any]) -> None:
    r = results[impl.key]
    if "missing" in r:
        pytest.skip(r["missing"])
    bad = {c: o for c, o in r.get("outcomes", {}).items() if o in BAD}
    assert r["code"] == 0 and not bad, f"{impl.key}: exit {r['code']}, {bad}\n{r['output']}"


@pytest.mark.parametrize("impl", [i for i in ENTRIES if i.broken], ids=lambda i: i.key)
def test_broken_fails_exactly_where_expected(impl: registry.Implementation, results: dict[str, Any]) -> None:
    r = results[impl.key]
    if "missing" in r:
        pytest.skip(r["missing"])
    assert "outcomes" in r, f"{impl.key}: no report (exit {r['code']})\n{r['output']}"
    failed = {c for c, o in r["outcomes"].items() if o in BAD}
    missed = set(impl.must_fail) - failed
    unexpected = failed - set(impl.must_fail) - set(impl.may_fail)
    assert not missed and not unexpected, (
        f"{impl.key}: must-fail cases that did not fail: {sorted(missed)}; failures outside "
        f"must-fail/may-fail: {sorted(unexpected)}\n{r['output']}")
    assert r["code"] == 1
