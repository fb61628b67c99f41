"""Reports of a suite from the run store: table.md, runs.csv, summary.csv, auc_vs_flops.png, perf_records.csv
(and components.csv where models report components, e.g. an ensemble's members).

- table.md / summary.csv: per dataset × entry, mean ± std over seeds of AUC, gAUC, logloss, NE, the gap to
  the twin oracle's AUC, params, FLOPs/sample and samples/s (a searcher entry shows, per seed, its best
  candidate by the validation metric); a "reference" column beside them: the twin oracle's gAUC / AUC /
  logloss for synthetic data, the suite's published numbers (its `reference:` block) for real data.
- runs.csv: every run of the suite (candidates included), one row each.
- checks.csv (suites with `checks:`): each check's verdict per dataset (harness/checks.py), also in table.md.
- perf_records.csv: every measured run flattened to feature columns (model params, train knobs, dataset
  shape, system knobs) plus its measured cost — the training data of CubicML's performance predictor.
Every file states the command and the machine (CPU, cores, threads, torch, git revision, dates) behind it.
"""
from __future__ import annotations

import json
import textwrap
import math
import statistics
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ctrbench.errors import CtrbenchError
from ctrbench.harness.checks import checks_markdown, evaluate_check, overall
from ctrbench.harness.suite import Suite
from ctrbench.runs.query import first_line, runs_frame
from ctrbench.runs.records import COST, RunRecord
from ctrbench.runs.store import RunStore, utc_now

METRICS = ("auc", "gauc", "logloss", "ne")


@dataclass
class SuiteRuns:
    """A suite's runs as stored: model runs, and per search its summary and candidates."""

    runs: list[RunRecord]
    searches: list[dict] = field(default_factory=list)  # {spec, summary, candidates, best}
    missing: int = 0  # runs of the suite not in the store yet

    @property
    def all(self) -> list[RunRecord]:
        return self.runs + [c for s in self.searches for c in s["candidates"]]


def collect(suite: Suite, store: RunStore) -> SuiteRuns:
    """The stored records of exactly this suite's runs (by config hash) and of its searches."""
    hashes = [r.config_hash for r in suite.runs]
    runs = store.records(hashes=hashes)
    out = SuiteRuns(runs, missing=len(hashes) - len(runs))
    for s in suite.searches:
        summary = store.get_search(s.search_id)
        cands = sorted(store.records(search_id=s.search_id), key=lambda r: r.candidate_index or 0)
        best = next((c for c in cands if summary and c.config_hash == summary.get("best_config_hash")), None)
        if summary is None and s.options.get("evaluation", "train") == "train":
            out.missing += int(s.options.get("budget", 0))
        out.searches.append({"spec": s, "summary": summary, "candidates": cands, "best": best})
    return out


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def summarize(sr: SuiteRuns, reference=None) -> list[dict]:
    """Per (dataset, entry) aggregates over seeds; ok runs only for the metrics, all runs counted. `reference`
    (the suite's ReferenceBlock) gives the published numbers of real-data rows (ref_* keys)."""
    groups: "OrderedDict[tuple, list[RunRecord]]" = OrderedDict()
    labels: dict[tuple, str] = {}
    sources: dict[tuple, str] = {}
    for r in sr.runs:
        groups.setdefault((r.dataset, r.entry), []).append(r)
        labels[(r.dataset, r.entry)] = r.model
        sources[(r.dataset, r.entry)] = r.source
    for s in sr.searches:
        spec = s["spec"]
        key = (spec.dataset.name, spec.entry)
        groups.setdefault(key, [])
        if s["best"] is not None:
            groups[key].append(s["best"])
        labels[key] = f"{spec.model} (best of {len(s['candidates'])}, {spec.searcher} search)"
        sources[key] = spec.dataset.source
    rows = []
    for (dataset, entry), recs in groups.items():
        ok = [r for r in recs if r.status == "ok"]
        row = {"dataset": dataset, "entry": entry, "model": labels[(dataset, entry)],
               "source": sources.get((dataset, entry)), "runs": len(recs),
               "ok": len(ok), "statuses": ",".join(sorted({r.status for r in recs}))}
        for k in METRICS:
            row[f"{k}_mean"], row[f"{k}_std"] = _mean_std([getattr(r, k) for r in ok])
        row["oracle_auc_mean"], _ = _mean_std([r.oracle_auc for r in ok])
        row["oracle_gauc_mean"], _ = _mean_std([r.oracle_gauc for r in ok])
        row["oracle_logloss_mean"], _ = _mean_std([r.oracle_logloss for r in ok])
        published = {}
        if reference is not None and row["source"] == "real":
            base = entry.split("[", 1)[0]  # a grid point uses its entry's reference
            published = reference.values.get(base, {}).get(dataset, {})
        for k in ("gauc", "auc", "logloss", "ne", "params"):
            row[f"ref_{k}"] = published.get(k)
        row["oracle_gap_mean"], row["oracle_gap_std"] = _mean_std(
            [r.oracle_auc - r.auc for r in ok if r.oracle_auc is not None and r.auc is not None])
        for k in COST:
            row[f"{k}_mean"], row[f"{k}_std"] = _mean_std([getattr(r, k) for r in ok])
        rows.append(row)
    return rows


def component_rows(sr: SuiteRuns) -> list[dict]:
    """Per (dataset, entry, component): mean ± std over seeds of the components' test AUC / gAUC / logloss
    (RunRecord.components, e.g. an ensemble's members) and of the model's diagnostics (e.g. fusion weights)."""
    groups: "OrderedDict[tuple, list[RunRecord]]" = OrderedDict()
    for r in sr.runs:
        if r.status == "ok" and (r.components or r.diagnostics):
            groups.setdefault((r.dataset, r.entry), []).append(r)
    rows = []
    for (dataset, entry), recs in groups.items():
        names = list(OrderedDict.fromkeys(n for r in recs for n in r.components))
        for n in names:
            row = {"dataset": dataset, "entry": entry, "component": n, "kind": "metrics"}
            for k in ("auc", "gauc", "logloss"):
                row[f"{k}_mean"], row[f"{k}_std"] = _mean_std([(r.components.get(n) or {}).get(k) for r in recs])
            rows.append(row)
        for n in OrderedDict.fromkeys(n for r in recs for n in r.diagnostics):
            row = {"dataset": dataset, "entry": entry, "component": n, "kind": "diagnostic"}
            row["value_mean"], row["value_std"] = _mean_std([r.diagnostics.get(n) for r in recs])
            rows.append(row)
    return rows


def components_markdown(rows: list[dict]) -> str:
    head = ["dataset", "entry", "component", "AUC", "gAUC", "logloss", "test mean"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r["kind"] == "metrics":
            cells = [_fmt(r["auc_mean"], r["auc_std"]), _fmt(r["gauc_mean"], r["gauc_std"]),
                     _fmt(r["logloss_mean"], r["logloss_std"]), ""]
        else:
            cells = ["", "", "", _fmt(r["value_mean"], r["value_std"])]
        lines.append("| " + " | ".join([r["dataset"], r["entry"], r["component"], *cells]) + " |")
    return "\n".join(lines)


# --- provenance ---------------------------------------------------------------------------------------
def machine_lines(records: list[RunRecord]) -> list[str]:
    """One line per distinct machine/software setup the records ran on."""
    setups: "OrderedDict[tuple, list[RunRecord]]" = OrderedDict()
    for r in records:
        env = r.environment or {}
        key = (env.get("cpu"), env.get("cores"), r.threads, env.get("gpu"), env.get("torch"), r.git_rev, env.get("hostname"))
        setups.setdefault(key, []).append(r)
    lines = []
    for (cpu, cores, threads, gpu, torch_v, rev, host), recs in setups.items():
        dates = sorted(d for r in recs for d in (r.started_at, r.finished_at) if d)
        span = f"{dates[0]} – {dates[-1]}" if dates else "unknown dates"
        lines.append(f"{cpu or 'unknown CPU'}, {cores} cores, {threads} torch threads"
                     + (f", GPU {gpu}" if gpu else ", no GPU") + f", torch {torch_v}, git {rev or 'unknown'}"
                     + f", host {host}; {len(recs)} runs, {span}")
    return lines


def command_lines(records: list[RunRecord]) -> list[str]:
    return sorted({r.command for r in records if r.command})


# --- formatting ---------------------------------------------------------------------------------------
def _fmt(mean, std, digits=4) -> str:
    if mean is None:
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std else f"{mean:.{digits}f}"


def _si(v) -> str:
    if v is None:
        return "–"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.3g}"


def _reference_cell(r: dict, source_name: str) -> str:
    """gAUC / AUC / logloss of the twin oracle (synthetic rows) or of the published table (real rows, with its
    params count where given)."""
    params = None
    if r.get("source") == "real":
        vals, who = (r.get("ref_gauc"), r.get("ref_auc"), r.get("ref_logloss")), source_name or "published"
        params = r.get("ref_params")
    else:
        vals, who = (r.get("oracle_gauc_mean"), r.get("oracle_auc_mean"), r.get("oracle_logloss_mean")), "oracle"
    if all(v is None for v in vals) and params is None:
        return ""
    return (f"{who}: " + " / ".join("–" if v is None else f"{v:.4f}" for v in vals)
            + (f", {_si(params)} params" if params is not None else ""))


def markdown_table(rows: list[dict], reference_source: str = "") -> str:
    head = ["dataset", "entry", "model", "ok/runs", "AUC", "gAUC", "logloss", "NE",
            "reference gAUC / AUC / logloss", "oracle AUC", "gap to oracle",
            "params", "FLOPs/sample (fwd)", "train samples/s", "infer samples/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["dataset"], r["entry"], r["model"], f"{r['ok']}/{r['runs']}",
                 _fmt(r["auc_mean"], r["auc_std"]), _fmt(r["gauc_mean"], r["gauc_std"]),
                 _fmt(r["logloss_mean"], r["logloss_std"]), _fmt(r["ne_mean"], r["ne_std"]),
                 _reference_cell(r, reference_source), _fmt(r["oracle_auc_mean"], 0), _fmt(r["oracle_gap_mean"], r["oracle_gap_std"]),
                 _si(r["params_mean"]), _si(r["flops_fwd_per_sample_mean"]),
                 _si(r["train_samples_per_s_mean"]), _si(r["infer_samples_per_s_mean"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)




def _flatten(prefix: str, d: dict, out: dict) -> None:
    for k, v in sorted(d.items()):
        key = f"{prefix}.{k}"
        if isinstance(v, dict):
            _flatten(key, v, out)
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(v)
            nums = [x for x in v if isinstance(x, (int, float)) and not isinstance(x, bool)]
            out[f"{key}.len"] = len(v)
            if len(nums) == len(v):
                out[f"{key}.sum"] = sum(nums)
        elif isinstance(v, bool):
            out[key] = int(v)
        else:
            out[key] = v


def perf_frame(records: list[RunRecord]) -> pd.DataFrame:
    """Every measured run as features (config knobs, dataset shape, system) + targets (measured cost)."""
    rows = []
    for r in records:
        if r.train_samples_per_s is None:
            continue
        d = {"config_hash": r.config_hash, "model": r.model, "dataset": r.dataset, "rows": r.rows,
             "train_rows": r.train_rows, "status": r.status}
        _flatten("param", r.config.get("params", {}), d)
        _flatten("train", {k: v for k, v in r.config.get("train", {}).items() if k != "seed"}, d)
        _flatten("data", r.extra.get("dataset", {}), d)
        d.update({"sys.threads": r.threads, "sys.world_size": r.world_size, "sys.device": r.device,
                  "sys.dtype": r.dtype, "sys.cpu": (r.environment or {}).get("cpu"),
                  "sys.torch": (r.environment or {}).get("torch")})
        _flatten("sys.backend", r.backend or {}, d)
        for k in COST:
            d[k] = getattr(r, k)
        d["auc"] = r.auc
        rows.append(d)
    return pd.DataFrame(rows)


def _entry_styles(entries: list[str]) -> dict[str, tuple]:
    """A distinct (colour, marker) per entry: 10 colours x 10 markers, so up to 100 entries never share both."""
    import matplotlib

    colours = matplotlib.colormaps["tab10"].colors
    markers = "osD^vP*Xhp"
    return {e: (colours[i % len(colours)], markers[(i // len(colours) + i) % len(markers)])
            for i, e in enumerate(entries)}


def plot_auc_vs_flops(rows: list[dict], path: Path, title: str) -> None:
    """One panel per dataset: mean AUC (± std) against forward FLOPs per sample on a log axis, the oracle as a
    line; each entry keeps one colour and marker in every panel, named in the legend. Entries without
    FLOPs (None or 0, e.g. records from before lookups were counted) cannot sit on a log axis: each panel
    says how many it leaves out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(OrderedDict.fromkeys(r["dataset"] for r in rows))
    entries = list(OrderedDict.fromkeys(r["entry"] for r in rows if r["auc_mean"] is not None))
    styles = _entry_styles(entries)
    fig, axes = plt.subplots(1, max(1, len(datasets)), figsize=(6 * max(1, len(datasets)), 4.5), squeeze=False)
    handles: dict[str, object] = {}
    for ax, ds in zip(axes[0], datasets):
        pts = [r for r in rows if r["dataset"] == ds and r["auc_mean"] is not None]
        drawn = [r for r in pts if (r["flops_fwd_per_sample_mean"] or 0) > 0]
        for r in drawn:
            colour, marker = styles[r["entry"]]
            handles[r["entry"]] = ax.errorbar([r["flops_fwd_per_sample_mean"]], [r["auc_mean"]],
                                              yerr=[r["auc_std"] or 0.0], fmt=marker, color=colour, ms=7,
                                              capsize=3, label=r["entry"])
        oracle = [r["oracle_auc_mean"] for r in pts if r["oracle_auc_mean"] is not None]
        if oracle:
            handles["oracle AUC"] = ax.axhline(statistics.fmean(oracle), ls="--", color="grey", label="oracle AUC")
        if len(drawn) < len(pts):
            ax.text(0.01, 0.01, f"{len(pts) - len(drawn)} entries without FLOPs not shown", transform=ax.transAxes,
                    fontsize=7, color="grey")
        if drawn:
            ax.set_xscale("log")
        ax.set_xlabel("forward FLOPs per sample (log scale)")
        ax.set_ylabel("test AUC (mean ± std over seeds)")
        ax.set_title(ds)
        ax.grid(alpha=0.3)
        ax.grid(alpha=0.08, which="minor")
    names = [e for e in entries if e in handles] + (["oracle AUC"] if "oracle AUC" in handles else [])
    ncol = min(len(names), 6) or 1
    fig.suptitle(textwrap.fill(title, width=20 + 70 * axes.shape[1]), fontsize=10)  # long provenance: wrapped
    if names:
        fig.legend([handles[n] for n in names], names, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04 + 0.045 * math.ceil(len(names) / ncol), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def read_csv(path: str | Path) -> pd.DataFrame:
    """Read a report CSV, skipping its leading '# ' provenance lines (fields may contain '#' themselves)."""
    with open(path) as f:
        skip = 0
        for line in f:
            if not line.startswith("# "):
                break
            skip += 1
    return pd.read_csv(path, skiprows=skip)


class ReportError(CtrbenchError):
    """A report that would say nothing (the store holds none of the suite's runs); nothing is written."""


def write_report(suite: Suite, store: RunStore, out_dir: str | Path, command: str) -> dict[str, Path]:
    """Write the suite's report files into out_dir; returns their paths. A store with none of the suite's runs
    is a ReportError and writes nothing, so a mistyped --store never overwrites a report with empty tables."""
    out = Path(out_dir)
    sr = collect(suite, store)
    records = sr.all
    if not records and not any(s["summary"] for s in sr.searches):  # a lookup search has a summary, no runs
        kept = f"; {out} is left as it was" if out.exists() else ""
        raise ReportError(f"the store {store.path} holds none of suite {suite.name!r}'s {suite.planned_runs} "
                          f"planned runs: nothing to report{kept} (run the suite first, or check --store)")
    out.mkdir(parents=True, exist_ok=True)
    rows = summarize(sr, suite.reference)
    machines = machine_lines(records)
    run_cmds = command_lines(records)
    provenance = [f"Runs produced by: {', '.join(f'`{c}`' for c in run_cmds) or 'unknown'}",
                  f"Report produced by: `{command}` at {utc_now()}",
                  *[f"Machine: {m}" for m in machines]]
    paths = {k: out / v for k, v in (("table", "table.md"), ("runs", "runs.csv"), ("summary", "summary.csv"),
                                      ("plot", "auc_vs_flops.png"), ("perf", "perf_records.csv"))}
    md = [f"# Suite `{suite.name}`", "", suite.description.strip(), "", *[f"- {p}" for p in provenance], ""]
    if sr.missing:
        md += [f"**{sr.missing} run(s) of this suite are not in the store yet** (not run, or still running).", ""]
    md += [markdown_table(rows, suite.reference.source), "",
           "Mean ± std over seeds of the ok runs (test split, best validation checkpoint). reference = the twin "
           "oracle on the same test rows for synthetic data, the published numbers"
           + (f" ({suite.reference.source})" if suite.reference.source else "")
           + " for real data (empty where none). gap to oracle = the twin "
           "oracle's AUC minus the model's on the same test rows. FLOPs follow ctrbench.flops (a multiply-add 2, "
           "element-wise arithmetic 1 per element, a lookup 1 per element read); samples/s are medians of timed "
           "training steps (the run's own optimizers) after warm-up at the run's batch size.", ""]
    comp_rows = component_rows(sr)
    if comp_rows:
        md += ["Components of the models above (e.g. an ensemble's members), scored alone on the same test rows, "
               "and the models' diagnostics (e.g. mean fusion weights) over the test split; mean ± std over seeds:", "",
               components_markdown(comp_rows), ""]
    for s in sr.searches:
        spec, summ = s["spec"], s["summary"] or {}
        md.append(f"**{spec.entry}** on {spec.dataset.name} seed {spec.seed}: {spec.searcher} search, "
                  f"{summ.get('candidates') or len(s['candidates'])} candidates, best by validation "
                  f"{spec.options.get('metric', 'auc')} = "
                  f"{summ.get('best_value') if summ.get('best_value') is None else round(summ['best_value'], 4)}"
                  + (f" (candidate {s['best'].candidate_index}: {json.dumps(s['best'].config['params'], sort_keys=True)}, "
                     f"lr {s['best'].config['train'].get('lr')})" if s["best"] else ""))
    check_rows = [row for c in suite.checks for row in evaluate_check(c, sr.runs, [d.name for d in suite.datasets])]
    if check_rows:
        md += ["", "## Checks", "",
               "Each check: the entry's mean over seeds against the best rival's on the same dataset; margin > 0 means "
               "the entry is better, seed spread = the larger max - min over seeds of the two; pass iff margin > "
               "spread (ctrbench/harness/checks.py).", "",
               checks_markdown(check_rows), ""]
        md += [f"- **{c.name}**: {overall([r for r in check_rows if r['check'] == c.name])}" for c in suite.checks]
    bad = [r for r in records if r.status not in ("ok",)]
    if bad:
        md += ["", "Runs that did not finish ok:", ""]
        md += [f"- {r.dataset}/{r.entry}/seed{r.seed}: {r.status} — {first_line(r.error) or ''}" for r in bad]
    paths["table"].write_text("\n".join(md) + "\n")
    header = "".join(f"# {p}\n" for p in provenance)
    frames = [("runs", runs_frame(records)), ("summary", pd.DataFrame(rows)), ("perf", perf_frame(records))]
    if check_rows:
        paths["checks"] = out / "checks.csv"
        frames.append(("checks", pd.DataFrame(check_rows)))
    if comp_rows:
        paths["components"] = out / "components.csv"
        frames.append(("components", pd.DataFrame(comp_rows)))
    for key, frame in frames:
        with open(paths[key], "w") as f:
            f.write(header)
            frame.to_csv(f, index=False)
    plot_auc_vs_flops(rows, paths["plot"], f"{suite.name}: " + (machines[0] if machines else ""))
    return paths
