"""Every dashboard page in headless Chromium, as a viewer and as a maintainer would use it."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from django.core.management import call_command

from analysis.models import Quarantine, QuarantineEvent, TestScore
from analysis.quarantines import quarantine_tests
from analysis.scoring import TestStatus
from analysis.services import recompute_repository
from ingest.models import Repository, TestCase
from tests.analysis.factories import TestCaseFactory, TestScoreFactory
from tests.analysis.test_services import history_outcomes, store
from tests.dashboard.conftest import make_user, sign_in
from tests.factories import RepositoryFactory

pytestmark = pytest.mark.django_db(transaction=True)

REPO = "acme/shop"  # the repository tests.analysis.test_services.store writes to


@pytest.fixture
def shop(tmp_path: Path) -> Repository:
    """Forty runs of ten tests: a flake, a test broken for runs 20-29, a skipped one."""
    rng = random.Random(7)
    for run in range(1, 41):
        store(tmp_path, run, history_outcomes(rng, run))
    repository = Repository.objects.get(full_name=REPO)
    recompute_repository(repository=repository)
    return repository


def test_overview_counts_each_flaky_test_once_whatever_the_quarantines(client) -> None:
    repository = RepositoryFactory(full_name="acme/counted")
    for _ in range(3):
        TestScoreFactory(test=TestCaseFactory(repository=repository), verdict=TestStatus.FLAKY)
    quarantined = [TestCaseFactory(repository=repository) for _ in range(3)]
    for test in quarantined:
        TestScoreFactory(test=test)
    quarantine_tests(tests=quarantined, created_by="lead")
    client.force_login(make_user("counter", repository))

    page = client.get("/").content.decode()

    # 3 flaky and 3 quarantined, not 3 x 3: the counts are not taken over one join.
    assert (
        "<b>3</b> flaky" in page and "<b>3</b> quarantined" in page and "<b>0</b> failing" in page
    )


def test_a_viewer_signs_in_and_sees_only_granted_repositories(page, live_server, shop) -> None:
    RepositoryFactory(full_name="acme/secret")
    make_user("vera", shop)
    call_command("snapshot", "--backfill", "30", stderr=io.StringIO())

    sign_in(page, live_server, "vera")
    sparklines = page.locator(".card .sparklines svg[role=img]").count()
    trend = page.locator("svg[role=img] title").all_text_contents()

    cards = page.locator(".card h3").all_inner_texts()
    assert cards == [REPO]
    assert "acme/secret" not in page.content()
    assert page.locator(".card .flaky b").inner_text() == "1"
    assert sparklines == 3  # flaky, failing and quarantined, a point a day
    assert "Flaky tests per day" in trend
    secret = page.goto(f"{live_server.url}/repos/acme/secret/")
    assert secret.status == 404
    page.goto(f"{live_server.url}/")  # the screenshot shows the overview


def test_static_files_and_the_sign_in_page_are_styled_without_debug(page, live_server) -> None:
    page.goto(f"{live_server.url}/")  # signed out: sent to FlakeGuard's own sign-in page
    assert "/login/" in page.url
    colour = page.eval_on_selector("header.top", "e => getComputedStyle(e).backgroundColor")
    assert colour == "rgb(29, 35, 48)"  # the stylesheet arrived
    assert page.request.get(f"{live_server.url}/static/admin/css/base.css").status == 200


def test_repository_page_searches_filters_sorts_and_reaches_page_3(page, live_server) -> None:
    repository = RepositoryFactory(full_name="acme/big")
    for n in range(130):
        TestScoreFactory(
            test=TestCaseFactory(repository=repository, classname="tests.test_big", name=f"test_{n:03d}"),
            verdict=TestStatus.FLAKY if n % 10 == 0 else TestStatus.STABLE,
            score=0.5 + n / 1000 if n % 10 == 0 else 0.0,
            failures=(n % 10 == 0 and 3) or 0,
        )  # fmt: skip
    make_user("sam", repository)
    sign_in(page, live_server, "sam")
    base = f"{live_server.url}/repos/acme/big/"

    page.goto(f"{base}?sort=name&page=3")
    third = page.locator("#tests tbody tr td:last-child code").all_inner_texts()
    pager = page.locator(".pager").inner_text()
    page.goto(base)
    page.fill("input[name=q]", "test_12")
    page.click(".filters button[type=submit]")
    searched = page.locator("#tests tbody tr td:last-child code").all_inner_texts()
    page.select_option("select[name=status]", "flaky")
    page.fill("input[name=q]", "")
    page.click(".filters button[type=submit]")
    flaky = page.locator("#tests tbody tr td:last-child code").all_inner_texts()
    page.click("th a:text('score')")
    by_score = page.locator("#tests tbody tr td:nth-child(2)").all_inner_texts()

    assert third == [f"tests.test_big::test_{n:03d}" for n in range(100, 130)]
    assert "page 3 of 3" in pager and "previous" in pager
    assert sorted(searched) == [f"tests.test_big::test_{n}" for n in range(120, 130)]
    assert len(flaky) == 13 and all(name.endswith("0") for name in flaky)
    assert by_score == sorted(by_score, reverse=True)


def test_the_test_page_draws_every_result_and_the_score_and_groups_failures(
    page, live_server, shop
) -> None:
    flaky = TestCase.objects.get(name="test_flaky")
    score = TestScore.objects.get(test=flaky)
    make_user("tess", shop)
    sign_in(page, live_server, "tess")

    page.goto(f"{live_server.url}/repos/{REPO}/")
    page.click("a:has-text('test_flaky')")
    marks = page.locator("#timeline svg rect.mark")
    failed_marks = page.locator("#timeline svg rect.mark.outcome-failed")
    tooltip = failed_marks.first.locator("title").text_content()
    timeline_text = page.locator("#timeline svg desc").text_content()
    score_svg = page.locator("#score-chart svg")

    assert page.url.endswith(f"/repos/{REPO}/tests/{flaky.pk}/")
    assert marks.count() == score.results == 40
    assert failed_marks.count() == score.failures > 0
    assert "on main at" in tooltip and "attempt 1" in tooltip
    assert f"{score.failures} failed" in timeline_text
    assert score_svg.get_attribute("role") == "img"
    assert "flaky threshold" in page.locator("#score-chart").inner_text()
    assert page.locator("summary").first.inner_text().startswith(f"{score.failures} failure")
    assert "assert 3 == 4" in page.locator("pre.sample").first.inner_text()
    assert page.locator("a[href*='/actions/runs/']").count() >= 1  # runs on GitHub
    # Each line of evidence links the commit and runs it names.
    assert page.locator("#evidence li").first.locator("a[href*='/commit/']").count() == 1
    assert page.locator("#evidence a[href*='/actions/runs/']").count() >= 1


def test_failure_groups_show_one_cause_across_tests(page, live_server, shop) -> None:
    make_user("fay", shop)
    sign_in(page, live_server, "fay")

    page.goto(f"{live_server.url}/repos/{REPO}/failures/")
    group = page.locator(".failure-group").first
    tests = group.locator("a:has(code)").all_inner_texts()

    # test_flaky and test_broken fail with the same assertion: one cause, two tests.
    assert {"tests.test_shop::test_flaky", "tests.test_shop::test_broken"} <= set(tests)
    assert "assert 3 == 4" in group.locator("pre.sample").inner_text()


def test_a_maintainer_quarantines_through_the_form_and_releases(page, live_server, shop) -> None:
    flaky = TestCase.objects.get(name="test_flaky")
    make_user("mia", shop, role="maintainer")
    make_user("val", shop)
    url = f"{live_server.url}/repos/{REPO}/tests/{flaky.pk}/"

    sign_in(page, live_server, "val")
    page.goto(url)
    viewer_sees_form = page.locator("#quarantine-form").count()
    page.context.clear_cookies()
    sign_in(page, live_server, "mia")
    page.goto(url)
    page.fill("#quarantine-form input[name=reason]", "times out on the shared runner")
    page.fill("#quarantine-form input[name=owner]", "team-shop")
    page.fill("#quarantine-form input[name=expires_at]", "2030-01-15")
    page.click("#quarantine-form button[type=submit]")
    quarantined = Quarantine.objects.get(test=flaky)
    shown = page.locator("main").inner_text()
    page.fill("#release-form input[name=reason]", "fixed in #51")
    page.click("#release-form button[type=submit]")
    audit = page.locator("#audit li").all_inner_texts()

    assert viewer_sees_form == 0
    assert (quarantined.owner, quarantined.reason) == (
        "team-shop",
        "times out on the shared runner",
    )
    assert quarantined.expires_at.date().isoformat() == "2030-01-15"
    assert "Quarantined." in shown and "owner team-shop" in shown
    assert not Quarantine.objects.filter(test=flaky).exists()
    assert [line.split(": ", 1)[1] for line in audit] == [
        "released by mia (owner team-shop): fixed in #51",
        "quarantined by mia (owner team-shop): times out on the shared runner",
    ]
    assert QuarantineEvent.objects.filter(test=flaky).count() == 2


def test_pages_fit_a_phone_screen(browser, live_server, shop) -> None:
    from tests.dashboard.conftest import SCREENSHOTS

    make_user("phil", shop)
    flaky = TestCase.objects.get(name="test_flaky")
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    phone = context.new_page()
    try:
        sign_in(phone, live_server, "phil")
        widths = {}
        for name, path in [
            ("overview", "/"),
            ("repository", f"/repos/{REPO}/"),
            ("test", f"/repos/{REPO}/tests/{flaky.pk}/"),
        ]:
            phone.goto(f"{live_server.url}{path}")
            widths[name] = phone.evaluate("document.documentElement.scrollWidth")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            phone.screenshot(path=str(SCREENSHOTS / f"phone_{name}.png"), full_page=True)
    finally:
        context.close()

    # Nothing wider than the screen: tables scroll inside their wrapper, charts scale down.
    assert all(width <= 390 for width in widths.values()), widths
