"""CODEOWNERS: parsed and matched the way GitHub does, tried on GitHub's own documented example."""

from __future__ import annotations

import pytest

from polling.codeowners import (
    CODEOWNERS_PATHS,
    CodeOwners,
    LineError,
    candidate_paths,
    owners_for_test,
    parse,
)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """No cache to reset: CODEOWNERS parsing is pure, and these tests need no Django
    (nor the Redis the suite's own cache reset would talk to)."""


# The rules of the example file on GitHub's "About code owners" page, in its order
# (https://docs.github.com/en/repositories/managing-your-repositorys-settings-and-features/
# customizing-your-repository/about-code-owners), the page's comments summed up.
GITHUB_EXAMPLE = """\
# A comment. Each line is a file pattern followed by one or more owners.

# The default owners of everything, unless a later match takes precedence.
*       @global-owner1 @global-owner2

# The last matching pattern takes the most precedence: JS files are @js-owner's only.
*.js    @js-owner #This is an inline comment.

# Owners can be email addresses.
*.go docs@example.com

# And teams, as @org/team-name.
*.txt @octo-org/octocats

# build/logs at the root of the repository, and all its subdirectories.
/build/logs/ @doctocat

# Files directly in docs, not deeper ones.
docs/*  docs@example.com

# Any file in an apps directory anywhere in the repository.
apps/ @octocat

# Any file in /docs at the root, and all its subdirectories.
/docs/ @doctocat

# Any change in /scripts needs @doctocat or @octocat.
/scripts/ @doctocat @octocat

# Any file in a logs directory, at any depth.
**/logs @octocat

# /apps at the root, except /apps/github, whose owners are left empty.
/apps/ @octocat
/apps/github

# /apps at the root, except /apps/github, which has its own owner.
/apps/ @octocat
/apps/github @doctocat
"""

GLOBAL = ("@global-owner1", "@global-owner2")


def _example_up_to(rule: str) -> CodeOwners:
    """GitHub's example up to its first line ``rule``: each rule judged before later ones
    (the last match wins) take over the paths it describes."""
    lines = GITHUB_EXAMPLE.splitlines()
    return parse("\n".join(lines[: lines.index(rule) + 1]))


def test_the_locations_github_reads_in_its_order() -> None:
    assert CODEOWNERS_PATHS == (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS")


def test_github_example_parses_cleanly() -> None:
    codeowners = parse(GITHUB_EXAMPLE)

    assert codeowners.errors == ()
    assert [rule.pattern for rule in codeowners.rules] == [
        "*",
        "*.js",
        "*.go",
        "*.txt",
        "/build/logs/",
        "docs/*",
        "apps/",
        "/docs/",
        "/scripts/",
        "**/logs",
        "/apps/",
        "/apps/github",
        "/apps/",
        "/apps/github",
    ]
    js = codeowners.rules[1]
    assert (js.owners, js.line) == (("@js-owner",), 7)  # the inline comment is no owner
    assert codeowners.rules[11].owners == ()


@pytest.mark.parametrize(
    ("path", "owners"),
    [
        ("README.md", GLOBAL),
        ("src/lib/util.py", GLOBAL),
        ("src/app.js", ("@js-owner",)),
        ("cmd/server/main.go", ("docs@example.com",)),
        ("notes/todo.txt", ("@octo-org/octocats",)),
        # Later rules win: **/logs over /build/logs/, /docs/ over docs/*, /apps/ over *.js.
        ("build/logs/app.log", ("@octocat",)),
        ("docs/getting-started.md", ("@doctocat",)),
        ("docs/build-app/troubleshooting.md", ("@doctocat",)),
        ("src/apps/main.py", ("@octocat",)),
        ("apps/web/index.js", ("@octocat",)),
        ("scripts/deploy.sh", ("@doctocat", "@octocat")),
        ("scripts/logs/run.log", ("@octocat",)),
        ("deeply/nested/logs/trace.txt", ("@octocat",)),
        ("apps/github/index.js", ("@doctocat",)),
        ("apps/github", ("@doctocat",)),
    ],
)
def test_github_example_whole_file(path: str, owners: tuple[str, ...]) -> None:
    assert parse(GITHUB_EXAMPLE).owners_of(path) == owners


def test_build_logs_at_the_root_and_beneath() -> None:
    codeowners = _example_up_to("/build/logs/ @doctocat")

    assert codeowners.owners_of("build/logs/app.log") == ("@doctocat",)
    assert codeowners.owners_of("build/logs/2024/01/app.log") == ("@doctocat",)
    assert codeowners.owners_of("tools/build/logs/app.log") == GLOBAL  # anchored to the root
    assert codeowners.owners_of("build/logs.txt") == ("@octo-org/octocats",)


def test_docs_star_matches_files_directly_in_docs_only() -> None:
    codeowners = _example_up_to("docs/*  docs@example.com")

    assert codeowners.owners_of("docs/getting-started.md") == ("docs@example.com",)
    assert codeowners.owners_of("docs/build-app/troubleshooting.md") == GLOBAL
    assert codeowners.owners_of("site/docs/index.md") == GLOBAL  # a middle slash anchors


def test_apps_directory_anywhere() -> None:
    codeowners = _example_up_to("apps/ @octocat")

    assert codeowners.owners_of("apps/readme.txt") == ("@octocat",)
    assert codeowners.owners_of("frontend/apps/main.js") == ("@octocat",)
    assert codeowners.owners_of("a/b/c/apps/d/e.go") == ("@octocat",)
    assert codeowners.owners_of("apps") == GLOBAL  # a file named apps is no directory
    assert codeowners.owners_of("myapps/x.py") == GLOBAL


def test_docs_directory_at_the_root_only() -> None:
    codeowners = _example_up_to("/docs/ @doctocat")

    assert codeowners.owners_of("docs/getting-started.md") == ("@doctocat",)
    assert codeowners.owners_of("docs/build-app/troubleshooting.md") == ("@doctocat",)
    assert codeowners.owners_of("site/docs/index.md") == GLOBAL


def test_double_star_logs_at_any_depth_and_it_wins_being_later() -> None:
    codeowners = _example_up_to("**/logs @octocat")

    for path in ("logs/a.log", "build/logs/a.log", "scripts/logs/b.log", "deeply/nested/logs/c"):
        assert codeowners.owners_of(path) == ("@octocat",), path
    assert codeowners.owners_of("build/logbook.md") == GLOBAL


def test_a_rule_without_owners_unowns_the_path() -> None:
    codeowners = _example_up_to("/apps/github")

    assert codeowners.owners_of("apps/web/app.rb") == ("@octocat",)
    assert codeowners.owners_of("apps/github/app.rb") == ()
    assert codeowners.owners_of("apps/github") == ()
    assert codeowners.owners_of("apps/githubber/app.rb") == ("@octocat",)
    unowned = codeowners.rule_for("apps/github/app.rb")
    assert unowned is not None
    assert (unowned.pattern, unowned.owners, unowned.line) == ("/apps/github", (), 35)
    assert parse("/src/ @a").rule_for("README.md") is None  # unmatched, unlike un-owned


def test_the_last_matching_rule_wins_whatever_its_pattern() -> None:
    codeowners = parse("*.js @js\n* @everyone\n/web/ @web\n")

    assert codeowners.owners_of("web/app.js") == ("@web",)
    assert codeowners.owners_of("lib/app.js") == ("@everyone",)  # * came after *.js


def test_comments_blank_lines_and_whitespace() -> None:
    codeowners = parse(
        "\ufeff# comment\n"
        "\n"
        "   \t\n"
        "    # an indented comment\n"
        "*.py\t@python   @org/reviewers   # trailing comment @not-an-owner\n"
        "/vendor/ # un-owned, with a comment right after the pattern\n"
        "foo#bar @hash-in-word\r\n"
        "  /indented/   @indented  \n"
    )

    assert codeowners.errors == ()
    assert [(rule.pattern, rule.owners, rule.line) for rule in codeowners.rules] == [
        ("*.py", ("@python", "@org/reviewers"), 5),
        ("/vendor/", (), 6),
        ("foo#bar", ("@hash-in-word",), 7),
        ("/indented/", ("@indented",), 8),
    ]
    assert codeowners.owners_of("vendor/lib.py") == ()
    assert codeowners.owners_of("x/foo#bar") == ("@hash-in-word",)
    assert codeowners.owners_of("indented/a") == ("@indented",)


def test_escaped_hash_and_spaces_in_patterns() -> None:
    codeowners = parse(
        "notes/\\#ideas.md @hash\nMy\\ Documents/ @docs\nspaced\\ name.txt @spaced # comment\n"
    )

    assert codeowners.errors == ()
    assert codeowners.owners_of("notes/#ideas.md") == ("@hash",)
    assert codeowners.owners_of("My Documents/cv.pdf") == ("@docs",)
    assert codeowners.owners_of("deep/My Documents/cv.pdf") == ("@docs",)
    assert codeowners.owners_of("spaced name.txt") == ("@spaced",)
    assert codeowners.owners_of("spaced") == ()
    assert parse("a\\*b @lit").owners_of("a*b") == ("@lit",)
    assert parse("a\\*b @lit").owners_of("axb") == ()


def test_unsupported_syntax_and_bad_owners_are_errors_and_their_lines_skipped() -> None:
    codeowners = parse(
        "* @everyone\n"  # 1
        "!*.md @negated\n"  # 2
        "*.[ch] @c-owners\n"  # 3
        "\\#notes @hash\n"  # 4
        "/src/ someone\n"  # 5: no @, no email
        "/lib/ @org/ @fine\n"  # 6: a team without a name
        "/bin/ @\n"  # 7
        "a/***/b @stars\n"  # 8
        "trailing\\ \n"  # 9: fine, an escaped space ends the pattern
        "dangling\\\n"  # 10
        "a//b @double\n"  # 11
        "/ok/ @ok user@example.com @org/team-1 @user_name-2\n"  # 12
    )

    assert [(error.line, error.message) for error in codeowners.errors] == [
        (2, "invalid pattern '!*.md': negation with '!' is not supported in CODEOWNERS"),
        (
            3,
            "invalid pattern '*.[ch]': character ranges with '[ ]' are not supported in CODEOWNERS",
        ),
        (4, "invalid pattern '\\#notes': escaping a leading '#' is not supported in CODEOWNERS"),
        (5, "invalid owner 'someone': expected @user, @org/team or an email address"),
        (6, "invalid owner '@org/': expected @user, @org/team or an email address"),
        (7, "invalid owner '@': expected @user, @org/team or an email address"),
        (8, "invalid pattern 'a/***/b': three or more '*' in a row"),
        (10, "invalid pattern 'dangling\\': ends in an unfinished escape ('\\')"),
        (11, "invalid pattern 'a//b': empty path segment ('//')"),
    ]
    assert all(isinstance(error, LineError) for error in codeowners.errors)
    assert [rule.line for rule in codeowners.rules] == [1, 9, 12]
    # The skipped lines own nothing: the rule before them still decides.
    for path in ("README.md", "main.c", "src/a.py", "lib/a.py", "#notes"):
        assert codeowners.owners_of(path) == ("@everyone",), path
    assert codeowners.owners_of("ok/x") == (
        "@ok",
        "user@example.com",
        "@org/team-1",
        "@user_name-2",
    )


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*", "a", True),
        ("*", "a/b/c.txt", True),
        ("/*", "top.txt", True),
        ("/*", "dir/file.txt", False),
        ("*.md", "a/b/README.md", True),
        ("*.md", "README.mdx", False),
        ("/*.md", "README.md", True),
        ("/*.md", "docs/README.md", False),
        ("te?t.py", "src/test.py", True),
        ("te?t.py", "src/teest.py", False),
        ("te?t.py", "src/te/t.py", False),
        ("docs/**/*.md", "docs/a.md", True),
        ("docs/**/*.md", "docs/a/b/c.md", True),
        ("docs/**/*.md", "docs/a/b/c.txt", False),
        ("docs/**/*.md", "site/docs/a.md", False),
        ("src/**", "src/a/b", True),
        ("src/**", "src", False),
        ("/src/*/tests/", "src/shop/tests/test_cart.py", True),
        ("/src/*/tests/", "src/shop/deep/tests/test_cart.py", False),
        ("lib", "lib", True),
        ("lib", "a/lib/b.py", True),
        ("lib", "a/libs/b.py", False),
        ("lib/", "lib", False),
        ("lib/", "a/lib/b.py", True),
        ("a/b", "a/b/c", True),
        ("a/b", "x/a/b", False),
        ("src/a*", "src/abc/deep.py", True),
        ("**", "any/thing", True),
        ("/", "anything", False),
        ("/Docs/", "docs/index.md", False),  # case-sensitive, as GitHub
        ("*.PY", "main.py", False),
    ],
)
def test_pattern_matching(pattern: str, path: str, matches: bool) -> None:
    codeowners = parse(f"{pattern} @owner")

    assert codeowners.errors == ()
    assert codeowners.rules[0].matches(path) is matches
    assert codeowners.owners_of(path) == (("@owner",) if matches else ())


def test_paths_with_dot_slash_or_leading_slash() -> None:
    codeowners = parse("/src/ @src\n")

    for path in ("src/a.py", "./src/a.py", "/src/a.py", ".//src/a.py", "././src/a.py"):
        assert codeowners.owners_of(path) == ("@src",), path
    assert codeowners.owners_of("") == ()
    assert codeowners.owners_of("./") == ()
    assert CodeOwners().owners_of("src/a.py") == ()


def test_a_trailing_slash_asks_for_a_new_file_directly_in_that_directory() -> None:
    codeowners = parse("* @everyone\n/src/*.py @python\n/src/ @src\n/src/gen/*.txt @txt\n")

    assert codeowners.owners_of("src/") == ("@src",)
    assert codeowners.owners_of("src/gen/") == ("@src",)  # no .txt file in view
    assert codeowners.owners_of("docs/") == ("@everyone",)


def test_candidate_paths_for_pytest_classnames() -> None:
    assert candidate_paths("tests.test_shop.TestCart") == (
        "tests/test_shop.py",
        "tests/test_shop/",
        "tests.py",
        "tests/",
    )
    assert candidate_paths("tests.test_shop") == candidate_paths("tests.test_shop.TestCart")
    assert candidate_paths("tests.unit.test_shop.TestCart.TestEmpty")[:2] == (
        "tests/unit/test_shop.py",
        "tests/unit/test_shop/",
    )
    assert candidate_paths("test_shop") == ("test_shop.py", "test_shop/")
    assert candidate_paths("tests/test_shop.py::TestCart") == ("tests/test_shop.py",)
    assert candidate_paths("") == ()
    assert candidate_paths("  ") == ()


def test_candidate_paths_for_java_classnames() -> None:
    assert candidate_paths("com.acme.shop.CartTest") == (
        "src/test/java/com/acme/shop/CartTest.java",
        "src/test/java/com/acme/shop/",
        "src/test/java/com/acme/",
        "src/test/java/com/",
        "src/main/java/com/acme/shop/CartTest.java",
        "src/main/java/com/acme/shop/",
        "src/main/java/com/acme/",
        "src/main/java/com/",
        "com/acme/shop/CartTest.java",
        "com/acme/shop/",
        "com/acme/",
        "com/",
    )
    assert candidate_paths("com.acme.shop.CartTest$Checkout") == candidate_paths(
        "com.acme.shop.CartTest"
    )
    # pytest-looking names stay Python even with a capitalised class at the end.
    assert candidate_paths("shop.test_cart.TestCart")[0] == "shop/test_cart.py"
    assert candidate_paths("shop.cart.TestCart")[0] == "shop/cart.py"


SHOP = parse(
    "* @everyone\n"
    "/tests/ @qa\n"
    "/tests/test_shop.py @shop\n"
    "/tests/legacy/\n"
    "/src/test/java/com/acme/ @acme-java\n"
    "/src/main/java/ @java-main\n"
    "/src/main/java/com/acme/billing/ @billing\n"
)


@pytest.mark.parametrize(
    ("file", "classname", "owners"),
    [
        # A report's file wins over its classname.
        ("tests/test_shop.py", "tests.test_other.TestX", ("@shop",)),
        ("./tests/test_shop.py", "", ("@shop",)),
        ("tests\\test_shop.py", "", ("@shop",)),
        ("  tests/test_cart.py ", "tests.test_shop.TestCart", ("@qa",)),
        # pytest classnames: class-level, module-level, nested classes.
        ("", "tests.test_shop.TestCart", ("@shop",)),
        ("", "tests.test_shop", ("@shop",)),
        ("", "tests.test_shop.TestCart.TestEmpty", ("@shop",)),
        ("", "tests.test_cart.TestCart", ("@qa",)),
        ("", "tests.unit.test_cart.TestCart", ("@qa",)),
        # Un-owned on purpose stays un-owned: the parent's @qa is not borrowed.
        ("", "tests.legacy.test_old.TestOld", ()),
        ("", "test_root_module", ("@everyone",)),
        # Java: test sources first, then main sources, then package directories.
        ("", "com.acme.shop.CartTest", ("@acme-java",)),
        ("", "com.acme.shop.CartTest$Inner", ("@acme-java",)),
        ("", "org.example.FooTest", ("@everyone",)),
        ("", "tests/test_shop.py::TestCart", ("@shop",)),
        ("", "", ()),
    ],
)
def test_owners_for_test(file: str, classname: str, owners: tuple[str, ...]) -> None:
    assert owners_for_test(SHOP, file, classname) == owners


def test_owners_for_test_falls_back_to_guesses_no_rule_matched() -> None:
    # No catch-all: candidates no rule matches are passed over, in order.
    codeowners = parse(
        "/src/main/java/com/acme/billing/ @billing\n/pkg/ @pkg\n/tests/unit/ @unit\n"
    )

    assert owners_for_test(codeowners, "", "com.acme.billing.InvoiceTest") == ("@billing",)
    assert owners_for_test(codeowners, "", "com.acme.shop.CartTest") == ()
    assert owners_for_test(codeowners, "", "pkg.sub.test_mod.TestX") == ("@pkg",)
    assert owners_for_test(codeowners, "", "other.test_mod.TestX") == ()
    assert owners_for_test(codeowners, "", "tests.unit.TestThing") == ("@unit",)
    # A directory guess: the module is a package, or a parent owns everything in it.
    dirs = parse("/tests/test_shop/ @shop-package\n")
    assert owners_for_test(dirs, "", "tests.test_shop.TestCart") == ("@shop-package",)


def test_fifty_thousand_paths_against_two_hundred_rules() -> None:
    lines = ["* @org/everyone", "*.py @org/python"]
    lines += [f"/services/svc{i}/ @org/team-{i}" for i in range(150)]
    lines += [f"/services/svc{i}/legacy/" for i in range(0, 150, 5)]
    lines += [f"**/fixtures{i} @fixtures-{i}" for i in range(18)]
    codeowners = parse("\n".join(lines))
    assert (len(codeowners.rules), codeowners.errors) == (200, ())

    def expected(n: int) -> tuple[str, ...]:
        service, kind = n % 160, n % 4
        owners: tuple[str, ...] = ("@org/everyone",)
        if kind == 0:
            owners = ("@org/python",)
        if service < 150:
            owners = (f"@org/team-{service}",)
            if kind == 1 and service % 5 == 0:
                owners = ()
        if kind == 2 and n % 20 < 18:
            owners = (f"@fixtures-{n % 20}",)
        return owners

    def path(n: int) -> str:
        service, kind = n % 160, n % 4
        return (
            f"services/svc{service}/src/mod{n}.py",
            f"services/svc{service}/legacy/old{n}.txt",
            f"services/svc{service}/tests/fixtures{n % 20}/data{n}.json",
            f"services/svc{service}/README.md",
        )[kind]

    mismatches = [n for n in range(50_000) if codeowners.owners_of(path(n)) != expected(n)]
    assert mismatches == []
    # The lookup agrees with trying every rule, last to first, one by one.
    for n in range(0, 50_000, 37):
        decisive = next((r for r in reversed(codeowners.rules) if r.matches(path(n))), None)
        assert codeowners.rule_for(path(n)) == decisive
