"""`ctrbench data ...`: prepare a dataset from its real files, verify their checksums, show what is known and
prepared, build synthetic twins, and export a cache in its dataset's published CSV layout."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ctrbench.data.cache import Cache, cache_dir, default_data_root
from ctrbench.data.readers import BAD_ROW_MODES, file_size, md5_file
from ctrbench.data.registry import DATASETS, get_spec
from ctrbench.errors import DataError


def _console() -> Console:
    # piped or captured output gets wide lines rather than tables squeezed into 80 columns
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def add_commands(sub) -> None:
    """Add `data` and its sub-commands to the root parser's subparsers."""
    data = sub.add_parser("data", help="datasets: prepare real files, verify checksums, info, synthetic twins")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")

    p = dsub.add_parser("prepare", help="read a dataset's real files into the columnar cache")
    p.add_argument("name", help=f"dataset ({', '.join(DATASETS)})")
    p.add_argument("--source", required=True, type=Path, help="folder holding the dataset's published files")
    p.add_argument("--data-root", type=Path, default=None, help="cache root (default $CTRBENCH_DATA_ROOT or "
                   "~/.cache/ctrbench)")
    p.add_argument("--on-bad-rows", choices=BAD_ROW_MODES, default="error",
                   help="error: stop at the first malformed row (default); skip: drop and count them")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-checksums", action="store_true", help="skip the md5 of the source files")
    p.set_defaults(func=cmd_prepare)

    v = dsub.add_parser("verify", help="md5 of the source files against the published checksums")
    v.add_argument("name")
    v.add_argument("--source", required=True, type=Path)
    v.add_argument("--no-progress", action="store_true")
    v.set_defaults(func=cmd_verify)

    i = dsub.add_parser("info", help="list the datasets, or show one's spec and its prepared caches")
    i.add_argument("name", nargs="?")
    i.add_argument("--data-root", type=Path, default=None)
    i.add_argument("--json", action="store_true", help="print the spec (and manifest summary) as JSON")
    i.set_defaults(func=cmd_info)

    t = dsub.add_parser("twin", help="build (once) and summarise a dataset's synthetic twin and its oracle")
    t.add_argument("name")
    _add_twin_arguments(t)
    t.set_defaults(func=cmd_twin)

    e = dsub.add_parser("export", help="write a twin (or the prepared real cache) in the dataset's published CSV "
                        "layout, to feed another library the same rows")
    e.add_argument("name")
    e.add_argument("--out", required=True, type=Path, help="folder for train.csv, valid.csv, test.csv (+ h5)")
    e.add_argument("--source", choices=("synthetic", "real"), default="synthetic",
                   help="synthetic: the twin (built on first use, options as `data twin`); real: the prepared cache")
    _add_twin_arguments(e)
    e.set_defaults(func=cmd_export)


def _add_twin_arguments(p: argparse.ArgumentParser) -> None:
    """The options that name a twin (and where caches live), shared by `data twin` and `data export`."""
    p.add_argument("--rows", type=int, default=None, help="rows (default: the dataset's default twin size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", type=Path, default=None)
    p.add_argument("--card-ratio", type=float, default=None, help="vocabularies approach card_ratio * rows")
    p.add_argument("--kappa", type=float, default=None,
                   help="id effects shrunk by sqrt(m / (m + kappa)), m = training rows x 4 ctr (1 - ctr)")
    p.add_argument("--auc-margin", type=float, default=None, help="oracle AUC above the best published one")
    p.add_argument("--shares", default=None,
                   help='signal part -> variance share as JSON, e.g. \'{"first": 0.7, "pair": 0.3}\' '
                        "(replaces the twin's default shares)")


# --------------------------------------------------------------------------- summaries


def summarize_cache(cache: Cache) -> dict:
    m = cache.manifest
    out = {
        "path": str(cache.path),
        "splits": {s: {"rows": v["rows"], "positive_rate": v["positive_rate"],
                       **({"alias_of": v["alias_of"]} if "alias_of" in v else {})}
                   for s, v in m["splits"].items()},
        "vocab_sizes": m["vocab_sizes"],
        "created": m.get("created"),
    }
    for key in ("protocol", "bad_rows_skipped", "split_aliases", "valid_is_test"):
        if key in m:
            out[key] = m[key]
    return out


def _print_cache(console: Console, cache: Cache, title: str) -> None:
    s = summarize_cache(cache)
    table = Table(title=f"{title}: {s['path']}")
    for col in ("split", "rows", "positive rate"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for split, v in s["splits"].items():
        rate = "-" if v["positive_rate"] is None else f"{v['positive_rate']:.4f}"
        name = split + (f" (= {v['alias_of']})" if "alias_of" in v else "")
        table.add_row(name, f"{v['rows']:,}", rate)
    console.print(table)
    sizes = s["vocab_sizes"]
    if sizes:
        console.print("vocabulary sizes (incl. PAD and OOV): "
                      + ", ".join(f"{k} {v:,}" for k, v in sizes.items()))
    if s.get("protocol"):
        console.print(f"protocol: {s['protocol']}")
    skipped = s.get("bad_rows_skipped") or {}
    if skipped:
        console.print("bad rows skipped: " + ", ".join(f"{f} {n:,}" for f, n in skipped.items()))
    twin = cache.manifest.get("twin")
    if twin:
        console.print(_oracle_table(twin))


ORACLE_COLUMNS = (("rows", "n", "{:,}"), ("AUC", "oracle_auc", "{:.4f}"), ("gAUC", "oracle_gauc", "{:.4f}"),
                  ("logloss", "oracle_logloss", "{:.4f}"), ("NE", "oracle_ne", "{:.4f}"),
                  ("calibration", "oracle_calibration", "{:.4f}"), ("positive rate", "positive_rate", "{:.4f}"))


def _oracle_table(twin: dict) -> Table:
    """The planted click model's own metrics per split: the best any model can score on these rows."""
    table = Table(title=f"oracle (the planted click probabilities; generator v{twin.get('generator_version')}, "
                        f"target AUC {twin.get('target_oracle_auc', float('nan')):.4f})")
    table.add_column("split")
    for title, _key, _fmt in ORACLE_COLUMNS:
        table.add_column(title, justify="right")
    for split, m in (twin.get("oracle") or {}).items():
        table.add_row(split, *[fmt.format(m[key]) if m.get(key) is not None else "-"
                               for _title, key, fmt in ORACLE_COLUMNS])
    return table


# --------------------------------------------------------------------------- commands


def cmd_prepare(args: argparse.Namespace) -> int:
    from ctrbench.data.prepare import prepare_real

    spec = get_spec(args.name)
    path = cache_dir(args.data_root, spec.name, "real")
    cache = prepare_real(spec, args.source, path, on_bad_rows=args.on_bad_rows, progress=not args.no_progress,
                         checksums=not args.no_checksums)
    console = _console()
    _print_cache(console, cache, f"prepared {spec.name}")
    mismatched = [f for f, e in cache.manifest["source"]["files"].items() if e.get("matches_published") is False]
    if mismatched:
        console.print(f"note: md5 differs from the published one for {', '.join(mismatched)} "
                      "(a different release or a modified file)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from ctrbench.data.prepare import make_reader
    from ctrbench.data.progress import ByteProgress

    spec = get_spec(args.name)
    reader = make_reader(spec, args.source)  # checks the layout (missing files are an error)
    files = {p.name: p for p in reader.files()}
    for name in spec.md5:  # published files the reader does not need (e.g. Criteo's test.txt), if present
        if name not in files and (Path(args.source) / name).is_file():
            files[name] = Path(args.source) / name
    console = _console()
    table = Table(title=f"{spec.name}: md5 of {args.source}")
    for col in ("file", "size", "md5", "published md5", "status"):
        table.add_column(col)
    failed = False
    with ByteProgress(not args.no_progress) as bar:
        advance = bar.task("md5", sum(file_size(p) for p in files.values()))
        for name, p in files.items():
            digest = md5_file(p, advance)
            published = spec.md5.get(name)
            if published is None:
                status = "no published md5"
            elif digest == published:
                status = "ok"
            else:
                status, failed = "MISMATCH", True
            table.add_row(name, f"{file_size(p):,}", digest, published or "-", status)
    console.print(table)
    return 1 if failed else 0


def _spec_table(spec) -> Table:
    table = Table(title=f"{spec.name}: {spec.title}")
    for col in ("feature", "kind", "column", "min count", "vocab", "max len", "transform", "cardinality"):
        table.add_column(col)
    for f in spec.features:
        table.add_row(f.name, f.kind.value, f.column, str(f.min_count), f.share_vocab or "own",
                      str(f.max_len or "-"), f.transform if f.kind.value == "numeric" else "-",
                      f"{f.cardinality:,}" if f.cardinality else "-")
    return table


def _prepared(data_root, name: str) -> dict[str, Path]:
    root = Path(data_root or default_data_root()) / name
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and Cache.exists(p)}


def cmd_info(args: argparse.Namespace) -> int:
    console = _console()
    if args.name is None:
        rows = []
        for name, spec in DATASETS.items():
            rows.append({"name": name, "title": spec.title, "format": spec.file_format,
                         "files": sorted(set(spec.splits.values())), "prepared": sorted(_prepared(args.data_root, name))})
        if args.json:
            print(json.dumps(rows, indent=1))
            return 0
        table = Table(title="datasets")
        for col in ("name", "title", "format", "files", "prepared caches"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["name"], r["title"], r["format"], ", ".join(r["files"]), ", ".join(r["prepared"]) or "-")
        console.print(table)
        return 0
    spec = get_spec(args.name)
    caches = _prepared(args.data_root, spec.name)
    if args.json:
        out = {"spec": spec.to_dict(), "caches": {tag: summarize_cache(Cache.open(p)) for tag, p in caches.items()}}
        print(json.dumps(out, indent=1, default=str))
        return 0
    console.print(_spec_table(spec))
    console.print(f"label: {spec.label}; group id: {spec.group_id or '-'}; embedding dim: {spec.embedding_dim}; "
                  f"format: {spec.file_format}; files: {spec.splits}")
    console.print(f"published at: {spec.published_at}")
    if spec.valid_is_test:
        console.print("note: BARS validates on the test file for this dataset (valid = test)")
    if spec.notes:
        console.print(f"notes: {spec.notes}")
    if not caches:
        console.print(f"not prepared under {Path(args.data_root or default_data_root()) / spec.name}: run "
                      f"`ctrbench data prepare {spec.name} --source PATH` or `ctrbench data twin {spec.name}`")
    for tag, p in caches.items():
        _print_cache(console, Cache.open(p), tag)
    return 0


def _open_twin(args: argparse.Namespace) -> Cache:
    """The twin named by `_add_twin_arguments`' options (built on first use)."""
    from ctrbench.data.api import open_dataset

    if args.rows is not None and args.rows <= 0:
        raise DataError(f"--rows must be positive, got {args.rows}")
    options = {"card_ratio": args.card_ratio, "kappa": args.kappa, "auc_margin": args.auc_margin}
    if args.shares is not None:
        try:
            options["shares"] = json.loads(args.shares)
        except json.JSONDecodeError as exc:
            raise DataError(f"--shares is not JSON ({exc.msg} at character {exc.pos}): {args.shares!r}") from None
        if not isinstance(options["shares"], dict):
            raise DataError(f"--shares must be a JSON object of part -> share, got {args.shares!r}")
    twin = {k: v for k, v in options.items() if v is not None}
    return open_dataset(args.name, "synthetic", rows=args.rows, seed=args.seed, data_root=args.data_root, twin=twin)


def cmd_twin(args: argparse.Namespace) -> int:
    _print_cache(_console(), _open_twin(args), f"{args.name} twin")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ctrbench.data.api import open_dataset
    from ctrbench.data.export import export_csv

    if args.source == "real":
        given = [k for k in ("rows", "card_ratio", "kappa", "auc_margin", "shares") if getattr(args, k) is not None]
        if given:
            raise DataError(f"--{given[0].replace('_', '-')} names a twin; --source real exports the prepared cache")
        cache = open_dataset(args.name, "real", data_root=args.data_root)
    else:
        cache = _open_twin(args)
    summary = export_csv(cache, args.out)
    console = _console()
    for fname, info in summary["files"].items():
        what = f"{info['rows']:,} rows of {info['split']}" if "rows" in info else f"{info['vectors']:,} vectors"
        console.print(f"wrote {args.out / fname}: {what}")
    console.print(f"wrote {args.out / 'export.json'} (where the rows came from; the twin's oracle per split)")
    return 0
