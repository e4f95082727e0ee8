"""Test owners from CODEOWNERS: stored, matched to each test's file with GitHub's rules.

The file comes from GitHub (read with the repository's other data) or is
uploaded by any other CI (``PUT /api/v1/codeowners/``). Applying it replaces
the CODEOWNERS-derived owners of every test of the repository; a test a person
gave owners to keeps them (``TestOwner.source == person`` wins).
"""

from __future__ import annotations

import logging

from django.db import transaction

from analysis.models import OwnerSource, TestOwner
from ingest.models import Repository, TestCase
from polling.clients import client_for, github_configured
from polling.codeowners import CODEOWNERS_PATHS, CodeOwners, owners_for_test, parse
from polling.models import CodeOwnersFile, CodeOwnersSource

logger = logging.getLogger(__name__)

_BATCH = 5000


def store_codeowners(
    *, repository: Repository, content: str, source: str, path: str = "", etag: str = ""
) -> CodeOwnersFile:
    """Keep the file and apply it to every test of the repository."""
    parsed = parse(content)
    with transaction.atomic():
        stored, _ = CodeOwnersFile.objects.update_or_create(
            repository=repository,
            defaults={
                "content": content,
                "source": source,
                "path": path,
                "etag": etag,
                "errors": [{"line": e.line, "message": e.message} for e in parsed.errors],
            },
        )
        assigned = apply_codeowners(repository, parsed)
    logger.info("%s: CODEOWNERS applied, %s tests owned", repository, assigned)
    return stored


def apply_codeowners(repository: Repository, parsed: CodeOwners | None = None) -> int:
    """Restate the CODEOWNERS owners of the repository's tests; returns how many tests have one."""
    if parsed is None:
        stored = CodeOwnersFile.objects.filter(repository=repository).first()
        if stored is None:
            return 0
        parsed = parse(stored.content)
    by_person = set(
        TestOwner.objects.filter(test__repository=repository, source=OwnerSource.PERSON)
        .values_list("test_id", flat=True)
        .distinct()
    )
    TestOwner.objects.filter(test__repository=repository, source=OwnerSource.CODEOWNERS).delete()
    owned = 0
    rows: list[TestOwner] = []
    tests = TestCase.objects.filter(repository=repository).values_list("pk", "file", "classname")
    for test_pk, file, classname in tests.iterator(chunk_size=_BATCH):
        if test_pk in by_person:
            continue
        owners = owners_for_test(parsed, file, classname)
        owned += bool(owners)
        rows += [
            TestOwner(test_id=test_pk, owner=owner, source=OwnerSource.CODEOWNERS)
            for owner in dict.fromkeys(owners)
        ]
        if len(rows) >= _BATCH:
            TestOwner.objects.bulk_create(rows, ignore_conflicts=True)
            rows = []
    TestOwner.objects.bulk_create(rows, ignore_conflicts=True)
    return owned


def set_owners(*, test: TestCase, owners: list[str]) -> None:
    """A person's choice of owners for one test, which CODEOWNERS no longer overrides
    (an empty list hands the test back to CODEOWNERS)."""
    with transaction.atomic():
        TestOwner.objects.filter(test=test).delete()
        if owners:
            TestOwner.objects.bulk_create(
                [TestOwner(test=test, owner=o, source=OwnerSource.PERSON) for o in owners]
            )
            return
    apply_codeowners(test.repository)


def refresh_codeowners(repository: Repository) -> bool:
    """Read the repository's CODEOWNERS from GitHub where GitHub looks for it, first found
    wins, with a conditional request; returns whether it changed (and was applied).

    An uploaded file is left alone: the repository's CI chose to send its own.
    """
    stored = CodeOwnersFile.objects.filter(repository=repository).first()
    if stored is not None and stored.source == CodeOwnersSource.UPLOAD:
        return False
    client = client_for(installation_id=repository.installation_id)
    for path in CODEOWNERS_PATHS:
        etag = stored.etag if stored is not None and stored.path == path else ""
        text, etag, exists = client.file_text(repository.full_name, path, etag=etag)
        if not exists:
            continue
        if text is None:
            return False  # 304: as it was
        store_codeowners(
            repository=repository,
            content=text,
            source=CodeOwnersSource.GITHUB,
            path=path,
            etag=etag,
        )
        return True
    return False


def refresh_all_codeowners() -> int:
    """Beat's daily refresh over the repositories followed on GitHub."""
    if not github_configured():
        return 0
    changed = 0
    for repository in Repository.objects.filter(github__isnull=False):
        try:
            changed += refresh_codeowners(repository)
        except Exception:  # one repository's trouble must not stop the others
            logger.exception("%s: CODEOWNERS not refreshed", repository)
    return changed
