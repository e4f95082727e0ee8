import hashlib

from flakeguard_client.keys import display_name, normalise_part, normalise_path, test_key


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def test_fixed_vector() -> None:
    assert test_key("tests.test_shop", "", "test_checkout") == (
        hashlib.sha1(b"tests.test_shop\x1ftest_checkout").hexdigest()
    )


def test_classname_wins_over_file() -> None:
    assert test_key("tests.test_shop", "tests/test_shop.py", "test_checkout") == sha1(
        "tests.test_shop\x1ftest_checkout"
    )


def test_file_is_the_scope_without_a_classname_and_backslashes_become_slashes() -> None:
    expected = sha1("src/shop/cart.spec.ts\x1fadds an item")
    assert test_key("", "src\\shop\\cart.spec.ts", "adds an item") == expected
    assert test_key("  ", " src\\shop/cart.spec.ts ", "adds an item") == expected


def test_whitespace_is_collapsed_and_stripped() -> None:
    expected = sha1("tests.test_shop\x1ftest checkout [a b]")
    assert test_key(" tests.test_shop\n", "", "test \t checkout\n [a  b] ") == expected


def test_names_keep_their_backslashes() -> None:
    assert test_key("t", "", "test_x[\\u00e9]") == sha1("t\x1ftest_x[\\u00e9]")


def test_missing_everything() -> None:
    assert test_key("", "", "") == sha1("\x1f")


def test_normalisers() -> None:
    assert normalise_part("  a \t b\n") == "a b"
    assert normalise_path("a\\b \\ c") == "a/b / c"


def test_display_name() -> None:
    assert display_name("tests.test_shop", "x.py", "test_a") == "tests.test_shop::test_a"
    assert display_name("", "a\\b.py", "test_a") == "a/b.py::test_a"
    assert display_name("", "", "test_a") == "test_a"
