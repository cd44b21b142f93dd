#!/usr/bin/python3
"""The conformance matrix in Docker: every server image × every hostile profile.

For each (server, profile) cell: start the server in a container on an internal Docker network
under the profile and run the conformance suite against it through echoconf.image.run_profile,
the same code as `echoconf run --image`: every case, the docker.* family last (the container is
alive; descriptor exhaustion under a descriptor limit; where the plan says so, the fault cases
across the container boundary: pause/resume, network cut, kill/restart). Four cells run at once
(--jobs). Writes REPORTS/matrix.md, a self-contained
REPORTS/matrix.html, REPORTS/matrix.json, REPORTS/junit.xml (every cell) and each cell's harness
reports under REPORTS/<server>/<profile>/.

The default plan keeps the run at about three minutes on two cores and the coverage honest: the
profiles that change how bytes move (`default`, `tiny-buffers`) get the default suite and the
fault cases; the profiles that constrain the process or the network family (`low-nofile`,
`memory`, `cpu`, `ipv6`) get the quick suite (every case, smaller sizes and fewer examples).
`--full` gives every cell the default suite and the fault cases; `--profile` forces one suite
depth everywhere. As in `echoconf run`, `--env-profile` names the hostile environments and
`--profile` the suite's depth.

Exit status: 0 every cell passed, 1 some case failed, 2 usage, harness or Docker error.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import datetime
import html
import json
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "conformance" / "src"))

from echoconf import dockerenv as de  # noqa: E402
from echoconf import image as img  # noqa: E402
from echoconf.images import ensure_images  # noqa: E402
from echoconf.lab import Lab, cleanup_stale  # noqa: E402
from echoconf import registry, report  # noqa: E402
from echoconf.caselib import FAMILIES  # noqa: E402


def reference_servers() -> dict[str, list[str]]:
    """The servers of the image that the matrix runs, with their capabilities: the registry's
    entries for built-in servers that are not broken, in its order (the one list of servers)."""
    return {i.builtin: list(i.capabilities) for i in registry.load().values() if i.builtin and not i.broken}


# (suite profile, fault cases) per hostile profile in the default run; see the module doc.
PLAN: dict[str, tuple[str, bool]] = {
    "default": ("default", True),
    "tiny-buffers": ("default", True),
    "low-nofile": ("quick", False),
    "memory": ("quick", False),
    "cpu": ("quick", False),
    "ipv6": ("quick", False),
}
HARNESS = ROOT / "conformance" / "echoconf"
# Cells at once. A cell waits much of its time (measurement windows, pauses): with two at once
# the two cores were half idle. Four passed every cell, also beside a process that keeps a core
# busy (docker/README.md has the figures).
JOBS = 4
BAD = report.BAD


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Cell:
    server: str
    profile: str
    suite: str = "default"
    families: dict[str, collections.Counter[str]] = field(default_factory=dict)
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (case id, outcome, detail)
    status: int = 0  # 0 / 1 / 2 like the harness
    server_state: str = "alive"
    duration: float = 0.0
    report: str = ""
    note: str = ""


def harness_usable() -> bool:
    if not HARNESS.exists():
        return False
    try:
        proc = subprocess.run([sys.executable, str(HARNESS), "run", "--help"], capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0 and "--target" in proc.stdout


def run_cell(lab: Lab, image: str, server: str, prof: str, reports: Path, suite_profile: str,
             faults: bool, timeout: float, port: int = 7, command: list[str] | None = None) -> Cell:
    cell = Cell(server, prof, suite=suite_profile)
    out = reports / server / prof
    extra: list[str] = []
    without: list[str] = []
    if server != "image":
        command = [server, "--port", "{port}"]
        # Exactly what the registry declares: a cell runs the cases a local --impl run runs.
        caps = reference_servers()[server]
        extra = registry.capability_flags(caps)
        without = [c for c in registry.CAPABILITIES if c not in caps]
    r = img.run_profile(lab, image, command, port, prof, out, suite_profile=suite_profile, harness_args=extra,
                        without=without, faults=faults, name=server, log=log, timeout=timeout)
    cell.families, cell.failures = r.families, r.failures
    cell.status, cell.server_state, cell.note, cell.duration = r.status, r.server_state, r.note, r.duration
    if (out / "report.md").exists():
        cell.report = str((out / "report.md").relative_to(reports))
    log(f"  {server:14} {prof:13} {suite_profile:8} {['PASS', 'FAIL', 'ERROR'][cell.status]:5} "
        f"{cell.duration:5.1f}s  server {cell.server_state}"
        + "".join(f"\n      {o} {cid}: {d.splitlines()[0] if d else ''}" for cid, o, d in cell.failures)
        + (f"\n      note: {cell.note}" if cell.note else ""))
    return cell


def junit(cells: list[Cell], reports: Path) -> None:
    """One junit.xml with a testsuite per cell, named server/profile."""
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuites", name="echoconf-docker")
    for c in cells:
        path = reports / c.server / c.profile / "junit.xml"
        try:
            tree = ET.parse(path)
        except (OSError, ET.ParseError):
            suite = ET.SubElement(root, "testsuite", name=f"{c.server}/{c.profile}", tests="1", errors="1")
            tc = ET.SubElement(suite, "testcase", classname=f"{c.server}.{c.profile}", name="setup")
            ET.SubElement(tc, "error", message=c.note or "no report").text = c.note
            continue
        r = tree.getroot()
        suite = r if r.tag == "testsuite" else r.find("testsuite")
        if suite is None:
            continue
        suite.set("name", f"{c.server}/{c.profile}")
        for tc in suite.iter("testcase"):
            tc.set("classname", f"{c.server}.{c.profile}")
        root.append(suite)
    ET.ElementTree(root).write(reports / "junit.xml", encoding="utf-8", xml_declaration=True)


# ---------------------------------------------------------------------------------------------
# Output


def family_order(cells: list[Cell]) -> list[str]:
    seen = {f for c in cells for f in c.families}
    return [f for f in FAMILIES if f in seen] + sorted(seen - set(FAMILIES))


def cell_text(cnt: collections.Counter[str] | None) -> tuple[str, str]:
    """(text, css class) of one family in one cell."""
    if not cnt:
        return "–", "none"
    bad = sum(cnt[o] for o in BAD)
    run = sum(cnt.values()) - cnt["skipped"]
    if bad:
        return f"✗ {bad} of {run}", "bad"
    if run == 0:
        return f"skipped {cnt['skipped']}", "skip"
    extra = f" (+{cnt['skipped']} skipped)" if cnt["skipped"] else ""
    return f"✓ {run}{extra}", "good"


def markdown(cells: list[Cell], meta: dict[str, Any]) -> str:
    fams = family_order(cells)
    out = ["# echoconf in Docker: conformance matrix", "",
           f"Image `{meta['image']}`, suite profiles: {meta['suite_profile']}, {meta['when']}, "
           f"{meta['duration']:.0f}s, exit status {meta['status']}. Harness: {meta['harness']}.", "",
           "Profiles: " + "; ".join(f"`{p}`: {de.ENV_PROFILES[p].description}" for p in meta["profiles"]), "",
           "| server | profile | suite | " + " | ".join(fams) + " | server | time | verdict |",
           "|---|---|---|" + "---|" * len(fams) + "---|---|---|"]
    for c in cells:
        row = [cell_text(c.families.get(f))[0] for f in fams]
        verdict = ["PASS", "FAIL", "ERROR"][c.status]
        out.append(f"| {c.server} | {c.profile} | {c.suite} | " + " | ".join(row)
                   + f" | {c.server_state} | {c.duration:.0f}s | {verdict} |")
    bad = [c for c in cells if c.failures or c.note]
    if bad:
        out += ["", "## Failures"]
        for c in bad:
            out += ["", f"### {c.server} / {c.profile}" + (f" ([report]({c.report}))" if c.report else "")]
            if c.note:
                out.append(f"- note: {c.note}")
            for cid, outcome, detail in c.failures:
                out.append(f"- `{cid}` {outcome}: {detail.splitlines()[0] if detail else ''}")
    return "\n".join(out) + "\n"


CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}.good{background:#e6f6e6}.bad{background:#fbe3e3;font-weight:bold}
.skip{background:#f6f6e6;color:#666}.none{color:#aaa}code{background:#f3f3f3;padding:0 3px}
details{margin:.5em 0}summary{cursor:pointer}"""


def html_page(cells: list[Cell], meta: dict[str, Any]) -> str:
    e = html.escape
    fams = family_order(cells)
    rows = []
    for c in cells:
        tds = []
        for f in fams:
            text, cls = cell_text(c.families.get(f))
            tds.append(f'<td class="{cls}">{e(text)}</td>')
        v = ["PASS", "FAIL", "ERROR"][c.status]
        state_cls = "good" if c.server_state == "alive" else "bad"
        link = f' <a href="{e(c.report)}">report</a>' if c.report else ""
        rows.append(f"<tr><td>{e(c.server)}</td><td>{e(c.profile)}</td><td>{e(c.suite)}</td>{''.join(tds)}"
                    f'<td class="{state_cls}">{e(c.server_state)}</td>'
                    f'<td class="{"good" if c.status == 0 else "bad"}">{v}{link}</td></tr>')
    details = []
    for c in cells:
        if not (c.failures or c.note):
            continue
        items = "".join(f"<li><code>{e(cid)}</code> {e(o)}: {e(d)}</li>" for cid, o, d in c.failures)
        note = f"<p>{e(c.note)}</p>" if c.note else ""
        details.append(f"<details open><summary>{e(c.server)} / {e(c.profile)}</summary>{note}<ul>{items}</ul></details>")
    profs = "".join(f"<li><code>{e(p)}</code>: {e(de.ENV_PROFILES[p].description)}</li>" for p in meta["profiles"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>echoconf Docker matrix</title><style>{CSS}</style></head>
<body><h1>echoconf in Docker: conformance matrix</h1>
<p>Image <code>{e(meta['image'])}</code>, suite profiles: {e(meta['suite_profile'])}, {e(meta['when'])},
{meta['duration']:.0f}s, exit status <b>{meta['status']}</b>. Harness: {e(meta['harness'])}.</p>
<ul>{profs}</ul>
<table><tr><th>server</th><th>profile</th><th>suite</th>{''.join(f'<th>{e(f)}</th>' for f in fams)}<th>server</th><th>verdict</th></tr>
{''.join(rows)}</table>
{'<h2>Failures</h2>' + ''.join(details) if details else '<p>No failures.</p>'}
</body></html>
"""


# ---------------------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reports", type=Path, help="reports folder (default: reports/docker-<time>)")
    p.add_argument("--server", action="append", default=[], help="server(s) of the image (default: the registry's reference servers: "
                   f"{' '.join(reference_servers())})")
    p.add_argument("--env-profile", action="append", default=[], choices=list(de.ENV_PROFILES),
                   help="hostile environment profile(s) (default: all), as `echoconf run --image` names them")
    p.add_argument("--image", help="run this image (its own command, listening on --port) instead of the servers")
    p.add_argument("--port", type=int, default=7, help="the port --image listens on (default 7)")
    p.add_argument("--command-in-image", metavar="CMD", help="with --image: the command to run instead of its own")
    p.add_argument("--profile", choices=["quick", "default", "thorough"],
                   help="one suite depth for every cell, as `echoconf run --profile` (default: the plan: "
                        "default suite for the default and tiny-buffers environments, quick for the others)")
    p.add_argument("--full", action="store_true",
                   help="the thorough variant: default suite and fault cases in every cell (~12 min)")
    p.add_argument("--faults", action="store_true", help="fault cases in every cell")
    p.add_argument("--no-faults", action="store_true", help="no pause/cut/kill checks at all")
    p.add_argument("--fault-servers", action="append", default=[], metavar="NAME",
                   help="fault cases only for these servers (default: every server the plan gives them)")
    p.add_argument("--jobs", type=int, default=JOBS, help=f"cells at once (default {JOBS})")
    p.add_argument("--no-build", action="store_true", help="use the echoconf image as it is (no build check)")
    p.add_argument("--cell-timeout", type=float, default=900.0, help="bound on one harness run (s)")
    return p.parse_args(argv)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so that the lab removes its containers and networks


def plan_for(args: argparse.Namespace, server: str, prof: str) -> tuple[str, bool]:
    suite, faults = PLAN.get(prof, ("quick", False))
    if args.full:
        suite, faults = "default", True
    if args.profile:
        suite = args.profile
    if args.faults:
        faults = True
    if args.fault_servers and server not in args.fault_servers:
        faults = False
    if args.no_faults:
        faults = False
    return suite, faults


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    reports = (args.reports or ROOT / "reports" / f"docker-{stamp}").resolve()
    reports.mkdir(parents=True, exist_ok=True)
    log(f"matrix: reports go to {reports}")
    try:
        if args.no_build:
            de.client().images.get(de.IMAGE)
            image = de.IMAGE
        else:
            image = ensure_images(ROOT, log=log)
        cleanup_stale(log=log)
        if args.image:
            de.client().images.get(args.image)
    except Exception as e:  # noqa: BLE001 - any failure to set up is a harness error
        log(f"matrix: error: {e}")
        return 2
    if not harness_usable():
        log(f"matrix: error: {HARNESS} run --help fails: the harness is not usable")
        return 2
    profiles = args.env_profile or list(de.ENV_PROFILES)
    if args.image:
        servers, run_image = ["image"], args.image
    else:
        servers, run_image = args.server or list(reference_servers()), image
        unknown = [s for s in servers if s not in reference_servers()]
        if unknown:
            log(f"matrix: error: {', '.join(unknown)}: not a reference server of the registry "
                f"({' '.join(reference_servers())})")
            return 2
    command = shlex.split(args.command_in_image) if args.command_in_image else None
    todo = [(server, prof, *plan_for(args, server, prof)) for server in servers for prof in profiles]
    harness = "conformance/echoconf run --target, via echoconf.image.run_profile"
    log(f"matrix: {len(todo)} cells ({len(servers)} servers x {len(profiles)} profiles), {args.jobs} at once; "
        f"suite per cell: " + ", ".join(f"{p} {plan_for(args, servers[0], p)[0]}" for p in profiles))
    # Longest cells first, so that two at a time finish together.
    cost = {"thorough": 4, "default": 2, "quick": 1}
    order = sorted(range(len(todo)), key=lambda i: -(cost[todo[i][2]] + todo[i][3]))
    results: dict[int, Cell] = {}
    try:
        with Lab(ipv6=True, log=log) as lab, concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
            futs = {pool.submit(run_cell, lab, run_image, server, prof, reports, suite, faults,
                                args.cell_timeout, args.port, command): i
                    for i in order for server, prof, suite, faults in [todo[i]]}
            try:
                for f in concurrent.futures.as_completed(futs):
                    results[futs[f]] = f.result()
            except BaseException:
                for f in futs:
                    f.cancel()
                img.interrupt_children()  # the running cells end now, not when their suites do
                raise
    except KeyboardInterrupt:
        log("matrix: interrupted; containers and networks removed")
        return 2
    except de.DockerEnvError as e:
        log(f"matrix: error: {e}")
        return 2
    cells = [results[i] for i in range(len(todo))]
    status = max((c.status for c in cells), default=2)
    meta = {"image": args.image or image, "suite_profile": ", ".join(
                f"{p} {plan_for(args, servers[0], p)[0]}" for p in profiles),
            "profiles": profiles, "jobs": args.jobs,
            "when": datetime.datetime.now().isoformat(timespec="seconds"), "status": status,
            "duration": time.monotonic() - started, "harness": harness, "host": socket.gethostname()}
    md = markdown(cells, meta)
    (reports / "matrix.md").write_text(md)
    (reports / "matrix.html").write_text(html_page(cells, meta))
    (reports / "matrix.json").write_text(json.dumps(
        {"version": 1, **meta, "cells": [{"server": c.server, "profile": c.profile, "suite": c.suite,
                                          "status": c.status, "server_state": c.server_state, "note": c.note,
                                          "families": {k: dict(v) for k, v in c.families.items()},
                                          "failures": c.failures, "duration": round(c.duration, 2),
                                          "report": c.report}
                                         for c in cells]}, indent=2) + "\n")
    junit(cells, reports)
    print(md)
    log(f"matrix: {['PASS', 'FAIL', 'ERROR'][status]} in {meta['duration']:.0f}s; "
        f"{reports / 'matrix.md'}, {reports / 'matrix.html'}, {reports / 'matrix.json'}, {reports / 'junit.xml'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
