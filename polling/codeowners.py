"""CODEOWNERS: who owns a path, read the way GitHub reads the file.

Standard library only, no Django, no I/O: the caller fetches the text of the
first of ``CODEOWNERS_PATHS`` that exists and hands it to ``parse``, which
returns a ``CodeOwners`` answering ``owners_of(path)`` by GitHub's rule, the
last matching pattern wins. ``owners_for_test`` maps a JUnit test (a file, or
only a dotted classname) to a path and so to owners.

Syntax, as GitHub documents it ("About code owners"):

* One rule a line: a pattern, then zero or more owners (``@user``, ``@org/team``
  or an email address), separated by whitespace. A pattern without owners is a
  rule too: it un-owns what it matches.
* ``#`` starts a comment at the start of a line or of a word (``*.js @js-owner
  # note``); ``\\#`` is a literal ``#`` in a pattern and ``\\ `` a literal space.
* Patterns follow gitignore: a leading ``/`` anchors to the repository root, as
  does a slash in the middle; a pattern whose only slash is a trailing one (or
  that has none) matches at any depth; a trailing ``/`` matches only a directory,
  and all beneath it; without one, a file of that name or a directory and all
  beneath it; ``*`` and ``?`` stay within one path segment, ``**`` spans
  segments. One departure, documented by GitHub: a final lone ``*``
  (``docs/*``) matches only the files directly in that directory, not deeper.
* Not supported by GitHub, and so reported in ``CodeOwners.errors`` and skipped:
  ``!`` negation, ``[ ]`` character ranges, escaping a leading ``#`` (``\\#x``).
  A line with an owner that is neither of the three forms is skipped likewise.
  Owners are checked for syntax only: whether they exist is GitHub's to say.

Matching is case-sensitive, as on GitHub. ``parse`` compiles every pattern to a
regular expression once; a lookup tries, in one regex match, only the rules a
path can match at all (those anchored under its leading directories, and the
floating ones such as ``*.js``), which keeps a file of hundreds of rules fast
over hundreds of thousands of paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "CODEOWNERS_PATHS",
    "CodeOwners",
    "LineError",
    "Rule",
    "candidate_paths",
    "owners_for_test",
    "parse",
]

# Where GitHub looks for the file, in its order: the first one found is the only one used.
CODEOWNERS_PATHS: tuple[str, ...] = (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS")

_USER = r"@[A-Za-z0-9][A-Za-z0-9_-]*"
_TEAM = r"@[A-Za-z0-9][A-Za-z0-9_-]*/[A-Za-z0-9][A-Za-z0-9_.-]*"
_EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
_OWNER = re.compile(f"{_TEAM}|{_USER}|{_EMAIL}")

# A path ending in "/" names a directory: it is looked up as a file directly in
# it, with a name (NUL) that no repository path can have, so no literal pattern
# but only wildcards match that name.
_DIRECTORY_PROBE = "\x00"

# Signs that a dotted classname is Python's (a pytest module or class), not Java's.
_PYTHON_PART = re.compile(r"test_\w*|\w+_test|conftest|Test(?:[A-Z0-9_]\w*)?")
_NEVER = "(?!)"


@dataclass(frozen=True, slots=True)
class LineError:
    """A line of the file that GitHub would not use either: its number (from 1) and why."""

    line: int
    message: str


@dataclass(frozen=True, slots=True)
class Rule:
    """One usable line: the pattern as written, its owners (maybe none) and its line number."""

    pattern: str
    owners: tuple[str, ...]
    line: int
    regex: re.Pattern[str] = field(repr=False, compare=False)

    def matches(self, path: str) -> bool:
        """Whether this rule's pattern matches the repository-relative ``path``."""
        return self.regex.fullmatch(_normalize(path)) is not None


@dataclass(frozen=True)
class CodeOwners:
    """A parsed CODEOWNERS file: its rules in file order and the lines it had to skip."""

    rules: tuple[Rule, ...] = ()
    errors: tuple[LineError, ...] = ()
    _index: _RuleIndex = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", _RuleIndex(self.rules))

    def rule_for(self, path: str) -> Rule | None:
        """The rule deciding ``path``'s owners (the last one matching it), or None.

        Tells "no rule matched" (None) from "un-owned on purpose" (a rule without
        owners), which ``owners_of`` both answers with ().
        """
        normalized = _normalize(path)
        if not normalized:
            return None
        return self._index.last_match(normalized)

    def owners_of(self, path: str) -> tuple[str, ...]:
        """The owners of a repository-relative path, as GitHub would request their review.

        A leading ``./`` or ``/`` is dropped. A path ending in ``/`` names a
        directory and gets the owners a new file directly in it would get.
        """
        rule = self.rule_for(path)
        return rule.owners if rule is not None else ()


def parse(text: str) -> CodeOwners:
    """Read a CODEOWNERS file's text: its usable rules, in order, and its skipped lines."""
    rules: list[Rule] = []
    errors: list[LineError] = []
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        words = _words(line)
        if not words:
            continue  # blank, or only a comment
        pattern, owners = words[0], tuple(words[1:])
        try:
            regex = re.compile(_pattern_regex(pattern))
        except _InvalidLine as error:
            errors.append(LineError(number, f"invalid pattern '{pattern}': {error}"))
            continue
        bad = [owner for owner in owners if not _OWNER.fullmatch(owner)]
        if bad:
            errors.append(
                LineError(
                    number,
                    f"invalid owner '{bad[0]}': expected @user, @org/team or an email address",
                )
            )
            continue
        rules.append(Rule(pattern, owners, number, regex))
    return CodeOwners(tuple(rules), tuple(errors))


def owners_for_test(codeowners: CodeOwners, file: str, classname: str) -> tuple[str, ...]:
    """The owners of a test from a JUnit report: by its ``file`` when the report gives one,
    otherwise by the path its ``classname`` most likely lives at.

    Without a file, the paths ``candidate_paths`` guesses from the classname are
    tried in its order, and the first one that some rule matches decides: its
    owners are the answer, which is () when that rule un-owns the path on
    purpose, as GitHub would have it. No candidate matched by any rule: ().
    Backslashes in ``file`` (Windows reports) are read as slashes.
    """
    path = file.strip().replace("\\", "/")
    if path:
        return codeowners.owners_of(path)
    for candidate in candidate_paths(classname):
        rule = codeowners.rule_for(candidate)
        if rule is not None:
            return rule.owners
    return ()


def candidate_paths(classname: str) -> tuple[str, ...]:
    """Repository paths a JUnit ``classname`` may come from, the likeliest first.

    A report cannot say where a class lives, and the repository tree is not at
    hand, so these are guesses, fixed by the name alone (deterministic):

    * A classname holding a path (``tests/test_shop.py::TestCart``) is that path.
    * Java (``com.acme.shop.CartTest``, nested ``CartTest$Inner``): the class's
      file under ``src/test/java/``, then its package directories deepest first;
      the same under ``src/main/java/``; the same from the repository root. Test
      sources come first because a JUnit report is about test classes.
    * Python, the rest (``tests.test_shop.TestCart``): trailing components that
      look like classes (capitalised) are dropped, leaving the module; then the
      module's file and, as a package, its directory, then those of each parent:
      ``tests/test_shop.py``, ``tests/test_shop/``, ``tests.py``, ``tests/``.

    A name is taken for Java when it has a package and a capitalised class, all
    package components start in lower case, it does not start with ``tests.``
    and no component looks like pytest's (``test_*``, ``*_test``, ``conftest``,
    ``Test*``); a ``$`` in the class makes it Java whatever the rest.
    """
    name = classname.strip()
    if "::" in name or "/" in name:
        return (name.split("::", 1)[0].replace("\\", "/"),)
    parts = [part for part in name.split(".") if part]
    if not parts:
        return ()
    if _is_java(parts):
        return _java_candidates(parts)
    return _python_candidates(parts)


class _InvalidLine(ValueError):
    """A pattern GitHub would not accept; the message says why."""


def _words(line: str) -> list[str]:
    """The line's whitespace-separated words up to a comment, escapes left as written.

    A ``#`` opening a word starts a comment; ``\\`` keeps the next character in
    the word, so ``\\ `` does not end it and ``\\#`` does not start a comment.
    """
    words: list[str] = []
    word: list[str] = []
    index = 0
    while index < len(line):
        char = line[index]
        if char == "\\" and index + 1 < len(line):
            word.append(line[index : index + 2])
            index += 2
            continue
        if char in " \t":
            if word:
                words.append("".join(word))
                word = []
        elif char == "#" and not word:
            break
        else:
            word.append(char)
        index += 1
    if word:
        words.append("".join(word))
    return words


def _pattern_regex(pattern: str) -> str:
    """The regular expression matching the paths (and everything beneath) ``pattern`` names."""
    if pattern.startswith("\\#"):
        raise _InvalidLine("escaping a leading '#' is not supported in CODEOWNERS")
    if pattern.startswith("!"):
        raise _InvalidLine("negation with '!' is not supported in CODEOWNERS")
    if "***" in pattern:
        raise _InvalidLine("three or more '*' in a row")
    anchored = pattern.startswith("/")
    body = pattern[1:] if anchored else pattern
    directory = body.endswith("/") and not body.endswith("\\/")
    if directory:
        body = body[:-1]
    if not body:
        return _NEVER  # "/" names the root itself, never a path in it
    segments = body.split("/")
    if "" in segments:
        raise _InvalidLine("empty path segment ('//')")
    # gitignore: no slash but a trailing one means any depth; any other slash anchors.
    regex = ["(?:.*/)?"] if len(segments) == 1 and not anchored else []
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        if segment == "**":
            regex.append(".*" if index == last else "(?:.*/)?")
            continue
        regex.append(_segment_regex(segment))
        if index != last:
            regex.append("/")
    final = segments[-1]
    if final == "**":
        pass  # already everything beneath
    elif directory:
        regex.append("/.*")
    elif final != "*":
        regex.append("(?:/.*)?")  # a directory's name owns what it holds
    return "".join(regex)


def _segment_regex(segment: str) -> str:
    """One path segment's pattern as a regex: ``*``, ``?`` and escapes, nothing crossing '/'."""
    if segment == "*":
        return "[^/]+"
    regex: list[str] = []
    index = 0
    while index < len(segment):
        char = segment[index]
        if char == "\\":
            if index + 1 == len(segment):
                raise _InvalidLine("ends in an unfinished escape ('\\')")
            regex.append(re.escape(segment[index + 1]))
            index += 2
            continue
        if char in "[]":
            raise _InvalidLine("character ranges with '[ ]' are not supported in CODEOWNERS")
        if char == "*":
            regex.append("[^/]*")
        elif char == "?":
            regex.append("[^/]")
        else:
            regex.append(re.escape(char))
        index += 1
    return "".join(regex)


class _RuleIndex:
    """The rules a path can match, found without trying all of them.

    A rule anchored by literal leading segments (``/services/billing/``) can only
    match paths that start with them, so rules are filed by that literal prefix
    (the others, ``*.js`` or ``**/logs``, under ""). A path walks down its own
    prefixes to the deepest one filed; the rules of that prefix, of its parents
    and of "" go into one alternation, latest rule first, one group each, and
    the first alternative that matches, told by its group number, is the last
    matching rule. Each alternation is compiled the first time a path needs it.
    """

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self._rules = rules
        self._filed: dict[str, list[int]] = {}
        for number, rule in enumerate(rules):
            self._filed.setdefault(_literal_prefix(rule.pattern), []).append(number)
        # Every leading part of a filed prefix, so a path's walk stops where none goes on.
        self._walkable = {
            "/".join(segments[:depth])
            for segments in (prefix.split("/") for prefix in self._filed if prefix)
            for depth in range(1, len(segments) + 1)
        }
        self._compiled: dict[str, tuple[re.Pattern[str], tuple[int, ...]]] = {}

    def last_match(self, path: str) -> Rule | None:
        deepest = ""
        prefix = ""
        for segment in path.split("/"):
            prefix = f"{prefix}/{segment}" if prefix else segment
            if prefix not in self._walkable:
                break
            if prefix in self._filed:
                deepest = prefix
        compiled = self._compiled.get(deepest)
        if compiled is None:
            compiled = self._compiled[deepest] = self._compile(deepest)
        regex, numbers = compiled
        match = regex.fullmatch(path)
        if match is None or match.lastindex is None:
            return None
        return self._rules[numbers[match.lastindex - 1]]

    def _compile(self, deepest: str) -> tuple[re.Pattern[str], tuple[int, ...]]:
        """The alternation for paths whose deepest filed prefix is ``deepest``."""
        segments = deepest.split("/") if deepest else []
        prefixes = [""] + ["/".join(segments[:depth]) for depth in range(1, len(segments) + 1)]
        numbers = sorted(
            (number for prefix in prefixes for number in self._filed.get(prefix, ())),
            reverse=True,
        )
        alternatives = "|".join(f"({self._rules[number].regex.pattern})" for number in numbers)
        return re.compile(alternatives or _NEVER), tuple(numbers)


def _literal_prefix(pattern: str) -> str:
    """The leading segments every path a rule matches starts with, "" when it can float."""
    body = pattern.removeprefix("/")
    segments = body.removesuffix("/").split("/")
    if len(segments) == 1 and not pattern.startswith("/"):
        return ""  # matches at any depth
    literal: list[str] = []
    for segment in segments:
        if any(char in segment for char in "*?\\"):
            break
        literal.append(segment)
    return "/".join(literal)


def _normalize(path: str) -> str:
    """``path`` relative to the repository root: no leading ``./`` or ``/``."""
    while True:
        if path.startswith("./"):
            path = path[2:]
        elif path.startswith("/"):
            path = path[1:]
        else:
            break
    if path.endswith("/"):
        path += _DIRECTORY_PROBE
    return path


def _is_java(parts: list[str]) -> bool:
    """Whether a dotted classname reads as a Java package and class (see ``candidate_paths``)."""
    if len(parts) < 2:
        return False
    if "$" in parts[-1]:
        return True
    if not parts[-1][:1].isupper() or parts[0] == "tests":
        return False
    if any(_PYTHON_PART.fullmatch(part) for part in parts):
        return False
    return all(part[:1].islower() for part in parts[:-1])


def _java_candidates(parts: list[str]) -> tuple[str, ...]:
    """The class's file, then its package directories, under each source root in turn."""
    package = parts[:-1]
    class_file = "/".join([*package, parts[-1].split("$", 1)[0]]) + ".java"
    candidates: list[str] = []
    for root in ("src/test/java/", "src/main/java/", ""):
        candidates.append(root + class_file)
        candidates.extend(
            root + "/".join(package[:depth]) + "/" for depth in range(len(package), 0, -1)
        )
    return tuple(candidates)


def _python_candidates(parts: list[str]) -> tuple[str, ...]:
    """The module's file and directory, then its parents', deepest first."""
    depth = len(parts)
    while depth > 1 and parts[depth - 1][:1].isupper():
        depth -= 1  # a class (or a nested one), not a module
    candidates: list[str] = []
    for level in range(depth, 0, -1):
        module = "/".join(parts[:level])
        candidates += [module + ".py", module + "/"]
    return tuple(candidates)
