"""Measure where the visits facts should live: native DuckDB tables copied out to Parquet (today),
or written once as the published Parquet and read by DuckDB through a view (issue 10).

One synthetic visits CSV (bench/run.py's `generate`) is prepared once (`pipeline.read_source` +
`pipeline.prepare`); both variants start from copies of the same staged facts and rejects:

- A "native": `pipeline.load_source` (INSERT with the row hash) then `publish.publish_pending`
  (one sorted temporary table, one COPY per year), on a fresh home;
- B "write-once": the small tables alone (the same `load.load_batch` with no facts: rejects,
  audit, reference) plus the rejects' Parquet, then the staged facts written once to
  `parquet/visits/year=YYYY/data.parquet` with their lineage columns, several ways; `visits` in
  the warehouse file becomes a VIEW over those files.

Then the same list again with 1% of its facts changed over every year (a tenth of those moved a
year): A loads the changes and publishes the touched years; B finds the changes against the
published files and rewrites every touched year's file. Then analysts' queries on A and B, each
on a fresh analyst connection (`query.analyst_connection`), best of N, alternating. Prints a
table and writes ``bench/results/storage.json``.

    .venv/bin/python bench/storage.py                    # 1,000,000 rows
    .venv/bin/python bench/storage.py --rows 10000000 --repeats 1 --workdir /tmp/storage-10m
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from run import (
    MIB,
    RESULTS_DIR,
    _answer,
    environment,
    generate,
    make_source,
    run_baseline,
    run_full,
)

TABLE = "visits"
CHANGED_MODULO = 100  # hash(visit_id) % 100 = 0: a fact changed by the second load (1%)
MOVED_MODULO = 1000  # of those, hash % 1000 = 0 also move a year later (0.1%)
WRITE_VARIANTS = ("sorted_per_year", "partition_by", "partition_by_sorted", "per_year_scan")


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def lit(text: str | Path) -> str:
    return "'" + str(text).replace("'", "''") + "'"


# --------------------------------------------------------------------------- staged inputs


def copy_prepared(prepared: Any, folder: Path, facts: Path | None = None) -> Any:
    """A Prepared whose staged files are copies in `folder` (load_source removes its folder)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    facts_copy, rejected_copy = folder / "facts.parquet", folder / "rejected.parquet"
    shutil.copy2(facts or prepared.facts_path, facts_copy)
    shutil.copy2(prepared.rejected_path, rejected_copy)
    return replace(prepared, facts_path=facts_copy, rejected_path=rejected_copy)


def changed_facts(facts: Path, out: Path) -> dict[str, int]:
    """The staged facts of the second load: 1% of facts with other notes, a tenth of those also
    a year later (their old year's file loses them, the new one gains them)."""
    import duckdb

    changed = f"hash(visit_id) % {CHANGED_MODULO} = 0"
    moved = f"hash(visit_id) % {MOVED_MODULO} = 0"
    conn = duckdb.connect()
    try:
        conn.execute(
            f"""COPY (SELECT * REPLACE (
                    CASE WHEN {changed} THEN coalesce(notes, '') || ' (corrected)'
                         ELSE notes END AS notes,
                    CASE WHEN {moved} THEN CAST(start_date + INTERVAL 1 YEAR AS DATE)
                         ELSE start_date END AS start_date,
                    CASE WHEN {moved} THEN CAST(end_date + INTERVAL 1 YEAR AS DATE)
                         ELSE end_date END AS end_date)
                FROM read_parquet({lit(facts)}))
            TO {lit(out)} (FORMAT parquet, COMPRESSION lz4)"""
        )
        ((rows, n_changed, n_moved, years),) = conn.execute(
            f"SELECT count(*), count(*) FILTER ({changed}), count(*) FILTER ({moved}), "
            f"count(DISTINCT year(start_date)) FILTER ({changed}) FROM read_parquet({lit(facts)})"
        ).fetchall()
    finally:
        conn.close()
    return {"facts": rows, "changed": n_changed, "moved_year": n_moved, "years_touched": years}


# --------------------------------------------------------------------------- variant A


def native_load(home: Path, prepared: Any, batch: Any, ref: Any) -> dict[str, Any]:
    """A: load_source into `home` (fresh or loaded before), then publish_pending; seconds each."""
    from relations_etl import pipeline
    from relations_etl.publish import publish_pending
    from relations_etl.settings import Settings

    settings = Settings(home=home)
    started = time.perf_counter()
    result = pipeline.load_source(settings, batch, prepared, ref)
    loaded = time.perf_counter()
    written = publish_pending(settings)
    published = time.perf_counter()
    return {
        "load_s": loaded - started,
        "publish_s": published - loaded,
        "total_s": published - started,
        "facts_written": result.facts_written,
        "files_published": len(written),
    }


# --------------------------------------------------------------------------- variant B


def small_tables(home: Path, prepared: Any, batch: Any, ref: Any) -> dict[str, Any]:
    """B's native part: the same load_batch with no facts (rejects into quarantine, reference,
    audit), then the quarantine's Parquet. `replayed=[]` keeps the batch from failing for
    rejecting all its rows; rows_read counts only what this load sees (conservation holds)."""
    import duckdb

    from relations_etl.db import connect
    from relations_etl.load import load_batch
    from relations_etl.publish import publish
    from relations_etl.settings import Settings

    settings = Settings(home=home)
    empty = prepared.facts_path.with_name("no-facts.parquet")
    scratch = duckdb.connect()
    scratch.execute(
        f"COPY (SELECT * FROM read_parquet({lit(prepared.facts_path)}) LIMIT 0) "
        f"TO {lit(empty)} (FORMAT parquet)"
    )
    scratch.close()
    started = time.perf_counter()
    result = load_batch(
        settings,
        batch,
        empty,
        prepared.rejected_path,
        rows_read=prepared.rows_rejected + prepared.repeated + sum(prepared.dropped.values()),
        repeated=prepared.repeated,
        dropped=prepared.dropped,
        content_hash=prepared.content_hash,
        ref=ref,
        replayed=[],
    )
    loaded = time.perf_counter()
    conn = connect(settings)
    try:
        publish(conn, settings, "rejected_rows", result.years["rejected_rows"])
        conn.execute("DELETE FROM publish_queue")
    finally:
        conn.close()
    return {
        "load_s": loaded - started,
        "publish_s": time.perf_counter() - loaded,
        "total_s": time.perf_counter() - started,
        "rows_rejected": result.rows_rejected,
    }


def _content_select(
    batch_id: str, loaded_at: dt.datetime, *, inline: bool = False
) -> tuple[str, list[object]]:
    """The published columns from the staged facts: lineage added in the same statement (as
    parameters, or `inline` as literals for a view, which takes none)."""
    from relations_etl.contract import published_columns

    values = {"batch_id": lit(batch_id), "loaded_at": lit(loaded_at.isoformat())}
    parts = [
        q(c)
        if c not in _LINEAGE_TYPE
        else f"{values[c] if inline else '?'}::{_LINEAGE_TYPE[c]} AS {c}"
        for c in published_columns(TABLE)
    ]
    return ", ".join(parts), [] if inline else [batch_id, loaded_at]


_LINEAGE_TYPE = {"batch_id": "VARCHAR", "loaded_at": "TIMESTAMPTZ"}


def _columns() -> str:
    from relations_etl.contract import published_columns

    return ", ".join(q(c) for c in published_columns(TABLE))


def _publish_all(conn: Any, settings: Any, years: list[int]) -> int:
    """Write each year of `_publishing` with publish.py's own writer (temp file, SHA-256,
    rename, published_files row): the same files, bytes and records as A's publish."""
    from relations_etl.publish import _publish_year
    from relations_etl.storage import storage_for

    store = storage_for(settings)
    columns = _columns()
    return sum(len(_publish_year(conn, store, TABLE, y, columns)) for y in years)


def write_once(
    home: Path, facts: Path, batch_id: str, loaded_at: dt.datetime, how: str
) -> dict[str, Any]:
    """B: the staged facts written once to parquet/visits/year=YYYY/data.parquet, `how`:

    - sorted_per_year: one sorted temporary table, then one COPY per year (publish.py's way);
    - partition_by: one COPY ... PARTITION_BY (year), unsorted, then a rename per file;
    - partition_by_sorted: the same with ORDER BY (several threads: order inside a file is
      not promised, checked after);
    - per_year_scan: one COPY per year straight from the staged file (a scan per year).
    """

    from relations_etl.contract import kv_metadata_option
    from relations_etl.db import connect
    from relations_etl.publish import _sha256
    from relations_etl.settings import Settings
    from relations_etl.storage import storage_for

    settings = Settings(home=home)
    select, params = _content_select(batch_id, loaded_at)
    source = f"read_parquet({lit(facts)})"
    conn = connect(settings)  # the warehouse's writer: its memory limit, as publish has it
    started = time.perf_counter()
    try:
        if how == "sorted_per_year":
            conn.execute(
                f"CREATE OR REPLACE TEMP TABLE _publishing AS SELECT year(start_date) AS "
                f"_publish_year, {select} FROM {source} ORDER BY ALL",
                params,
            )
            years = [
                r[0]
                for r in conn.execute(
                    "SELECT DISTINCT _publish_year FROM _publishing ORDER BY 1"
                ).fetchall()
            ]
            files = _publish_all(conn, settings, years)
            conn.execute("DROP TABLE _publishing")
        elif how == "per_year_scan":
            years = [
                r[0]
                for r in conn.execute(
                    f"SELECT DISTINCT year(start_date) FROM {source} ORDER BY 1"
                ).fetchall()
            ]
            inline, _ = _content_select(batch_id, loaded_at, inline=True)
            conn.execute(
                f"CREATE OR REPLACE TEMP VIEW _publishing AS SELECT year(start_date) AS "
                f"_publish_year, {inline} FROM {source}"
            )
            # publish.py's COPY of one year, here from the view: a scan of the staged file each
            files = _publish_all(conn, settings, years)
        else:
            store = storage_for(settings)
            folder = Path(store.root) / f".{TABLE}-partitioned.tmp"
            shutil.rmtree(folder, ignore_errors=True)
            order = "ORDER BY ALL" if how == "partition_by_sorted" else ""
            conn.execute(
                f"COPY (SELECT year(start_date) AS year, {select} FROM {source} {order}) "
                f"TO {lit(folder)} (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (year), "
                f"FILENAME_PATTERN 'data', {kv_metadata_option(TABLE)})",
                params,
            )
            files = 0
            for part in sorted(folder.glob("year=*")):
                written = sorted(part.glob("*.parquet"))
                if len(written) != 1:
                    raise RuntimeError(f"{part}: {len(written)} files, not one")
                year = int(part.name.removeprefix("year="))
                ((rows,),) = conn.execute(
                    f"SELECT count(*) FROM read_parquet({lit(written[0])})"
                ).fetchall()
                digest = _sha256(written[0])
                relative = f"{TABLE}/year={year}/data.parquet"
                target = Path(store.root) / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                info = store.put(written[0], relative)
                conn.execute(
                    "INSERT OR REPLACE INTO published_files VALUES (?, ?, ?, ?, ?, ?, now())",
                    [TABLE, year, rows, info.size, digest, info.modified_ns],
                )
                files += 1
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        conn.close()
    return {"write_s": time.perf_counter() - started, "files": files}


def as_view(home: Path) -> None:
    """Replace the (empty) native visits table by views over its published files: `visits`
    with the table's columns, `visits_hive` with the folder's `year` too (file pruning)."""
    from relations_etl.db import connect
    from relations_etl.settings import Settings

    settings = Settings(home=home)
    pattern = lit(Path(settings.parquet_root) / TABLE / "year=*" / "data.parquet")
    conn = connect(settings)
    try:
        conn.execute(f"DROP TABLE {TABLE}")
        conn.execute(
            f"CREATE VIEW {TABLE} AS SELECT * FROM read_parquet({pattern}, hive_partitioning=false)"
        )
        conn.execute(
            f"CREATE VIEW {TABLE}_hive AS SELECT * FROM read_parquet({pattern}, "
            "hive_partitioning=true)"
        )
        conn.execute("CHECKPOINT")
    finally:
        conn.close()


def rewrite_changes(
    home: Path, facts: Path, source: str, batch_id: str, loaded_at: dt.datetime
) -> dict[str, Any]:
    """B's second load: compare the staged facts with the published ones of their source (no
    row hash is stored: every content column compared), then rewrite each touched year's file:
    its old rows but the changed ids, plus the new and changed rows, sorted, written whole."""
    from relations_etl.config import Kind
    from relations_etl.db import connect
    from relations_etl.facts import content_columns
    from relations_etl.settings import Settings

    settings = Settings(home=home)
    select, params = _content_select(batch_id, loaded_at)
    same = " AND ".join(
        f"s.{q(c)} IS NOT DISTINCT FROM p.{q(c)}" for c in content_columns(Kind.VISITS)
    )
    root = Path(settings.parquet_root) / TABLE
    conn = connect(settings)
    started = time.perf_counter()
    try:
        conn.execute(
            f"""CREATE OR REPLACE TEMP TABLE _status AS
            SELECT s.visit_id AS id, year(s.start_date) AS new_year, year(p.start_date) AS old_year,
                   CASE WHEN p.visit_id IS NULL THEN 'new' WHEN {same} THEN 'same'
                        ELSE 'changed' END AS status
            FROM read_parquet({lit(facts)}) AS s
            LEFT JOIN (SELECT * FROM {TABLE} WHERE source = ?) AS p USING (visit_id)""",
            [source],
        )
        touched = sorted(
            int(y)
            for (y,) in conn.execute(
                "SELECT new_year FROM _status WHERE status <> 'same' UNION "
                "SELECT old_year FROM _status WHERE status = 'changed'"
            ).fetchall()
        )
        found = time.perf_counter()
        old_files = [
            lit(root / f"year={y}" / "data.parquet")
            for y in touched
            if (root / f"year={y}" / "data.parquet").exists()
        ]
        kept = (
            f"SELECT year(start_date) AS _publish_year, {_columns()} "
            f"FROM read_parquet([{', '.join(old_files)}]) ANTI JOIN "
            "(SELECT id FROM _status WHERE status <> 'same') AS c ON c.id = visit_id"
            if old_files
            else None
        )
        fresh = (
            f"SELECT year(start_date) AS _publish_year, {select} FROM read_parquet({lit(facts)}) "
            "SEMI JOIN (SELECT id FROM _status WHERE status <> 'same') AS c ON c.id = visit_id"
        )
        union = f"{kept} UNION ALL {fresh}" if kept else fresh
        conn.execute(
            f"CREATE OR REPLACE TEMP TABLE _publishing AS SELECT * FROM ({union}) ORDER BY ALL",
            params,
        )
        files = _publish_all(conn, settings, touched)
        conn.execute("DROP TABLE _publishing")
        ((n_changed,),) = conn.execute(
            "SELECT count(*) FROM _status WHERE status <> 'same'"
        ).fetchall()
    finally:
        conn.close()
    done = time.perf_counter()
    return {
        "detect_s": found - started,
        "rewrite_s": done - found,
        "total_s": done - started,
        "facts_written": n_changed,
        "years_rewritten": len(touched),
        "files": files,
    }


# --------------------------------------------------------------------------- checks


def compare_published(a_home: Path, b_home: Path) -> dict[str, Any]:
    """Whether B's files hold A's rows (loaded_at aside), in A's order, with A's schema and
    key-value metadata, one file per year in both."""
    import duckdb

    def files(home: Path) -> str:
        return lit(home / "parquet" / TABLE / "year=*" / "data.parquet")

    def differing(columns: str) -> bool:
        # the rows' hashes summed, both sides: a scan each, where EXCEPT ALL held every row
        def digest(home: Path) -> Any:
            return conn.execute(
                f"SELECT count(*), sum(hash({columns})::HUGEINT) FROM read_parquet("
                f"{files(home)}, hive_partitioning=true, file_row_number=true)"
            ).fetchall()[0]

        return bool(digest(a_home) != digest(b_home))

    conn = duckdb.connect()
    try:
        cols = _columns().replace(', "loaded_at"', "")
        unordered = differing(f"year, {cols}")
        ordered = differing(f"year, file_row_number, {cols}")

        def metadata(function: str, columns: str, home: Path) -> list[Any]:
            return conn.execute(
                f"SELECT DISTINCT {columns} FROM {function}({files(home)}) ORDER BY ALL"
            ).fetchall()

        def count_files(home: Path) -> int:
            return len(list((home / "parquet" / TABLE).glob("year=*/*.parquet")))

        schema, kv = (
            ("parquet_schema", "name, type, logical_type"),
            (
                "parquet_kv_metadata",
                "key, value",
            ),
        )
        return {
            "same_rows": not unordered,
            "same_rows_and_order": not ordered,
            "same_schema": metadata(*schema, a_home) == metadata(*schema, b_home),
            "same_kv_metadata": metadata(*kv, a_home) == metadata(*kv, b_home),
            "files": {"A": count_files(a_home), "B": count_files(b_home)},
        }
    finally:
        conn.close()


# --------------------------------------------------------------------------- analysts' queries


def queries(point_id: str, year: int) -> dict[str, dict[str, str]]:
    """Each query as A and B run it; B's `_hive` forms read the folder's year (file pruning)."""
    nxt = year + 1
    by_host = "SELECT host_country, count(*) AS n FROM {t} WHERE {w} GROUP BY ALL"
    both = {
        "point_lookup": f"SELECT * FROM visits WHERE visit_id = {lit(point_id)}",
        "count_per_year": "SELECT year(start_date) AS y, count(*) FROM visits GROUP BY y",
        "one_year_by_host": by_host.format(t="visits", w=f"year(start_date) = {year}"),
        "one_year_by_host_range": by_host.format(
            t="visits",
            w=f"start_date >= DATE '{year}-01-01' AND start_date < DATE '{nxt}-01-01'",
        ),
        "join_countries": "SELECT c.name, count(*) AS n FROM visits AS v JOIN countries AS c "
        "ON c.code = v.visitor_country GROUP BY ALL ORDER BY n DESC LIMIT 10",
        "annual_summary": "SELECT count(*), sum(head_visits), sum(outbound_head_visits) "
        "FROM annual_summary",
        "notable_visitors_one": "SELECT * FROM notable_visitors WHERE reporting_country = "
        f"'FRA' AND year = {year}",
        "full_aggregate": "SELECT count(*), count(DISTINCT visitor_name), min(start_date), "
        "max(end_date), sum(length(notes)), count(DISTINCT visit_type) FROM visits",
    }
    out = {name: {"A": sql, "B": sql} for name, sql in both.items()}
    # loaded_at differs between the two loads; A's table has its row hash too
    out["point_lookup"] = {
        "A": both["point_lookup"].replace("*", "* EXCLUDE (loaded_at, row_hash)"),
        "B": both["point_lookup"].replace("*", "* EXCLUDE (loaded_at)"),
    }
    out["one_year_by_host_hive"] = {
        "A": both["one_year_by_host"],
        "B": by_host.format(t="visits_hive", w=f"year = {year}"),
    }
    out["count_per_year_hive"] = {
        "A": both["count_per_year"],
        "B": "SELECT year AS y, count(*) FROM visits_hive GROUP BY y",
    }
    return out


def run_queries(homes: dict[str, Path], repeats: int, point_id: str, year: int) -> dict[str, Any]:
    """Each query on a fresh analyst connection per run (as `relations-etl sql` opens one per
    query), A and B alternating, best of `repeats`; the connection's opening apart."""
    from relations_etl.query import analyst_connection
    from relations_etl.settings import Settings

    settings = {k: Settings(home=h) for k, h in homes.items()}
    for s in settings.values():  # the first open reads every block (verify): not timed
        analyst_connection(s).close()
    results: dict[str, Any] = {}
    answers: dict[str, dict[str, Any]] = {}
    opens: dict[str, list[float]] = {k: [] for k in homes}
    for name, sql in queries(point_id, year).items():
        runs: dict[str, list[float]] = {k: [] for k in homes}
        for _ in range(repeats):
            for variant in homes:
                started = time.perf_counter()
                conn = analyst_connection(settings[variant])
                opened = time.perf_counter()
                try:
                    rows = conn.execute(sql[variant]).fetchall()
                finally:
                    conn.close()
                runs[variant].append(time.perf_counter() - opened)
                opens[variant].append(opened - started)
                answers.setdefault(name, {})[variant] = sorted(map(repr, rows))
        best = {k: min(v) for k, v in runs.items()}
        results[name] = {
            "A_s": best["A"],
            "B_s": best["B"],
            "ratio_B_A": best["B"] / best["A"] if best["A"] else None,
            "same_answer": answers[name]["A"] == answers[name]["B"],
            "runs_s": runs,
            "sql": sql,
        }
    results["_open_connection_s"] = {k: min(v) for k, v in opens.items()}
    return results


# --------------------------------------------------------------------------- peak memory


def _write_path(kind: str, csv_path: str, prepared: Any, work: str) -> dict[str, Any]:
    """One write path on a fresh home (what the peak-RSS child runs)."""
    from relations_etl import pipeline
    from relations_etl.reference import Reference
    from relations_etl.settings import Settings

    home = Path(work) / f"home-rss-{kind}"
    shutil.rmtree(home, ignore_errors=True)
    ref = Reference.load(Settings(home=home))
    source = make_source(Path(csv_path))
    batch = pipeline.new_batch(source)
    staged = copy_prepared(prepared, Path(work) / f"staged-rss-{kind}")
    started = time.perf_counter()
    if kind == "native":
        native_load(home, staged, batch, ref)
    else:
        small_tables(home, staged, batch, ref)
        write_once(home, staged.facts_path, batch.batch_id, dt.datetime.now(dt.UTC), kind)
        staged.discard()
    elapsed = time.perf_counter() - started
    shutil.rmtree(home, ignore_errors=True)
    return {"seconds": elapsed}


def _worker(kind: str, csv_path: str, prepared: Any, work: str, queue: Any) -> None:
    extra = _write_path(kind, csv_path, prepared, work)
    queue.put({**extra, "self_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss})


def _measurer(kind: str, csv_path: str, prepared: Any, work: str, queue: Any) -> None:
    """Child: spawn the worker, then read RUSAGE_CHILDREN (it has no other children)."""
    ctx = mp.get_context("spawn")
    inner = ctx.Queue()
    process = ctx.Process(target=_worker, args=(kind, csv_path, prepared, work, inner))
    process.start()
    report = _answer(inner, process)
    process.join()
    report["children_maxrss_kib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    report["exitcode"] = process.exitcode
    queue.put(report)


def peak_rss(kind: str, csv_path: Path, prepared: Any, work: Path) -> dict[str, Any]:
    """Peak RSS of one write path (load + publish, or small tables + write-once), alone in a
    spawned process, as bench/run.py measures the full path."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    args = (kind, str(csv_path), prepared, str(work), queue)
    process = ctx.Process(target=_measurer, args=args)
    process.start()
    report = _answer(queue, process)
    process.join()
    if process.exitcode or "failed" in report:
        report.setdefault("failed", f"exit code {process.exitcode}")
    report["peak_rss_mib"] = report.get("children_maxrss_kib", 0) / MIB
    return report


# --------------------------------------------------------------------------- the run


def best(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run with the least `key` (its other figures with it)."""
    return min(runs, key=lambda r: float(r[key]))


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Everything, in one process; returns the report."""
    from relations_etl import pipeline
    from relations_etl.reference import Reference
    from relations_etl.settings import Settings

    report: dict[str, Any] = {
        "timestamp": dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ"),
        "rows": args.rows,
        "seed": args.seed,
        "repeats": args.repeats,
        "environment": environment(),
    }
    csv_path = work / "visits.csv"
    say(f"generating {args.rows:,} rows")
    report["csv"] = generate(csv_path, args.rows, args.seed)
    source = make_source(csv_path)

    if not args.no_full:
        say("bare copy x3 and run_source once (the full path's figure at this size)")
        report["bare_copy_s"] = min(run_baseline(csv_path, work / "bare.parquet") for _ in range(3))
        (work / "bare.parquet").unlink(missing_ok=True)
        report["run_source_s"], report["run_source"] = run_full(csv_path, work / "home-full")
        shutil.rmtree(work / "home-full", ignore_errors=True)

    say("read_source + prepare once")
    prep_home = work / "home-prepare"
    settings = Settings(home=prep_home, staging_dir=work / "staging")
    ref = Reference.load(settings)
    started = time.perf_counter()
    with pipeline.read_source(source, settings) as fetched:
        prepared = pipeline.prepare(fetched, source, ref, settings)
    report["prepare_s"] = time.perf_counter() - started
    pristine = copy_prepared(prepared, work / "pristine")
    prepared.discard()
    second_facts = work / "facts-second.parquet"
    report["second_load"] = changed_facts(pristine.facts_path, second_facts)
    batch1, batch2 = pipeline.new_batch(source), pipeline.new_batch(source)
    loaded_at = dt.datetime.now(dt.UTC)

    # first load: A, B's small tables, each B write; alternating, best of `repeats`
    a_runs: list[dict[str, Any]] = []
    small_runs: list[dict[str, Any]] = []
    writes: dict[str, list[dict[str, Any]]] = {w: [] for w in args.write_variants}
    checks: dict[str, Any] = {}
    a_home, b_small, b_home = work / "home-A", work / "home-B-small", work / "home-B"
    for n in range(args.repeats):
        say(f"first load {n + 1}/{args.repeats}: A native")
        shutil.rmtree(a_home, ignore_errors=True)
        a_runs.append(native_load(a_home, copy_prepared(pristine, work / "staged-A"), batch1, ref))
        say(f"first load {n + 1}/{args.repeats}: B small tables")
        shutil.rmtree(b_small, ignore_errors=True)
        staged = copy_prepared(pristine, work / "staged-B")
        small_runs.append(small_tables(b_small, staged, batch1, ref))
        staged.discard()
        for how in args.write_variants:
            say(f"first load {n + 1}/{args.repeats}: B write-once {how}")
            shutil.rmtree(b_home, ignore_errors=True)
            shutil.copytree(b_small, b_home)
            writes[how].append(
                write_once(b_home, pristine.facts_path, batch1.batch_id, loaded_at, how)
            )
            if how not in checks:
                checks[how] = compare_published(a_home, b_home)
    # the B home the queries and the second load use: written the first way, then a view
    shutil.rmtree(b_home, ignore_errors=True)
    shutil.copytree(b_small, b_home)
    write_once(b_home, pristine.facts_path, batch1.batch_id, loaded_at, "sorted_per_year")
    as_view(b_home)

    a_best = best(a_runs, "total_s")
    small_best = best(small_runs, "total_s")
    report["first_load"] = {
        "A_native": {**a_best, "runs_s": [r["total_s"] for r in a_runs]},
        "B_small_tables": {**small_best, "runs_s": [r["total_s"] for r in small_runs]},
        "B_write_once": {
            how: {
                **best(runs, "write_s"),
                "runs_s": [r["write_s"] for r in runs],
                "B_total_s": small_best["total_s"] + best(runs, "write_s")["write_s"],
                "check": checks[how],
            }
            for how, runs in writes.items()
        },
    }

    say("sizes")
    report["sizes_bytes"] = {
        k: {
            "duckdb_file": (h / "relations.duckdb").stat().st_size,
            "visits_parquet": sum(
                p.stat().st_size for p in (h / "parquet" / TABLE).rglob("*.parquet")
            ),
        }
        for k, h in (("A", a_home), ("B", b_home))
    }

    say("analysts' queries")
    import duckdb

    ((point_id,),) = duckdb.execute(
        f"SELECT visit_id FROM read_parquet({lit(pristine.facts_path)}) "
        f"LIMIT 1 OFFSET {report['second_load']['facts'] // 2}"
    ).fetchall()
    report["queries"] = run_queries({"A": a_home, "B": b_home}, args.query_repeats, point_id, 2000)

    # the second load: 1% changed over every year
    a2_runs: list[dict[str, Any]] = []
    small2_runs: list[dict[str, Any]] = []
    b2_runs: list[dict[str, Any]] = []
    a2, b2_small, b2 = work / "home-A2", work / "home-B2-small", work / "home-B2"
    loaded_at2 = dt.datetime.now(dt.UTC)
    for n in range(args.repeats):
        say(f"second load {n + 1}/{args.repeats}: A native load_changes + publish")
        shutil.rmtree(a2, ignore_errors=True)
        shutil.copytree(a_home, a2)
        staged = copy_prepared(pristine, work / "staged-A2", facts=second_facts)
        a2_runs.append(native_load(a2, staged, batch2, ref))
        say(f"second load {n + 1}/{args.repeats}: B small tables + rewrite of touched years")
        shutil.rmtree(b2_small, ignore_errors=True)
        shutil.copytree(b_small, b2_small)
        staged = copy_prepared(pristine, work / "staged-B2", facts=second_facts)
        small2_runs.append(small_tables(b2_small, staged, batch2, ref))
        staged.discard()
        shutil.rmtree(b2, ignore_errors=True)
        shutil.copytree(b_home, b2)
        b2_runs.append(rewrite_changes(b2, second_facts, source.name, batch2.batch_id, loaded_at2))
    report["second_load"].update(
        {
            "A_native": {**best(a2_runs, "total_s"), "runs_s": [r["total_s"] for r in a2_runs]},
            "B_small_tables": {
                **best(small2_runs, "total_s"),
                "runs_s": [r["total_s"] for r in small2_runs],
            },
            "B_rewrite": {**best(b2_runs, "total_s"), "runs_s": [r["total_s"] for r in b2_runs]},
            "B_total_s": best(small2_runs, "total_s")["total_s"]
            + best(b2_runs, "total_s")["total_s"],
            "check": compare_published(a2, b2),
        }
    )
    for h in (a2, b2_small, b2):
        shutil.rmtree(h, ignore_errors=True)

    if not args.no_memory:
        memory = {}
        for kind in ("native", "sorted_per_year", "partition_by"):
            say(f"peak RSS: {kind}")
            memory[kind] = peak_rss(kind, csv_path, pristine, work)
        report["peak_rss_mib"] = {k: m["peak_rss_mib"] for k, m in memory.items()}
        report["memory_runs"] = memory
    return report


def print_table(report: dict[str, Any]) -> None:
    """The human-readable summary."""
    first, second = report["first_load"], report["second_load"]
    a = first["A_native"]
    lines = [f"rows: {report['rows']:,}   prepare (not compared): {report['prepare_s']:.2f} s"]
    if "run_source_s" in report:
        lines.append(
            f"run_source: {report['run_source_s']:.2f} s   bare copy: {report['bare_copy_s']:.3f} s"
            f"   ratio {report['run_source_s'] / report['bare_copy_s']:.1f}x"
        )
    lines += [
        "",
        "first load (write the facts)                  seconds   vs A   check",
        f"A native: load {a['load_s']:.2f} + publish {a['publish_s']:.2f}".ljust(44)
        + f"{a['total_s']:>9.2f}   1.00",
    ]
    small = first["B_small_tables"]
    lines.append(
        f"B small tables: load {small['load_s']:.2f} + quarantine {small['publish_s']:.2f}".ljust(
            44
        )
        + f"{small['total_s']:>9.2f}"
    )
    for how, w in first["B_write_once"].items():
        c = w["check"]
        mark = (
            "same rows+order"
            if c["same_rows_and_order"]
            else "same rows, OTHER ORDER"
            if c["same_rows"]
            else "DIFFERS"
        )
        lines.append(
            f"B {how}: write {w['write_s']:.2f} (+small)".ljust(44)
            + f"{w['B_total_s']:>9.2f}   {w['B_total_s'] / a['total_s']:.2f}   {mark}"
        )
    a2, b2 = second["A_native"], second["B_rewrite"]
    lines += [
        "",
        f"second load: {second['changed']:,} facts changed ({second['moved_year']:,} moved a year),"
        f" {second['years_touched']} years",
        f"A native: load {a2['load_s']:.2f} + publish {a2['publish_s']:.2f}".ljust(44)
        + f"{a2['total_s']:>9.2f}   1.00",
        f"B: small {second['B_small_tables']['total_s']:.2f} + detect {b2['detect_s']:.2f} + "
        f"rewrite {b2['rewrite_s']:.2f}".ljust(44)
        + f"{second['B_total_s']:>9.2f}   {second['B_total_s'] / a2['total_s']:.2f}   "
        + ("same rows+order" if second["check"]["same_rows_and_order"] else "DIFFERS"),
        "",
        f"{'query (best of ' + str(report['query_repeats']) + ')':<28}{'A s':>9}{'B s':>9}"
        f"{'B/A':>7}  same",
    ]
    for name, r in report["queries"].items():
        if name.startswith("_"):
            continue
        lines.append(
            f"{name:<28}{r['A_s']:>9.4f}{r['B_s']:>9.4f}{r['ratio_B_A']:>7.2f}  {r['same_answer']}"
        )
    opens = report["queries"]["_open_connection_s"]
    lines.append(f"{'(open analyst connection)':<28}{opens['A']:>9.4f}{opens['B']:>9.4f}")
    sizes = report["sizes_bytes"]
    lines.append(
        "sizes MiB: A duckdb {:.1f} + parquet {:.1f}; B duckdb {:.1f} + parquet {:.1f}".format(
            sizes["A"]["duckdb_file"] / 2**20,
            sizes["A"]["visits_parquet"] / 2**20,
            sizes["B"]["duckdb_file"] / 2**20,
            sizes["B"]["visits_parquet"] / 2**20,
        )
    )
    if "peak_rss_mib" in report:
        lines.append(
            "peak RSS MiB: " + ", ".join(f"{k} {v:,.0f}" for k, v in report["peak_rss_mib"].items())
        )
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, measure, print the table and write bench/results/storage.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each write path")
    parser.add_argument("--query-repeats", type=int, default=3)
    parser.add_argument(
        "--write-variants",
        nargs="+",
        choices=WRITE_VARIANTS,
        default=list(WRITE_VARIANTS),
        help="B's ways of writing (per_year_scan reads the staged file once a year)",
    )
    parser.add_argument("--no-full", action="store_true", help="skip bare copy and run_source")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS children")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="relations-storage-"))
    work.mkdir(parents=True, exist_ok=True)
    args.results.mkdir(parents=True, exist_ok=True)
    try:
        report = measure(args, work)
        report["query_repeats"] = args.query_repeats
        # one file for every size measured: this run replaces the last one of its size
        out = args.results / "storage.json"
        runs = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
        runs[str(args.rows)] = report
        out.write_text(json.dumps(runs, indent=2, default=str) + "\n", encoding="utf-8")
        print()
        print_table(report)
        print(f"\nwritten {out}")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
