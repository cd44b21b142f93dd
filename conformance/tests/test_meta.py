"""The meta-test: every reference server passes everything it claims, and every broken
server fails exactly its must-fail cases.

Reference servers (builtins) run with --strict: they meet every SHOULD case too; other correct
implementations (the real-world corpus) must exit 0, recommendations aside. Broken servers run
with --strict, so that a SHOULD case in their must-fail list fails their run.

Several entries run at once (ECHOCONF_META_JOBS, default 3 per CPU): most of a broken
server's time is spent waiting for it to answer, not computing. Reference servers run the
default profile, exactly as users run them. Broken servers run the quick profile
(ECHOCONF_META_BROKEN_PROFILE) with the hang bound (`--hang-bound`, ECHOCONF_META_HANG_BOUND
seconds, default 1): a stream on which nothing moves for that long ends as a timeout at once
instead of at its case's generous deadline. A hang is the failure such servers must show, so
the bound changes how long they take to fail, not which cases fail; deadlines that are the
point of a case (the liveness probe's 1 s, EOF within 1 s, CPU windows, echo.pause) are
unchanged. To see what the meta-test sees for one broken server:

    conformance/echoconf run --impl broken.NAME --profile quick --hang-bound 1
"""

from __future__ import annotations

import concurrent.futures
import os
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import load_report, outcomes, run
from echoconf import registry, report

BAD = set(report.BAD)
ENTRIES = sorted(registry.load().values(), key=lambda i: (i.broken, i.key))
JOBS = int(os.environ.get("ECHOCONF_META_JOBS", 3 * (os.cpu_count() or 2)))
HANG_BOUND = os.environ.get("ECHOCONF_META_HANG_BOUND", "1")
BROKEN_PROFILE = os.environ.get("ECHOCONF_META_BROKEN_PROFILE", "quick")


def _run_entry(impl: registry.Implementation, base: Path) -> dict[str, Any]:
    if impl.builtin and registry.find_binary(impl.builtin) is None:
        return {"missing": f"{impl.builtin} is not built ({registry.BUILD_HINT})"}
    out = base / impl.key
    args = ["run", "--impl", impl.key, "--report", str(out), "--no-summary"]
    if impl.broken:
        # --strict: a broken server's failed SHOULD cases count in its exit status too
        args += ["--profile", BROKEN_PROFILE, "--hang-bound", HANG_BOUND, "--strict"]
        for case in impl.judged_on:
            args += ["--case", case]
    elif impl.builtin:
        args += ["--strict"]  # the reference servers meet every recommendation as well
    t0 = time.monotonic()
    proc = run(*args, timeout=600)
    res: dict[str, Any] = {"code": proc.returncode, "seconds": time.monotonic() - t0,
                           "output": proc.stdout[-4000:] + proc.stderr[-2000:]}
    if (out / "report.json").exists():
        doc = load_report(out)
        res["outcomes"] = outcomes(doc)
        res["grades"] = {c["id"]: c["grade"] for c in doc["cases"]}
    return res


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    base = tmp_path_factory.mktemp("meta")
    # Broken servers first: the ones that hang take longest; reference runs fill the gaps.
    order = sorted(ENTRIES, key=lambda i: not i.broken)
    with concurrent.futures.ThreadPoolExecutor(max(1, JOBS)) as pool:
        futs = {i.key: pool.submit(_run_entry, i, base) for i in order}
        return {k: f.result() for k, f in futs.items()}


@pytest.mark.parametrize("impl", [i for i in ENTRIES if not i.broken], ids=lambda i: i.key)
def test_reference_passes_what_it_claims(impl: registry.Implementation, results: dict[str, Any]) -> None:
    r = results[impl.key]
    if "missing" in r:
        pytest.skip(r["missing"])
    assert "outcomes" in r, f"{impl.key}: no report (exit {r['code']})\n{r['output']}"
    # A reference server meets every case; another correct server every MUST case (an unmet
    # SHOULD case is a recommendation, and exit 0 stands).
    bad = {c: o for c, o in r["outcomes"].items()
           if o in BAD and (impl.builtin or r["grades"][c] == "must")}
    assert r["code"] == 0 and not bad, f"{impl.key}: exit {r['code']}, {bad}\n{r['output']}"


@pytest.mark.parametrize("impl", [i for i in ENTRIES if i.broken], ids=lambda i: i.key)
def test_broken_fails_exactly_where_expected(impl: registry.Implementation, results: dict[str, Any]) -> None:
    r = results[impl.key]
    if "missing" in r:
        pytest.skip(r["missing"])
    assert "outcomes" in r, f"{impl.key}: no report (exit {r['code']})\n{r['output']}"
    failed = {c for c, o in r["outcomes"].items() if o in BAD}
    missed = set(impl.must_fail) - failed
    unexpected = failed - set(impl.must_fail)
    assert not missed and not unexpected, (
        f"{impl.key}: must-fail cases that did not fail: {sorted(missed)}; failures outside "
        f"must-fail: {sorted(unexpected)}\n{r['output']}")
    assert r["code"] == 1
