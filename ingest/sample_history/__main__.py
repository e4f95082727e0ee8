"""Command line for the sample history: ``python -m ingest.sample_history OUT_DIR [options]``.

Prints a JSON summary of what was written to stdout (the manifest path, counts, categories
and seconds taken), so ``make demo`` and ``make bench`` can generate their input without
Django.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

from ingest.sample_history import HistoryConfig, generate_history


def main(argv: list[str] | None = None) -> int:
    defaults = HistoryConfig()
    parser = argparse.ArgumentParser(prog="python -m ingest.sample_history", description=__doc__)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--repo", default=defaults.repo)
    parser.add_argument("--runs", type=int, default=defaults.runs)
    parser.add_argument("--tests", type=int, default=defaults.tests)
    parser.add_argument("--jobs", default=",".join(defaults.jobs), help="comma-separated labels")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--flavour", choices=("pytest", "surefire"), default=defaults.flavour)
    parser.add_argument("--plain-xml", action="store_true", help="write XML files, not ZIPs")
    parser.add_argument("--rerun-rate", type=float, default=defaults.rerun_rate)
    args = parser.parse_args(argv)
    config = HistoryConfig(
        repo=args.repo,
        runs=args.runs,
        tests=args.tests,
        jobs=tuple(job.strip() for job in args.jobs.split(",") if job.strip()),
        seed=args.seed,
        zip_artifacts=not args.plain_xml,
        flavour=args.flavour,
        rerun_rate=args.rerun_rate,
    )
    started = time.perf_counter()
    try:
        history = generate_history(args.out_dir, config)
    except ValueError as error:
        parser.error(str(error))
    summary = {
        "manifest": str(history.manifest_path),
        "truth": str(history.truth_path),
        "runs": history.runs,
        "attempts": history.attempts,
        "files": history.files,
        "results": history.results,
        "report_bytes": history.report_bytes,
        "categories": dict(sorted(collections.Counter(history.truth.values()).items())),
        "seconds": round(time.perf_counter() - started, 3),
    }
    json.dump(summary, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
