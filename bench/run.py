"""Benchmark one visits source end to end against DuckDB's bare CSV -> Parquet copy.

On one synthetic, seeded visits CSV of N rows (default 1,000,000): DuckDB's bare copy (best of
3), the full path ``pipeline.run_source`` into a fresh home, the same path stage by stage (with
``prepare``'s own steps), the peak RSS of both paths (each alone in a spawned process), the real
lists in RELATIONS_ETL_SHARED_DATA, and Prefect's own overhead (a flow run against the library
path). Prints a table and writes ``bench/results/latest.json`` and ``<UTC timestamp>.json``.

    .venv/bin/python bench/run.py --rows 10000000     # or: make bench SIZE=10000000

The module imports only the standard library at top level, so the baseline's child process
loads DuckDB alone and its peak RSS is not inflated by polars, pandera or the library.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

TITLES = [
    "President",
    "Prime Minister",
    "King",
    "Chancellor",
    "Secretary of State",
    "Foreign Minister",
]
VISIT_TYPES = ["State", "Official", "Working", "Private", "Transit", "Multilateral event"]
CITIES = [
    "Abu Dhabi",
    "Accra",
    "Addis Ababa",
    "Algiers",
    "Amman",
    "Amsterdam",
    "Ankara",
    "Astana",
    "Athens",
    "Baghdad",
    "Baku",
    "Bangkok",
    "Beijing",
    "Beirut",
    "Belgrade",
    "Berlin",
    "Bern",
    "Bogotá",
    "Brasília",
    "Bratislava",
    "Brussels",
    "Bucharest",
    "Budapest",
    "Buenos Aires",
    "Cairo",
    "Canberra",
    "Caracas",
    "Colombo",
    "Copenhagen",
    "Dakar",
    "Dhaka",
    "Doha",
    "Dublin",
    "Geneva",
    "Hanoi",
    "Havana",
    "Helsinki",
    "Islamabad",
    "Jakarta",
    "Kabul",
    "Kampala",
    "Kathmandu",
    "Khartoum",
    "Kyiv",
    "Kinshasa",
    "Kuala Lumpur",
    "Lagos",
    "Lima",
    "Lisbon",
    "Ljubljana",
    "London",
    "Luanda",
    "Madrid",
    "Manila",
    "Mexico City",
    "Minsk",
    "Moscow",
    "Nairobi",
    "New Delhi",
    "New York",
    "Oslo",
    "Ottawa",
    "Paris",
    "Prague",
    "Pretoria",
    "Quito",
    "Rabat",
    "Reykjavík",
    "Riga",
    "Riyadh",
    "Rome",
    "Santiago",
    "Seoul",
    "Singapore",
    "Sofia",
    "Stockholm",
    "Tallinn",
    "Tashkent",
    "Tbilisi",
    "Tehran",
    "Tokyo",
    "Tunis",
    "Ulaanbaatar",
    "Vienna",
    "Vilnius",
    "Warsaw",
    "Washington",
    "Wellington",
    "Yerevan",
    "Zagreb",
]
FIRST = [
    "Abdul",
    "Ahmed",
    "Aleksandar",
    "Ana",
    "Angela",
    "Antonio",
    "Beatriz",
    "Carlos",
    "Chen",
    "Dmitri",
    "Elena",
    "Emmanuel",
    "Fatima",
    "François",
    "Giorgia",
    "Hassan",
    "Hiroshi",
    "Ingrid",
    "Ivan",
    "Jacinda",
    "Jean-Claude",
    "José",
    "Julius",
    "Kwame",
    "Lars",
    "Leila",
    "Luiz",
    "Mahmoud",
    "Maria",
    "Mark",
    "Mette",
    "Mohammed",
    "Nelson",
    "Nguyen",
    "Olaf",
    "Park",
    "Pedro",
    "Rajiv",
    "Recep",
    "Sahra",
    "Sanna",
    "Sergei",
    "Shinzo",
    "Sheikh",
    "Tamim",
    "Ursula",
    "Viktor",
    "Vladimir",
    "Xi",
    "Yoweri",
]
LAST = [
    "Abbas",
    "Al Thani",
    "Andersen",
    "Bachelet",
    "Banda",
    "Costa",
    "da Silva",
    "Dlamini",
    "Erdoğan",
    "Fernández",
    "García",
    "Gonçalves",
    "Haddad",
    "Hernández",
    "Ivanov",
    "Jensen",
    "Kenyatta",
    "Khan",
    "Kim",
    "Kovács",
    "Lee",
    "Li",
    "López",
    "Mahama",
    "Meloni",
    "Modi",
    "Müller",
    "Nakamura",
    "Nkurunziza",
    "Novak",
    "O’Brien",
    "Okafor",
    "Olsen",
    "Petrov",
    "Popescu",
    "Ramírez",
    "Rossi",
    "Rutte",
    "Sánchez",
    "Santos",
    "Schmidt",
    "Silva",
    "Suzuki",
    "Tanaka",
    "Traoré",
    "Wang",
    "Wickremesinghe",
    "Yamamoto",
    "Zhang",
    "Zuma",
]
NOTES = [
    "Named in the Foreign Ministry's year-end briefing.",
    "Joint statement signed.",
    "Talks on trade and energy.",
    "Stopover  on the way to a summit.",  # a double space, cleaned by the mapping
    "Met the head of state and the “speaker” of parliament.",
]
PERSONS_PER_COUNTRY = 20
COUNTRIES = 200
FIRST_DAY = dt.date(1950, 1, 1)
LAST_DAY = dt.date(2024, 12, 31)
BAD_COUNTRY = "Atlantis"
BAD_DATE = "2023-13-45"
BAD_KINDS = ("host_atlantis", "visitor_atlantis", "bad_date")

MIB = 1024  # ru_maxrss is in KiB on Linux


# --------------------------------------------------------------------------- data generation


def shipped_titles(wanted: list[str]) -> list[str]:
    """The wanted titles that warehouse/reference/titles.csv has (a title it lacks is dropped)."""
    path = REPO / "warehouse" / "reference" / "titles.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        known = {row["title"].strip().casefold() for row in csv.DictReader(handle)}
    return [t for t in wanted if t.casefold() in known]


def country_names(count: int = COUNTRIES) -> list[str]:
    """`count` pycountry names that resolve to one code on every day of 1950-2024.

    Names with a dated alias row or a code with validity dates (Germany, Czechia, Viet Nam, ...)
    are left out, so every good row is good whatever its date; picks are spread over the list.
    """
    import pycountry

    from relations_etl.reference import Reference
    from relations_etl.settings import Settings
    from relations_etl.text import key

    with tempfile.TemporaryDirectory() as home:
        ref = Reference.load(Settings(home=Path(home)))
    usable = []
    for country in sorted(pycountry.countries, key=lambda c: c.name):
        name = country.name
        first, last = ref.resolve_country(name, FIRST_DAY), ref.resolve_country(name, LAST_DAY)
        if key(name) in ref.aliases or first.code is None or first.code != last.code:
            continue
        known = ref.countries[first.code]
        if known.valid_from is None and known.valid_to is None:
            usable.append(name)
    if len(usable) <= count:
        return usable
    return [usable[i * len(usable) // count] for i in range(count)]


def generate(path: Path, rows: int, seed: int) -> dict[str, Any]:
    """Write the synthetic visits CSV; returns what was written (counts of bad rows by kind).

    Each row is a visit of one of 20 persons per visitor country (country, title and name fixed
    per person, as real lists repeat their heads of state) to a different host country, on a
    uniform ISO day of 1950-2024. About 1% of rows are bad, in equal thirds: host 'Atlantis',
    visitor country 'Atlantis', or date '2023-13-45'. Randomness is polars' seeded hash of the
    row number, so the same seed and polars version give the same bytes.
    """
    import polars as pl

    countries = country_names()
    titles = shipped_titles(TITLES)
    persons_country, persons_title, persons_name = [], [], []
    for c, country in enumerate(countries):
        for p in range(PERSONS_PER_COUNTRY):
            persons_country.append(country)
            persons_title.append(titles[(c + p) % len(titles)])
            persons_name.append(
                f"{FIRST[(c * 7 + p * 3) % len(FIRST)]} {LAST[(c * 11 + p) % len(LAST)]}"
            )
    n_persons, n_countries = len(persons_name), len(countries)
    n_days = (LAST_DAY - FIRST_DAY).days + 1

    def draw(stream: int, modulo: int) -> pl.Expr:
        return (pl.col("i").hash(seed=seed * 1000 + stream) % modulo).cast(pl.Int64)

    picks = pl.select(pl.int_range(0, rows, dtype=pl.Int64).alias("i")).with_columns(
        draw(1, n_persons).alias("person"),
        draw(2, n_countries - 1).alias("host_offset"),
        draw(3, n_days).alias("day"),
        draw(4, len(VISIT_TYPES)).alias("visit_type"),
        draw(5, len(CITIES) * 3).alias("city"),  # two thirds of cities left empty
        draw(6, len(NOTES) * 5).alias("notes"),  # four fifths of notes left empty
        (draw(7, 100) == 0).alias("bad"),
        draw(8, len(BAD_KINDS)).alias("bad_kind"),
    )
    person = picks.get_column("person")
    visitor_index = person // PERSONS_PER_COUNTRY
    # a different country than the visitor's: shift by 1..n-1
    host_index = (visitor_index + picks.get_column("host_offset") + 1) % n_countries

    def gather(values: list[str], index: pl.Series) -> pl.Series:
        return pl.Series(values, dtype=pl.String).gather(index)

    def gather_some(values: list[str], index: pl.Series) -> pl.Series:
        return pl.select(
            pl.when(index < len(values)).then(
                pl.lit(pl.Series(values, dtype=pl.String)).gather(index.clip(0, len(values) - 1))
            )
        ).to_series()

    record = picks.select(
        pl.format("V{}", pl.col("i").cast(pl.String).str.zfill(8)).alias("record")
    ).to_series()
    day = picks.select(
        (pl.lit(FIRST_DAY) + pl.duration(days=pl.col("day"))).dt.strftime("%Y-%m-%d")
    ).to_series()
    frame = pl.DataFrame(
        {
            "record": record,
            "host": gather(countries, host_index),
            "visitor_country": gather(persons_country, person),
            "visitor": gather(persons_name, person),
            "title": gather(persons_title, person),
            "visit_type": gather(VISIT_TYPES, picks.get_column("visit_type")),
            "date": day,
            "city": gather_some(CITIES, picks.get_column("city")),
            "notes": gather_some(NOTES, picks.get_column("notes")),
        }
    )
    bad = picks.get_column("bad")
    kind = picks.get_column("bad_kind")
    frame = frame.with_columns(
        pl.when(bad & (kind == 0)).then(pl.lit(BAD_COUNTRY)).otherwise("host").alias("host"),
        pl.when(bad & (kind == 1))
        .then(pl.lit(BAD_COUNTRY))
        .otherwise("visitor_country")
        .alias("visitor_country"),
        pl.when(bad & (kind == 2)).then(pl.lit(BAD_DATE)).otherwise("date").alias("date"),
    )
    frame.write_csv(path)
    counts = {name: int((bad & (kind == k)).sum()) for k, name in enumerate(BAD_KINDS)}
    return {
        "rows": rows,
        "bytes": path.stat().st_size,
        "countries": n_countries,
        "titles": titles,
        "persons": n_persons,
        "bad_rows": int(bad.sum()),
        "bad_by_kind": counts,
    }


# --------------------------------------------------------------------------- the two paths


def make_source(csv_path: Path) -> Any:
    """The visits Source for the synthetic CSV, as a sources.yaml entry would build it."""
    from relations_etl.config import Kind, Mapping, Source

    mapping = Mapping(
        record_id=["record"],
        columns={
            "host": "host_country",
            "visitor_country": "visitor_country",
            "visitor": "visitor_name",
            "title": "visitor_title",
            "visit_type": "visit_type",
            "date": "start_date",
            "city": "city",
            "notes": "notes",
        },
    )
    mapping.check_fields(Kind.VISITS, "bench")
    return Source(
        name="bench-visits", kind=Kind.VISITS, uri=str(csv_path), format="csv", mapping=mapping
    )


def run_baseline(csv_path: Path, out: Path) -> float:
    """DuckDB's bare CSV -> Parquet copy in this process; returns wall seconds."""
    import duckdb

    out.unlink(missing_ok=True)
    started = time.perf_counter()
    conn = duckdb.connect()
    try:
        conn.execute(
            f"COPY (SELECT * FROM read_csv('{csv_path}', all_varchar=true)) "
            f"TO '{out}' (FORMAT parquet)"
        )
    finally:
        conn.close()
    return time.perf_counter() - started


def run_full(csv_path: Path, home: Path) -> tuple[float, dict[str, Any]]:
    """run_source into a fresh warehouse home; returns wall seconds and the LoadResult."""
    from relations_etl.pipeline import run_source
    from relations_etl.settings import Settings

    shutil.rmtree(home, ignore_errors=True)
    source = make_source(csv_path)
    settings = Settings(home=home)
    started = time.perf_counter()
    result = run_source(source, settings)
    elapsed = time.perf_counter() - started
    return elapsed, summary(result)


def summary(result: Any) -> dict[str, Any]:
    """The counts of a LoadResult, JSON-ready."""
    return {
        "rows_read": result.rows_read,
        "rows_loaded": result.rows_loaded,
        "rows_rejected": result.rows_rejected,
        "rows_deduplicated": result.rows_deduplicated,
        "facts_written": result.facts_written,
        "years": {table: len(years) for table, years in result.years.items()},
    }


def timed_into(seconds: dict[str, float], name: str, call: Callable[[], Any]) -> Any:
    """Call `call`, store its wall seconds under `name`, return its value."""
    started = time.perf_counter()
    value = call()
    seconds[name] = time.perf_counter() - started
    return value


def run_stages(csv_path: Path, home: Path) -> dict[str, Any]:
    """The full path once more, stage by stage through the library's functions; `prepare`
    reports its own steps (parse, mapping, normalize, validate, stage, split)."""
    from relations_etl import pipeline
    from relations_etl.publish import publish_pending
    from relations_etl.reference import Reference
    from relations_etl.settings import Settings

    shutil.rmtree(home, ignore_errors=True)
    source = make_source(csv_path)
    settings = Settings(home=home)
    seconds: dict[str, float] = {}

    def timed(name: str, call: Callable[[], Any]) -> Any:
        return timed_into(seconds, name, call)

    ref = timed("reference", lambda: Reference.load(settings))
    fetched = timed("fetch", lambda: pipeline.read_source(source, settings))
    steps: dict[str, float] = {}
    prepared = timed("prepare", lambda: pipeline.prepare(fetched, source, ref, settings, steps))
    batch = pipeline.new_batch(source)
    facts_rows, rejected_rows = prepared.facts.height, prepared.rejected.height
    result = timed("load", lambda: pipeline.load_source(settings, batch, prepared, ref))
    published = timed("publish", lambda: publish_pending(settings))
    return {
        "seconds": seconds,
        "prepare_steps": steps,
        "result": summary(result),
        "files_published": len(published),
        "facts_rows": facts_rows,
        "rejected_rows": rejected_rows,
    }


def shared_lists(work: Path) -> dict[str, Any]:
    """The library path on the real lists in RELATIONS_ETL_SHARED_DATA (or ../shared/data): the
    HSG visits (XML, one file per decade) and the UN Security Council elected members (CSV,
    yearly memberships); each loaded into a fresh home, then run again unchanged (skipped)."""
    from relations_etl.config import Kind, source_for
    from relations_etl.pipeline import run_source
    from relations_etl.settings import Settings

    root = Path(os.environ.get("RELATIONS_ETL_SHARED_DATA", REPO.parent / "shared" / "data"))
    lists = {
        "hsg_visits": (Kind.VISITS, root / "hsg-visits", "hsg-visits-xml", None),
        "unsc_memberships": (
            Kind.MEMBERSHIPS,
            root / "unsc-elected" / "security_council_non_permanent.csv",
            None,
            REPO / "examples" / "mappings" / "unsc-elected.yaml",
        ),
    }
    out: dict[str, Any] = {}
    for name, (kind, path, fmt, mapping) in lists.items():
        if not path.exists():
            out[name] = {"skipped": f"{path} not found"}
            continue
        source = source_for(kind, str(path), fmt, mapping)
        settings = Settings(home=work / f"home-{name}")
        shutil.rmtree(settings.home, ignore_errors=True)
        started = time.perf_counter()
        result = run_source(source, settings)
        loaded = time.perf_counter() - started
        started = time.perf_counter()
        again = run_source(source, settings)
        out[name] = {
            "load_s": loaded,
            "unchanged_s": time.perf_counter() - started,
            "skipped": again.unchanged_since is not None,
            **summary(result),
        }
        shutil.rmtree(settings.home, ignore_errors=True)
    return out


def prefect_overhead(work: Path) -> dict[str, Any]:
    """The same list (the sample relations of examples/) through the library path and through
    the `ingest-source` flow under Prefect's test harness: what Prefect itself costs, apart."""
    from relations_etl.config import load_sources
    from relations_etl.pipeline import run_source
    from relations_etl.settings import Settings

    source = next(
        s for s in load_sources(REPO / "examples" / "sources.yaml") if s.kind.value == "relations"
    )
    library_home, flow_home = work / "home-library", work / "home-flow"
    for home in (library_home, flow_home):
        shutil.rmtree(home, ignore_errors=True)
    started = time.perf_counter()
    run_source(source, Settings(home=library_home))
    library = time.perf_counter() - started
    started = time.perf_counter()
    from prefect.testing.utilities import prefect_test_harness
    from relations_etl_flows.ingest import ingest_source

    imports = time.perf_counter() - started
    started = time.perf_counter()
    with prefect_test_harness():
        harness = time.perf_counter() - started
        started = time.perf_counter()
        ingest_source(source, home=str(flow_home))
        flow = time.perf_counter() - started
    return {
        "list": source.name,
        "library_s": library,
        "prefect_import_s": imports,
        "prefect_server_start_s": harness,
        "flow_s": flow,
        "flow_overhead_s": flow - library,
    }


_DEMO_CHILD = """
import json, sys, time
began = time.time()
started = time.perf_counter()
from pathlib import Path
from relations_etl.config import load_sources
from relations_etl.pipeline import run_source, run_sources
from relations_etl.settings import Settings
imports = time.perf_counter() - started
repo, home = Path(sys.argv[1]), Path(sys.argv[2])
sources = load_sources(repo / "examples" / "sources.yaml")
settings = Settings(home=home)
runs = []
for _ in range(2):
    started = time.perf_counter()
    summary = run_sources(settings, sources, lambda s: run_source(s, settings))
    runs.append(time.perf_counter() - started)
results = summary.results
print(json.dumps({
    "began": began,
    "imports_s": imports,
    "load_s": runs[0],
    "unchanged_s": runs[1],
    "sources": len(sources),
    "skipped": sum(r.unchanged_since is not None for r in results),
    "failures": summary.failures,
}))
"""


def demo_config(work: Path) -> dict[str, Any]:
    """The library path on the shipped sample lists (examples/sources.yaml, every source), in a
    fresh interpreter: its start, the imports, the first load and an unchanged rerun, apart."""
    home = work / "home-demo"
    shutil.rmtree(home, ignore_errors=True)
    began = time.time()
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _DEMO_CHILD, str(REPO), str(home)],
        capture_output=True,
        text=True,
        check=True,
    )
    process = time.perf_counter() - started
    shutil.rmtree(home, ignore_errors=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["interpreter_start_s"] = figures.pop("began") - began
    figures["process_s"] = process
    return figures


# --------------------------------------------------------------------------- peak memory


def _worker(kind: str, csv_path: str, target: str, queue: Any) -> None:
    """Grandchild: run one path, report its own wall time and ru_maxrss."""
    if kind == "baseline":
        elapsed, extra = run_baseline(Path(csv_path), Path(target)), {}
    elif kind == "full":
        elapsed, extra = run_full(Path(csv_path), Path(target))
    else:  # "imports": the fixed cost of the library path, for reading the full path's figure
        import relations_etl.pipeline  # noqa: F401

        elapsed, extra = 0.0, {}
    queue.put(
        {
            "seconds": elapsed,
            "self_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            **extra,
        }
    )


def _measurer(kind: str, csv_path: str, target: str, queue: Any) -> None:
    """Child: spawn the worker, then read RUSAGE_CHILDREN (it has no other children)."""
    ctx = mp.get_context("spawn")
    inner = ctx.Queue()
    process = ctx.Process(target=_worker, args=(kind, csv_path, target, inner))
    process.start()
    report = _answer(inner, process)
    process.join()
    report["children_maxrss_kib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    report["exitcode"] = process.exitcode
    queue.put(report)


def peak_rss(kind: str, csv_path: Path, target: Path) -> dict[str, Any]:
    """Peak RSS of one path, run alone in a spawned process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_measurer, args=(kind, str(csv_path), str(target), queue))
    process.start()
    report = _answer(queue, process)
    process.join()
    if process.exitcode or "failed" in report:
        # the peak up to the failure is still a figure; the JSON says the run failed
        report.setdefault("failed", f"exit code {process.exitcode}")
    report["peak_rss_mib"] = report.get("children_maxrss_kib", 0) / MIB
    return report


def _answer(queue: Any, process: Any) -> dict[str, Any]:
    """What a child put on the queue; a child that died without answering is a failed run
    (waiting on the queue alone would wait for ever)."""
    import queue as queues

    while True:
        try:
            answer: dict[str, Any] = queue.get(timeout=1)
            return answer
        except queues.Empty:
            if not process.is_alive():
                return {"failed": f"exited with {process.exitcode} before reporting"}


# --------------------------------------------------------------------------- profile


def profile_full(csv_path: Path, home: Path, stem: Path) -> list[str]:
    """cProfile one run_source; save the .prof and return the top 15 by tottime and cumtime."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    run_full(csv_path, home)
    profiler.disable()
    profiler.dump_stats(str(stem.with_suffix(".prof")))
    texts = []
    for order in ("tottime", "cumulative"):
        buffer = io.StringIO()
        pstats.Stats(profiler, stream=buffer).strip_dirs().sort_stats(order).print_stats(15)
        texts.append(buffer.getvalue())
    stem.with_suffix(".profile.txt").write_text("\n".join(texts), encoding="utf-8")
    return texts


# --------------------------------------------------------------------------- report


def environment() -> dict[str, Any]:
    """Versions and machine, so results from different runs can be compared."""
    import duckdb
    import pandera
    import polars as pl

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
            ).stdout.strip()
        except OSError:
            return ""

    return {
        "python": platform.python_version(),
        "polars": pl.__version__,
        "duckdb": duckdb.__version__,
        "pandera": pandera.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "polars_threads": pl.thread_pool_size(),
        "git_commit": git("rev-parse", "HEAD"),
        "library_dirty": bool(git("status", "--porcelain", "--", "src", "warehouse")),
    }


def checks(expected_bad: int, rows: int, result: dict[str, Any]) -> dict[str, Any]:
    """Does the full path reject exactly the planted bad rows and load all the others?"""
    wanted = {
        "rows_read": rows,
        "rows_rejected": expected_bad,
        "rows_loaded": rows - expected_bad,
        "rows_deduplicated": 0,
        "facts_written": rows - expected_bad,
    }
    problems = {
        k: {"expected": v, "got": result.get(k)} for k, v in wanted.items() if result.get(k) != v
    }
    return {"ok": not problems, "problems": problems}


def print_table(report: dict[str, Any]) -> None:
    """The human-readable summary."""
    base = report["bare_copy_s"]
    lines = [
        f"rows: {report['rows']:,}   csv: {report['csv']['bytes'] / 2**20:.1f} MiB   "
        f"bad rows planted: {report['csv']['bad_rows']:,}   batch_rows: {report['batch_rows']:,}",
        "",
        f"{'what':<34}{'seconds':>10}{'x bare copy':>12}{'rows/s':>14}",
        f"{'-' * 70}",
    ]

    def line(name: str, seconds: float) -> str:
        rate = report["rows"] / seconds if seconds else float("nan")
        return f"{name:<34}{seconds:>10.3f}{seconds / base:>12.1f}{rate:>14,.0f}"

    lines.append(line("bare copy: duckdb csv->parquet", base))
    lines.append(line("full path: run_source", report["full_path_s"]))
    for name, seconds in report["stages_s"].items():
        lines.append(line(f"  stage {name}", seconds))
    for name, seconds in report.get("prepare_steps_s", {}).items():
        lines.append(line(f"    prepare/{name}", seconds))
    lines.append(f"{'-' * 70}")
    lines.append(f"ratio full / bare copy: {report['ratio']:.1f}x")
    if report.get("peak_rss_mb") is not None:
        lines.append(
            f"peak RSS: full {report['peak_rss_mb']:,.0f} MiB, bare copy "
            f"{report['bare_peak_rss_mb']:,.0f} MiB, library imports only "
            f"{report['imports_peak_rss_mb']:,.0f} MiB"
        )
    for name, figures in report.get("shared_lists", {}).items():
        if "load_s" in figures:
            lines.append(
                f"{name}: {figures['rows_read']:,} rows loaded in "
                f"{figures['load_s']:.2f} s, unchanged rerun "
                f"{figures['unchanged_s']:.2f} s"
            )
        else:
            lines.append(f"{name}: {figures['skipped']}")
    demo = report.get("demo_config")
    if demo:
        lines.append(
            f"sample lists ({demo['sources']} sources of examples/sources.yaml): loaded in "
            f"{demo['load_s']:.2f} s, unchanged rerun {demo['unchanged_s']:.2f} s "
            f"({demo['skipped']} skipped); interpreter start {demo['interpreter_start_s']:.2f} s, "
            f"imports {demo['imports_s']:.2f} s"
        )
    prefect = report.get("prefect")
    if prefect:
        lines.append(
            f"prefect: library path {prefect['library_s']:.2f} s, flow "
            f"{prefect['flow_s']:.2f} s (+{prefect['flow_overhead_s']:.2f} s), server "
            f"start {prefect['prefect_server_start_s']:.2f} s, imports "
            f"{prefect['prefect_import_s']:.2f} s"
        )
    lines.append("conservation: " + ("ok" if report["conservation_ok"] else "BROKEN"))
    lines.append(
        "correctness: "
        + ("ok" if report["checks"]["ok"] else f"MISMATCH {report['checks']['problems']}")
    )
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run everything, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="CSV rows (default 1e6)")
    parser.add_argument("--quick", action="store_true", help="100,000 rows")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--baseline-repeats", type=int, default=3)
    parser.add_argument("--full-repeats", type=int, default=1)
    parser.add_argument(
        "--batch-rows",
        type=int,
        default=None,
        help="raw rows per chunk (RELATIONS_ETL_BATCH_ROWS; default the setting's)",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS children")
    parser.add_argument("--no-shared", action="store_true", help="skip the real shared lists")
    parser.add_argument("--no-prefect", action="store_true", help="skip the Prefect flow run")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile one more full run; top 15 printed, .prof saved",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the CSV and warehouses go (default: a new temp dir)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS_DIR,
        help="where <timestamp>.json and latest.json go (default bench/results)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir afterwards")
    args = parser.parse_args(argv)
    rows = 100_000 if args.quick else args.rows
    if args.batch_rows:  # the children spawned for memory read it from the environment too
        os.environ["RELATIONS_ETL_BATCH_ROWS"] = str(args.batch_rows)
    from relations_etl.settings import Settings

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    results: Path = args.results
    results.mkdir(parents=True, exist_ok=True)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="relations-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    csv_path = work / "visits.csv"

    def say(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    try:
        say(f"generating {rows:,} rows in {work}")
        started = time.perf_counter()
        generated = generate(csv_path, rows, args.seed)
        generated["generate_s"] = time.perf_counter() - started
        report: dict[str, Any] = {
            "timestamp": stamp,
            "rows": rows,
            "seed": args.seed,
            "batch_rows": Settings().batch_rows,
            "csv": generated,
            "environment": environment(),
        }

        say(f"bare copy x{args.baseline_repeats}")
        runs = [
            run_baseline(csv_path, work / "baseline.parquet") for _ in range(args.baseline_repeats)
        ]
        report["bare_copy_s"] = min(runs)
        report["baseline"] = {
            "runs_s": runs,
            "parquet_bytes": (work / "baseline.parquet").stat().st_size,
        }
        say(f"bare copy best {min(runs):.3f}s")

        say(f"full path x{args.full_repeats}")
        full_runs, result = [], {}
        for n in range(args.full_repeats):
            seconds, result = run_full(csv_path, work / f"home-full-{n}")
            full_runs.append(seconds)
            say(f"full run {n + 1}: {seconds:.3f}s")
            shutil.rmtree(work / f"home-full-{n}", ignore_errors=True)
        report["full_path_s"] = min(full_runs)
        report["full"] = {"runs_s": full_runs, "result": result}
        report["ratio"] = min(full_runs) / min(runs)
        report["rows_rejected"] = result["rows_rejected"]
        report["conservation_ok"] = result["rows_read"] == (
            result["rows_loaded"] + result["rows_rejected"] + result["rows_deduplicated"]
        )
        report["checks"] = checks(generated["bad_rows"], rows, result)

        say("stages once")
        stages = run_stages(csv_path, work / "home-stages")
        report["stages_s"] = {**stages["seconds"], "total": sum(stages["seconds"].values())}
        report["prepare_steps_s"] = stages["prepare_steps"]
        report["stages_detail"] = {
            k: v for k, v in stages.items() if k not in ("seconds", "prepare_steps")
        }
        shutil.rmtree(work / "home-stages", ignore_errors=True)

        report["peak_rss_mb"] = report["bare_peak_rss_mb"] = None
        if not args.no_memory:
            memory: dict[str, Any] = {}
            for kind, target in (
                ("imports", work / "unused"),
                ("baseline", work / "baseline-mem.parquet"),
                ("full", work / "home-mem"),
            ):
                say(f"peak RSS: {kind}")
                memory[kind] = peak_rss(kind, csv_path, target)
            shutil.rmtree(work / "home-mem", ignore_errors=True)
            failed = {k: m["failed"] for k, m in memory.items() if "failed" in m}
            if failed:
                report["memory_failed"] = failed
                say(f"peak RSS runs failed: {failed}")
            report["peak_rss_mb"] = memory["full"]["peak_rss_mib"]
            report["bare_peak_rss_mb"] = memory["baseline"]["peak_rss_mib"]
            report["imports_peak_rss_mb"] = memory["imports"]["peak_rss_mib"]
            report["memory_method"] = (
                "getrusage(RUSAGE_CHILDREN).ru_maxrss in a spawned child "
                "whose only child (also spawned) ran the path; MiB"
            )
            report["memory_runs"] = memory

        say("the shipped sample lists (library path, a fresh interpreter)")
        report["demo_config"] = demo_config(work)
        if not args.no_shared:
            say("real lists (library path)")
            report["shared_lists"] = shared_lists(work)
        if not args.no_prefect:
            say("Prefect: the same list as a flow and through the library")
            report["prefect"] = prefect_overhead(work)

        if args.profile:
            say("profiling one full run (cProfile)")
            texts = profile_full(csv_path, work / "home-profile", results / stamp)
            report["profile_files"] = [f"{stamp}.prof", f"{stamp}.profile.txt"]
            print("\n".join(texts))

        text = json.dumps(report, indent=2, default=str) + "\n"
        out = results / f"{stamp}.json"
        out.write_text(text, encoding="utf-8")
        (results / "latest.json").write_text(text, encoding="utf-8")
        print()
        print_table(report)
        print(f"\nwritten {out} and {results / 'latest.json'}")
        ok = report["checks"]["ok"] and report["conservation_ok"] and "memory_failed" not in report
        return 0 if ok else 1
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
