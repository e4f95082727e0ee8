"""Test identities and failure fingerprints."""

from __future__ import annotations

from ingest.identity import failure_fingerprint, test_identity


def test_identity_ignores_whitespace_and_path_separators() -> None:
    a = test_identity("tests.Test  Cart", "", " test_add ")
    b = test_identity("tests.Test Cart", "", "test_add")
    c = test_identity("", "tests\\test_cart.py", "test_add")
    d = test_identity("", "tests/test_cart.py", "test_add")
    assert a == b
    assert c[0] == d[0] and c[3] == "tests/test_cart.py"


def test_identity_keeps_backslashes_in_names() -> None:
    # pytest writes non-ASCII parameter ids as backslash escapes
    escaped = test_identity("tests.test_menu", "", "test_dish[Cr\\xe8me br\\xfbl\\xe9e]")
    assert escaped[2] == "test_dish[Cr\\xe8me br\\xfbl\\xe9e]"
    assert escaped[0] != test_identity("tests.test_menu", "", "test_dish[Cr/xe8me br/xfbl/xe9e]")[0]


def test_identity_prefers_the_class_name_over_the_file() -> None:
    with_file = test_identity("tests.test_cart", "tests/test_cart.py", "test_add")
    without_file = test_identity("tests.test_cart", "", "test_add")
    assert with_file[0] == without_file[0]


def test_identity_tells_tests_apart() -> None:
    assert test_identity("a", "", "t")[0] != test_identity("b", "", "t")[0]
    assert test_identity("a", "", "t[1]")[0] != test_identity("a", "", "t[2]")[0]


def test_fingerprint_is_stable_across_volatile_details() -> None:
    first = failure_fingerprint("AssertionError", "assert 3 == 4 at 0x7f3a2b (took 1.52s)")
    second = failure_fingerprint("AssertionError", "assert 5 == 9 at 0x11aa00 (took 0.20s)")
    assert first == second and len(first) == 16


def test_fingerprint_separates_different_failures() -> None:
    timeout = failure_fingerprint("TimeoutError", "timed out after 30s")
    assertion = failure_fingerprint("AssertionError", "timed out after 30s")
    refused = failure_fingerprint("TimeoutError", "connection refused")
    assert len({timeout, assertion, refused}) == 3


def test_fingerprint_uses_the_first_line_only() -> None:
    a = failure_fingerprint("E", "boom\n  File '/tmp/a.py', line 3")
    b = failure_fingerprint("E", "boom\n  File '/home/x/b.py', line 99")
    assert a == b
