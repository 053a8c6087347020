"""The hostile corpus (tests/cases/hostile): every broken or malicious list fails clearly or is
quarantined row by row, and nothing already loaded is lost."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
import yaml
from relations_etl_flows.cli import main

from relations_etl import errors
from relations_etl.config import Kind, Mapping, Source, builtin_mapping, load_sources
from relations_etl.extract import extract
from relations_etl.pipeline import run_source
from relations_etl.query import analyst_connection, check_statement, execute
from relations_etl.reference import Reference
from relations_etl.sandbox import landlock_abi, run_sandboxed
from relations_etl.settings import Settings
from tests.conftest import Cli, Done, QuietHandler, Serve
from tests.hostile_cases import DAMAGE, GENERATORS, LEAN, MEMORY, SECONDS, worker_main

CASES_DIR = Path(__file__).parent / "cases" / "hostile"
SPEC = yaml.safe_load((CASES_DIR / "cases.yaml").read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = SPEC["cases"]
NAME = "hostile"
GOOD = ["g1", "g2", "g3"]


def _case_id(case: dict[str, Any]) -> str:
    name = next(case[k] if k == "file" else f"{k}={case[k]}" for k in CASE_INPUTS if k in case)
    extra = "+".join(f"{k}={v}" for k, v in {**case.get("options", {})}.items())
    marks = "".join(
        f"[{k}={case[k]}]" if k in ("damage", "mount", "as") else f"[{k}]"
        for k in ("mapping", "settings", "landing", "as", "damage", "mount")
        if k in case
    )
    return str(name) + (f"[{extra}]" if extra else "") + marks


CASE_INPUTS = ("file", "uri", "generate", "http")


def hostile_source(case: dict[str, Any], name: str = NAME) -> Source:
    """The Source a case describes: the base mapping with the case's mapping and options."""
    fmt = case.get("format")
    if fmt == "hsg-visits-xml":
        mapping = builtin_mapping(fmt, Kind.VISITS)
    else:
        data = {**SPEC["base_mapping"], **case.get("mapping", {})}
        data["options"] = {**data.get("options", {}), **case.get("options", {})}
        mapping = Mapping.model_validate(data)
    uri = str(CASES_DIR / case["file"])
    good = str(CASES_DIR / "good.csv")
    return Source(
        name=name,
        kind=Kind.VISITS,
        uri=uri,
        format=fmt,
        mapping=mapping,
        # every case loads as `hostile` over good.csv: each declares the move, as a user must
        moved_from=good if uri != good else None,
        # a case is one more file for the source, not a new version of the whole list: what
        # the corpus checks is that hostile input never costs a row already loaded
        mode="append",
    )


@pytest.fixture(scope="module")
def ref() -> Reference:
    return Reference.load(Settings())


def _good_rows(settings: Settings) -> list[tuple[Any, ...]]:
    conn = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        return conn.execute(
            "SELECT visit_id, visitor_name, visitor_country, start_date, end_date, batch_id "
            "FROM visits WHERE source = ? AND source_record IN ('g1', 'g2', 'g3') ORDER BY 1",
            [NAME],
        ).fetchall()
    finally:
        conn.close()


@pytest.fixture
def loaded(tmp_path: Path, ref: Reference) -> tuple[Settings, list[tuple[Any, ...]]]:
    """A warehouse that already holds good.csv as source `hostile`."""
    settings = Settings(home=tmp_path / "warehouse")
    result = run_source(hostile_source({"file": "good.csv"}), settings, ref=ref)
    assert (result.rows_loaded, result.rows_rejected) == (3, 0)
    before = _good_rows(settings)
    assert len(before) == 3
    return settings, before


def test_corpus_is_big_enough() -> None:
    files = [p for p in CASES_DIR.rglob("*") if p.is_file() and p.suffix != ".py"]
    assert len(files) >= 40
    named = {c["file"] for c in CASES if "file" in c}
    unused = sorted(
        str(p.relative_to(CASES_DIR))
        for p in files
        if p.name not in ("good.csv", "cases.yaml", "sql.yaml")
        and p.name not in named
        and p.parent.name not in named
    )
    assert unused == [], "every corpus file has a case"
    generated = {c["generate"] for c in CASES if "generate" in c}
    assert generated == set(GENERATORS), "every generator has a case"
    assert {c["damage"] for c in CASES if "damage" in c} == set(DAMAGE)


# --- the corpus, each case in a worker process under a memory ceiling and a time limit --------


class CaseWorker:
    """A spawned process, limited to hostile_cases.MEMORY of address space, that runs cases.

    A call that takes longer than hostile_cases.SECONDS, or a worker that dies (a crash, or
    memory beyond the ceiling), fails the test that made the call; a fresh worker serves the
    next one.
    """

    def __init__(self) -> None:
        self.process: Any = None
        self.conn: Any = None

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        saved = {name: os.environ.get(name) for name in LEAN}
        os.environ.update(LEAN)
        try:
            self.process = context.Process(
                target=worker_main, args=(child, MEMORY), name="hostile-case-worker"
            )
            self.process.start()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        child.close()

    def stop(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.conn.send(None)
            self.process.join(10)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(5)
        self.process = None

    def _restart(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.join(5)
        self.process = None

    def call(self, name: str, **kwargs: Any) -> tuple[str, Any]:
        """("ok", value) or ("raised", exception) from hostile_cases.FUNCTIONS[name]."""
        if self.process is None or not self.process.is_alive():
            self._start()
        self.conn.send((name, kwargs))
        if not self.conn.poll(SECONDS):
            self._restart()
            pytest.fail(f"{name} took longer than {SECONDS} s: a case costs more than it weighs")
        try:
            answer: tuple[str, Any] = self.conn.recv()
        except EOFError:
            code = self.process.exitcode
            self._restart()
            pytest.fail(
                f"{name} killed the worker (exit {code}): a crash, or more than "
                f"{MEMORY // 1024**3} GiB of memory"
            )
        return answer


@pytest.fixture(scope="module")
def worker() -> Iterator[CaseWorker]:
    serving = CaseWorker()
    yield serving
    serving.stop()


def _case_uri(case: dict[str, Any], tmp_path: Path, url: str) -> str:
    if "file" in case:
        return str(CASES_DIR / case["file"])
    if "generate" in case:
        return str(GENERATORS[case["generate"]](tmp_path))
    if "http" in case:
        return url + case["http"]
    return str(case["uri"]).replace("{cases}", str(CASES_DIR))


def _prepared(tmp_path: Path, worker: CaseWorker) -> tuple[Settings, list[tuple[Any, ...]]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    settings = Settings(home=tmp_path / "warehouse")
    status, result = worker.call("load_good", home=str(settings.home), folder=str(tmp_path))
    assert status == "ok", result
    assert (result.rows_loaded, result.rows_rejected) == (3, 0)
    before = _good_rows(settings)
    assert len(before) == 3
    return settings, before


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_case(case: dict[str, Any], worker: CaseWorker, tmp_path: Path, serve: Serve) -> None:
    if "mount" in case:
        _mounted_case(case, worker, tmp_path)
        return
    settings, before = _prepared(tmp_path, worker)
    url = serve(CASES_DIR, HostileHandler)[0] if "http" in case else ""
    uri = _case_uri(case, tmp_path, url)
    if "landing" in case:
        case = {**case, "landing": str(case["landing"]).replace("{cases}", str(CASES_DIR))}
        case["landing"] = case["landing"].replace("{tmp}", str(tmp_path))
    damaged = None
    if "damage" in case:
        DAMAGE[case["damage"]](settings.home)
        damaged = settings.db_path.read_bytes()
    status, outcome = worker.call(
        "run_case", case=case, uri=uri, home=str(settings.home), folder=str(tmp_path)
    )
    if "error" in case:
        assert status == "raised", f"expected {case['error']['class']}, got {outcome}"
        _assert_error(case, outcome, settings)
        if damaged is not None:
            assert settings.db_path.read_bytes() == damaged, "nothing is written into it"
            status, answer = worker.call("run_query", home=str(settings.home), query="SELECT 1")
            assert status == "raised" and isinstance(answer, errors.WarehouseError), answer
            assert answer.exit_code == 74
            return
        if "rejected" in case:  # a batch failed for its rejected rows still quarantines them
            assert outcome.batch_id is not None
            _assert_rejections(settings, outcome.batch_id, case)
            assert _counts(settings, outcome.batch_id) == (case["read"], 0, case["rejected"])
    else:
        assert status == "ok", outcome
        if "as" in case:  # a configuration file that reads
            return
        result = outcome
        counts = (
            result.rows_read,
            result.rows_loaded,
            result.rows_rejected,
            result.rows_deduplicated,
        )
        assert counts == (case["read"], case["loaded"], case["rejected"], case["deduplicated"])
        assert result.rows_read == (
            result.rows_loaded + result.rows_rejected + result.rows_deduplicated
        )
        assert result.publish_pending is None
        _assert_rejections(settings, result.batch_id, case)
        _assert_values(settings, result.batch_id, case.get("values", {}))
        if "restored" in case:
            _assert_published(settings, case["restored"])
    assert _good_rows(settings) == before, "rows already loaded must survive"


def _assert_error(case: dict[str, Any], error: Any, settings: Settings) -> None:
    expected = case["error"]
    assert isinstance(error, getattr(errors, expected["class"])), repr(error)
    assert error.exit_code == expected["exit_code"]
    for attribute in expected["names"]:
        assert getattr(error, attribute) is not None, f"{attribute} missing from {error}"
    if "source" in expected["names"]:
        assert error.source == NAME
    assert expected["says"] in str(error)
    for text in case.get("never_says", []):
        assert text not in str(error), f"{text!r} leaked into the message"
    assert "\n" not in str(error), "one paragraph"
    if "damage" not in case and "as" not in case and "source" in expected["names"]:
        _assert_failure_audited(settings, str(error))


def _assert_published(settings: Settings, table: str) -> None:
    """The files of `table` are whole again and hold the table's rows."""
    conn = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    finally:
        conn.close()
    files = sorted((settings.parquet_dir / table).glob("year=*/data.parquet"))
    assert files
    assert sum(pq.read_metadata(f).num_rows for f in files) == (rows[0] if rows else None)


def _mounted_case(case: dict[str, Any], worker: CaseWorker, tmp_path: Path) -> None:
    """A case on a tmpfs mounted in a mount namespace of its own (a read-only home, a full
    disk): `unshare --mount` runs `python -m tests.hostile_cases mounted` under the ceiling."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) to mount a tmpfs in a private mount namespace")
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "mount", "-t", "tmpfs", "tmpfs",
         str(tmp_path)],
        capture_output=True, check=False, timeout=30,
    )  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.decode().strip()}")
    prepared, _ = _prepared(tmp_path / "prepared", worker)
    spec = {
        "mount": case["mount"],
        "case": case,
        "uri": _case_uri(case, tmp_path, ""),
        "home": str(tmp_path / "home"),
        "prepared": str(prepared.home),
        "folder": str(tmp_path),
    }
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-m",
         "tests.hostile_cases", "mounted", json.dumps(spec)],
        capture_output=True, text=True, check=False, timeout=SECONDS,
        cwd=Path(__file__).parent.parent, env={**os.environ, **LEAN},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    expected = case["outcome"]
    if "error" in expected:
        assert outcome.get("error"), outcome
        assert expected["error"] in outcome["error"]["mro"], outcome
        assert outcome["error"]["exit_code"] == expected["exit_code"], outcome
        assert expected["says"] in outcome["error"]["text"], outcome
    else:
        assert outcome.get("result"), outcome
        assert expected["says"] in (outcome["result"]["publish_pending"] or ""), outcome
    assert outcome["unchanged"] is expected["unchanged"], outcome
    assert [status for (status,) in outcome["audit"]] == expected["audit"], outcome
    assert outcome["queued"] == [expected["queued"]], outcome
    assert outcome["sql"] == expected["sql"], outcome


def _assert_failure_audited(settings: Settings, message: str) -> None:
    conn = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        status, error = conn.execute(
            "SELECT status, error FROM load_batches WHERE source = ? ORDER BY started_at DESC "
            "LIMIT 1",
            [NAME],
        ).fetchone() or (None, None)
    finally:
        conn.close()
    assert (status, error) == ("failed", message)


def _counts(settings: Settings, batch_id: str) -> tuple[Any, ...]:
    """A batch's audited counts: read, loaded, rejected."""
    conn = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        return (
            conn.execute(
                "SELECT rows_read, rows_loaded, rows_rejected FROM load_batches WHERE batch_id = ?",
                [batch_id],
            ).fetchone()
            or ()
        )
    finally:
        conn.close()


def _rejected(settings: Settings, batch_id: str) -> list[dict[str, Any]]:
    conn = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        rows = conn.execute(
            "SELECT source_row, source_record, CAST(raw AS VARCHAR), "
            "list_transform(errors, lambda e: e['check']), "
            "list_transform(errors, lambda e: e.message) "
            "FROM rejected_rows WHERE batch_id = ? ORDER BY source_file, source_row",
            [batch_id],
        ).fetchall()
    finally:
        conn.close()
    return [
        {"row": r[0], "record": r[1], "raw": json.loads(r[2]), "checks": r[3], "messages": r[4]}
        for r in rows
    ]


def _assert_rejections(settings: Settings, batch_id: str, case: dict[str, Any]) -> None:
    rejected = _rejected(settings, batch_id)
    assert len(rejected) == case["rejected"]
    by_row = {r["row"]: r for r in rejected}
    for row, checks in case.get("rejects", {}).items():
        assert row in by_row, f"row {row} not quarantined: {rejected}"
        assert set(checks) <= set(by_row[row]["checks"]), by_row[row]
    for record, checks in case.get("rejected_records", {}).items():
        entries = [r for r in rejected if r["record"] == record]
        assert entries, f"record {record} not quarantined: {rejected}"
        for entry in entries:
            assert set(checks) <= set(entry["checks"]), entry
    for key in case.get("raw_keys", []):
        assert all(key in r["raw"] for r in rejected), rejected
    messages = " | ".join(m for r in rejected for m in r["messages"])
    for text in case.get("messages", []):
        assert text in messages


def _assert_values(settings: Settings, batch_id: str, values: dict[str, list[str]]) -> None:
    conn = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        for field, wanted in values.items():
            found = {
                str(v[0])
                for v in conn.execute(
                    f"SELECT {field} FROM visits WHERE batch_id = ?", [batch_id]
                ).fetchall()
            }
            assert set(wanted) <= found, (field, found)
    finally:
        conn.close()


# --- a 10 MB field, generated here rather than committed --------------------------------------


@pytest.mark.parametrize("ragged", [False, True], ids=["polars", "csv-module"])
def test_ten_megabyte_field_reads_whole(
    tmp_path: Path, loaded: tuple[Settings, list[tuple[Any, ...]]], ref: Reference, ragged: bool
) -> None:
    settings, before = loaded
    big = "x" * 10_000_000
    path = tmp_path / "big.csv"
    # a ragged second line sends the file through the csv module, whose field cap is raised
    tail = "h2,King Philippe\n" if ragged else ""
    path.write_text(
        f"id,visitor,country,start,end,notes\nh1,King Philippe,Belgium,2023-03-01,,{big}\n{tail}",
        encoding="utf-8",
    )
    result = run_source(hostile_source({"file": str(path)}), settings, ref=ref)
    assert (result.rows_loaded, result.rows_rejected) == (1, 1 if ragged else 0)
    conn = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        length = conn.execute(
            "SELECT length(notes) FROM visits WHERE batch_id = ?", [result.batch_id]
        ).fetchone()
    finally:
        conn.close()
    assert length == (10_000_000,)
    assert _good_rows(settings) == before


# --- sources over HTTP: terminal, transient, and a body cut short ------------------------------


class HostileHandler(QuietHandler):
    """Serves the corpus, plus paths that fail the way real servers do."""

    def do_GET(self) -> None:
        self.requested.append(self.path)
        if self.path == "/error-500.csv":
            self.send_error(500, "database is down")
        elif self.path == "/busy-503.csv":
            self.send_error(503, "try later")
        elif self.path.startswith("/loop"):
            self.send_response(302)
            self.send_header(
                "Location", "/loop-b.csv" if self.path == "/loop-a.csv" else "/loop-a.csv"
            )
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/endless.csv":
            # a body that never ends, as fast as the client takes it
            self.send_response(200)
            self.end_headers()
            try:
                self.wfile.write(b"id,visitor,country,start,end,notes\n")
                while True:
                    self.wfile.write(b"h,King Philippe,Belgium,2023-03-01,,x\n" * 4096)
            except OSError:
                return
        elif self.path.startswith("/endless-"):
            # one field or string that never ends
            head, repeated = {
                "/endless-field.csv": (b",2023-03-01,,", b"x" * 65536),
                "/endless-quoted-field.csv": (b',2023-03-01,,"', b'x,\n""' * 16384),
                "/endless-string.json": (b'[{"id": "h1", "notes": "', b'x\\"\\\\' * 16384),
            }[self.path]
            self.send_response(200)
            self.end_headers()
            try:
                if self.path.endswith(".csv"):
                    self.wfile.write(b"id,visitor,country,start,end,notes\nh1,King,Belgium")
                self.wfile.write(head)
                while True:
                    self.wfile.write(repeated)
            except OSError:
                return
        elif self.path in ("/to-file.csv", "/to-ftp.csv"):
            self.send_response(302)
            where = "file:///etc/passwd" if self.path == "/to-file.csv" else "ftp://127.0.0.1/x"
            self.send_header("Location", where)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/silent.csv":
            time.sleep(3)  # longer than the test's RELATIONS_ETL_HTTP_TIMEOUT
        elif self.path == "/shrinking.csv":
            # the file was replaced by a shorter one while it was sent: fewer bytes than announced
            body = (CASES_DIR / "good.csv").read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) + 100))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
        else:
            SimpleHTTPRequestHandler.do_GET(self)


HTTP_CASES = [
    ("missing.csv", errors.SourceMissingError, 66, "404"),
    ("error-500.csv", errors.TransientSourceError, 75, "500"),
    ("busy-503.csv", errors.TransientSourceError, 75, "503"),
    ("loop-a.csv", errors.SourceMissingError, 66, "redirects in a loop"),
    ("silent.csv", errors.TransientSourceError, 75, "did not answer within 0.5 s"),
    ("shrinking.csv", errors.TransientSourceError, 75, "fewer bytes than announced"),
]


@pytest.mark.parametrize(
    ("path", "kind", "code", "says"), HTTP_CASES, ids=[c[0] for c in HTTP_CASES]
)
def test_http_failures(
    path: str,
    kind: type[errors.RelationsEtlError],
    code: int,
    says: str,
    loaded: tuple[Settings, list[tuple[Any, ...]]],
    ref: Reference,
    serve: Serve,
) -> None:
    settings, before = loaded
    # only the silent server is waited out: on a busy machine the others may take longer
    # than 0.5 s to answer (a 404 was once reported as a timeout)
    timeout = 0.5 if path == "silent.csv" else 10.0
    settings = settings.model_copy(update={"http_timeout": timeout})
    url, _ = serve(CASES_DIR, HostileHandler)
    source = hostile_source({"file": "good.csv"}).model_copy(update={"uri": url + path})
    with pytest.raises(errors.RelationsEtlError) as info:
        run_source(source, settings, ref=ref)
    assert type(info.value) is kind
    assert info.value.exit_code == code
    assert info.value.transient is (code == 75)
    assert (info.value.source, info.value.file) == (NAME, url + path)
    assert says in str(info.value)
    assert _good_rows(settings) == before


def test_http_source_that_answers_loads(
    loaded: tuple[Settings, list[tuple[Any, ...]]], ref: Reference, serve: Serve
) -> None:
    settings, _ = loaded
    url, requested = serve(CASES_DIR, HostileHandler)
    source = hostile_source({"file": "ragged.csv"}).model_copy(update={"uri": url + "ragged.csv"})
    result = run_source(source, settings, ref=ref)
    assert (result.rows_loaded, result.rows_rejected) == (2, 2)
    assert requested == ["/ragged.csv"]


def test_local_file_that_changes_while_read_is_transient(
    tmp_path: Path, loaded: tuple[Settings, list[tuple[Any, ...]]], ref: Reference
) -> None:
    # A pipe is a file whose content arrives while it is read: its size when the read starts
    # (0) is not what was read, exactly what a producer still writing a file looks like.
    settings, before = loaded
    path = tmp_path / "growing.csv"
    os.mkfifo(path)
    content = (CASES_DIR / "good.csv").read_bytes()

    def produce() -> None:
        with open(path, "wb") as pipe:
            pipe.write(content)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        with pytest.raises(errors.TransientSourceError, match="changed while it was read") as info:
            run_source(hostile_source({"file": str(path)}), settings, ref=ref)
    finally:
        producer.join(timeout=5)
    assert info.value.exit_code == 75
    assert f"0 bytes before, {len(content)} read" in str(info.value)
    assert _good_rows(settings) == before


# --- where sources may come from --------------------------------------------------------------


def _sources_file(folder: Path, text: str) -> Path:
    path = folder / "sources.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "uri", ["ftp://example.org/visits.csv", "data:text/csv,id%0A1", "memory://visits.csv"]
)
def test_scheme_outside_the_allowlist_is_a_config_error(tmp_path: Path, uri: str) -> None:
    path = _sources_file(
        tmp_path, f"sources:\n  - {{name: odd-one, kind: visits, uri: '{uri}', format: csv}}\n"
    )
    with pytest.raises(errors.ConfigError, match="is not allowed") as info:
        load_sources(path, Settings(home=tmp_path))
    assert info.value.source == "odd-one"
    assert info.value.exit_code == 78


def test_sources_file_narrows_the_schemes(tmp_path: Path) -> None:
    narrowed = _sources_file(
        tmp_path,
        "allowed_schemes: [file]\n"
        "sources:\n  - {name: remote, kind: visits, uri: 'https://example.org/v.csv'}\n",
    )
    with pytest.raises(errors.ConfigError, match=r"scheme 'https'.*allowed: \['file'\]"):
        load_sources(narrowed, Settings(home=tmp_path))
    widened = _sources_file(
        tmp_path,
        "allowed_schemes: [file, gopher]\nsources:\n  - {name: a, kind: visits, uri: a.csv}\n",
    )
    with pytest.raises(errors.ConfigError, match="gopher"):
        load_sources(widened, Settings(home=tmp_path))


def test_extract_refuses_a_scheme_the_settings_do_not_allow(tmp_path: Path) -> None:
    source = hostile_source({"file": "good.csv"}).model_copy(update={"uri": "memory://good.csv"})
    with pytest.raises(errors.ConfigError, match="'memory'"):
        list(extract(source, Settings(home=tmp_path)))


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    """A config folder with a landing folder inside, and a secret outside it."""
    folder = tmp_path / "config" / "landing"
    folder.mkdir(parents=True)
    shutil.copy(CASES_DIR / "good.csv", folder / "good.csv")
    (tmp_path / "secret.csv").write_text("id\nsecret\n", encoding="utf-8")
    return folder


def _landing_sources(landing: Path, uri: str, confine: str = "") -> list[Source]:
    path = _sources_file(
        landing.parent,
        f"landing: landing\n{confine}"
        f"sources:\n  - {{name: landed, kind: visits, uri: '{uri}', format: csv}}\n",
    )
    return load_sources(path, Settings(home=landing.parent))


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("file://etc/passwd", "names the host 'etc'"),
        ("file:///etc/passwd", "outside the landing folder"),
        ("file:../../secret.csv", "outside the landing folder"),
        ("file://localhost/etc/passwd", "outside the landing folder"),
    ],
)
def test_file_uris_are_resolved_once_when_the_sources_file_is_read(
    landing: Path, uri: str, says: str
) -> None:
    with pytest.raises(errors.ConfigError, match=says) as info:
        _landing_sources(landing, uri)
    assert info.value.source == "landed" and info.value.exit_code == 78


def test_a_relative_file_uri_is_taken_from_the_landing_folder(landing: Path) -> None:
    [source] = _landing_sources(landing, "file:good.csv")
    assert source.uri == str(landing / "good.csv")
    [table] = extract(source)
    assert table.frame.height == 3


def test_landing_folder_holds_relative_uris(landing: Path) -> None:
    [source] = _landing_sources(landing, "good.csv")
    assert source.uri == str(landing / "good.csv")
    assert source.landing == str(landing)
    [table] = extract(source)
    assert table.frame.height == 3


@pytest.mark.parametrize("uri", ["../../secret.csv", "../../../../../../etc/passwd", "/etc/passwd"])
def test_path_out_of_the_landing_folder_is_refused(landing: Path, uri: str) -> None:
    with pytest.raises(errors.ConfigError, match="outside the landing folder") as info:
        _landing_sources(landing, uri)
    assert info.value.source == "landed"


def test_link_out_of_the_landing_folder_is_refused(landing: Path) -> None:
    (landing / "innocent.csv").symlink_to(landing.parent.parent / "secret.csv")
    with pytest.raises(errors.ConfigError, match="outside the landing folder"):
        _landing_sources(landing, "innocent.csv")


def test_link_planted_after_the_config_was_read_is_refused_at_read_time(landing: Path) -> None:
    [source] = _landing_sources(landing, "later.csv")
    (landing / "later.csv").symlink_to(landing.parent.parent / "secret.csv")
    with pytest.raises(errors.ConfigError, match="outside the landing folder"):
        list(extract(source))


def test_link_out_of_the_landing_folder_inside_a_listed_folder_is_refused(landing: Path) -> None:
    folder = landing / "decades"
    folder.mkdir()
    shutil.copy(CASES_DIR / "xml_folder" / "1990.xml", folder / "1990.xml")
    outside = landing.parent.parent / "2000.xml"
    shutil.copy(CASES_DIR / "xml_folder" / "2000.xml", outside)
    (folder / "2000.xml").symlink_to(outside)
    path = _sources_file(
        landing.parent,
        "landing: landing\nsources:\n"
        "  - {name: landed, kind: visits, uri: decades, format: hsg-visits-xml}\n",
    )
    [source] = load_sources(path, Settings(home=landing.parent))
    with pytest.raises(errors.ConfigError, match=r"2000\.xml.*outside the landing folder"):
        list(extract(source))


def test_confinement_can_be_switched_off(landing: Path) -> None:
    [source] = _landing_sources(landing, "../../secret.csv", "confine_to_landing: false\n")
    assert source.landing is None
    [table] = extract(source)
    assert table.frame.get_column("id").to_list() == ["secret"]


# --- values a spreadsheet would run ------------------------------------------------------------


FORMULAS = ["=1+2", "+44 20 7946 0000", "-5", "@SUM(A1)"]


def test_formula_like_values_are_kept_and_neutralized_in_csv_exports(
    tmp_path: Path,
    loaded: tuple[Settings, list[tuple[Any, ...]]],
    ref: Reference,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings, _ = loaded
    run_source(hostile_source({"file": "formula_like.csv"}), settings, ref=ref)
    rejected = tmp_path / "rejected.csv"
    rejected.write_text(
        'id,visitor,country,start,end,notes\n=HYPERLINK("x"),Wizard Merlin,France,2023-01-01,,\n',
        encoding="utf-8",
    )
    moved = hostile_source({"file": str(rejected)}).model_copy(
        update={"moved_from": str(CASES_DIR / "formula_like.csv")}
    )
    with pytest.raises(errors.BatchRejectedError):  # its one row is quarantined all the same
        run_source(moved, settings, ref=ref)
    conn = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        stored = conn.execute(
            "SELECT notes FROM visits WHERE source_record IN ('h1', 'h2', 'h3', 'h4') ORDER BY 1"
        ).fetchall()
    finally:
        conn.close()
    assert sorted(v for (v,) in stored) == sorted(FORMULAS)  # the warehouse keeps them as text

    monkeypatch.setenv("RELATIONS_ETL_HOME", str(settings.home))
    query = (
        "SELECT notes, -5 AS number FROM visits WHERE source_record IN ('h1','h2','h3','h4') "
        "ORDER BY notes"
    )
    assert main(["sql", query, "--csv"]) == 0
    exported = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert exported[0] == ["notes", "number"]
    assert sorted(row[0] for row in exported[1:]) == sorted("'" + v for v in FORMULAS)
    assert {row[1] for row in exported[1:]} == {"-5"}  # a number is not text: left alone

    assert main(["quarantine", "--source", NAME, "--csv"]) == 0
    quarantine = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["source_record"] for row in quarantine] == ['\'=HYPERLINK("x")']


# --- the command line, as a scheduler runs it ---------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, prefect_server: None) -> dict[str, str]:
    from prefect.settings import get_current_settings

    return {
        **os.environ,
        "RELATIONS_ETL_HOME": str(tmp_path / "warehouse"),
        "PREFECT_API_URL": str(get_current_settings().api.url),
    }


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "relations-etl"
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, env=env, check=False, timeout=300
    )


def _one_paragraph(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("relations-etl: ")
    return lines[0]


def test_cli_exit_codes(
    cli_env: dict[str, str],
    serve: Serve,
    tmp_path: Path,
    ref: Reference,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = Settings(home=Path(cli_env["RELATIONS_ETL_HOME"]))
    run_source(hostile_source({"file": "good.csv"}), settings, ref=ref)
    before = _good_rows(settings)
    url, _ = serve(CASES_DIR, HostileHandler)
    mapping = str(_mapping_file(tmp_path))
    runs = [
        (str(CASES_DIR / "empty.csv"), 65, "the file is empty"),
        (f"{url}missing.csv", 66, "404"),
        (str(CASES_DIR / "cp1251.csv"), 65, "Set options.encoding"),
        ("ftp://example.org/visits.csv", 78, "scheme 'ftp'"),
    ]
    ingest = ["ingest", "visits", "--name", NAME, "--format", "csv", "--mapping", mapping]
    # the 66 as the installed script, as a scheduler runs it (test_cli runs a 65 and a 74 so,
    # test_package a 78); the others in this process, where only the exit code is new
    script = Path(sys.executable).parent / "relations-etl"
    scripted, *in_process = runs[1], runs[0], runs[2], runs[3]
    process = subprocess.Popen(
        [str(script), *ingest[:2], scripted[0], *ingest[2:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env,
    )
    cli = Cli(settings.home, monkeypatch, capsys)
    for uri, code, says in in_process:
        done = cli(*ingest[:2], uri, *ingest[2:])
        assert done.code == code, (uri, done.err)
        assert says in _one_paragraph(done.err), uri
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == scripted[1], (scripted[0], stderr)
    assert scripted[2] in _one_paragraph(stderr), scripted[0]
    assert _good_rows(settings) == before  # nothing already loaded was lost


def test_cli_publish_pending_exits_3_and_the_next_run_publishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "warehouse"
    home.mkdir()
    monkeypatch.setenv("RELATIONS_ETL_HOME", str(home))
    # parquet/ is a file: every Parquet write fails, as on a full or read-only disk
    (home / "parquet").write_text("not a folder\n", encoding="utf-8")
    mapping = str(_mapping_file(tmp_path))
    ingest = ["ingest", "visits", str(CASES_DIR / "good.csv"), "--name", NAME]
    assert main([*ingest, "--mapping", mapping]) == errors.EX_PUBLISH_PENDING == 3
    out, err = capsys.readouterr()
    assert f"{NAME}: read 3, loaded 3" in out and "publish pending" in out
    assert "1 source(s) loaded, their Parquet files pending" in _one_paragraph(err)
    assert "Traceback" not in err
    assert main(["sql", "SELECT status FROM load_batches", "--csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["status", "succeeded"]  # one word, one state

    (home / "parquet").unlink()  # the disk is fixed: the next run writes what waited, exit 0
    assert main([*ingest, "--mapping", mapping]) == 0
    out, err = capsys.readouterr()
    assert "skipped" in out and "pending" not in out + err
    assert list((home / "parquet" / "visits").glob("year=*/data.parquet"))


@pytest.mark.parametrize(
    ("broken", "limits", "says", "script"),
    [
        ("empty.csv", {}, "the file is empty", False),
        # the checks lifted: calamine aborts in its child process, the next source still runs;
        # as the installed script, as a scheduler runs it
        (
            "xfd1048576.xlsx",
            {"RELATIONS_ETL_MAX_COLUMNS": "100000", "RELATIONS_ETL_MAX_CELLS": str(10**14)},
            "the XLSX reader stopped without an answer (killed by SIGABRT",
            True,
        ),
    ],
    ids=["empty", "reader-crash"],
)
def test_cli_nightly_with_one_failing_source_exits_1(
    cli_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    broken: str,
    limits: dict[str, str],
    says: str,
    script: bool,
) -> None:
    shutil.copy(CASES_DIR / "good.csv", tmp_path / "good.csv")
    shutil.copy(CASES_DIR / broken, tmp_path / broken)
    mapping = _mapping_file(tmp_path)
    config = _sources_file(
        tmp_path,
        "sources:\n"
        f"  - {{name: broken, kind: visits, uri: {broken}, mapping: {mapping.name}}}\n"
        f"  - {{name: fine, kind: visits, uri: good.csv, mapping: {mapping.name}}}\n",
    )
    if script:
        ran = _cli({**cli_env, **limits}, "run", "--config", str(config))
        done = Done(ran.returncode, ran.stdout, ran.stderr)
    else:  # in this process, on the session's Prefect API
        for name, value in limits.items():
            monkeypatch.setenv(name, value)
        done = Cli(Path(cli_env["RELATIONS_ETL_HOME"]), monkeypatch, capsys)(
            "run", "--config", str(config)
        )
    assert done.code == 1
    assert "fine: read 3, loaded 3" not in done.out  # the run raised before printing
    assert "1 source(s) failed: broken" in _one_paragraph(done.err)
    conn = duckdb.connect(str(Path(cli_env["RELATIONS_ETL_HOME"]) / "relations.duckdb"))
    try:
        loaded = conn.execute("SELECT source, count(*) FROM visits GROUP BY 1").fetchall()
        audit = conn.execute("SELECT source, status, error FROM load_batches ORDER BY 1").fetchall()
    finally:
        conn.close()
    assert loaded == [("fine", 3)]
    assert [(source, status) for source, status, _ in audit] == [
        ("broken", "failed"),
        ("fine", "succeeded"),
    ]
    assert says in audit[0][2]


def test_cli_unexpected_error_exits_70_with_where_to_look(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    # a bug, injected from outside as the faults driver does: a home that is a file is the
    # disk's business now (74), so the 70 path needs code that really breaks
    script = (
        "import sys, relations_etl.quarantine as quarantine, relations_etl_flows.cli as cli\n"
        "def broken(*args, **kwargs):\n"
        "    raise ZeroDivisionError('division by zero')\n"
        "quarantine.open_rejections = broken\n"
        "sys.exit(cli.main(['quarantine']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True, text=True, env=cli_env, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 70
    paragraph = _one_paragraph(done.stderr)
    assert "internal error" in paragraph
    log = Path(paragraph.rsplit("the traceback is in ", 1)[1].rstrip("."))
    assert "Traceback" in log.read_text(encoding="utf-8")
    log.unlink()


def test_cli_home_that_is_a_file_is_a_warehouse_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # in this process: test_cli runs a 74 as the installed script
    home = tmp_path / "not-a-folder"
    home.write_text("a file where the warehouse folder should be\n", encoding="utf-8")
    done = Cli(home, monkeypatch, capsys)(
        "ingest", "visits", str(CASES_DIR / "good.csv"), "--mapping", str(_mapping_file(tmp_path))
    )
    assert done.code == 74, done.err
    assert f"cannot take the run lock {home}/.run.lock" in _one_paragraph(done.err)


def _mapping_file(folder: Path) -> Path:
    path = folder / "hostile-mapping.yaml"
    path.write_text(yaml.safe_dump(SPEC["base_mapping"]), encoding="utf-8")
    return path


# --- hostile SQL: `relations-etl sql` cannot write, load, reconfigure or read beyond its paths ---


SQL_CORPUS: dict[str, Any] = yaml.safe_load((CASES_DIR / "sql.yaml").read_text(encoding="utf-8"))
SQL_ATTACKS: list[dict[str, str]] = SQL_CORPUS["attacks"]
SQL_WRITES: list[dict[str, str]] = SQL_CORPUS["writes"]
SQL_WRAPPERS: list[dict[str, str]] = SQL_CORPUS["wrappers"]


def _file_digests(root: Path) -> dict[str, str]:
    """Every file under `root` by path, with the SHA-256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def outside(sample_warehouse: Settings) -> Path:
    """A folder beside the sample warehouse's home, holding a secret and a CSV list."""
    folder = sample_warehouse.home.parent / "outside"
    folder.mkdir(exist_ok=True)
    (folder / "secret.txt").write_text("TOKEN=do-not-read\n", encoding="utf-8")
    (folder / "extra.csv").write_text("country,year\nKAZ,2023\nFRA,1992\n", encoding="utf-8")
    return folder


@pytest.fixture
def analyst(sample_warehouse: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The sample warehouse as the command line's RELATIONS_ETL_HOME."""
    monkeypatch.setenv("RELATIONS_ETL_HOME", str(sample_warehouse.home))
    return sample_warehouse


@pytest.mark.parametrize(
    "attack", SQL_ATTACKS, ids=[f"{i:02d}-{a['sql'][:40]}" for i, a in enumerate(SQL_ATTACKS)]
)
def test_sql_attack_is_refused_and_changes_nothing(
    attack: dict[str, str],
    analyst: Settings,
    outside: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    query = attack["sql"].format(home=analyst.home, outside=outside, outside_name=outside.name)
    if attack["layer"] == "connection":
        check_statement(query)  # a query to the statement check: the connection must stop it
    else:
        with pytest.raises(errors.QueryError):
            check_statement(query)
    root = analyst.home.parent  # the home, the lists it was loaded from and the folder beside
    before = _file_digests(root)
    assert any(p.startswith("warehouse/parquet/visits/year=2023/") for p in before)
    assert "warehouse/reference/country_aliases.csv" in before

    assert main(["sql", query]) == 64
    err = capsys.readouterr().err
    assert attack["says"] in err
    assert "Traceback" not in err and "internal error" not in err
    assert _file_digests(root) == before  # nothing written, replaced or created


@pytest.mark.parametrize(
    "statement",
    [
        "COPY (SELECT 'junk' AS x) TO '{outside}/written.csv'",
        "EXPLAIN ANALYZE COPY (SELECT 'junk' AS x) TO '{outside}/written.csv'",
        "EXPORT DATABASE '{outside}/export'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET threads = 1",
        "SET memory_limit = '100GB'",
        "SET max_execution_time = 0",
        "SET enable_external_access = true",
        "SET allowed_directories = ['/']",
        "RESET lock_configuration",
        "PRAGMA enable_profiling",
        "CREATE PERSISTENT SECRET s (TYPE http)",
        "SELECT * FROM read_text('/etc/shadow')",
        "SELECT * FROM read_text('{outside}/secret.txt')",
    ],
)
def test_the_analyst_connection_itself_refuses_without_the_statement_check(
    sample_warehouse: Settings, outside: Path, statement: str
) -> None:
    conn = analyst_connection(sample_warehouse)
    try:
        with pytest.raises(
            duckdb.Error,
            match=r"disabled by configuration|disabled through configuration|"
            r"configuration has been locked|Persistent secrets are disabled",
        ):
            conn.execute(statement.format(outside=outside))
        assert conn.execute("SELECT current_setting('enable_external_access')").fetchone() == (
            False,
        )
    finally:
        conn.close()
    assert not (outside / "written.csv").exists() and not (outside / "export").exists()


def test_sql_reads_the_home_and_what_it_is_allowed_to_read_only(
    analyst: Settings,
    outside: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    published = (
        f"SELECT count(*) AS n FROM read_parquet('{analyst.home}/parquet/visits/*/*.parquet')"
    )
    assert main(["sql", published, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": 8}]

    listing = outside / "extra.csv"
    query = f"SELECT * FROM read_csv('{listing}') ORDER BY year"
    assert main(["sql", query]) == 64
    assert "--read PATH" in capsys.readouterr().err
    assert main(["sql", query, "--format", "json", "--read", str(listing)]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"country": "FRA", "year": 1992},
        {"country": "KAZ", "year": 2023},
    ]
    # a file allowed is not its folder
    secret = f"SELECT * FROM read_text('{outside}/secret.txt')"
    assert main(["sql", secret, "--read", str(listing)]) == 64
    capsys.readouterr()
    # a folder allowed by the setting, for every query
    monkeypatch.setenv("RELATIONS_ETL_SQL_READ_PATHS", json.dumps([str(outside)]))
    assert main(["sql", query, "--csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["country,year", "FRA,1992", "KAZ,2023"]
    assert main(["sql", "SELECT 1", "--read", str(outside / "absent.csv")]) == 64
    assert "absent.csv: no such file or folder" in capsys.readouterr().err


def test_an_endless_query_is_stopped_by_the_timeout(
    analyst: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RELATIONS_ETL_SQL_TIMEOUT", "0.2")
    endless = "SELECT count(*) FROM range(10000000000) AS t(x) WHERE x % 7 = 3"
    assert main(["sql", endless]) == 64
    err = capsys.readouterr().err
    assert "the query ran longer than 0.2 s and was stopped" in err
    assert "RELATIONS_ETL_SQL_TIMEOUT" in err and "Traceback" not in err
    # the limit is the connection's own: a query cannot lift it
    assert main(["sql", "SELECT current_setting('max_execution_time') AS ms", "--csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["ms", "200"]


def test_an_analyst_query_has_a_memory_limit(
    analyst: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setting = "SELECT current_setting('memory_limit') AS m"

    def duckdb_reads(size: str) -> str:
        conn = duckdb.connect(config={"memory_limit": size})
        try:
            row = conn.execute(setting).fetchone()
        finally:
            conn.close()
        assert row is not None
        return str(row[0])

    assert main(["sql", setting, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"m": duckdb_reads("2GB")}]  # the default
    monkeypatch.setenv("RELATIONS_ETL_SQL_MEMORY_LIMIT", "64MB")
    assert main(["sql", setting, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"m": duckdb_reads("64MB")}]
    assert main(["sql", "SELECT list(x) FROM range(100000000) AS t(x)"]) == 64
    err = capsys.readouterr().err
    assert "needs more than 64MB of memory" in err and "RELATIONS_ETL_SQL_MEMORY_LIMIT" in err
    monkeypatch.setenv("RELATIONS_ETL_SQL_MEMORY_LIMIT", "lots")
    assert main(["sql", setting]) == 78
    assert "RELATIONS_ETL_SQL_MEMORY_LIMIT 'lots'" in capsys.readouterr().err


# --- writes that slip past the statement check: the kernel refuses them (sql.yaml `writes`) ---


@pytest.fixture
def tmp_folder() -> Iterator[Path]:
    """A folder under /tmp holding existing.csv, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="relations-etl-test-", dir="/tmp"))
    (folder / "existing.csv").write_text("a\n1\n", encoding="utf-8")
    yield folder
    shutil.rmtree(folder)


def _write_attack(write: dict[str, str], home: Path, tmp: Path) -> tuple[str, Path]:
    target = write["target"].format(home=home, tmp=tmp)
    return write["sql"].format(target=target, home=home, tmp=tmp), Path(target)


def _bytes_or_absent(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def _write_ids(write: dict[str, str]) -> str:
    return f"{write['sql'].split()[0]}-{write['target'].split('}')[-1]}"


@pytest.mark.parametrize("wrapper", SQL_WRAPPERS, ids=[w["form"][:24] for w in SQL_WRAPPERS])
@pytest.mark.parametrize("write", SQL_WRITES, ids=[_write_ids(w) for w in SQL_WRITES])
def test_a_wrapped_write_is_refused_and_its_target_unchanged(
    write: dict[str, str],
    wrapper: dict[str, str],
    analyst: Settings,
    tmp_folder: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    statement, target = _write_attack(write, analyst.home, tmp_folder)
    before = _bytes_or_absent(target)
    files = (_file_digests(analyst.home.parent), _file_digests(tmp_folder))
    query = wrapper["form"].format(sql=statement)
    try:
        duckdb.extract_statements(query)
        says = wrapper["says"]
    except duckdb.ParserException:
        says = "the query does not parse"
    # the folder of a /tmp target readable too: only the statement check and the kernel stand
    assert main(["sql", query, "--read", str(tmp_folder)]) == 64
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert _bytes_or_absent(target) == before
    assert (_file_digests(analyst.home.parent), _file_digests(tmp_folder)) == files


@pytest.mark.skipif(landlock_abi() < 1, reason="the kernel has no Landlock: DuckDB's layer only")
@pytest.mark.parametrize("write", SQL_WRITES, ids=[_write_ids(w) for w in SQL_WRITES])
def test_a_write_past_the_statement_check_is_refused_by_the_kernel(
    write: dict[str, str], sample_warehouse: Settings, tmp_folder: Path
) -> None:
    statement, target = _write_attack(write, sample_warehouse.home, tmp_folder)
    with pytest.raises(errors.QueryError):
        check_statement(statement)  # the check would refuse it; it is bypassed below
    before = _bytes_or_absent(target)
    files = (_file_digests(sample_warehouse.home.parent), _file_digests(tmp_folder))
    read = (tmp_folder,)  # DuckDB lets the query write in every folder it may read
    with pytest.raises(errors.QueryError, match=write["os_says"]) as refused:
        run_sandboxed(
            execute,
            (sample_warehouse, statement, read),
            read=[sample_warehouse.home, tmp_folder],
            timeout=60,
        )
    assert "Permission denied" in str(refused.value)
    assert _bytes_or_absent(target) == before
    assert (_file_digests(sample_warehouse.home.parent), _file_digests(tmp_folder)) == files


def test_duckdb_alone_lets_those_writes_through(tmp_folder: Path) -> None:
    """The kernel's layer is needed: without it, the analyst connection writes in a folder it
    may read (so the test above proves the sandbox, not DuckDB)."""
    conn = duckdb.connect()
    try:
        conn.execute("SET allowed_directories = ?", [[f"{tmp_folder}/"]])
        conn.execute("SET enable_external_access = false")
        conn.execute(f"COPY (SELECT 'junk' AS x) TO '{tmp_folder}/existing.csv'")
    finally:
        conn.close()
    assert (tmp_folder / "existing.csv").read_text(encoding="utf-8") == "x\njunk\n"
