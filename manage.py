#!/usr/bin/env python
"""Django's command-line utility for FlakeGuard."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flakeguard.settings")
    from django.core.management import execute_from_command_line

    from jobs.context import bind, new_correlation_id, safe_id

    # A command is a cause like a request: its log lines, and those of every
    # job it queues, share one id (FLAKEGUARD_CORRELATION_ID to choose it).
    bind(
        correlation_id=safe_id(os.environ.get("FLAKEGUARD_CORRELATION_ID")) or new_correlation_id()
    )
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
