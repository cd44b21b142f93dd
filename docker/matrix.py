#!/usr/bin/python3
"""The conformance matrix in Docker: every server image × every hostile profile.

For each (server, profile) cell: start the server in a container on an internal Docker network
under the profile, run the conformance suite against it (`conformance/echoconf run --target`,
or a built-in smoke check when the harness is not usable), then the fault checks across the
container boundary (pause/resume, network cut, kill/restart). Writes REPORTS/matrix.md and a
self-contained REPORTS/matrix.html, each cell's harness reports under REPORTS/<server>/<profile>/.

Exit status: 0 every cell passed, 1 some case failed, 2 usage, harness or Docker error.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import html
import json
import os
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

SERVERS = ["echo-blocking", "echo-threaded", "echo-select", "echo-poll", "echo-epoll"]
# Capabilities the harness must not assume of a server, by server name.
WITHOUT = {"echo-blocking": ["concurrent"]}
# Cases a profile makes impossible to pass, with why: expected failures (one that passes fails).
PROFILE_XFAIL = {
    "low-nofile": ["echo.concurrent=64 concurrent clients need more than RLIMIT_NOFILE 64 descriptors; "
                   "closing the extra ones promptly is the correct answer"],
}
HARNESS = ROOT / "conformance" / "echoconf"
BAD = ("failed", "error", "xpassed")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Cell:
    server: str
    profile: str
    families: dict[str, collections.Counter[str]] = field(default_factory=dict)
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (case id, outcome, detail)
    status: int = 0  # 0 / 1 / 2 like the harness
    server_state: str = "alive"
    duration: float = 0.0
    report: str = ""
    note: str = ""

    def add(self, case_id: str, outcome: str, detail: str = "") -> None:
        fam = case_id.split(".", 1)[0]
        self.families.setdefault(fam, collections.Counter())[outcome] += 1
        if outcome in BAD:
            self.failures.append((case_id, outcome, detail))
            self.status = max(self.status, 1)


def harness_usable() -> bool:
    if not HARNESS.exists():
        return False
    try:
        proc = subprocess.run([sys.executable, str(HARNESS), "run", "--help"], capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0 and "--target" in proc.stdout


def run_harness(cell: Cell, srv: de.ServerContainer, out: Path, suite_profile: str, timeout: float) -> None:
    argv = [sys.executable, str(HARNESS), "run", "--target", srv.target, "--report", str(out),
            "--profile", suite_profile, "--no-summary"]
    for cap in WITHOUT.get(cell.server, []):
        argv += ["--without", cap]
    for xf in PROFILE_XFAIL.get(cell.profile, []):
        if not (xf.startswith("echo.concurrent=") and "concurrent" in WITHOUT.get(cell.server, [])):
            argv += ["--xfail", xf]
    log(f"    $ {' '.join(shlex.quote(a) for a in argv[1:])}")
    with open(out / "harness.log", "w") as f:
        try:
            proc = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = 2
            cell.note = f"harness did not finish within {timeout:.0f}s"
    try:
        doc = json.loads((out / "report.json").read_text())
    except (OSError, ValueError) as e:
        cell.status = 2
        cell.note = cell.note or f"harness exit {rc}, no report.json ({e}); see {out / 'harness.log'}"
        return
    for c in doc.get("cases", []):
        d = c.get("detail") or {}
        msg = d.get("message", "") if isinstance(d, dict) else str(d)
        cell.add(c["id"], c["outcome"], msg)
    for h in (doc.get("summary") or {}).get("harness_errors") or []:
        cell.note = (cell.note + "; " if cell.note else "") + f"harness error: {h}"
    cell.status = max(cell.status, rc if rc in (0, 1, 2) else 2)
    cell.report = str((out / "report.md").relative_to(out.parents[1]))


def smoke(cell: Cell, srv: de.ServerContainer) -> None:
    """The harness is not usable: a minimal echo + half-close check, so the path is testable."""
    why = de.probe(srv.address, srv.port)
    cell.add("smoke.echo", "passed" if why is None else "failed", why or "")
    sent, got, err = de.stream_with_fault(srv.address, srv.port, 1 << 20, lambda: None, deadline=15.0)
    ok = got == sent and err is None
    cell.add("smoke.half-close", "passed" if ok else "failed",
             "" if ok else f"{len(got)} of {len(sent)} bytes back, then EOF; {err or ''}")


def run_cell(lab: de.Lab, image: str, server: str, prof: str, reports: Path, use_harness: bool,
             suite_profile: str, faults: bool, timeout: float) -> Cell:
    cell = Cell(server, prof)
    start = time.monotonic()
    out = reports / server / prof
    out.mkdir(parents=True, exist_ok=True)
    cmd = None if server == "image" else [server, "--port", "{port}"]
    try:
        srv = lab.start_server(image, cmd, 7, prof, name=server)
    except de.DockerEnvError as e:
        cell.status, cell.note = 2, f"server did not start: {str(e).splitlines()[0]}"
        cell.server_state = "never listened"
        return cell
    log(f"  {server} / {prof}: {srv.target} ({srv.name})")
    try:
        if use_harness:
            run_harness(cell, srv, out, suite_profile, timeout)
        else:
            smoke(cell, srv)
        if not srv.alive():
            cell.server_state = srv.exit_reason() or "dead"
            cell.status = max(cell.status, 1)
        elif faults:
            for r in de.fault_checks(srv):
                log(f"    {r.outcome:7} {r.id:28} {r.detail}")
                cell.add(r.id, r.outcome, r.detail)
                if not srv.alive():
                    break
            if not srv.alive():
                cell.server_state = srv.exit_reason() or "dead"
        (out / "docker.json").write_text(json.dumps(
            {"server": srv.describe(), "server_state": cell.server_state,
             "families": {k: dict(v) for k, v in cell.families.items()},
             "failures": cell.failures, "note": cell.note}, indent=2) + "\n")
    finally:
        logs = srv.logs()
        reason = srv.stop()
        (out / "server.log").write_text(logs)
        if cell.server_state == "alive" and reason not in (None, "exited 0"):
            cell.server_state = f"SIGTERM: {reason}"
    cell.duration = time.monotonic() - start
    log(f"    -> {['PASS', 'FAIL', 'ERROR'][cell.status]} in {cell.duration:.1f}s; server {cell.server_state}"
        + (f"; {cell.note}" if cell.note else ""))
    return cell


# ---------------------------------------------------------------------------------------------
# Output


def family_order(cells: list[Cell]) -> list[str]:
    known = ["echo", "partial", "close", "robust", "state", "smoke", "docker"]
    seen = {f for c in cells for f in c.families}
    return [f for f in known if f in seen] + sorted(seen - set(known))


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
           f"Image `{meta['image']}`, suite profile `{meta['suite_profile']}`, {meta['when']}, "
           f"{meta['duration']:.0f}s, exit status {meta['status']}. Harness: {meta['harness']}.", "",
           "Profiles: " + "; ".join(f"`{p}`: {de.PROFILES[p].description}" for p in meta["profiles"]), "",
           "| server | profile | " + " | ".join(fams) + " | server | verdict |",
           "|---|---|" + "---|" * len(fams) + "---|---|"]
    for c in cells:
        row = [cell_text(c.families.get(f))[0] for f in fams]
        verdict = ["PASS", "FAIL", "ERROR"][c.status]
        out.append(f"| {c.server} | {c.profile} | " + " | ".join(row) + f" | {c.server_state} | {verdict} |")
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
        rows.append(f"<tr><td>{e(c.server)}</td><td>{e(c.profile)}</td>{''.join(tds)}"
                    f'<td class="{state_cls}">{e(c.server_state)}</td>'
                    f'<td class="{"good" if c.status == 0 else "bad"}">{v}{link}</td></tr>')
    details = []
    for c in cells:
        if not (c.failures or c.note):
            continue
        items = "".join(f"<li><code>{e(cid)}</code> {e(o)}: {e(d)}</li>" for cid, o, d in c.failures)
        note = f"<p>{e(c.note)}</p>" if c.note else ""
        details.append(f"<details open><summary>{e(c.server)} / {e(c.profile)}</summary>{note}<ul>{items}</ul></details>")
    profs = "".join(f"<li><code>{e(p)}</code>: {e(de.PROFILES[p].description)}</li>" for p in meta["profiles"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>echoconf Docker matrix</title><style>{CSS}</style></head>
<body><h1>echoconf in Docker: conformance matrix</h1>
<p>Image <code>{e(meta['image'])}</code>, suite profile <code>{e(meta['suite_profile'])}</code>, {e(meta['when'])},
{meta['duration']:.0f}s, exit status <b>{meta['status']}</b>. Harness: {e(meta['harness'])}.</p>
<ul>{profs}</ul>
<table><tr><th>server</th><th>profile</th>{''.join(f'<th>{e(f)}</th>' for f in fams)}<th>server</th><th>verdict</th></tr>
{''.join(rows)}</table>
{'<h2>Failures</h2>' + ''.join(details) if details else '<p>No failures.</p>'}
</body></html>
"""


# ---------------------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reports", type=Path, help="reports folder (default: reports/docker-<time>)")
    p.add_argument("--server", action="append", default=[], help=f"server(s) of the image (default: {' '.join(SERVERS)})")
    p.add_argument("--profile", action="append", default=[], choices=list(de.PROFILES),
                   help="hostile profile(s) (default: all)")
    p.add_argument("--image", help="run this image (its own command, listening on --port) instead of the servers")
    p.add_argument("--port", type=int, default=7, help="the port --image listens on (default 7)")
    p.add_argument("--suite-profile", default="default", choices=["quick", "default", "thorough"],
                   help="the harness's own profile (depth of the suite)")
    p.add_argument("--no-faults", action="store_true", help="skip pause/cut/kill checks")
    p.add_argument("--smoke", action="store_true", help="built-in smoke check instead of the harness")
    p.add_argument("--no-build", action="store_true", help="use the echoconf image as it is (no build check)")
    p.add_argument("--cell-timeout", type=float, default=600.0, help="bound on one harness run (s)")
    return p.parse_args(argv)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so that the lab removes its containers and networks


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
            image = de.ensure_images(ROOT, log=log)
        de.cleanup_stale(log=log)
    except Exception as e:  # noqa: BLE001 - any failure to set up is a harness error
        log(f"matrix: error: {e}")
        return 2
    use_harness = not args.smoke and harness_usable()
    harness = f"conformance/echoconf run --target (suite profile {args.suite_profile})" if use_harness \
        else "built-in smoke check (echo + half-close)"
    log(f"matrix: suite: {harness}")
    profiles = args.profile or list(de.PROFILES)
    if args.image:
        servers, run_image = ["image"], args.image
    else:
        servers, run_image = args.server or SERVERS, image
    cells: list[Cell] = []
    try:
        with de.Lab(log=log) as lab:
            for server in servers:
                for prof in profiles:
                    cells.append(run_cell(lab, run_image, server, prof, reports, use_harness,
                                          args.suite_profile, not args.no_faults, args.cell_timeout))
    except KeyboardInterrupt:
        log("matrix: interrupted; containers and networks removed")
        return 2
    except de.DockerEnvError as e:
        log(f"matrix: error: {e}")
        return 2
    status = max((c.status for c in cells), default=2)
    meta = {"image": args.image or image, "suite_profile": args.suite_profile, "profiles": profiles,
            "when": datetime.datetime.now().isoformat(timespec="seconds"), "status": status,
            "duration": time.monotonic() - started, "harness": harness, "host": socket.gethostname()}
    md = markdown(cells, meta)
    (reports / "matrix.md").write_text(md)
    (reports / "matrix.html").write_text(html_page(cells, meta))
    (reports / "matrix.json").write_text(json.dumps(
        {"version": 1, **meta, "cells": [{"server": c.server, "profile": c.profile, "status": c.status,
                                          "server_state": c.server_state, "note": c.note,
                                          "families": {k: dict(v) for k, v in c.families.items()},
                                          "failures": c.failures, "duration": round(c.duration, 2)}
                                         for c in cells]}, indent=2) + "\n")
    print(md)
    log(f"matrix: {['PASS', 'FAIL', 'ERROR'][status]} in {meta['duration']:.0f}s; "
        f"{reports / 'matrix.md'}, {reports / 'matrix.html'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
