"""JUnit XML text for the sample history, in the dialects pytest and Maven Surefire write.

Documents are built as strings: each test's passing ``<testcase>`` element is prepared once
in a few duration variants, so a report is mostly a join of ready strings and only failures
are formatted per result. Attribute values go through ``quoteattr`` and text through
``escape``, which keeps every document well-formed whatever the test names contain.
"""

from __future__ import annotations

import bisect
import random
import re
import zlib
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from ingest.sample_history.catalogue import DURATION_VARIANTS, Case, FailureProfile, jitter
from ingest.sample_history.truth import Behaviour

SUREFIRE_RERUNS = 2  # rerunFailingTestsCount of the Surefire flavour
_SUREFIRE_XSD = (
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation='
    '"https://maven.apache.org/surefire/maven-surefire-plugin/xsd/surefire-test-report-3.0.xsd"'
)


@dataclass(frozen=True)
class Failed:
    """One failed result: the first failure and, for Surefire, its in-run reruns."""

    element: str  # "failure", or "error" when setup failed (infra outage)
    profile: FailureProfile
    values: dict[str, object]
    duration: float
    rerun_failures: int = 0  # failed reruns after the first failure
    passed_on_rerun: bool = False  # Surefire: a rerun passed, the first failure is "flaky"


@dataclass
class Layout:
    """The tests a report holds for one state of the code, and where each one sits."""

    present: list[int]  # case indexes in report order
    position: dict[int, int]
    specials: list[tuple[int, Behaviour]]  # present tests that may fail
    skipped: set[int]
    groups: list[tuple[int, int, int]] = field(default_factory=list)  # (first case, start, end)
    seconds: list[float] = field(default_factory=list)  # summed median per group
    group_skipped: list[int] = field(default_factory=list)


class Writer:
    """Turns outcomes into the documents of one report (one per job per attempt)."""

    zip_member = "reports/junit.xml"

    def __init__(self, cases: list[Case], skipped: dict[int, str], rng: random.Random) -> None:
        self.cases = cases
        self.passing: list[list[str]] = []
        for index, case in enumerate(cases):
            if index in skipped:
                self.passing.append([self._skipped(index, skipped[index])] * DURATION_VARIANTS)
            else:
                self.passing.append([self._passed(index, t) for t in jitter(rng, case.median)])

    def _passed(self, index: int, seconds: float) -> str:
        raise NotImplementedError

    def _skipped(self, index: int, reason: str) -> str:
        raise NotImplementedError

    def failed(self, index: int, failed: Failed) -> str:
        raise NotImplementedError

    def documents(
        self, layout: Layout, parts: list[str], marks: dict[int, str], *, split: bool,
        rng: random.Random, timestamp: str, job: str, repo: str,
    ) -> list[tuple[str, str]]:  # fmt: skip
        """(member name, XML text) pairs; ``marks`` maps positions to failure/error/flaky."""
        raise NotImplementedError


def _address(case: Case) -> str:
    return f"0x7f{zlib.crc32(case.key.encode()):08x}"


class PytestWriter(Writer):
    def __init__(self, cases: list[Case], skipped: dict[int, str], rng: random.Random) -> None:
        self.attrs = [
            f"<testcase classname={quoteattr(c.classname)} name={quoteattr(c.name)} "
            f'file={quoteattr(c.file)} line="{c.line}" time='
            for c in cases
        ]
        super().__init__(cases, skipped, rng)

    def _passed(self, index: int, seconds: float) -> str:
        return f'{self.attrs[index]}"{seconds:.3f}" />'

    def _skipped(self, index: int, reason: str) -> str:
        case = self.cases[index]
        return (
            f'{self.attrs[index]}"0.000"><skipped type="pytest.skip" '
            f"message={quoteattr(reason)}>{escape(f'{case.file}:{case.line}: {reason}')}"
            "</skipped></testcase>"
        )

    def failed(self, index: int, failed: Failed) -> str:
        case, profile = self.cases[index], failed.profile
        message = profile.py_message.format_map(failed.values)
        source = profile.py_source.format_map(failed.values)
        raised = "\n".join(
            f"E       {line}" for line in f"{profile.py_type}: {message}".split("\n")
        )
        short_type = profile.py_type.rsplit(".", 1)[-1]
        if failed.element == "error":
            head = f'failed on setup with "{profile.py_type}: {message.split(chr(10))[0]}"'
            text = (
                f"request = <SubRequest 'db' for <Function {case.name}>>\n\n"
                f"    @pytest.fixture\n    def db(request, django_db_setup):\n>       {source}\n"
                f"{raised}\n\ntests/conftest.py:41: {short_type}"
            )
        elif case.line % 3 == 0:  # --tb=short style for some tests
            head = f"{profile.py_type}: {message}"
            text = (
                f"{case.file}:{case.line + 4}: in {case.func}\n    {source}\n"
                f"E   {profile.py_type}: {message.split(chr(10))[0]}"
            )
        else:
            head = f"{profile.py_type}: {message}"
            args = "self, client" if case.in_class else "client"
            owner = f"self = <{case.classname.rsplit('.', 1)[-1]} object at {_address(case)}>\n\n"
            text = (
                f"{owner if case.in_class else ''}    def {case.func}({args}):\n"
                f"        order = make_order(items=3, customer=customer)\n>       {source}\n"
                f"{raised}\n\n{case.file}:{case.line + 4}: {short_type}"
            )
        return (
            f'{self.attrs[index]}"{failed.duration:.3f}"><{failed.element} '
            f"message={quoteattr(head)}>{escape(text)}</{failed.element}></testcase>"
        )

    def documents(
        self, layout: Layout, parts: list[str], marks: dict[int, str], *, split: bool,
        rng: random.Random, timestamp: str, job: str, repo: str,
    ) -> list[tuple[str, str]]:  # fmt: skip
        errors = sum(1 for mark in marks.values() if mark == "error")
        seconds = sum(layout.seconds) * rng.uniform(1.05, 1.3)
        host = f"fv-az{rng.randint(100, 1999)}-{rng.randint(100, 999)}"
        head = (
            '<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">'
            f'<testsuite name="pytest" errors="{errors}" failures="{len(marks) - errors}" '
            f'skipped="{len(layout.skipped)}" tests="{len(parts)}" time="{seconds:.3f}" '
            f'timestamp="{timestamp}" hostname="{host}">'
        )
        return [(self.zip_member, f"{head}{''.join(parts)}</testsuite></testsuites>")]


class SurefireWriter(Writer):
    def __init__(self, cases: list[Case], skipped: dict[int, str], rng: random.Random) -> None:
        self.attrs = [
            f"  <testcase name={quoteattr(c.name)} classname={quoteattr(c.classname)} time="
            for c in cases
        ]
        super().__init__(cases, skipped, rng)

    def _passed(self, index: int, seconds: float) -> str:
        return f'{self.attrs[index]}"{seconds:.3f}"/>\n'

    def _skipped(self, index: int, reason: str) -> str:
        return (
            f'{self.attrs[index]}"0">\n    <skipped message={quoteattr(reason)}/>\n  </testcase>\n'
        )

    def _trace(self, case: Case, profile: FailureProfile, message: str) -> str:
        simple = case.classname.rsplit(".", 1)[-1]
        frames = [f"{profile.java_type}: {message}"]
        if profile.java_type.startswith("org.opentest4j"):
            frames.append(
                "\tat org.junit.jupiter.api.AssertionFailureBuilder.build"
                "(AssertionFailureBuilder.java:151)"
            )
        frames += [
            f"\tat {case.classname}.{case.func}({simple}.java:{case.line + 4})",
            "\tat java.base/java.lang.reflect.Method.invoke(Method.java:580)",
            "\tat java.base/java.util.ArrayList.forEach(ArrayList.java:1596)",
        ]
        return "\n".join(frames)

    def failed(self, index: int, failed: Failed) -> str:
        case, profile = self.cases[index], failed.profile
        values = {**failed.values, "short": case.classname.rsplit(".", 1)[-1]}
        message = profile.java_message.format_map(values)
        attrs = f"message={quoteattr(message)} type={quoteattr(profile.java_type)}"
        trace = self._trace(case, profile, message)
        cdata = trace.replace("]]>", "]]]]><![CDATA[>")
        nested = f"      <stackTrace><![CDATA[{cdata}\n]]></stackTrace>\n"
        out = [f'{self.attrs[index]}"{failed.duration:.3f}">\n']
        if failed.passed_on_rerun:
            flaky = "flakyError" if failed.element == "error" else "flakyFailure"
            for _ in range(1 + failed.rerun_failures):
                out.append(f"    <{flaky} {attrs}>\n{nested}    </{flaky}>\n")
        else:
            out.append(f"    <{failed.element} {attrs}>{escape(trace)}</{failed.element}>\n")
            rerun = "rerunError" if failed.element == "error" else "rerunFailure"
            for _ in range(failed.rerun_failures):
                out.append(f"    <{rerun} {attrs}>\n{nested}    </{rerun}>\n")
        out.append("  </testcase>\n")
        return "".join(out)

    def documents(
        self, layout: Layout, parts: list[str], marks: dict[int, str], *, split: bool,
        rng: random.Random, timestamp: str, job: str, repo: str,
    ) -> list[tuple[str, str]]:  # fmt: skip
        counts = [[0, 0] for _ in layout.groups]  # failures, errors per group
        if marks:
            starts = [start for _, start, _ in layout.groups]
            for pos, mark in marks.items():
                if mark != "flaky":
                    group = bisect.bisect_right(starts, pos) - 1
                    counts[group][mark == "error"] += 1
        properties = _properties(timestamp, job, repo)
        docs = []
        for (first, start, end), (failures, errors), seconds, skipped in zip(
            layout.groups, counts, layout.seconds, layout.group_skipped, strict=True
        ):
            classname = self.cases[first].classname
            head = (
                f'<testsuite {_SUREFIRE_XSD} version="3.0" name={quoteattr(classname)} '
                f'time="{seconds * rng.uniform(1.02, 1.2):.3f}" tests="{end - start}" '
                f'errors="{errors}" skipped="{skipped}" failures="{failures}">\n'
            )
            docs.append((classname, f"{head}{properties}{''.join(parts[start:end])}</testsuite>\n"))
        decl = '<?xml version="1.0" encoding="UTF-8"?>\n'
        if split:
            return [(f"target/surefire-reports/TEST-{name}.xml", decl + doc) for name, doc in docs]
        return [
            ("junit.xml", f"{decl}<testsuites>\n{''.join(doc for _, doc in docs)}</testsuites>\n")
        ]


def _properties(timestamp: str, job: str, repo: str) -> str:
    """Surefire's <properties>: the JVM and the checkout (the runtime follows a jdkNN label)."""
    jdk = re.search(r"(?:jdk|java)-?(\d+)", job)
    checkout = f"/home/runner/work/{repo.rsplit('/', 1)[-1]}/{repo.rsplit('/', 1)[-1]}"
    props = (
        ("java.version", f"{jdk[1] if jdk else 21}.0.4"),
        ("java.vendor", "Eclipse Adoptium"),
        ("os.name", "Linux"),
        ("os.arch", "amd64"),
        ("user.name", "runner"),
        ("basedir", checkout),
        ("surefire.test.class.path", f"{checkout}/target/test-classes:{checkout}/target/classes"),
        ("build.timestamp", timestamp),
    )
    lines = "".join(f"    <property name={quoteattr(k)} value={quoteattr(v)}/>\n" for k, v in props)
    return f"  <properties>\n{lines}  </properties>\n"
