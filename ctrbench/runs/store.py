"""The run store: one SQLite file (WAL mode) holding a RunRecord per run config, safe for many writers.

Resume and crash safety: a run is claimed (inserted as "running" with the pid and the process's start
time) in one IMMEDIATE transaction before it executes and overwritten with its result when it ends,
so a finished run is never lost. A "running" row whose process is gone (SIGKILL, power loss) is turned
into "interrupted" by `recover()` at the next start and is then run again. Scalar record fields are
columns (for SQL and reports); the whole record is also kept as JSON. Columns are only ever added.

Searches: `searches` holds one row per search (summary, and the searcher's last state with the batch it proposed,
replaced in one transaction after each ask); `evaluations` holds every evaluation of a search, of any kind (a
`train` one links its run by config hash), so a killed search resumes from the store with exactly the proposals
it would have made. Stores made before these tables or columns existed get them when opened for writing.
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ctrbench.errors import StoreError
from ctrbench.runs.records import DONE, RunRecord, RunSpec, canonical_json, scalar_columns

BUSY_TIMEOUT_MS = 60_000
RETRIES = 8


def utc_now(at: float | None = None) -> str:
    """UTC ISO-8601 of now (or of epoch seconds `at`)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def process_start_time(pid: int) -> int | None:
    """The start time (clock ticks since boot) of a process, from /proc; None where /proc is absent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])  # field 22 of stat; fields[0] is field 3 (state)


def process_alive(pid: int | None, start: int | None = None) -> bool:
    """True when `pid` is a live (non-zombie) process that started at `start` (when known)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return False
    return start is None or int(fields[19]) == start


@dataclass
class Claim:
    """The outcome of claiming a run: "run" (go ahead, `record` is the running row), "done" (finished
    before; `record` is its result) or "busy" (a live process is running it right now)."""

    outcome: str
    record: RunRecord


COLUMNS = scalar_columns()
COLUMN_NAMES = [c for c, _ in COLUMNS]
SEARCH_COLUMNS = {"suite", "entry", "searcher", "dataset", "seed", "status", "best_config_hash", "best_value",
                  "candidates", "config_json", "started_at", "finished_at"}
SEARCH_TABLE = [("search_id", "TEXT PRIMARY KEY"), *((c, "TEXT") for c in ("suite", "entry", "searcher", "dataset")),
                ("seed", "INTEGER"), ("status", "TEXT"), ("best_config_hash", "TEXT"), ("best_value", "REAL"),
                ("candidates", "INTEGER"), ("config_json", "TEXT"), ("started_at", "TEXT"), ("finished_at", "TEXT"),
                ("state_json", "TEXT"), ("updated_at", "TEXT")]
# One evaluation of a search's candidate, any kind; *_json columns hold JSON (point, candidate, metrics).
EVALUATION_TABLE = [("search_id", "TEXT NOT NULL"), ("candidate_index", "INTEGER NOT NULL"), ("kind", "TEXT"),
                    ("status", "TEXT"), ("value", "REAL"), ("point_hash", "TEXT"), ("point_json", "TEXT"),
                    ("candidate_json", "TEXT"), ("metrics_json", "TEXT"), ("config_hash", "TEXT"),
                    ("cost_seconds", "REAL"), ("started_at", "TEXT"), ("finished_at", "TEXT")]
EVALUATION_JSON = ("point", "candidate", "metrics")


class RunStore:
    """Run records in a SQLite file. Open one per process (connections are re-made after a fork).

    `create=False` opens an existing store for reading (reports, dry runs): a missing file or one that is not a
    run store is a StoreError, never a new empty store. Any SQLite error names the file (StoreError)."""

    def __init__(self, path: str | os.PathLike, *, create: bool = True):
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._conn_pid: int | None = None
        self.host = socket.gethostname()
        if create:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the run store's folder {self.path.parent}: {exc.strerror} "
                                 "(pass --store with a writable place)") from None
            self._init_schema()
        else:
            if not self.path.is_file():
                raise StoreError(f"no run store at {self.path}: run the suite first (`ctrbench run`), or pass the "
                                 "--store it wrote to")
            with self._named_errors():
                tables = {r[0] for r in self._connect().execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "runs" not in tables:
                raise StoreError(f"{self.path} is an SQLite file but not a ctrbench run store (no 'runs' table): "
                                 "check --store")

    @contextmanager
    def _named_errors(self) -> Iterator[None]:
        """sqlite3 errors (not a database, corrupt, locked for longer than the retries) as one StoreError line
        that names the file and what to do."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            msg = str(exc).lower()
            if "locked" in msg or "busy" in msg:
                hint = "another process holds it; retry when it is done"
            elif "readonly" in msg or "unable to open" in msg:
                hint = "check the file's and its folder's permissions"
            else:
                hint = ("it is not an SQLite run store or it is corrupt: check --store, or move the file aside "
                        "and run the suite again to rebuild it")
            raise StoreError(f"run store {self.path}: {exc} ({hint})") from None

    def _query(self, sql: str, args=()) -> list[sqlite3.Row]:
        """All rows of one read-only statement (outside a transaction), errors named."""
        with self._named_errors():
            return self._connect().execute(sql, args).fetchall()

    # --- connection and transactions -------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._conn is None or self._conn_pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._retry(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone())
            conn.execute("PRAGMA synchronous=NORMAL")
            self._conn, self._conn_pid = conn, os.getpid()
        return self._conn

    @staticmethod
    def _retry(fn):
        """Run fn, retrying on 'database is locked/busy' beyond the busy timeout (with backoff)."""
        for attempt in range(RETRIES):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                msg = str(exc).lower()
                if ("locked" not in msg and "busy" not in msg) or attempt == RETRIES - 1:
                    raise
                time.sleep(0.05 * 2**attempt)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. BEGIN sits inside the try, and a transaction an earlier exception left open is
        rolled back first: an interrupt raised just after BEGIN returned must not leave the write lock held and
        make the interrupt's own marking fail with "cannot start a transaction within a transaction"."""
        with self._named_errors():
            conn = self._connect()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            try:
                self._retry(lambda: conn.execute("BEGIN IMMEDIATE"))
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            else:
                self._retry(lambda: conn.execute("COMMIT"))

    def close(self) -> None:
        if self._conn is not None and self._conn_pid == os.getpid():
            self._conn.close()
        self._conn = None

    @staticmethod
    def _table(c: sqlite3.Connection, name: str, columns: list[tuple[str, str]], suffix: str = "") -> None:
        """Create table `name` or add the columns an older store lacks (none is ever renamed or dropped)."""
        c.execute(f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(f'{n} {t}' for n, t in columns)}{suffix})")
        have = {r["name"] for r in c.execute(f"PRAGMA table_info({name})")}
        for n, t in columns:
            if n not in have:
                c.execute(f"ALTER TABLE {name} ADD COLUMN {n} {t.split(' PRIMARY')[0].split(' NOT NULL')[0]}")

    def _init_schema(self) -> None:
        with self._tx() as c:
            self._table(c, "runs", [("config_hash", "TEXT PRIMARY KEY"),
                                    *((n, t) for n, t in COLUMNS if n != "config_hash"), ("record_json", "TEXT")])
            c.execute("CREATE INDEX IF NOT EXISTS runs_status ON runs(status)")
            c.execute("CREATE INDEX IF NOT EXISTS runs_search ON runs(search_id)")
            self._table(c, "searches", SEARCH_TABLE)
            self._table(c, "evaluations", EVALUATION_TABLE, ", PRIMARY KEY (search_id, candidate_index)")

    # --- rows ------------------------------------------------------------------------------------
    @staticmethod
    def _row_values(rec: RunRecord) -> dict:
        d = rec.to_dict()
        vals = {name: d[name] for name in COLUMN_NAMES}
        vals["record_json"] = canonical_json(d)
        return vals

    @staticmethod
    def _from_row(row: sqlite3.Row) -> RunRecord:
        d = json.loads(row["record_json"]) if row["record_json"] else {}
        for name in row.keys():  # columns win: recover() and mark_interrupted() update them directly
            if name != "record_json" and row[name] is not None:
                d[name] = row[name]
        return RunRecord.from_dict(d)

    def _write(self, c: sqlite3.Connection, rec: RunRecord) -> None:
        vals = self._row_values(rec)
        names = list(vals)
        c.execute(
            f"INSERT OR REPLACE INTO runs ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
            [vals[n] for n in names],
        )

    def put(self, rec: RunRecord) -> None:
        """Insert or replace a record (used for finished results)."""
        with self._tx() as c:
            self._write(c, rec)

    finish = put

    def get(self, config_hash: str) -> RunRecord | None:
        rows = self._query("SELECT * FROM runs WHERE config_hash=?", (config_hash,))
        return self._from_row(rows[0]) if rows else None

    def records(self, *, hashes: list[str] | None = None, suite: str | None = None, search_id: str | None = None,
                status: str | None = None, dataset: str | None = None) -> list[RunRecord]:
        """Records filtered by config hashes, suite, search, status or dataset (all when no filter is given)."""
        filters = {"suite": suite, "search_id": search_id, "status": status, "dataset": dataset}
        where = [f"{k}=?" for k, v in filters.items() if v is not None]
        args = [v for v in filters.values() if v is not None]
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY started_at"
        rows = [self._from_row(r) for r in self._query(sql, args)]
        if hashes is not None:
            by = {r.config_hash: r for r in rows}
            rows = [by[h] for h in hashes if h in by]
        return rows

    def count(self) -> int:
        return self._query("SELECT COUNT(*) FROM runs")[0][0]

    # --- lifecycle -------------------------------------------------------------------------------
    def claim(self, spec: RunSpec, *, force: bool = False, command: str | None = None) -> Claim:
        """Atomically decide whether this process runs `spec`, and if so mark it running."""
        h = spec.config_hash
        with self._tx() as c:
            row = c.execute("SELECT * FROM runs WHERE config_hash=?", (h,)).fetchone()
            old = self._from_row(row) if row else None
            if old is not None:
                if old.status in DONE and not force:
                    return Claim("done", old)
                if old.status == "running" and old.pid != os.getpid() and self.is_live(old):
                    return Claim("busy", old)
            attempt = (old.attempt + 1) if old is not None else 1
            pid = os.getpid()
            rec = RunRecord.from_spec(
                spec, status="running", attempt=attempt, host=self.host, pid=pid,
                pid_start=process_start_time(pid), started_at=utc_now(), command=command,
            )
            rec.run_id = f"{h}-{attempt}"
            self._write(c, rec)
            return Claim("run", rec)

    def is_live(self, rec: RunRecord) -> bool:
        """Whether the process that claimed `rec` may still be running it (another host's: assumed so)."""
        if rec.host != self.host:
            return True  # another machine's process: we cannot tell, so leave it alone
        return process_alive(rec.pid, rec.pid_start)

    def mark_interrupted(self, config_hash: str, reason: str) -> None:
        """Mark a running run interrupted (SIGTERM, Ctrl-C, a dead worker)."""
        with self._tx() as c:
            c.execute(
                "UPDATE runs SET status='interrupted', error=?, finished_at=? WHERE config_hash=? AND status='running'",
                (reason, utc_now(), config_hash),
            )

    def mark_interrupted_of_process(self, pid: int, reason: str) -> list[str]:
        """Mark every run this host's process `pid` still has "running" interrupted (a pool worker leaving on a
        signal, whatever point of its run the signal reached); returns their hashes."""
        with self._tx() as c:
            rows = c.execute("SELECT config_hash FROM runs WHERE status='running' AND host=? AND pid=?",
                             (self.host, pid)).fetchall()
            for r in rows:
                c.execute("UPDATE runs SET status='interrupted', error=?, finished_at=? WHERE config_hash=?",
                          (reason, utc_now(), r["config_hash"]))
        return [r["config_hash"] for r in rows]

    def recover(self) -> list[str]:
        """Turn "running" rows of this host whose process is dead into "interrupted"; returns their hashes."""
        with self._tx() as c:
            rows = c.execute("SELECT config_hash, host, pid, pid_start FROM runs WHERE status='running'").fetchall()
            dead = [
                r["config_hash"] for r in rows
                if r["host"] == self.host and not process_alive(r["pid"], r["pid_start"])
            ]
            for h in dead:
                c.execute(
                    "UPDATE runs SET status='interrupted', error=?, finished_at=? WHERE config_hash=?",
                    ("process died while running (found by recover)", utc_now(), h),
                )
        return dead

    # --- searches --------------------------------------------------------------------------------
    def put_search(self, search_id: str, **fields) -> None:
        """Insert or update a search's summary row (its candidates are ordinary runs linked by search_id)."""
        if "config" in fields:
            fields["config_json"] = canonical_json(fields.pop("config"))
        unknown = set(fields) - SEARCH_COLUMNS
        if unknown:
            raise KeyError(f"unknown search fields {sorted(unknown)}; valid: {sorted(SEARCH_COLUMNS)}")
        with self._tx() as c:
            if c.execute("SELECT 1 FROM searches WHERE search_id=?", (search_id,)).fetchone() is None:
                c.execute("INSERT INTO searches (search_id) VALUES (?)", (search_id,))
            for k, v in fields.items():
                c.execute(f"UPDATE searches SET {k}=? WHERE search_id=?", (v, search_id))

    def get_search(self, search_id: str) -> dict | None:
        rows = self._query("SELECT * FROM searches WHERE search_id=?", (search_id,))
        if not rows:
            return None
        d = dict(rows[0])
        d["config"] = json.loads(d.pop("config_json") or "{}")
        return d

    def save_search_state(self, search_id: str, searcher: str, state: dict) -> None:
        """Replace a search's searcher state (JSON: the state and the batch it just proposed), atomically."""
        with self._tx() as c:
            if c.execute("SELECT 1 FROM searches WHERE search_id=?", (search_id,)).fetchone() is None:
                c.execute("INSERT INTO searches (search_id) VALUES (?)", (search_id,))
            c.execute("UPDATE searches SET searcher=?, state_json=?, updated_at=? WHERE search_id=?",
                      (searcher, canonical_json(state), utc_now(), search_id))

    def search_state(self, search_id: str) -> dict | None:
        """The last saved searcher state of a search (None: none saved, or a store from before states)."""
        if "state_json" not in self._columns("searches"):
            return None
        rows = self._query("SELECT state_json FROM searches WHERE search_id=?", (search_id,))
        return json.loads(rows[0]["state_json"]) if rows and rows[0]["state_json"] else None

    def put_evaluation(self, search_id: str, candidate_index: int, **fields) -> None:
        """Insert or replace one evaluation of a search (EVALUATION_TABLE's columns; point, candidate and
        metrics are given as objects and stored as JSON)."""
        for k in EVALUATION_JSON:
            if k in fields:
                fields[f"{k}_json"] = canonical_json(fields.pop(k))
        valid = {n for n, _ in EVALUATION_TABLE}
        unknown = set(fields) - valid
        if unknown:
            raise KeyError(f"unknown evaluation fields {sorted(unknown)}; valid: {sorted(valid)}")
        vals = {"search_id": search_id, "candidate_index": candidate_index, **fields}
        with self._tx() as c:
            c.execute(f"INSERT OR REPLACE INTO evaluations ({', '.join(vals)}) VALUES ({', '.join('?' * len(vals))})",
                      list(vals.values()))

    def evaluations(self, *, search_id: str | None = None, kind: str | None = None) -> list[dict]:
        """Stored evaluations (in the order they were recorded), JSON columns decoded (`point`, `candidate`,
        `metrics`); [] for a store from before the evaluations table."""
        if not self._columns("evaluations"):
            return []
        filters = {"search_id": search_id, "kind": kind}
        where = [f"{k}=?" for k, v in filters.items() if v is not None]
        sql = "SELECT * FROM evaluations" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY rowid"
        out = []
        for row in self._query(sql, [v for v in filters.values() if v is not None]):
            d = dict(row)
            for k in EVALUATION_JSON:
                text = d.pop(f"{k}_json")
                d[k] = json.loads(text) if text else None
            out.append(d)
        return out

    def clear_search(self, search_id: str) -> None:
        """Forget a search's state and evaluations (a forced rerun starts it again; its runs stay)."""
        with self._tx() as c:
            c.execute("DELETE FROM evaluations WHERE search_id=?", (search_id,))
            c.execute("UPDATE searches SET state_json=NULL, updated_at=? WHERE search_id=?", (utc_now(), search_id))

    def _columns(self, table: str) -> set[str]:
        """The columns of `table` (empty when the store has no such table)."""
        return {r["name"] for r in self._query(f"PRAGMA table_info({table})")}
