"""The `relations-etl` command: run, ingest, sql, report, quarantine, contracts."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import traceback
from pathlib import Path

from pydantic import ValidationError

from relations_etl import __version__
from relations_etl.config import Kind, source_for
from relations_etl.errors import EX_CONFIG, EX_SOFTWARE, RelationsEtlError
from relations_etl.load import connect
from relations_etl.quarantine import describe, open_rejections, unresolved_summary
from relations_etl.query import run_query
from relations_etl.report import annual_report, write_html
from relations_etl.settings import Settings
from relations_etl_flows.output import print_frame, print_results


def _add_progress(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress per source on stderr (default: when stderr is a terminal)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relations-etl",
        description="Validated warehouse of diplomatic visits, memberships and relations.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="the nightly flow over every configured source")
    run.add_argument("--config", type=Path, help="sources file (default RELATIONS_ETL_CONFIG)")
    run.add_argument("--force", action="store_true", help="reload sources even when unchanged")
    _add_progress(run)
    ingest = commands.add_parser("ingest", help="one raw list through the same flow")
    ingest.add_argument("kind", choices=[k.value for k in Kind])
    ingest.add_argument("source", help="a path or URL (file://, https://, s3://)")
    ingest.add_argument(
        "--format",
        dest="fmt",
        help="csv, tsv, xlsx, json, ndjson, parquet, hsg-visits-xml (default: from the extension)",
    )
    ingest.add_argument("--mapping", type=Path, help="mapping file (YAML)")
    ingest.add_argument("--name", help="source name (default: the mapping's name or file name)")
    ingest.add_argument("--force", action="store_true", help="reload even when unchanged")
    _add_progress(ingest)
    sql = commands.add_parser("sql", help="read-only query on the warehouse")
    sql.add_argument("query")
    sql.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    report = commands.add_parser("report", help="the annual report of a country")
    report.add_argument("--country", required=True, help="ISO 3166 alpha-3 code")
    report.add_argument("--year", required=True, type=int)
    report.add_argument(
        "--format",
        dest="report_format",
        choices=["text", "md"],
        help="print as text tables (default) or markdown",
    )
    report.add_argument(
        "--html", type=Path, metavar="PATH", help="write one self-contained HTML file to PATH"
    )
    quarantine = commands.add_parser(
        "quarantine", help="rejected rows and what to fix; `quarantine replay` re-runs them"
    )
    quarantine.add_argument(
        "action",
        nargs="?",
        choices=["replay"],
        help="replay: re-check open rows against today's reference data",
    )
    quarantine.add_argument("--source", help="only this source")
    quarantine.add_argument("--csv", action="store_true", help="print the rows as CSV")
    contracts = commands.add_parser(
        "contracts", help="regenerate the contract files other teams read (schemas/)"
    )
    contracts.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 listing stale files"
    )
    contracts.add_argument("--out", type=Path, default=Path("schemas"), help="default schemas")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = _parser().parse_args(argv)
    # at the terminal the command prints its own summary; Prefect's run chatter stays in the API
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # a failed run's traceback still goes to the Prefect API; the terminal gets one paragraph
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"relations-etl: error: a RELATIONS_ETL_* setting is invalid: {exc}", file=sys.stderr)
        return EX_CONFIG
    try:
        if args.command in ("run", "ingest"):
            from relations_etl_flows import progress
            from relations_etl_flows.ingest import ingest_source, nightly

            show = sys.stderr.isatty() if args.progress is None else args.progress
            with progress.shown(show):
                if args.command == "run":
                    config = str(args.config) if args.config else None
                    results = nightly(config=config, home=str(settings.home), force=args.force)
                else:
                    source = source_for(
                        Kind(args.kind), args.source, args.fmt, args.mapping, args.name, settings
                    )
                    results = [ingest_source(source, home=str(settings.home), force=args.force)]
            print_results(results)
        elif args.command == "sql":
            print_frame(run_query(settings, args.query), args.csv)
        elif args.command == "quarantine" and args.action == "replay":
            from relations_etl_flows.ingest import replay_quarantine

            results = replay_quarantine(source=args.source, home=str(settings.home))
            if not results:
                print("quarantine is empty: nothing to replay")
            print_results(results)
        elif args.command == "quarantine":
            rows = open_rejections(settings, args.source)
            print_frame(rows, args.csv)
            if not args.csv:
                print(f"\n{rows.height} row(s) in quarantine. Values that stopped them:")
                for line in describe(unresolved_summary(settings, args.source)):
                    print(f"  {line}")
        elif args.command == "contracts":
            from relations_etl.contract_files import check, write

            if args.check:
                stale = check(args.out, settings.sql_dir)
                for line in stale:
                    print(f"stale: {line}", file=sys.stderr)
                return 1 if stale else 0
            for path in write(args.out, settings.sql_dir):
                print(path)
        elif args.command == "report":
            conn = connect(settings, read_only=True)
            try:
                if args.html:
                    written = write_html(conn, args.country, args.year, args.html)
                    print(f"wrote {written}", file=sys.stderr)
                if args.report_format or not args.html:
                    fmt = args.report_format or "text"
                    print(annual_report(conn, args.country, args.year, fmt), end="")
            finally:
                conn.close()
    except RelationsEtlError as exc:
        print(f"relations-etl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # a bug: one paragraph at the terminal, the traceback in a file
        log = _write_traceback(settings)
        print(
            f"relations-etl: internal error: {type(exc).__name__}: {exc}. This is a bug in "
            f"relations-etl, not in your data; the traceback is in {log}.",
            file=sys.stderr,
        )
        return EX_SOFTWARE
    return 0


def _write_traceback(settings: Settings) -> Path:
    """Keep the traceback of an unexpected error where a maintainer can read it."""
    name = f"relations-etl-error-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{os.getpid()}.txt"
    for folder in (settings.home / "logs", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(traceback.format_exc(), encoding="utf-8")
            return folder / name
        except OSError:
            continue  # the home itself may be what is broken
    return Path(os.devnull)


if __name__ == "__main__":
    sys.exit(main())
