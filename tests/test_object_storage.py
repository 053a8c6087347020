"""Object storage: lists read from S3 and Parquet published to S3, against a real S3-compatible
server (moto's server mode) on 127.0.0.1; never a mock of the client."""

from __future__ import annotations

import io
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import s3fs
from moto.server import ThreadedMotoServer
from relations_etl_flows import cli

from relations_etl.config import Kind, Source, load_sources
from relations_etl.errors import (
    EX_CONFIG,
    EX_NOINPUT,
    EX_TEMPFAIL,
    EX_USAGE,
    ConfigError,
    LimitError,
    TransientSourceError,
)
from relations_etl.extract import extract
from relations_etl.pipeline import run_source
from relations_etl.query import run_query
from relations_etl.settings import Settings
from tests.conftest import REPO
from tests.state import RUN_COLUMNS, run_all, sample_lists, table_digests

DATA = REPO / "examples" / "data"
VISITS = DATA / "kz_visits_2023.csv"
TABLES = ("visits", "memberships", "relations", "reported_totals", "rejected_rows")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """One S3-compatible server for the session, on loopback."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket, with the standard AWS variables pointing at the test server."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    name = f"lists-{uuid.uuid4().hex[:12]}"
    _fs(s3_endpoint).mkdir(name)
    return name


def _fs(endpoint: str) -> s3fs.S3FileSystem:
    # a separate instance, not the one the code under test caches
    return s3fs.S3FileSystem(
        key="testing", secret="testing", endpoint_url=endpoint, skip_instance_cache=True
    )


def _visits_source(uri: str, **extra: Any) -> Source:
    demo = next(
        s for s in load_sources(REPO / "examples" / "sources.yaml") if s.kind is Kind.VISITS
    )
    return demo.model_copy(update={"uri": uri, "format": None, **extra})


def _rows(settings: Settings, table: str) -> list[tuple[Any, ...]]:
    columns = run_query(settings, f"DESCRIBE {table}")["column_name"].to_list()
    keep = ", ".join(f'"{c}"' for c in columns if c not in RUN_COLUMNS)
    return [
        tuple(r) for r in run_query(settings, f"SELECT {keep} FROM {table} ORDER BY ALL").rows()
    ]


def test_a_csv_list_in_s3_loads_as_the_same_list_on_disk(
    bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    _fs(s3_endpoint).put_file(str(VISITS), f"{bucket}/protocol/visits.csv")
    remote = Settings(home=tmp_path / "remote")
    local = Settings(home=tmp_path / "local")

    result = run_source(_visits_source(f"s3://{bucket}/protocol/visits.csv"), remote)
    run_source(_visits_source(str(VISITS)), local)

    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (11, 8, 3)
    assert _rows(remote, "visits") == _rows(local, "visits")
    uris = run_query(remote, "SELECT source_uri FROM load_batches")["source_uri"].to_list()
    assert uris == [f"s3://{bucket}/protocol/visits.csv"]
    # unchanged object: the next run skips it, as for a file on disk
    again = run_source(_visits_source(f"s3://{bucket}/protocol/visits.csv"), remote)
    assert again.unchanged_since == result.batch_id


def test_a_parquet_list_and_a_prefix_of_files_load_from_s3(
    bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    fs = _fs(s3_endpoint)
    lines = VISITS.read_text(encoding="utf-8").splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    half = len(body) // 2
    fs.pipe(f"{bucket}/drop/2023-a.csv", (header + "".join(body[:half])).encode())
    fs.pipe(f"{bucket}/drop/more/2023-b.csv", (header + "".join(body[half:])).encode())
    fs.pipe(f"{bucket}/drop/_SUCCESS", b"")  # a marker, not a list
    fs.pipe(f"{bucket}/drop/readme.txt.json", b"{}")  # another format: not read as CSV
    buffer = io.BytesIO()
    pl.read_csv(VISITS, infer_schema=False).write_parquet(buffer)
    fs.pipe(f"{bucket}/columnar/visits.parquet", buffer.getvalue())

    whole = Settings(home=tmp_path / "whole")
    run_source(_visits_source(str(VISITS)), whole)
    parts = Settings(home=tmp_path / "parts")
    folder = run_source(_visits_source(f"s3://{bucket}/drop/", format="csv"), parts)
    columnar = Settings(home=tmp_path / "columnar")
    run_source(_visits_source(f"s3://{bucket}/columnar/visits.parquet"), columnar)

    assert folder.rows_read == len(body)
    assert _rows(parts, "visits") == _rows(whole, "visits")
    assert _rows(columnar, "visits") == _rows(whole, "visits")
    # one table for the prefix, each row naming its own object
    (table,) = extract(_visits_source(f"s3://{bucket}/drop/", format="csv"), parts)
    assert table.frame["_file"].unique(maintain_order=True).to_list() == [
        f"s3://{bucket}/drop/2023-a.csv",
        f"s3://{bucket}/drop/more/2023-b.csv",
    ]


def test_missing_keys_buckets_and_an_unreachable_store_say_what_to_do(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(home=tmp_path / "w")
    for uri in (f"s3://{bucket}/nothing.csv", f"s3://no-such-bucket-{bucket}/visits.csv"):
        with pytest.raises(Exception) as missing:
            list(extract(_visits_source(uri), settings))
        assert getattr(missing.value, "exit_code", None) == EX_NOINPUT, missing.value
        assert uri in str(missing.value)
    with pytest.raises(Exception) as empty:
        list(extract(_visits_source(f"s3://{bucket}/empty/", format="csv"), settings))
    assert getattr(empty.value, "exit_code", None) == EX_NOINPUT
    assert "no csv files under" in str(empty.value)

    # nothing listens there: transient (75), retried by the flow
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")
    quick = {"config_kwargs": {"retries": {"max_attempts": 1}}}
    with pytest.raises(Exception) as unreachable:
        list(extract(_visits_source(f"s3://{bucket}/v.csv", storage_options=quick), Settings()))
    assert getattr(unreachable.value, "exit_code", None) == EX_TEMPFAIL, unreachable.value
    assert getattr(unreachable.value, "transient", False)
    assert "Could not connect" in str(unreachable.value), unreachable.value

    # storage options s3fs does not take are the configuration's fault, not the network's
    wrong = {"no_such_option": 1}
    with pytest.raises(ConfigError) as bad:
        list(extract(_visits_source(f"s3://{bucket}/v.csv", storage_options=wrong), Settings()))
    assert "storage_options" in bad.value.hint


def test_a_store_that_refuses_the_credentials_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a second server that checks credentials: it knows no access key, so it refuses every one
    port = _free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        with pytest.raises(ConfigError) as refused:
            list(extract(_visits_source("s3://guarded/visits.csv"), Settings(home=tmp_path)))
        assert refused.value.exit_code == EX_CONFIG
        assert "refused the credentials" in refused.value.message
        assert "AWS_ACCESS_KEY_ID" in refused.value.hint
    finally:
        server.kill()
        server.wait()


def test_storage_options_are_never_written_to_the_audit(
    bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    _fs(s3_endpoint).put_file(str(VISITS), f"{bucket}/v.csv")
    secret = {"key": "testing", "secret": "testing", "endpoint_url": s3_endpoint}
    settings = Settings(home=tmp_path / "w")
    run_source(_visits_source(f"s3://{bucket}/v.csv", storage_options=secret), settings)
    audit = run_query(settings, "SELECT * FROM load_batches").write_csv()
    assert "storage_options" not in audit
    assert s3_endpoint not in audit


def _published(fs: s3fs.S3FileSystem, root: str) -> dict[str, pa.Table]:
    fs.invalidate_cache()
    found = sorted(k for k in fs.find(root) if k.endswith(".parquet"))
    return {k.removeprefix(f"{root}/"): pq.read_table(fs.open(k, "rb")) for k in found}


def _local(settings: Settings) -> dict[str, pa.Table]:
    root = settings.parquet_dir
    return {str(p.relative_to(root)): pq.read_table(p) for p in sorted(root.rglob("*.parquet"))}


def _without_runs(table: pa.Table) -> pa.Table:
    # the publish writes rows in a stable order: equal warehouses give equal files
    return table.drop_columns([c for c in table.column_names if c in RUN_COLUMNS])


def test_published_parquet_goes_to_s3_whole_with_its_contract(
    bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    config = sample_lists(tmp_path / "lists")
    remote = Settings(home=tmp_path / "remote", parquet_uri=f"s3://{bucket}/warehouse/parquet")
    local = Settings(home=tmp_path / "local")
    run_all(config, remote)
    run_all(config, local)
    fs = _fs(s3_endpoint)

    published = _published(fs, f"{bucket}/warehouse/parquet")
    expected = _local(local)
    assert sorted(published) == sorted(expected)  # the same hive layout, year by year
    assert any(p.startswith("visits/year=2023/") for p in published)
    for path, table in published.items():
        assert _without_runs(table).equals(_without_runs(expected[path])), path
        assert table.schema.metadata == expected[path].schema.metadata  # contract metadata
    assert not (remote.home / "parquet").exists()  # nothing published on the writer's disk
    assert table_digests(remote, across_runs=True) == table_digests(local, across_runs=True)

    # pyarrow reads the hive dataset straight from the store
    dataset = ds.dataset(
        f"{bucket}/warehouse/parquet/visits", filesystem=fs, format="parquet", partitioning="hive"
    )
    visits = run_query(local, "SELECT count(*) AS n, min(year(start_date)) AS y FROM visits")
    assert dataset.count_rows() == visits["n"].item()
    # and DuckDB through a registered fsspec filesystem (no httpfs extension needed)
    conn = duckdb.connect()
    conn.register_filesystem(fs)
    counted = conn.execute(
        f"SELECT year, count(*) FROM read_parquet('s3://{bucket}/warehouse/parquet/visits/*/*.parquet',"
        " hive_partitioning = true) GROUP BY year ORDER BY year"
    ).fetchall()
    expected_years = run_query(
        local, "SELECT year(start_date), count(*) FROM visits GROUP BY 1 ORDER BY 1"
    ).rows()
    assert counted == [tuple(r) for r in expected_years]
    conn.close()


def test_a_published_object_replaced_from_outside_is_repaired(
    bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    config = sample_lists(tmp_path / "lists")
    root = f"{bucket}/parquet"
    settings = Settings(home=tmp_path / "w", parquet_uri=f"s3://{root}")
    run_all(config, settings)
    fs = _fs(s3_endpoint)
    before = _published(fs, root)
    target = next(p for p in before if p.startswith("relations/"))
    fs.pipe(f"{root}/{target}", b"PAR1 not a parquet file PAR1")
    fs.rm_file(f"{root}/{next(p for p in before if p.startswith('visits/'))}")

    run_all(config, settings)  # nothing changed in the lists: only the check repairs

    after = _published(fs, root)
    assert sorted(after) == sorted(before)
    for path in before:
        assert after[path].equals(before[path]), path
    assert run_query(settings, "SELECT count(*) FROM publish_queue").item() == 0


def test_a_publish_killed_between_two_objects_is_caught_up_by_the_next_run(
    bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    config = sample_lists(tmp_path / "lists")
    root = f"{bucket}/parquet"
    crashed = Settings(home=tmp_path / "crashed", parquet_uri=f"s3://{root}")
    clean = Settings(home=tmp_path / "clean")
    run_all(config, clean)
    env = {
        **os.environ,
        "RELATIONS_ETL_HOME": str(crashed.home),
        "RELATIONS_ETL_PARQUET_URI": f"s3://{root}",
    }
    killed = subprocess.run(
        [sys.executable, "-m", "tests.faults.driver", "rename", "kill", str(config)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    fs = _fs(s3_endpoint)
    half = _published(fs, root)  # every object there is whole; the others are missing
    assert len(half) == 1, sorted(half)
    # the years of the one list loaded before the kill wait, all of them
    waiting = run_query(crashed, "SELECT table_name, year FROM publish_queue ORDER BY ALL")
    # (the quarantine's by the year rows were rejected: the clock's, not the list's)
    assert {table for table, _ in waiting.rows()} == {"visits", "rejected_rows"}
    assert [year for table, year in waiting.rows() if table == "visits"] == [2023]

    run_all(config, crashed)

    assert {p: _without_runs(t) for p, t in _published(fs, root).items()} == {
        p: _without_runs(t) for p, t in _local(clean).items()
    }
    assert run_query(crashed, "SELECT count(*) FROM publish_queue").item() == 0
    assert not list((crashed.home / ".publish-staging").glob("*")), "leftover staged files"


def test_the_parts_of_a_killed_multipart_upload_are_aborted_by_the_next_publish(
    bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    """A publish killed inside a multipart upload leaves its parts in the store (unseen by
    readers, but kept and billed); the next publish aborts those under its prefix only."""
    fs = _fs(s3_endpoint)
    keys = ["parquet/visits/year=2023/data.parquet", "parquet-old/data.parquet", "other/a.bin"]
    for key in keys:  # what a publish killed after its first part leaves
        upload = fs.call_s3("create_multipart_upload", Bucket=bucket, Key=key)
        fs.call_s3(
            "upload_part",
            Bucket=bucket,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=1,
            Body=b"x" * 1024,
        )
    settings = Settings(home=tmp_path / "w", parquet_uri=f"s3://{bucket}/parquet")

    run_all(sample_lists(tmp_path / "lists"), settings)

    left = fs.call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads", [])
    assert sorted(u["Key"] for u in left) == sorted(keys[1:])
    assert len(_published(fs, f"{bucket}/parquet")) > 4  # and the publish went on


def test_a_uri_as_the_warehouse_home_is_refused_naming_the_parquet_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("RELATIONS_ETL_HOME", "s3://lists/warehouse")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["sql", "SELECT 1"]) == EX_CONFIG
    err = capsys.readouterr().err
    assert "RELATIONS_ETL_PARQUET_URI" in err and "s3://lists/warehouse" in err
    assert not (tmp_path / "s3:").exists()


def test_ingest_and_sql_on_the_command_line_read_and_query_s3(
    bucket: str,
    s3_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = (DATA / "kz_relations.csv").read_text(encoding="utf-8")
    header, rest = text.split("\n", 1)
    fs = _fs(s3_endpoint)
    fs.pipe(f"{bucket}/r.csv", (header.replace(",date,", ",event_date,") + "\n" + rest).encode())
    monkeypatch.setenv("RELATIONS_ETL_HOME", str(tmp_path / "w"))
    monkeypatch.setenv("RELATIONS_ETL_PARQUET_URI", f"s3://{bucket}/parquet")
    assert cli.main(["ingest", "relations", f"s3://{bucket}/r.csv"]) == 0
    published = _published(fs, f"{bucket}/parquet")
    loaded = run_query(Settings(), "SELECT count(*) FROM relations").item()
    assert sum(t.num_rows for p, t in published.items() if p.startswith("relations/")) == loaded
    # analysts query the published Parquet where it is, and nothing else in the store
    capsys.readouterr()
    query = (
        f"SELECT count(*) AS n FROM read_parquet('s3://{bucket}/parquet/relations/*/*.parquet', "
        "hive_partitioning = true)"
    )
    assert cli.main(["sql", query, "--format", "csv"]) == 0
    assert capsys.readouterr().out.split() == ["n", str(loaded)]
    outside = f"SELECT * FROM read_csv('s3://{bucket}/r.csv')"
    assert cli.main(["sql", outside]) == EX_USAGE
    assert "read-only and reads only" in capsys.readouterr().err


def test_the_byte_limit_holds_for_an_object_and_for_a_prefix_together(
    bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    fs = _fs(s3_endpoint)
    size = VISITS.stat().st_size
    fs.put_file(str(VISITS), f"{bucket}/big/a.csv")
    fs.put_file(str(VISITS), f"{bucket}/big/b.csv")
    one = Settings(home=tmp_path / "w", max_source_bytes=size - 1)
    with pytest.raises(LimitError) as single:
        list(extract(_visits_source(f"s3://{bucket}/big/a.csv"), one))
    assert "RELATIONS_ETL_MAX_SOURCE_BYTES" in single.value.message
    # each file fits, the two together do not
    both = Settings(home=tmp_path / "w", max_source_bytes=size + size // 2)
    assert len(list(extract(_visits_source(f"s3://{bucket}/big/a.csv"), both))) == 1
    with pytest.raises(LimitError) as prefix:
        list(extract(_visits_source(f"s3://{bucket}/big/", format="csv"), both))
    assert prefix.value.file == f"s3://{bucket}/big/b.csv"


class _Throttling(BaseHTTPRequestHandler):
    """An S3 endpoint that is always overloaded: 503 SlowDown, as S3 answers when throttling."""

    def _slow_down(self) -> None:
        body = (
            b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>"
        )
        self.send_response(503)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = _slow_down

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_throttling_store_is_a_transient_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Throttling)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_port}")
        quick = {"config_kwargs": {"retries": {"max_attempts": 1}}}
        source = _visits_source("s3://busy/visits.csv", storage_options=quick)
        with pytest.raises(TransientSourceError) as busy:
            list(extract(source, Settings(home=tmp_path)))
        assert busy.value.exit_code == EX_TEMPFAIL
        assert busy.value.file == "s3://busy/visits.csv"
        assert "Service Unavailable" in busy.value.message  # the answer to a HEAD: no body
    finally:
        server.shutdown()
        server.server_close()
