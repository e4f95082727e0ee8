"""The ``flakeguard`` command: ``upload`` reports, or ``run`` a test command and judge its failures."""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from flakeguard_client import __version__
from flakeguard_client.api import ApiError, Client, Upload
from flakeguard_client.config import (
    ConfigError,
    RunMetadata,
    ServerSettings,
    run_metadata,
    server_settings,
)
from flakeguard_client.forgive import Decision, decide
from flakeguard_client.junit import Report, ReportError, read_reports

EXIT_OK = 0
EXIT_FAILED = 1  # the server could not be reached or refused, or the import failed
EXIT_USAGE = 2  # bad flags or missing settings
REPORT_SUFFIXES = (".xml", ".zip")
# Some file systems keep modification times to 2 s; a report written just after
# the command started must not be taken for a stale one.
MTIME_SLACK = 2.0
MAX_LISTED = 50

METADATA_FLAGS = (
    "repo",
    "run_id",
    "run_attempt",
    "sha",
    "branch",
    "event",
    "workflow",
    "job",
    "started_at",
)


def say(message: str) -> None:
    print(f"flakeguard: {message}", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    server = common.add_argument_group("server")
    server.add_argument("--url", help="FlakeGuard server (default: $FLAKEGUARD_URL)")
    server.add_argument("--token", help="API token (default: $FLAKEGUARD_TOKEN)")
    server.add_argument(
        "--timeout",
        help="seconds allowed for each server call as a whole (default: $FLAKEGUARD_TIMEOUT or 10)",
    )
    run = common.add_argument_group("run metadata (default: detected from the CI environment)")
    run.add_argument("--repo", help="OWNER/NAME (default: $FLAKEGUARD_REPO)")
    run.add_argument("--run-id", help="integer id of the CI run")
    run.add_argument("--run-attempt", help="attempt number of the run (default: 1)")
    run.add_argument("--sha", help="commit the run tested")
    run.add_argument("--branch")
    run.add_argument("--event", help="what started the run: push, pull_request, … (default: push)")
    run.add_argument("--workflow")
    run.add_argument("--job")
    run.add_argument(
        "--started-at", help="ISO 8601 time with timezone (default: when the command started)"
    )

    parser = argparse.ArgumentParser(
        prog="flakeguard",
        description="Upload JUnit reports to FlakeGuard; forgive failures of quarantined tests.",
    )
    parser.add_argument("--version", action="version", version=f"flakeguard-client {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    upload = commands.add_parser(
        "upload", parents=[common], help="upload report files as one run attempt"
    )
    upload.add_argument("files", nargs="+", metavar="FILE", help=".xml or .zip files or globs")
    upload.add_argument(
        "--wait", action="store_true", help="wait (within --timeout) for the server to import them"
    )

    run_cmd = commands.add_parser(
        "run",
        parents=[common],
        help="run a test command, upload its reports, pass if its only failures are quarantined",
        usage="flakeguard run --junit GLOB [--junit GLOB …] [options] -- CMD …",
    )
    run_cmd.add_argument(
        "--junit",
        action="append",
        required=True,
        metavar="GLOB",
        help="reports the command writes (quote it; ** matches folders); repeatable",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    command: list[str] = []
    if args_list[:1] == ["run"]:
        if "--" not in args_list:
            parser.parse_known_args(args_list)  # a missing --junit is reported first
            parser.error("flakeguard run: put the command after --, as in: -- pytest")
        split = args_list.index("--")
        args_list, command = args_list[:split], args_list[split + 1 :]
        args, extra = parser.parse_known_args(args_list)
        if extra:
            parser.error(
                f"flakeguard run: unexpected {' '.join(extra)} before --: quote each --junit "
                "pattern so that the shell does not expand it"
            )
    else:
        args = parser.parse_args(args_list)
    if args.command == "upload":
        return upload_command(args)
    if not command:
        parser.error("flakeguard run: no command after --")
    return run_command(args, command)


# -- settings ---------------------------------------------------------------


def _settings(args: argparse.Namespace) -> ServerSettings:
    return server_settings(os.environ, url=args.url, token=args.token, timeout=args.timeout)


def _metadata(args: argparse.Namespace, started_at: datetime) -> RunMetadata:
    flags = {name: getattr(args, name) for name in METADATA_FLAGS}
    return run_metadata(flags, os.environ, started_at=started_at)


# -- upload -----------------------------------------------------------------


def _expand(patterns: Sequence[str]) -> list[Path]:
    """Files named or matched by each argument, in order, each once."""
    found: dict[Path, None] = {}
    for pattern in patterns:
        path = Path(pattern)
        if path.is_file():
            matches = [path]
        else:
            matches = [Path(p) for p in sorted(glob.glob(pattern, recursive=True))]
            matches = [p for p in matches if p.is_file()]
            if not matches:
                raise ConfigError(f"no file matches {pattern}")
        for match in matches:
            if match.suffix.lower() not in REPORT_SUFFIXES:
                raise ConfigError(f"{match}: only .xml and .zip reports can be uploaded")
            found.setdefault(match, None)
    return list(found)


def _announce(
    upload: Upload, metadata: RunMetadata, files: int, out: Callable[[str], None]
) -> None:
    out(f"uploaded {files} file(s) as upload {upload.id} ({upload.state}): {upload.url}")
    if not upload.created:
        say(
            f"the server already had an upload for run {metadata.run_id} attempt "
            f"{metadata.run_attempt} of {metadata.repo} and kept it: these files were not "
            "stored again (a run attempt takes one upload; send every job's reports together)"
        )


def _summary(upload: Upload) -> Iterator[str]:
    summary = upload.summary or {}
    stored = summary.get("results_stored")
    files = summary.get("files_stored")
    yield f"upload {upload.id} {upload.state}: {stored} results stored from {files} file(s)"
    refused = summary.get("files_refused") or []
    for item in refused if isinstance(refused, list) else []:
        if isinstance(item, dict):
            yield f"refused {item.get('path', '?')}: {item.get('error', '')}"


def upload_command(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args)
        metadata = _metadata(args, datetime.now(UTC))
        files = _expand(args.files)
    except ConfigError as exc:
        say(str(exc))
        return EXIT_USAGE
    client = Client(settings)
    try:
        upload = client.upload(metadata, files)
        _announce(upload, metadata, len(files), print)
        if not args.wait:
            return EXIT_OK
        upload = client.wait(upload)
    except ApiError as exc:
        say(f"upload failed: {exc}")
        return EXIT_FAILED
    if upload.state == "failed":
        say(f"upload {upload.id} failed on the server: {upload.error or 'no reason given'}")
        return EXIT_FAILED
    for line in _summary(upload):
        print(line)
    return EXIT_OK


# -- run --------------------------------------------------------------------


def _run(command: Sequence[str]) -> tuple[int, int | None, bool]:
    """Run the command with this process's stdio: (exit status, killing signal, interrupted)."""
    try:
        process = subprocess.Popen(list(command))
    except FileNotFoundError:
        say(f"cannot run {command[0]}: command not found")
        return 127, None, False
    except PermissionError:
        say(f"cannot run {command[0]}: permission denied")
        return 126, None, False
    received: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        process.send_signal(signum)

    def note(signum: int, _frame: FrameType | None) -> None:
        # Ctrl-C reaches the command already (same process group); sending it
        # again would make a test runner abandon its clean shutdown.
        received.append(signum)

    handlers: dict[int, Callable[[int, FrameType | None], None]] = {signal.SIGINT: note}
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            handlers[getattr(signal, name)] = forward
    previous: dict[int, Any] = {}
    for signum, handler in handlers.items():
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            previous[signum] = signal.signal(signum, handler)
    try:
        status = process.wait()
    finally:
        for signum, handler in previous.items():
            # None: the handler was not set from Python and cannot be put back.
            if handler is not None:
                signal.signal(signum, handler)
    if status < 0:
        return 128 - status, -status, bool(received)
    return status, None, bool(received)


def _find_reports(patterns: Sequence[str], since: float) -> tuple[list[Path], int]:
    """Report files matching the globs written since ``since``, and how many stale ones matched."""
    found: dict[Path, None] = {}
    stale = 0
    for pattern in patterns:
        for name in sorted(glob.glob(pattern, recursive=True)):
            path = Path(name)
            try:
                info = path.stat()
            except OSError:
                continue
            if not path.is_file() or path.suffix.lower() not in REPORT_SUFFIXES:
                continue
            if info.st_mtime < since - MTIME_SLACK:
                stale += 1
                continue
            found.setdefault(path, None)
    return list(found), stale


def _listing(lines: Sequence[str]) -> Iterator[str]:
    yield from lines[:MAX_LISTED]
    if len(lines) > MAX_LISTED:
        yield f"… and {len(lines) - MAX_LISTED} more"


def _explain(decision: Decision, command_status: int) -> None:
    label = "forgiven" if decision.forgave else "quarantined, not forgiven"
    for line in _listing(
        [
            f"{label}: {f.test.display} (quarantined: {f.quarantine.reason or 'no reason given'}; "
            f"owner: {f.quarantine.owner or 'nobody'})"
            for f in decision.forgiven
        ]
    ):
        say(line)
    for line in _listing([f"not quarantined: {t.display}" for t in decision.not_quarantined]):
        say(line)
    if decision.exit_status != command_status:
        say(f"exit status {decision.exit_status} instead of {command_status}: {decision.reason}")
    else:
        say(f"exit status {command_status} kept: {decision.reason}")


def run_command(args: argparse.Namespace, command: Sequence[str]) -> int:
    started = time.time()
    started_at = datetime.fromtimestamp(started, UTC)
    settings: ServerSettings | None = None
    metadata: RunMetadata | None = None
    problem = ""
    try:
        settings = _settings(args)
        metadata = _metadata(args, started_at)
    except ConfigError as exc:
        problem = str(exc)

    status, killed_by, interrupted = _run(command)
    if interrupted:
        say(f"interrupted: not uploading; exit status {status}")
        return status

    files, stale = _find_reports(args.junit, started)
    if stale:
        say(f"ignored {stale} report(s) older than this command")
    if not files:
        patterns = " ".join(args.junit)
        say(f"no report written by the command matches {patterns}; exit status {status} kept")
        return status
    if settings is None or metadata is None:
        say(f"not uploading: {problem}; exit status {status} kept")
        return status

    reports: list[Report] = []
    unreadable: list[str] = []
    if status != 0:
        for path in files:
            try:
                reports.extend(read_reports(path))
            except ReportError as exc:
                say(str(exc))
                unreadable.append(str(path))

    client = Client(settings)
    uploaded = False
    try:
        upload = client.upload(metadata, files)
        _announce(upload, metadata, len(files), say)
        uploaded = True
    except ApiError as exc:
        say(f"upload failed: {exc}")

    if status == 0:
        return status

    quarantines = None
    if uploaded and any(report.failed for report in reports):
        try:
            quarantines = client.quarantine(metadata.repo)
        except ApiError as exc:
            say(f"cannot fetch the quarantine list: {exc}")
    decision = decide(
        status,
        reports=reports,
        unreadable=unreadable,
        quarantines=quarantines,
        uploaded=uploaded,
        killed_by=killed_by,
    )
    _explain(decision, status)
    return decision.exit_status
