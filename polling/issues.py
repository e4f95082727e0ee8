"""A GitHub issue per flaky test: opened when it becomes flaky, commented on and closed when
it is fixed, reopened if it turns flaky again (one issue per test, never a second)."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from ingest.models import Repository, TestCase
from polling.clients import client_for
from polling.models import FlakyTestIssue

LABEL = "flaky-test"


def issue_for_event(event: dict[str, Any]) -> dict[str, Any]:
    """Open, reopen or close the test's issue as the event says; returns what was done."""
    test = TestCase.objects.filter(pk=event.get("test_id")).first()
    if test is None:
        return {"done": "nothing", "reason": "the test is gone"}
    repository: Repository = test.repository
    client = client_for(installation_id=repository.installation_id)
    issue = FlakyTestIssue.objects.filter(test=test).first()
    link = f"{settings.FLAKEGUARD_BASE_URL}{event.get('path', '')}"
    if event["kind"] == "became_flaky":
        text = _describe(event, link)
        if issue is None:
            made = client.create_issue(
                repository.full_name,
                {"title": f"Flaky test: {event['test']}", "body": text, "labels": [LABEL]},
            )
            FlakyTestIssue.objects.create(
                test=test, repository=repository, number=made["number"], url=made["html_url"]
            )
            return {"done": "opened", "number": made["number"]}
        client.comment_on_issue(repository.full_name, issue.number, f"Flaky again.\n\n{text}")
        if not issue.open:
            client.update_issue(repository.full_name, issue.number, {"state": "open"})
            FlakyTestIssue.objects.filter(pk=issue.pk).update(open=True)
        return {"done": "reopened", "number": issue.number}
    if event["kind"] == "fixed" and issue is not None and issue.open:
        client.comment_on_issue(
            repository.full_name,
            issue.number,
            f"FlakeGuard judges this test stable again (score {event.get('score')}). {link}",
        )
        client.update_issue(repository.full_name, issue.number, {"state": "closed"})
        FlakyTestIssue.objects.filter(pk=issue.pk).update(open=False)
        return {"done": "closed", "number": issue.number}
    return {"done": "nothing"}


def _describe(event: dict[str, Any], link: str) -> str:
    lines = [
        f"FlakeGuard judges `{event['test']}` flaky (score {event.get('score')}).",
        "",
        *[f"- {line}" for line in event.get("evidence", [])],
        "",
        f"History and failures: {link}",
    ]
    if event.get("owners"):
        lines.append("Owners: " + ", ".join(event["owners"]))
    if event.get("quarantined"):
        lines.append("It was quarantined automatically; its failures do not fail the build.")
    return "\n".join(lines)
