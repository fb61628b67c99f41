"""A suite's `checks:` evaluated on its stored runs: does an entry beat the best of its rivals on a dataset by more
than the spread between seeds? (e.g. InterFormer against the best non-sequential baseline on the sequential twins).

Per check and dataset: ours = the entry's per-seed metric over its ok runs; best rival = the rival with the best
mean (highest AUC/gAUC, lowest logloss); margin = ours' mean minus the best rival's (sign flipped for logloss, so
a positive margin always means "ours is better"); spread = the larger seed range (max - min over seeds) of the two;
verdict "pass" iff margin > spread, "fail" otherwise, "n/a" when either side has fewer than two ok seeds.
A check passes overall iff every dataset passes.
"""
from __future__ import annotations

import statistics
from collections import defaultdict

from ctrbench.harness.suite import is_entry_or_point
from ctrbench.metrics import METRIC_DIRECTIONS
from ctrbench.runs.records import RunRecord


def _values(records: list[RunRecord], dataset: str, entry: str, metric: str) -> list[float]:
    return [getattr(r, metric) for r in records
            if r.status == "ok" and r.dataset == dataset and r.entry == entry and getattr(r, metric) is not None]


def _entry_points(names: list[str], entries: set[str]) -> list[str]:
    """The stored entries a check names: an entry itself or every point of a grid entry ('name[...]')."""
    return sorted(e for e in entries if any(is_entry_or_point(e, n) for n in names))


def evaluate_check(check, records: list[RunRecord], datasets: list[str]) -> list[dict]:
    """One row per dataset of the check (its own list, else `datasets`) with the numbers behind the verdict."""
    sign = float(METRIC_DIRECTIONS[check.metric])
    present = defaultdict(set)
    for r in records:
        present[r.dataset].add(r.entry)
    rows = []
    for ds in check.datasets or datasets:
        ours = _values(records, ds, check.entry, check.metric)
        rivals = {e: _values(records, ds, e, check.metric) for e in _entry_points(check.rivals, present[ds])}
        rivals = {e: v for e, v in rivals.items() if v}
        row = {"check": check.name, "dataset": ds, "metric": check.metric, "entry": check.entry,
               "entry_mean": statistics.fmean(ours) if ours else None, "entry_seeds": len(ours),
               "best_rival": None, "rival_mean": None, "rival_seeds": 0, "margin": None, "spread": None,
               "verdict": "n/a"}
        if ours and rivals:
            best = max(rivals, key=lambda e: sign * statistics.fmean(rivals[e]))
            theirs = rivals[best]
            row.update(best_rival=best, rival_mean=statistics.fmean(theirs), rival_seeds=len(theirs))
            row["margin"] = sign * (row["entry_mean"] - row["rival_mean"])
            row["spread"] = max(max(ours) - min(ours), max(theirs) - min(theirs))
            if len(ours) >= 2 and len(theirs) >= 2:
                row["verdict"] = "pass" if row["margin"] > row["spread"] else "fail"
        rows.append(row)
    return rows


def overall(rows: list[dict]) -> str:
    """'pass' iff every dataset row passes; 'n/a' if none could be judged; else 'fail'."""
    verdicts = {r["verdict"] for r in rows}
    if verdicts == {"pass"}:
        return "pass"
    return "n/a" if verdicts <= {"n/a"} else "fail"


def checks_markdown(rows: list[dict]) -> str:
    head = ["check", "dataset", "metric", "entry (mean, seeds)", "best rival (mean, seeds)", "margin",
            "seed spread", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def f(v):
        return "–" if v is None else f"{v:.4f}"
    for r in rows:
        lines.append("| " + " | ".join([
            r["check"], r["dataset"], r["metric"], f"{r['entry']} {f(r['entry_mean'])} ({r['entry_seeds']})",
            f"{r['best_rival'] or '–'} {f(r['rival_mean'])} ({r['rival_seeds']})", f(r["margin"]), f(r["spread"]),
            r["verdict"]]) + " |")
    return "\n".join(lines)
