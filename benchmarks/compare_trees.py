"""Time one workload of `run.py` on an earlier commit and on this checkout, side by side.

A refactor must not slow rendering down: this runs the workload's rows with each tree's own `run.py`
and code, alternating (baseline, current, current, baseline, ...) so a busy neighbour or a slow drift of
the machine's speed slows both alike, and reports per row the median total of each, their ratio, the
ratio within each round and the baseline's own range (its noise).

    python benchmarks/compare_trees.py --baseline b7b3387 --workload families --threads 1 --rounds 4 --repeats 2 \
        --methods "sd15, plan: reference" "sdxl (Lightning)" "sdxl, plan: reference" "sd3 (Flash)" "sd3, plan: reference"

The baseline is checked out with `git worktree` into a temporary folder (removed afterwards). Each tree
builds its presets into a cache of its own, so no tree reads models written by the other's code.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def run_once(tree: Path, cache: Path, out: Path, args) -> dict:
    """One `run.py` process of `tree` (its own code first on the path); its JSON result."""
    command = [sys.executable, str(tree / "benchmarks" / "run.py"), "--workload", args.workload,
               "--repeats", str(args.repeats), "--out", str(out)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.methods:
        command += ["--methods", *args.methods]
    env = {**os.environ, "PYTHONPATH": str(tree), "SEMANTICDRAW_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    subprocess.run(command, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def commit_of(tree: Path) -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True,
                          check=True).stdout.strip()


def compare(runs: dict[str, list[dict]]) -> list[dict]:
    """Per row: every timed total of each tree, their medians, current / baseline, and the baseline's spread."""
    rows = []
    for first in runs["baseline"][0]["rows"]:
        name = first["method"]
        totals = {tree: [t for result in results for row in result["rows"] if row["method"] == name
                         for t in row["total_all_repeats"]] for tree, results in runs.items()}
        rows.append(row_of(name, totals, len(runs["baseline"])))
    return rows


def row_of(name: str, totals: dict[str, list[float]], rounds: int) -> dict:
    """Medians, their ratio, the ratio within each round (neighbours in time) and the baseline's range."""
    medians = {tree: statistics.median(values) for tree, values in totals.items()}
    per_round = len(totals["baseline"]) // rounds
    paired = [statistics.median(totals["current"][k * per_round:(k + 1) * per_round])
              / statistics.median(totals["baseline"][k * per_round:(k + 1) * per_round]) for k in range(rounds)]
    base = totals["baseline"]
    return {"method": name, "totals": totals, "median": medians,
            "ratio": round(medians["current"] / medians["baseline"], 4),
            "ratio_per_round": [round(r, 4) for r in paired],
            "baseline_range": round(max(base) / min(base) - 1, 4)}


def markdown(result: dict) -> str:
    lines = ["| row | baseline s | current s | × baseline | × baseline per round | baseline max / min |",
             "|---|---:|---:|---:|---|---:|"]
    for row in result["rows"]:
        rounds = ", ".join(f"{r:.2f}" for r in row["ratio_per_round"])
        lines.append(f"| {row['method']} | {row['median']['baseline']:.2f} | {row['median']['current']:.2f} "
                     f"| {row['ratio']:.3f} | {rounds} | {1 + row['baseline_range']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="the earlier commit (any git revision)")
    parser.add_argument("--workload", default="families")
    parser.add_argument("--rounds", type=int, default=3, help="processes per tree, alternating")
    parser.add_argument("--repeats", type=int, default=1, help="timed renders per row in each process")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--methods", nargs="*", help="rows both trees have (the default plan always runs)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="semanticdraw-compare-") as scratch:
        scratch = Path(scratch)
        baseline = scratch / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(baseline), args.baseline], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            trees = {"baseline": baseline, "current": ROOT}
            runs: dict[str, list[dict]] = {"baseline": [], "current": []}
            for round_ in range(args.rounds):
                order = list(trees.items()) if round_ % 2 == 0 else list(trees.items())[::-1]  # ABBA: drift cancels
                for name, tree in order:
                    result = run_once(tree, scratch / f"cache-{name}", scratch / f"{name}-{round_}.json", args)
                    runs[name].append(result)
                    print(f"round {round_ + 1} {name}: " + ", ".join(
                        f"{row['method']} {row['total']:.2f}s" for row in result["rows"]), file=sys.stderr, flush=True)
            commits = {name: commit_of(tree) for name, tree in trees.items()}
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=ROOT, check=False)

    machine = runs["current"][0]["machine"]
    load = [result["machine"]["load_average_start"][0] for results in runs.values() for result in results]
    result = {"workload": args.workload, "commits": commits, "rounds": args.rounds, "repeats": args.repeats,
              "machine": {**machine, "load_average_start": [min(load), max(load)]}, "rows": compare(runs)}
    out = args.out or RESULTS / f"compare-{args.workload}-{commits['baseline']}-{machine['slug']}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.workload}: {commits['current']} against {commits['baseline']}, {machine['cpu']} "
          f"({machine['torch_threads']} torch threads), {args.rounds} rounds x {args.repeats} repeats")
    print(markdown(result))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
