"""report.json (versioned schema), report.md and the end-of-run summary table.
junit.xml comes from pytest's own --junitxml."""

from __future__ import annotations

import collections
import json
import os
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .plugin import EchoconfRun

VERSION = 2
OUTCOMES = ("passed", "failed", "error", "xpassed", "xfailed", "skipped")
BAD = ("failed", "error", "xpassed")  # the outcomes that fail a case: every module reads this one


def environment() -> dict[str, Any]:
    import hypothesis
    import pytest

    return {"python": sys.version.split()[0], "pytest": pytest.__version__,
            "hypothesis": hypothesis.__version__, "platform": platform.platform(),
            "kernel": platform.release(), "cpus": os.cpu_count(), "uid": os.geteuid()}


def build(run: "EchoconfRun", cases: list[dict[str, Any]], status: int) -> dict[str, Any]:
    counts = collections.Counter(c["outcome"] for c in cases)
    must = [c for c in cases if c["outcome"] in BAD and c["grade"] == "must"]
    should = [c for c in cases if c["outcome"] in BAD and c["grade"] == "should"]
    target: dict[str, Any] = {}
    server_log: list[dict[str, Any]] = []
    if run.target is not None:
        target = run.target_desc or run.target.describe()
        server_log = list(getattr(run.target, "history", []))
    elif run.spec is not None:
        target = {"kind": "builtin" if run.spec.announces else "command",
                  "command": " ".join(run.spec.argv)}
    elif hasattr(run, "remote"):
        target = run.remote.describe()
    return {
        "version": VERSION,
        "implementation": run.impl.key if run.impl else None,
        "target": target,
        "profile": run.profile.name,
        "seed": run.seed,
        "hang_bound": run.hang_bound,
        "time_scale": getattr(run, "time_scale", None),
        "strict": run.strict,
        "capabilities": sorted(run.capabilities),
        "transport": run.transport,
        "expected_failures": run.expected,
        "environment": environment(),
        "cases": cases,
        "summary": {"total": len(cases), **{o: counts.get(o, 0) for o in OUTCOMES},
                    "exit_status": status,
                    "must_failed": len(must), "should_failed": len(should),
                    "conformant": not must and not run.harness_errors,
                    "recommendations": [{"id": c["id"], "message": (c["detail"] or {}).get("message", "")}
                                        for c in should],
                    "duration": round(__import__("time").monotonic() - run.started, 3),
                    "harness_errors": run.harness_errors},
        "server_output": server_log,
        "fresh_servers": run.fresh_history,
        "replay": replay_hint(run),
    }


def replay_hint(run: "EchoconfRun") -> str:
    if run.impl:
        src = f"--impl {run.impl.key}"
    elif run.spec is not None and run.spec.announces:
        src = f"--builtin {run.spec.label}"
    elif run.spec is not None:
        src = f"--command {json.dumps(run.spec.label)}"
    elif run.config.option.echoconf_replay_as:
        src = run.config.option.echoconf_replay_as  # an --image run: its container's address is gone
    else:
        src = f"--target {run.remote.name}"
    hang = f" --hang-bound {run.hang_bound:g}" if run.hang_bound else ""
    strict = " --strict" if run.strict else ""
    scale = getattr(run, "time_scale", None) or {}
    # a measured scale varies from run to run: the replay pins the one this run used
    pinned = f" --time-scale {scale['value']:g}" if scale.get("value", 1.0) != 1.0 else ""
    opt = run.config.option
    # What the command line declared about the server (a registry entry declares its own).
    declared = "".join([f" --capability {c}" for c in opt.echoconf_capability]
                       + [f" --without {c}" for c in opt.echoconf_without]
                       + ([f" --transport {opt.echoconf_transport}"] if opt.echoconf_transport else []))
    return (f"conformance/echoconf run {src}{declared} --profile {run.profile.name} --seed {run.seed}"
            f"{hang}{strict}{pinned}")


def write(directory: Path, doc: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    (directory / "report.md").write_text(markdown(doc))


def subject(doc: dict[str, Any]) -> str:
    """What was tested, in a few words: the implementation, the command, the image under its
    environment profile, or the address."""
    t = doc["target"]
    if t.get("kind") == "docker" and t.get("image"):
        return f"image {t['image']} under environment profile {t.get('env_profile') or '?'}"
    return doc["implementation"] or t.get("command") or t.get("address")


def markdown(doc: dict[str, Any]) -> str:
    s = doc["summary"]
    out = [f"# echoconf report: {subject(doc)}", "",
           f"Profile `{doc['profile']}`, seed {doc['seed']}, exit status {s['exit_status']}. "
           f"Replay: `{doc['replay']}`", "",
           " · ".join(f"{o}: {s[o]}" for o in OUTCOMES if s[o]), "",
           verdict_line(doc), "",
           "| case | level | grade | outcome | time | detail |", "|---|---|---|---|---|---|"]
    for c in doc["cases"]:
        msg = ((c.get("detail") or {}).get("message") or "").replace("|", "\\|").replace("\n", " ")
        out.append(f"| {c['id']} | {c['level']} | {c['grade'].upper()} | {c['outcome']} | "
                   f"{c['duration']:.2f}s | {msg} |")
    for c in doc["cases"]:
        d = c.get("detail") or {}
        if c["outcome"] in BAD and len(d) > 1:
            out += ["", f"## {c['id']}: {c['outcome']}", "", d.get("message", ""), "", "```"]
            out += [f"{k}: {v}" for k, v in d.items() if k != "message"]
            out.append("```")
    for n in left_behind_notes(doc):
        out += ["", f"**Note:** {n}"]
    for h in s.get("harness_errors") or []:
        out += ["", f"**Harness error:** {h}"]
    return "\n".join(out) + "\n"


def left_behind_notes(doc: dict[str, Any]) -> list[str]:
    """One observation per server instance that left processes it had started running when it
    was ended (the harness killed them): not a verdict, a fact worth knowing."""
    out = []
    for h in [*(doc.get("server_output") or []), *(doc.get("fresh_servers") or [])]:
        left = h.get("left_behind") or []
        if left:
            n = len(left)
            shown = "; ".join(left[:3]) + (f"; and {n - 3} more" if n > 3 else "")
            where = f" (private instance of {h['case']})" if h.get("case") else ""
            out.append(f"the server (pid {h.get('pid')}){where} left {n} process{'es' if n != 1 else ''} it "
                       f"had started running when it was ended; the harness killed {'them' if n != 1 else 'it'}: "
                       f"{shown}")
    return out


def print_summary(console: Any, doc: dict[str, Any]) -> None:
    from rich.table import Table

    fams: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for c in doc["cases"]:
        fams[c["id"].split(".", 1)[0]][c["outcome"]] += 1
    s = doc["summary"]
    table = Table(title=f"echoconf: {subject(doc)} (profile {doc['profile']}, seed {doc['seed']})")
    table.add_column("family")
    for o in OUTCOMES:
        table.add_column(o, justify="right")
    for fam, cnt in fams.items():
        table.add_row(fam, *[_cell(o, cnt.get(o, 0)) for o in OUTCOMES])
    table.add_row("[b]total[/b]", *[_cell(o, s[o]) for o in OUTCOMES])
    console.print(table)
    for c in doc["cases"]:
        if c["outcome"] in BAD:
            d = c.get("detail") or {}
            label = (f"[bold red]{c['outcome']}[/] {c['grade'].upper()}"
                     if c["grade"] == "must" or doc.get("strict")
                     else "[yellow]recommendation not met[/] SHOULD")
            console.print(f"{label} {c['id']}: {d.get('message', '')}", highlight=False, markup=True)
            for key in ("offset", "sent", "received", "end", "expected", "observed"):
                if d.get(key) is not None:
                    console.print(f"    {key}: {d[key]}", highlight=False, markup=False)
            if d.get("falsifying_example"):
                console.print("    " + d["falsifying_example"].replace("\n", "\n    "),
                              highlight=False, markup=False)
    for n in left_behind_notes(doc):
        console.print(f"[yellow]note:[/] {n}", markup=True, highlight=False)
    for h in s.get("harness_errors") or []:
        console.print(f"[bold red]harness error:[/] {h}", markup=True, highlight=False)
    verdict = {0: "[green]PASS[/]", 1: "[bold red]FAIL[/]", 2: "[bold red]HARNESS ERROR[/]"}
    console.print(f"{verdict.get(s['exit_status'], s['exit_status'])}: {verdict_line(doc)}",
                  markup=True, highlight=False)
    console.print(f"in {s['duration']:.1f}s (exit {s['exit_status']}); replay: {doc['replay']}",
                  highlight=False)


def verdict_line(doc: dict[str, Any]) -> str:
    """One sentence: conformant or not, and the recommendations not met."""
    s = doc["summary"]
    if s["harness_errors"]:
        head = "no verdict (harness error)"
    elif s["must_failed"]:
        head = f"not conformant; {s['must_failed']} MUST case{'s' if s['must_failed'] != 1 else ''} failed"
    else:
        head = "conformant"
    recs = s["recommendations"]
    if not recs:
        return head + ("" if s["must_failed"] or s["harness_errors"] else "; every recommendation met")
    n = len(recs)
    first = recs[0]
    return (f"{head}; {n} recommendation{'s' if n != 1 else ''} not met: {first['id']}"
            f" ({first['message']})" + (f" and {', '.join(r['id'] for r in recs[1:])}" if n > 1 else "")
            + (" [--strict: recommendations not met fail the run]" if doc.get("strict") else ""))


def _cell(outcome: str, n: int) -> str:
    if not n:
        return "[dim]0[/]"
    colour = {"passed": "green", "failed": "red", "error": "red", "xpassed": "red",
              "xfailed": "cyan", "skipped": "yellow"}[outcome]
    return f"[{colour}]{n}[/]"
