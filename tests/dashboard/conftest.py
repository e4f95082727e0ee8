"""Pages opened in real headless Chromium: Debian's ``chromium`` driven by Playwright.

Nothing downloads a browser: Playwright launches the system one through
``executable_path``. Every page test saves a screenshot under
``test-artifacts/screenshots/`` (kept by CI as an artifact).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User

from ingest.access import grant
from tests.conftest import REPO_ROOT

SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    assert executable, "Debian's chromium is needed (make test installs it)"
    # Playwright's sync API keeps an event loop on this thread; the ORM calls
    # made by the tests around it are synchronous all the same.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser, request) -> Iterator:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    yield opened
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    opened.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    context.close()


def make_user(username: str, repository=None, *, role: str = "viewer") -> User:
    user = User.objects.create_user(username, password=PASSWORD)
    if repository is not None:
        grant(user=user, repository=repository, role=role)
    return user


def sign_in(page, live_server, username: str) -> None:
    """Through FlakeGuard's own sign-in page, as a person would."""
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
