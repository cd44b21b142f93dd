"""What `echoconf bench` shows and writes: a progress line while it runs, the table, the plots
(throughput bars, latency percentiles, memory against connections; PNG and SVG) and one HTML
page that puts them together. It reads bench.json's document only (bench.py makes it)."""

from __future__ import annotations

import html as htmllib
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress as RichProgress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from .benchload import MODES

PERCENTILES = [("p50_us", 0.5), ("p90_us", 0.9), ("p99_us", 0.99), ("p999_us", 0.999), ("max_us", 1.0)]


class Progress:
    """A spinner with what is being measured now (stderr, so the table stays clean on stdout)."""

    def __enter__(self) -> "Progress":
        self._p = RichProgress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                               console=Console(stderr=True), transient=True)
        self._p.__enter__()
        self._task = self._p.add_task("starting", total=None)
        return self

    def say(self, what: str) -> None:
        if what:
            self._p.update(self._task, description=f"measuring {what}")

    def __exit__(self, *exc: object) -> None:
        self._p.__exit__(*exc)


def cell(d: dict[str, Any]) -> str:
    if "wrong" in d:
        return f"[red]WRONG[/]: {d['wrong'][:40]}"
    if d.get("value") is None:
        return f"[dim]– {d.get('unavailable', '')[:30]}[/]"
    v = d["value"]
    text = f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"
    ratios = [f"{d['to_ceiling']:.2f}×ceil"] if "to_ceiling" in d else []
    if "to_first" in d:
        ratios.append(f"{d['to_first']:.2f}×")
    return text + (f" [dim]({', '.join(ratios)})[/]" if ratios else "")


def table(doc: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console(highlight=False, width=200)
    modes = doc["settings"]["modes"]
    ceil = doc["ceiling"]
    m = doc["machine"]
    t = Table(title=f"echoconf bench: median of {doc['settings']['repeat']} runs of {doc['settings']['seconds']:g} s; "
                    f"ratios to the loopback ceiling ({ceil['MiB_per_second']:,.0f} MiB/s, {ceil['how']}) and to "
                    f"the first server; {m['cpus']} CPUs, {m['cpu_model']}")
    t.add_column("server")
    for mode in modes:
        t.add_column(f"{mode} ({MODES[mode].unit})", justify="right")
    t.add_column("p50 / p99 µs", justify="right")
    t.add_column("hold: KiB/conn", justify="right")
    for s in doc["servers"]:
        pp = s["modes"].get("pingpong", {}).get("median", {})
        lat = f"{pp['p50_us']:.0f} / {pp['p99_us']:.0f}" if "p50_us" in pp and "p99_us" in pp else "–"
        per = s["modes"].get("hold", {}).get("per_connection_kib")
        name = s["name"] + (f" [red](died: {s['died']})[/]" if "died" in s else "")
        t.add_row(name, *[cell(s["modes"][mode]) for mode in modes], lat, f"{per:.1f}" if per is not None else "–")
    console.print(t)
    if doc["status"]:
        console.print("[red]a server echoed wrong bytes or died: exit 1[/]")


def plots(doc: dict[str, Any], out: Path) -> list[Path]:
    """throughput.{png,svg}, latency.{png,svg}, memory.{png,svg}: those the document has data for."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    names = [s["name"] for s in doc["servers"]]

    def save(fig: Any, stem: str) -> None:
        fig.tight_layout()
        for ext in ("png", "svg"):
            path = out / f"{stem}.{ext}"
            fig.savefig(path, dpi=110)
            written.append(path)
        plt.close(fig)

    streams = [m for m in doc["settings"]["modes"] if MODES[m].unit == "MiB/s"]
    if streams:
        fig, ax = plt.subplots(figsize=(8, 4))
        width = 0.8 / len(streams)
        for k, mode in enumerate(streams):
            vals = [s["modes"].get(mode, {}).get("value") or 0 for s in doc["servers"]]
            ax.bar([i + k * width for i in range(len(names))], vals, width, label=mode)
        ax.axhline(doc["ceiling"]["MiB_per_second"], color="grey", linestyle="--",
                   label=f"one-way loopback ({doc['ceiling']['how']})")
        ax.set_xticks([i + width * (len(streams) - 1) / 2 for i in range(len(names))], names, rotation=20)
        ax.set_ylabel("echoed MiB/s")
        ax.set_title("Echo throughput")
        ax.legend(fontsize="small")
        save(fig, "throughput")

    lat = [(s["name"], s["modes"].get("pingpong", {}).get("median", {})) for s in doc["servers"]]
    lat = [(n, m) for n, m in lat if all(k in m for k, _ in PERCENTILES)]
    if lat:
        fig, ax = plt.subplots(figsize=(8, 4))
        for n, m in lat:
            xs = [m[k] for k, _ in PERCENTILES]
            ys = [q for _, q in PERCENTILES]
            ax.step(xs, ys, where="post", marker="o", label=n)
        ax.set_xscale("log")
        ax.set_xlabel("round-trip latency, µs (log)")
        ax.set_ylabel("fraction of round trips")
        ax.set_title("Ping-pong latency percentiles (p50, p90, p99, p99.9, max)")
        ax.legend(fontsize="small")
        save(fig, "latency")

    mem = [(s["name"], s["modes"].get("hold", {}).get("samples") or []) for s in doc["servers"]]
    mem = [(n, sm) for n, sm in mem if len(sm) > 1]
    if mem:
        fig, ax = plt.subplots(figsize=(8, 4))
        for n, sm in mem:
            ax.plot([c for c, _ in sm], [r / 1024 for _, r in sm], label=n)
        ax.set_xlabel("connections open")
        ax.set_ylabel("server RSS, MiB")
        ax.set_title("Memory against connections (hold)")
        ax.legend(fontsize="small")
        save(fig, "memory")
    return written


def html(doc: dict[str, Any], out: Path, files: list[Path]) -> Path:
    """bench.html: the table as HTML, then the SVG plots."""
    e = htmllib.escape
    modes = doc["settings"]["modes"]
    head = "".join(f"<th>{e(m)} ({e(MODES[m].unit)})</th>" for m in modes)
    rows = []
    for s in doc["servers"]:
        cells = []
        for m in modes:
            d = s["modes"][m]
            if "wrong" in d:
                cells.append(f"<td class=bad>wrong: {e(d['wrong'])}</td>")
            elif d.get("value") is None:
                cells.append(f"<td class=na>– {e(d.get('unavailable', ''))}</td>")
            else:
                r = []
                if "to_ceiling" in d:
                    r.append(f"{d['to_ceiling']:.2f}× ceiling")
                if "to_first" in d:
                    r.append(f"{d['to_first']:.2f}× first")
                cells.append(f"<td>{d['value']:,.1f}<br><small>{e(', '.join(r))}</small></td>")
        rows.append(f"<tr><th>{e(s['name'])}</th>{''.join(cells)}</tr>")
    imgs = "".join(f'<figure><img src="{e(f.name)}" alt="{e(f.stem)}"></figure>' for f in files if f.suffix == ".svg")
    m, c = doc["machine"], doc["ceiling"]
    page = f"""<!doctype html>
<html lang="en"><meta charset="utf-8"><title>echoconf bench</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:4px 8px;text-align:right}}.bad{{color:#b00}}.na{{color:#888}}img{{max-width:48em}}</style>
<h1>echoconf bench</h1>
<p>{e(doc['when'])} on {e(m['host'])}: {m['cpus']} CPUs, {e(m['cpu_model'])}, Linux {e(m['kernel'])}.
Median of {doc['settings']['repeat']} runs of {doc['settings']['seconds']:g} s per mode.
Loopback ceiling: {c['MiB_per_second']:,.0f} MiB/s ({e(c['how'])}). Ratios compare across machines; the
absolute figures are this machine's.</p>
<table><tr><th>server</th>{head}</tr>{''.join(rows)}</table>
{imgs}
<p><a href="bench.json">bench.json</a></p>
</html>
"""
    path = out / "bench.html"
    path.write_text(page)
    return path

