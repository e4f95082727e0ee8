"""``manage.py parse_junit PATH... [--json]``: validate JUnit reports without storing.

One result per XML file; a ZIP gives one per XML member, named
``archive.zip!member.xml``, or a single error entry if the archive is refused.
Exit status 1 when any file or member could not be read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ingest.validation import validate_paths


class Command(BaseCommand):
    help = "Validate JUnit XML files and ZIP artifacts and print their counts, storing nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument("--json", action="store_true", help="print a JSON array on stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        results = validate_paths([Path(p) for p in options["paths"]])
        if options["json"]:
            self.stdout.write(json.dumps(results, indent=2))
        else:
            for r in results:
                if r["error"]:
                    self.stdout.write(f"{r['path']}: ERROR {r['error']}")
                else:
                    self.stdout.write(
                        f"{r['path']}: {r['tests']} tests, {r['passed']} passed, {r['failures']} failures, "
                        f"{r['errors']} errors, {r['skipped']} skipped, {r['flaky_reruns']} flaky reruns, "
                        f"{r['rerun_failures']} rerun failures"
                    )
        if any(r["error"] for r in results):
            sys.exit(1)
