"""Test owners from an uploaded CODEOWNERS, a person's choice over it, and filtering by owner."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from analysis.models import TestOwner
from ingest.access import grant
from ingest.tokens import create_token
from polling.ownership import set_owners
from tests.analysis.factories import TestCaseFactory, TestScoreFactory
from tests.factories import RepositoryFactory

CODEOWNERS = """\
# The shop team owns everything, then narrower rules win: the last match counts.
*                   @acme/shop
/tests/payments/    @acme/payments
*.feature           qa@acme.example
/tests/legacy/
not-a-rule [abc]    @acme/shop
"""


@pytest.fixture
def repository(db):
    repository = RepositoryFactory(full_name="acme/owned")
    for name, file, classname in [
        ("test_cart", "tests/test_cart.py", "tests.test_cart"),
        ("test_refund", "tests/payments/test_refund.py", "tests.payments.test_refund"),
        ("test_old", "tests/legacy/test_old.py", "tests.legacy.test_old"),
        ("test_card", "", "tests.payments.test_card.TestCard"),  # a report without files
        ("checkout", "features/checkout.feature", ""),
    ]:
        TestScoreFactory(
            test=TestCaseFactory(repository=repository, name=name, file=file, classname=classname)
        )
    return repository


def owners() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, owner in TestOwner.objects.order_by("owner").values_list("test__name", "owner"):
        found.setdefault(name, []).append(owner)
    return found


def upload(client: Client, content: str, repo: str = "acme/owned"):
    return client.put(
        "/api/v1/codeowners/", {"repo": repo, "content": content}, content_type="application/json"
    )


@pytest.mark.django_db
def test_an_uploaded_codeowners_gives_each_test_its_owners_by_github_s_rules(repository) -> None:
    _, secret = create_token(repository=repository, scope="upload")
    ci = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")

    answer = upload(ci, CODEOWNERS)

    assert answer.status_code == 200, answer.content
    assert answer.json()["errors"] == [
        {"line": 6, "message": answer.json()["errors"][0]["message"]}
    ]
    assert owners() == {
        "test_cart": ["@acme/shop"],
        "test_refund": ["@acme/payments"],
        "test_card": ["@acme/payments"],  # found through its classname
        "checkout": ["qa@acme.example"],
        # test_old: /tests/legacy/ has no owners, and un-owns what it matches
    }
    other = RepositoryFactory(full_name="acme/other")
    assert upload(ci, "* @x", repo=other.full_name).status_code == 404


@pytest.mark.django_db
def test_a_person_s_owners_win_over_codeowners_and_owners_filter_lists(repository) -> None:
    user = User.objects.create_user("lead", password="x")
    grant(user=user, repository=repository, role="maintainer")
    lead = Client()
    lead.force_login(user)
    upload(lead, CODEOWNERS)
    cart = repository.tests.get(name="test_cart")

    set_owners(test=cart, owners=["@alice"])
    upload(lead, CODEOWNERS + "\n*.py @acme/python\n")  # a new file: the person's choice stays

    assert owners()["test_cart"] == ["@alice"]
    assert owners()["test_refund"] == ["@acme/python"]  # last match wins
    api = lead.get("/api/v1/tests/", {"repo": "acme/owned", "owner": "@alice"}).json()
    assert [t["name"] for t in api["results"]] == ["test_cart"]
    page = lead.get("/repos/acme/owned/", {"owner": "@acme/python"}).content.decode()
    assert "test_refund" in page and "test_cart" not in page
    shown = lead.get("/api/v1/codeowners/", {"repo": "acme/owned"}).json()
    assert shown["source"] == "upload" and shown["content"].endswith("@acme/python\n")


@pytest.mark.django_db
def test_codeowners_is_read_from_github_where_github_looks_with_conditional_requests(
    repository, fake_github
) -> None:
    from polling.models import GitHubSettings
    from polling.ownership import refresh_all_codeowners

    GitHubSettings.objects.create(repository=repository)
    remote = fake_github.repo("acme/owned")
    remote.files["CODEOWNERS"] = "* @acme/shop\n"  # no .github/CODEOWNERS: the next place
    remote.files["docs/CODEOWNERS"] = "* @acme/docs\n"  # never read: CODEOWNERS came first

    first = refresh_all_codeowners()
    again = refresh_all_codeowners()
    remote.files["CODEOWNERS"] = "* @acme/shop\n/tests/payments/ @acme/payments\n"
    changed = refresh_all_codeowners()

    reads = [r for r in fake_github.requests if "/contents/" in r.path]
    assert (first, again, changed) == (1, 0, 1)
    assert [r.path.split("/contents/")[1] for r in reads] == [
        ".github/CODEOWNERS",
        "CODEOWNERS",
    ] * 3
    assert reads[3].headers.get("If-None-Match")  # the second round asked "changed since?"
    assert owners()["test_refund"] == ["@acme/payments"] and owners()["test_cart"] == ["@acme/shop"]
