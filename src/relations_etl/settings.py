"""The one settings object, read from RELATIONS_ETL_* environment variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_PACKAGE_DIR = Path(__file__).resolve().parent


def asset_dir(name: str) -> Path:
    """Return a shipped asset folder (`sql` or `reference`), from the source tree or the wheel."""
    in_repo = _PACKAGE_DIR.parent.parent / "warehouse" / name
    if in_repo.is_dir():
        return in_repo
    return _PACKAGE_DIR / "_warehouse" / name


class Settings(BaseSettings):
    """Where the warehouse lives and how raw lists are read; every field has a default."""

    model_config = SettingsConfigDict(env_prefix="RELATIONS_ETL_", extra="ignore")

    home: Path = Field(
        default=Path("warehouse"),
        description="Warehouse home: holds relations.duckdb and parquet/<table>/year=YYYY/.",
    )
    config: Path = Field(
        default=Path("examples/sources.yaml"),
        description="Source configuration read by `relations-etl run`.",
    )
    reference_dir: Path = Field(
        default_factory=lambda: asset_dir("reference"),
        description="Shipped reference data (countries, aliases, titles, organizations).",
    )
    date_order: Literal["ymd", "dmy", "mdy"] = Field(
        default="ymd",
        description="How to read all-numeric dates such as 03/04/2023 when a source does not say.",
    )
    preview_rows: int = Field(
        default=10, description="Rejected rows shown in run reports and Prefect artifacts."
    )
    report_country: str | None = Field(
        default=None,
        description="Country (alpha-3 code, ISO name or alias, resolved like a list's label) "
        "whose annual HTML report the nightly run writes to <home>/reports/ and links from its "
        "Prefect artifacts (none when unset); checked before the run loads anything.",
    )
    report_year: int | None = Field(
        default=None,
        description="Year of that report; default: the latest year up to now with visits or "
        "published totals for the country.",
    )
    lock_timeout: float = Field(
        default=300.0,
        description="Seconds a run waits for another run's lock on the warehouse, and `sql` "
        "for a load to commit, before giving up with an error naming the other run.",
    )
    retry_delays: list[float] = Field(
        default=[2.0, 10.0, 30.0],
        description="Seconds between retries of a read that failed in a transient way (HTTP 5xx, "
        "timeout, connection reset); one retry per entry. JSON list in the environment.",
    )
    http_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Seconds an HTTP(S) read may take before it fails as a transient error.",
    )
    allowed_schemes: tuple[str, ...] = Field(
        default=("file", "http", "https", "s3"),
        description="URI schemes a source may use; a sources file may narrow them.",
    )
    sql_read_paths: list[Path] = Field(
        default=[],
        description="Files and folders outside the warehouse home that `relations-etl sql` may "
        "read (besides `--read PATH`); JSON list in the environment. Nothing else is readable.",
    )
    sql_memory_limit: str = Field(
        default="2GB",
        min_length=1,
        description="Memory an analyst's query (`relations-etl sql`) may use, as DuckDB writes "
        "it (e.g. 2GB, 512MB); a query that needs more fails and leaves the nightly its memory.",
    )
    sql_timeout: float = Field(
        default=300.0,
        gt=0,
        description="Seconds an analyst's query may run before it is stopped (exit 64), so an "
        "endless query cannot hold the warehouse open against the nightly.",
    )

    prefect_startup_timeout: float = Field(
        default=240.0,
        gt=0,
        description="Seconds `relations-etl run` waits for its embedded Prefect API to start "
        "(the first start on a machine also migrates Prefect's database). Not used "
        "when PREFECT_API_URL names a running server.",
    )
    repo: Path | None = Field(
        default=None,
        description="The clone a Prefect worker runs the deployments from (its flows/ and "
        "examples/); read on the worker at run time. Unset: the clone this package was "
        "installed from with `pip install -e`.",
    )
    # Limits: what one input may cost. A breach fails that source (exit 65) or that
    # configuration file (78) with a message naming the limit and this setting.
    max_source_bytes: int = Field(
        default=2 * 1024**3,
        gt=0,
        description="Bytes read per source (all of its files together), counted while the "
        "bytes arrive: a longer file or an HTTP body that never ends is refused at the limit.",
    )
    max_decompressed_bytes: int = Field(
        default=1024**3,
        gt=0,
        description="Bytes a source may decompress to: the parts of an XLSX workbook as its "
        "ZIP directory declares them, the pages of a Parquet file as its footer declares them; "
        "checked before anything is decompressed.",
    )
    max_field_bytes: int = Field(
        default=16 * 1024**2,
        gt=0,
        description="Bytes of one value (one CSV field, one JSON value, one cell).",
    )
    max_columns: int = Field(
        default=10_000,
        gt=0,
        description="Columns of a list: header fields, JSON keys, sheet columns, Parquet columns.",
    )
    max_cells: int = Field(
        default=50_000_000,
        gt=0,
        description="Rows x columns of the table a workbook sheet spans (from its first to its "
        "last used cell) or that JSON records make (records x distinct keys), checked before "
        "the table is built.",
    )
    max_yaml_nodes: int = Field(
        default=100_000,
        gt=0,
        description="Nodes a sources or mapping YAML file may hold, each alias counted as the "
        "whole node it repeats (a 'billion laughs' file is refused before it expands).",
    )
    reader_memory_bytes: int = Field(
        default=4 * 1024**3,
        gt=0,
        description="Address space of the child process that runs the XLSX and Parquet readers "
        "(native code this project does not control); a reader that crashes or exceeds it "
        "fails its source alone.",
    )
    reader_timeout: float = Field(
        default=600.0,
        gt=0,
        description="Seconds that child process may take before it is stopped and its source "
        "fails.",
    )
    batch_rows: int = Field(
        default=250_000,
        ge=1,
        description="Raw rows transformed at a time (mapping, normalize, validate, split): peak "
        "memory follows this, not the size of the list; see README 'Performance'.",
    )
    staging_memory: str = Field(
        default="512MB",
        description="DuckDB memory_limit of the staging database that checks a source's chunks "
        "together (repeats, duplicate records, periods); past it DuckDB spills to disk.",
    )
    load_memory: str | None = Field(
        default="512MB",
        description="DuckDB memory_limit of the warehouse connections that write (load, "
        "publish); past it DuckDB spills to disk (the fact tables have no primary-key index, "
        "which could not spill). Empty: DuckDB's default (80% of RAM).",
    )

    # Object storage (README "Scaling out"): the DuckDB file stays on local disk; lists and
    # the published Parquet may live in S3 or an S3-compatible store.
    parquet_uri: str | None = Field(
        default=None,
        description="Where the published Parquet goes: a folder or s3://bucket/prefix, with the "
        "same hive layout (<table>/year=YYYY/data.parquet). Default: <home>/parquet.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AWS_ENDPOINT_URL", "RELATIONS_ETL_S3_ENDPOINT_URL"),
        description="Endpoint of an S3-compatible store (MinIO, Ceph, ...), read from the standard "
        "AWS_ENDPOINT_URL; unset: Amazon S3. Credentials come from AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY (or a profile or role) and are never kept in the settings.",
    )
    s3_region: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AWS_REGION", "RELATIONS_ETL_S3_REGION"),
        description="Region of the S3 buckets, read from the standard AWS_REGION.",
    )

    # Distributed task runner (README "Scaling out"): sources prepared in parallel, committed
    # one at a time by the run that holds the warehouse.
    task_runner: Literal["default", "dask"] = Field(
        default="default",
        description="How `relations-etl run` (the nightly flow) runs its sources: `default` one "
        "after the other in this process; `dask` extracts and transforms them in parallel on a "
        "Dask cluster (prefect-dask), each commit still one ordered step here.",
    )
    dask_workers: int = Field(
        default=2,
        gt=0,
        description="Worker processes of the temporary local Dask cluster (one thread each); "
        "not used when RELATIONS_ETL_DASK_ADDRESS names a scheduler.",
    )
    dask_address: str | None = Field(
        default=None,
        description="Address of a running Dask scheduler (tcp://host:8786) to use instead of a "
        "temporary local cluster; its workers must read the same lists, reference data and "
        "settings as this machine.",
    )
    run_concurrency_limit: str = Field(
        default="relations-etl-warehouse",
        min_length=1,
        description="Prefect global concurrency limit (one slot, created when missing) that the "
        "nightly flow holds besides the local lock, so that two runs on two machines reporting "
        "to one Prefect server never write one warehouse at once.",
    )
    staging_dir: Path | None = Field(
        default=None,
        description="Folder where sources are staged as Parquet while transformed (each run "
        "in a folder of its own, removed after the load); unset: the system's temporary "
        "folder. With Dask workers on other machines, a folder every worker and the flow's "
        "machine mount at this same path (see README 'Scaling out').",
    )

    @field_validator("home", mode="before")
    @classmethod
    def _home_is_local(cls, value: object) -> object:
        # a URI here would make a local folder named `s3:`; the DuckDB file needs a local disk
        text = str(value)
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", text):
            from relations_etl.errors import ConfigError

            raise ConfigError(
                f"RELATIONS_ETL_HOME is {text!r}, a URI: the warehouse home is a local folder "
                "(the DuckDB file needs a local disk, with one writer)",
                hint="Set RELATIONS_ETL_HOME to a local folder and RELATIONS_ETL_PARQUET_URI to "
                "the object storage prefix (e.g. s3://bucket/warehouse/parquet) where the "
                "published Parquet should go.",
            )
        return value

    @property
    def parquet_root(self) -> str:
        """Where the published Parquet goes: RELATIONS_ETL_PARQUET_URI, else <home>/parquet."""
        return self.parquet_uri or str(self.parquet_dir)

    @property
    def db_path(self) -> Path:
        """The DuckDB warehouse file."""
        return self.home / "relations.duckdb"

    @property
    def parquet_dir(self) -> Path:
        """Root of the published Parquet tables."""
        return self.home / "parquet"

    @property
    def user_reference_dir(self) -> Path:
        """Reference rows added by users; same file names as the shipped ones, and they win."""
        return self.home / "reference"

    @property
    def reports_dir(self) -> Path:
        """Where the nightly run writes its HTML reports."""
        return self.home / "reports"

    @property
    def sql_dir(self) -> Path:
        """Warehouse DDL and views, applied in file-name order."""
        return asset_dir("sql")
