"""Prints scripts/bench-peers' JSON lines (files, or stdin) as one markdown
table: a row per workload, a column per system and durability; then each
system's version and durability, and the notes. Lines not JSON are skipped.
"""

import fileinput
import json
import sys

ORDER = ["noop_one_by_one", "noop_wrk", "noop_wrk_enqueued", "host_cpu_per_job",
         "writer_cpu_per_job", "noop_bulk",
         "latency_p50", "latency_p99", "latency_ack_p50", "latency_ack_p99",
         "commit_apply_mean", "commit_sync_mean", "commit_writes_mean", "wordcount",
         "memory_per_waiting_job", "list_p99", "stats_p99", "metrics_p99"]


def fmt(value):
    if value is None:
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"


def main():
    lines = []
    for raw in fileinput.input():
        raw = raw.strip()
        if not raw.startswith("{"):
            continue
        try:
            lines.append(json.loads(raw))
        except json.JSONDecodeError:
            print(f"table.py: skipped {raw[:80]!r}", file=sys.stderr)
    if not lines:
        sys.exit("table.py: no results")

    columns, cells, units, versions = [], {}, {}, {}
    for line in lines:
        col = (line["system"], line["durability"])
        if col not in columns:
            columns.append(col)
        versions[col] = line["version"]
        cells[(line["workload"], col)] = line
        units.setdefault(line["workload"], line.get("unit", ""))
    # A system's columns side by side, systems in the order they ran.
    systems = list(dict.fromkeys(s for s, _ in columns))
    columns.sort(key=lambda col: systems.index(col[0]))
    workloads = [w for w in ORDER if w in units] + [w for w in units if w not in ORDER]

    print("| workload | " + " | ".join(f"{s}, {d}" for s, d in columns) + " |")
    print("| --- |" + " ---: |" * len(columns))
    for w in workloads:
        row = []
        for col in columns:
            line = cells.get((w, col))
            cell = "" if line is None else fmt(line["value"])
            if line is not None and line.get("unit", units[w]) != units[w]:
                cell += f" {line['unit']}"
            row.append(cell)
        print(f"| {w} ({units[w]}) | " + " | ".join(row) + " |")

    print()
    for system, durability in columns:
        print(f"- {system} {versions[(system, durability)]}: {durability}")

    # Notes, each once per system, with the workloads (and, when it differs
    # between a system's columns, the durability) it is about.
    notes = {}
    for line in lines:
        if line.get("note"):
            key = (line["system"], line["note"])
            entry = notes.setdefault(key, ([], []))
            if line["workload"] not in entry[0]:
                entry[0].append(line["workload"])
            if line["durability"] not in entry[1]:
                entry[1].append(line["durability"])
    if notes:
        print("\nNotes:")
    for (system, note), (ws, ds) in notes.items():
        all_ds = [d for s, d in columns if s == system]
        where = "" if ds == all_ds else f" ({'; '.join(ds)})"
        print(f"- {system}{where}, {', '.join(ws)}: {note}")


if __name__ == "__main__":
    main()
