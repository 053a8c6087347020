"""The `relations-etl` command: run, ingest, sql, report, quarantine, contracts."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import select
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from relations_etl import __version__
from relations_etl.errors import (
    EX_CONFIG,
    EX_SOFTWARE,
    PrefectUnavailableError,
    PublishPendingError,
    RelationsEtlError,
    sentence,
)
from relations_etl.kinds import Kind
from relations_etl.settings import Settings
from relations_etl_flows.formats import FORMATS

if TYPE_CHECKING:
    from relations_etl.audit import LoadResult

# `--help`, `--version` and a usage error need only the parser: polars, DuckDB, pyarrow, rich and
# the library's stages are imported by the commands that use them (`--help` in 0.3 s, not 1.1 s)


def _add_progress(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress per source on stderr (default: when stderr is a terminal)",
    )


def _add_output_format(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--format",
        dest="output_format",
        choices=FORMATS,
        default="table",
        help="table (fitted to the terminal), csv, or json (one array of objects)",
    )
    command.add_argument(
        "--csv",
        dest="output_format",
        action="store_const",
        const="csv",
        help="the same as --format csv",
    )


# rows of `quarantine` shown at a terminal unless --limit says otherwise: a list of 40,000
# rejected rows is for a file or a pipe, not for a screen
QUARANTINE_LIMIT = 50
# values listed under the rows at a terminal; `quarantine --summary` lists them by reason
QUARANTINE_VALUES = 10


def _count_arg(text: str) -> int:
    """A non-negative whole number for --limit."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (all) or more, not {value}")
    return value


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
    run.add_argument(
        "--task-runner",
        choices=["default", "dask"],
        help="dask: prepare the sources in parallel on a Dask cluster, commit them one at a "
        "time (default RELATIONS_ETL_TASK_RUNNER)",
    )
    _add_progress(run)
    ingest = commands.add_parser("ingest", help="one raw list through the same flow")
    ingest.add_argument("kind", choices=[k.value for k in Kind])
    ingest.add_argument("source", help="a path or URL (file://, https://, s3://)")
    ingest.add_argument(
        "--format",
        dest="fmt",
        help="csv, tsv, xlsx, json, ndjson, parquet, xml, hsg-visits-xml "
        "(default: from the extension)",
    )
    ingest.add_argument("--mapping", type=Path, help="mapping file (YAML)")
    ingest.add_argument("--name", help="source name (default: the mapping's name or file name)")
    ingest.add_argument("--force", action="store_true", help="reload even when unchanged")
    ingest.add_argument(
        "--moved-from",
        metavar="OLD_URI",
        help="the list of this source name moved from OLD_URI: bind the name to the new URI",
    )
    ingest.add_argument(
        "--mode",
        choices=["snapshot", "append"],
        help="snapshot (default): the list is the whole list, facts it no longer holds are "
        "retired; append: a feed, absent records stay",
    )
    _add_progress(ingest)
    sql = commands.add_parser("sql", help="read-only query on the warehouse")
    sql.add_argument("query")
    _add_output_format(sql)
    sql.add_argument(
        "--read",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="also let the query read this file or folder (repeatable; default: only the "
        "warehouse home and RELATIONS_ETL_SQL_READ_PATHS)",
    )
    sql.add_argument(
        "--verbose",
        action="store_true",
        help="say on stderr how the query is kept from writing (Landlock, or DuckDB alone)",
    )
    report = commands.add_parser("report", help="the annual report of a country")
    report.add_argument(
        "--country", required=True, help="ISO 3166 alpha-3 code, ISO name or alias (Kazakhstan)"
    )
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
    quarantine.add_argument(
        "--limit",
        type=_count_arg,
        metavar="N",
        help=f"print at most N rows, 0 for all (default: {QUARANTINE_LIMIT} at a terminal, all "
        "when the output is a pipe or a file)",
    )
    quarantine.add_argument(
        "--summary",
        action="store_true",
        help="only the counts by reason (source, column, check), with the values that stop "
        "most rows in each reason",
    )
    _add_output_format(quarantine)
    contracts = commands.add_parser(
        "contracts", help="regenerate the contract files other teams read (schemas/)"
    )
    contracts.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 listing stale files"
    )
    contracts.add_argument("--out", type=Path, default=Path("schemas"), help="default schemas")
    return parser


def _load(args: argparse.Namespace, settings: Settings) -> None:
    """run (the nightly Prefect flow), or ingest and replay in this process, with no Prefect."""
    from relations_etl import pipeline
    from relations_etl.config import source_for
    from relations_etl_flows import progress
    from relations_etl_flows.output import print_results

    shown = getattr(args, "progress", None)
    show = sys.stderr.isatty() if shown is None else shown
    steps = pipeline.Steps(stage=progress.stage)
    with progress.shown(show):
        if args.command == "run":
            results = _nightly(args, settings)
        elif args.command == "ingest":
            source = source_for(
                Kind(args.kind),
                args.source,
                args.fmt,
                args.mapping,
                args.name,
                settings,
                args.moved_from,
                args.mode,
            )
            results = [pipeline.run_source(source, settings, force=args.force, steps=steps)]
        else:
            results = pipeline.replay(settings, args.source, steps=steps)
            if not results:
                print("quarantine is empty: nothing to replay")
    print_results(results)
    pending = [f"{r.source}: {r.publish_pending}" for r in results if r.publish_pending]
    if pending:
        # loaded, yet the files other teams read are stale: a scheduler must see it (exit 3)
        raise PublishPendingError(
            f"{len(pending)} source(s) loaded, their Parquet files pending: " + "; ".join(pending)
        )


def _quarantine(args: argparse.Namespace, settings: Settings) -> None:
    """The open quarantine rows (or, with --summary, their counts by reason), limited at a
    terminal; what was left out is said on stdout for a table, on stderr for CSV and JSON."""
    from relations_etl.quarantine import (
        count_open,
        count_reasons,
        count_unresolved,
        describe,
        open_rejections,
        reason_summary,
        unresolved_summary,
    )
    from relations_etl_flows.output import print_frame, print_more, print_paragraphs

    if args.limit is None:
        limit = QUARANTINE_LIMIT if sys.stdout.isatty() else None
    else:
        limit = args.limit or None
    fmt = args.output_format
    if args.summary:
        reasons = reason_summary(settings, args.source, limit)
        print_frame(reasons, fmt)
        print_more(reasons.height, count_reasons(settings, args.source), "reason", fmt)
        return
    rows = open_rejections(settings, args.source, limit)
    print_frame(rows, fmt)
    total = count_open(settings, args.source) if limit is not None else rows.height
    print_more(rows.height, total, "row", fmt)
    if fmt == "table":
        values = unresolved_summary(settings, args.source, QUARANTINE_VALUES)
        print(f"\n{total} row(s) in quarantine. Values that stopped them:")
        print_paragraphs(describe(values), indent=2)
        more = count_unresolved(settings, args.source) - values.height
        if more > 0:
            print(f"  and {more} more: `relations-etl quarantine --summary` counts them by reason")


def _nightly(args: argparse.Namespace, settings: Settings) -> list[LoadResult]:
    """The nightly flow, as a deployment runs it, reporting to a Prefect API."""
    import httpx

    from relations_etl.report import check_report_settings
    from relations_etl_flows.ingest import nightly
    from relations_etl_flows.server import prefect_api

    config = str(args.config) if args.config else None
    check_report_settings(settings)  # before a Prefect API is started for nothing
    with prefect_api(settings) as api_url:
        try:
            return nightly(
                config=config,
                home=str(settings.home),
                force=args.force,
                task_runner=args.task_runner,
            )
        except httpx.TransportError as exc:
            raise PrefectUnavailableError(f"lost the Prefect API at {api_url}: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = _parser().parse_args(argv)
    from pydantic import ValidationError

    from relations_etl_flows.output import error_paragraph, print_frame

    # at the terminal the command prints its own summary; Prefect's run chatter stays in the API
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # a failed run's traceback still goes to the Prefect API; the terminal gets one paragraph
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"relations-etl: error: a RELATIONS_ETL_* setting is invalid: {exc}", file=sys.stderr)
        return EX_CONFIG
    except RelationsEtlError as exc:  # a setting that parses but cannot work (a URI as home)
        print(error_paragraph(f"relations-etl: error: {exc}", sys.stderr), file=sys.stderr)
        return exc.exit_code
    try:
        if args.command in ("run", "ingest") or getattr(args, "action", None) == "replay":
            _load(args, settings)
        elif args.command == "sql":
            from relations_etl.query import run_query

            with _logged_to_stderr("relations_etl.sandbox", args.verbose):
                frame = run_query(settings, args.query, args.read)
            print_frame(frame, args.output_format)
        elif args.command == "quarantine":
            _quarantine(args, settings)
        elif args.command == "contracts":
            from relations_etl.contract.files import check, write

            if args.check:
                stale = check(args.out, settings.sql_dir)
                for line in stale:
                    print(f"stale: {line}", file=sys.stderr)
                return 1 if stale else 0
            for path in write(args.out, settings.sql_dir):
                print(path)
        elif args.command == "report":
            from relations_etl.db import connect
            from relations_etl.report import annual_report, resolve_report_country, write_html

            conn = connect(settings, read_only=True)
            try:
                country = resolve_report_country(settings, args.country, args.year, conn)
                if args.html:
                    written = write_html(conn, country, args.year, args.html)
                    print(f"wrote {written}", file=sys.stderr)
                if args.report_format or not args.html:
                    fmt = args.report_format or "text"
                    print(annual_report(conn, country, args.year, fmt), end="")
            finally:
                conn.close()
    except BrokenPipeError as exc:
        # the reader of the output (`| head`) has all it wanted; any other pipe is a bug
        return _quiet_after_closed_pipe() if _stdout_closed() else _internal_error(settings, exc)
    except RelationsEtlError as exc:
        print(error_paragraph(f"relations-etl: error: {exc}", sys.stderr), file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        return _internal_error(settings, exc)
    return 0


@contextlib.contextmanager
def _logged_to_stderr(name: str, shown: bool) -> Iterator[None]:
    """While inside, the INFO lines of logger `name` on stderr (`relations-etl: ...`) if shown."""
    if not shown:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("relations-etl: %(message)s"))
    logger = logging.getLogger(name)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _internal_error(settings: Settings, exc: Exception) -> int:
    """A bug: one paragraph at the terminal, the traceback in a file."""
    from relations_etl_flows.output import error_paragraph

    log = _write_traceback(settings)
    text = sentence(f"relations-etl: internal error: {type(exc).__name__}: {exc}")
    print(
        error_paragraph(
            f"{text} This is a bug in relations-etl, not in your data; the traceback is in {log}.",
            sys.stderr,
        ),
        file=sys.stderr,
    )
    return EX_SOFTWARE


def _stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader has gone (`| head`)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return True  # not a file descriptor (a test's capture): the error is all there is
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))


def _quiet_after_closed_pipe() -> int:
    """End like grep when the reader closed the pipe: no message, status 0."""
    # what is still buffered for stdout would fail again when Python flushes it at exit
    # ("Exception ignored ... BrokenPipeError"): point the descriptor at /dev/null instead
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass  # no descriptor to redirect (a test's capture)
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
