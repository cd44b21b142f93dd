"""The same verdicts under --image as under --impl: every broken server of conformance/broken/,
packaged as an image FROM scratch (the very binary `--impl` runs, with the shared libraries it
loads), fails under `echoconf run --image` exactly the cases its registry entry lists, with the
meta-test's settings. Needs the engine and images as test_image.py does."""

from __future__ import annotations

import concurrent.futures

import pytest

from conftest import load_report, outcomes, run
from test_image import PROBLEM, package

from echoconf import registry, report

pytestmark = [pytest.mark.skipif(PROBLEM is not None, reason=PROBLEM or ""), pytest.mark.timeout(3600)]

ENTRIES = [e for e in registry.load().values() if e.broken and e.builtin]
META = ["--profile", "quick", "--hang-bound", "1", "--strict"]  # as test_meta.py runs each entry
AT_ONCE = 3  # image runs at a time: most of a run is waiting on containers and bounds


def test_every_broken_image_fails_exactly_its_local_cases(tmp_path_factory: pytest.TempPathFactory) -> None:
    missing = [e.builtin for e in ENTRIES if registry.find_binary(e.builtin) is None]
    assert not missing, f"not built: {missing} ({registry.BUILD_HINT})"
    images = {e.key: package(registry.find_binary(e.builtin), tmp_path_factory.mktemp(e.name),  # type: ignore[arg-type]
                             f"echoconf-test-{e.builtin}:parity") for e in ENTRIES}

    def judge(e: registry.Implementation) -> tuple[str, set[str], str]:
        out = tmp_path_factory.mktemp(f"{e.name}-report")
        p = run("run", "--image", images[e.key], "--port", "7", *META, *registry.capability_flags(e.capabilities),
                "--transport", e.transport, "--report", str(out), timeout=900)
        assert (out / "default" / "report.json").is_file(), \
            f"{e.key}: no report (exit {p.returncode}); its output ends:\n{(p.stdout + p.stderr)[-4000:]}"
        doc = load_report(out / "default")
        got = outcomes(doc)
        # docker.* are the image run's own checks, not cases of the local run.
        failed = {c for c, o in got.items() if o in report.BAD and not c.startswith("docker.")}
        # The skips a local run makes too: a capability the entry lacks, a case left unjudged
        # after another's verdict. Any other (private instances or processes out of reach) is
        # the image path falling short; docker.* skip by design without --faults or a limit.
        for c in doc["cases"]:
            if c["outcome"] == "skipped" and not c["id"].startswith("docker.") and \
                    not c["detail"]["message"].startswith(("needs capability", "not judged:")):
                failed.add(f"{c['id']} (skipped: {c['detail']['message']})")
        return e.key, failed, f"exit {p.returncode}"

    with concurrent.futures.ThreadPoolExecutor(AT_ONCE) as pool:
        results = list(pool.map(judge, ENTRIES))
    wrong = {}
    for key, failed, how in results:
        must = set(registry.load()[key].must_fail)
        if failed != must:
            wrong[key] = {"failed, not listed": sorted(failed - must), "listed, not failed": sorted(must - failed),
                          "run": how}
    assert not wrong, wrong
