"""Benchmark of the streaming JUnit parser against a bare hardened lxml baseline.

Generates deterministic pytest-style and Surefire-style reports of the requested
sizes into a temporary directory, then times, each in a fresh subprocess so that
peak RSS means something, (a) a bare hardened ``iterparse`` that extracts only
classname, name, file, time, outcome and message and (b) ``iter_test_cases``
consumed fully, both timed from the first read to the last record, imports
done. Each measurement is repeated; the table shows medians, and the ratios
are parser time / baseline time taken within each round (the goal: at most
1.25), by the wall clock and by CPU time, which other load on the machine
disturbs less. The generated files are deleted at the end.

Run from the repository root: ``python -m bench.parser [--sizes 100,500] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

MB = 1024 * 1024
# Flush the generator's buffer in large chunks: one write per ~8 MB keeps
# generation of a 500 MB file to a few seconds.
_WRITE_CHUNK = 8 * MB

# ---------------------------------------------------------------------------
# Generators. Everything is derived from counters, never from a random source,
# so two runs produce byte-identical files.
# ---------------------------------------------------------------------------

_PY_TRACEBACK = (
    "".join(
        f"tests/pkg/test_module.py:{40 + i}: in helper_{i}\n    result = compute(value_{i})\n"
        for i in range(12)
    )
    + "E   AssertionError: assert 41 == 42\nE    +  where 41 = compute(7)\n"
)

_JAVA_STACK = "".join(
    f"\tat org.example.service.Layer{i}.invoke(Layer{i}.java:{100 + i})\n" for i in range(40)
)

_SUREFIRE_PROPERTIES = "".join(
    f'      <property name="{name}" value="{value}"/>\n'
    for name, value in [
        ("java.runtime.name", "OpenJDK Runtime Environment"),
        ("sun.boot.library.path", "/usr/lib/jvm/java-17-openjdk-amd64/lib"),
        ("java.vm.version", "17.0.9+9-Ubuntu-122.04"),
        ("java.vm.vendor", "Private Build"),
        ("maven.multiModuleProjectDirectory", "/home/runner/work/project/project"),
        ("java.vendor.url", "https://java.oracle.com/"),
        ("path.separator", ":"),
        ("guice.disable.misplaced.annotation.check", "true"),
        ("java.vm.name", "OpenJDK 64-Bit Server VM"),
        ("user.country", "US"),
        ("sun.java.launcher", "SUN_STANDARD"),
        ("java.vm.specification.name", "Java Virtual Machine Specification"),
        ("user.dir", "/home/runner/work/project/project"),
        ("java.vm.compressedOopsMode", "Zero based"),
        ("java.runtime.version", "17.0.9+9-Ubuntu-122.04"),
        ("os.arch", "amd64"),
        ("java.io.tmpdir", "/tmp"),
        ("line.separator", "&#10;"),
        ("java.vm.specification.vendor", "Oracle Corporation"),
        ("os.name", "Linux"),
        ("maven.conf", "/usr/share/apache-maven-3.9.5/conf"),
        ("sun.jnu.encoding", "UTF-8"),
        ("java.library.path", "/usr/java/packages/lib:/usr/lib64:/lib64:/lib:/usr/lib"),
        ("maven.home", "/usr/share/apache-maven-3.9.5"),
        ("java.class.version", "61.0"),
        ("java.specification.name", "Java Platform API Specification"),
        ("sun.management.compiler", "HotSpot 64-Bit Tiered Compilers"),
        ("os.version", "6.2.0-1016-azure"),
        ("user.home", "/home/runner"),
        ("ci.job", "build (ubuntu-latest, 17)"),
    ]
)


def _write_chunked(path: Path, target_bytes: int, head: str, body: Iterator[str], tail: str) -> int:
    """Write head, body pieces until target_bytes is reached, then tail; return the piece count."""
    pieces = 0
    flush_at = min(_WRITE_CHUNK, max(64 * 1024, target_bytes // 16))  # overshoot < 1/16
    with open(path, "wb", buffering=0) as out:
        buf: list[str] = [head]
        buffered = len(head)
        written = 0
        for piece in body:
            buf.append(piece)
            buffered += len(piece)
            pieces += 1
            if buffered >= flush_at:
                data = "".join(buf).encode()
                out.write(data)
                written += len(data)
                buf.clear()
                buffered = 0
                if written >= target_bytes:
                    break
        buf.append(tail)
        out.write("".join(buf).encode())
    return pieces


def _pytest_cases() -> Iterator[str]:
    i = 0
    while True:
        mod = i // 40
        kind = i % 100
        attrs = (
            f'classname="tests.pkg{mod % 97}.test_module_{mod}" '
            f'name="test_case_{i}[param-{i % 7}]" '
            f'file="tests/pkg{mod % 97}/test_module_{mod}.py" line="{i % 500}" '
            f'time="{(i % 997) / 1000:.3f}"'
        )
        if kind < 4:
            yield (
                f"    <testcase {attrs}>\n"
                f'      <failure message="AssertionError: assert {i} == {i + 1}">'
                f"{_PY_TRACEBACK}</failure>\n    </testcase>\n"
            )
        elif kind < 5:
            yield (
                f"    <testcase {attrs}>\n"
                '      <error message="failed on setup with '
                f"&quot;fixture 'db_{i}' not found&quot;\">"
                f"{_PY_TRACEBACK}</error>\n    </testcase>\n"
            )
        elif kind < 10:
            yield (
                f"    <testcase {attrs}>\n"
                f'      <skipped type="pytest.skip" message="requires network access">'
                f"tests/pkg/test_module.py:12: requires network access</skipped>\n"
                f"    </testcase>\n"
            )
        elif kind < 12:
            yield (
                f"    <testcase {attrs}>\n"
                f"      <system-out>starting worker {i}\n"
                "connected to localhost:5432\n</system-out>\n"
                f"    </testcase>\n"
            )
        else:
            yield f"    <testcase {attrs}/>\n"
        i += 1


def generate_pytest(path: Path, target_bytes: int) -> int:
    """One <testsuite> holding every testcase, as pytest --junitxml writes it."""
    head = (
        '<?xml version="1.0" encoding="utf-8"?>\n<testsuites>\n'
        '  <testsuite name="pytest" errors="0" failures="0" skipped="0" tests="0" time="1.0" '
        'timestamp="2024-05-01T10:00:00.000000" hostname="runner-42">\n'
    )
    return _write_chunked(
        path, target_bytes, head, _pytest_cases(), "  </testsuite>\n</testsuites>\n"
    )


def _surefire_suites() -> Iterator[str]:
    s = 0
    while True:
        cls = f"org.example.module{s % 50}.Service{s}Test"
        parts = [
            f'  <testsuite name="{cls}" time="2.5" tests="12" errors="1" skipped="0" '
            'failures="1">\n'
            f"    <properties>\n{_SUREFIRE_PROPERTIES}    </properties>\n"
        ]
        for t in range(12):
            case = f'    <testcase name="test{t}_{s}" classname="{cls}" time="0.{t:03d}"'
            k = (s * 12 + t) % 40
            if k == 0:
                parts.append(
                    f'{case}>\n      <failure message="expected: &lt;{t}&gt; but was: &lt;{s}&gt;" '
                    f'type="org.opentest4j.AssertionFailedError"><![CDATA[org.opentest4j.'
                    f"AssertionFailedError: expected: <{t}> but was: <{s}>\n{_JAVA_STACK}]]>"
                    f'</failure>\n      <rerunFailure message="still failing" type="java.lang.'
                    f'AssertionError">\n        <stackTrace>{_JAVA_STACK}</stackTrace>\n'
                    f"      </rerunFailure>\n"
                    f"      <system-out>retrying {cls}.test{t}\n</system-out>\n    </testcase>\n"
                )
            elif k == 1:
                parts.append(
                    f'{case}>\n      <flakyFailure message="timeout after 5s" '
                    f'type="java.util.concurrent.TimeoutException">\n'
                    f"        <stackTrace>java.util.concurrent.TimeoutException\n{_JAVA_STACK}"
                    f"</stackTrace>\n        <system-out>attempt 1 of {cls}</system-out>\n"
                    f"      </flakyFailure>\n    </testcase>\n"
                )
            elif k == 2:
                parts.append(
                    f'{case}>\n      <error message="NullPointerException" '
                    f'type="java.lang.NullPointerException">java.lang.NullPointerException\n'
                    f"{_JAVA_STACK}</error>\n    </testcase>\n"
                )
            elif k == 3:
                parts.append(f'{case}>\n      <skipped message="@Disabled"/>\n    </testcase>\n')
            else:
                parts.append(f"{case}/>\n")
        parts.append(
            f"    <system-out><![CDATA[INFO  [main] {cls} - starting context\n"
            + "INFO  [main] org.example.Boot - bean initialised\n" * 12
            + "]]></system-out>\n"
            f"    <system-err><![CDATA[WARN  [main] {cls} - slow start]]></system-err>\n"
            "  </testsuite>\n"
        )
        yield "".join(parts)
        s += 1


def generate_surefire(path: Path, target_bytes: int) -> int:
    """Many suites, each with ~30 properties, stack traces, flaky reruns and suite output."""
    head = '<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="aggregate">\n'
    return _write_chunked(path, target_bytes, head, _surefire_suites(), "</testsuites>\n")


GENERATORS: dict[str, Callable[[Path, int], int]] = {
    "pytest": generate_pytest,
    "surefire": generate_surefire,
}

# ---------------------------------------------------------------------------
# The two contenders. Each runs in its own subprocess (see _child).
# ---------------------------------------------------------------------------


def baseline_extract(stream: BinaryIO) -> int:
    """The bare hardened lxml way, as fast as it goes while keeping memory flat.

    Fair to the parser in what it does not skip: the same hardening options, the six
    fields every result needs (classname, name, file, time, outcome, message, with the
    message read from the attribute or else from the element's text, CDATA included, and
    the same outcome precedence), and finished elements unlinked as it goes, suites too,
    so that its tree stays as small as the parser's. What it leaves out is only what the
    parser adds: the prolog guard, suite names and labels, line, failure type, the stack,
    rerun counts and the flood budgets.
    """
    from lxml import etree

    from ingest.junit.hardening import HARDENED_OPTIONS

    count = 0
    for _, elem in etree.iterparse(
        stream, events=("end",), tag=("testcase", "testsuite"), **HARDENED_OPTIONS
    ):
        if elem.tag == "testcase":
            classname = elem.get("classname", "")
            name = elem.get("name", "")
            file = elem.get("file", "")
            raw_time = elem.get("time")
            try:
                seconds = float(raw_time) if raw_time is not None else None
            except ValueError:
                seconds = None
            outcome, cause = "passed", None
            for child in elem:
                tag = child.tag
                if tag == "error":
                    outcome, cause = "error", child
                    break
                if tag == "failure":
                    outcome, cause = "failed", child
                elif tag == "skipped" and outcome == "passed":
                    outcome, cause = "skipped", child
            message = ""
            if cause is not None:
                message = cause.get("message") or "".join(cause.itertext()).strip()
            _ = (classname, name, file, seconds, outcome, message)
            count += 1
        elem.clear(keep_tail=True)
        while elem.getprevious() is not None:
            del elem.getparent()[0]
    return count


def parser_extract(stream: BinaryIO) -> int:
    from ingest.junit import iter_test_cases

    count = 0
    for _ in iter_test_cases(stream):
        count += 1
    return count


CONTENDERS: dict[str, Callable[[BinaryIO], int]] = {
    "baseline": baseline_extract,
    "parser": parser_extract,
}


def _child(contender: str, path: str) -> None:
    """Subprocess entry point: run one contender over one file, print JSON figures."""
    extract = CONTENDERS[contender]
    # Imports happen before the clock starts: a module's import is not parsing.
    from lxml import etree  # noqa: F401

    import ingest.junit  # noqa: F401

    with open(path, "rb") as stream:
        started, cpu_started = time.perf_counter(), time.process_time()
        count = extract(stream)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    figures = {"cases": count, "seconds": elapsed, "cpu_seconds": cpu, "peak_rss_mb": peak_rss_mb()}
    print(json.dumps(figures))


def peak_rss_mb() -> float:
    """Peak RSS of this process in MB.

    ru_maxrss alone misleads in a child: Linux carries the parent's high-water mark
    across fork and exec, so a child of a big parent reports the parent's peak.
    VmHWM belongs to the process's own address space, so it is preferred.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _measure(contender: str, path: Path) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-m", "bench.parser", "--child", contender, str(path)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return json.loads(result.stdout)


def _bench_file(path: Path, repeat: int) -> tuple[int, float, float, float, float, float, float]:
    """Medians for one file: cases, MB/s of each, wall and CPU time ratios, peak RSS of each."""
    size_mb = path.stat().st_size / MB
    base: list[dict[str, float]] = []
    pars: list[dict[str, float]] = []
    for attempt in range(repeat):
        # The two run back to back in each round so that drifting machine load
        # hits both alike; ratios are taken per round, then the median. The
        # order alternates so that neither always runs second.
        order = ("baseline", "parser") if attempt % 2 == 0 else ("parser", "baseline")
        figures = {contender: _measure(contender, path) for contender in order}
        base.append(figures["baseline"])
        pars.append(figures["parser"])
        print(f"  {path.name}: round {attempt + 1}/{repeat} done", file=sys.stderr)
    cases = {r["cases"] for r in base + pars}
    if len(cases) != 1:
        raise SystemExit(f"{path.name}: contenders disagree on the testcase count: {cases}")
    rounds = list(zip(base, pars, strict=True))
    return (
        int(cases.pop()),
        statistics.median(size_mb / r["seconds"] for r in base),
        statistics.median(size_mb / r["seconds"] for r in pars),
        statistics.median(p["seconds"] / b["seconds"] for b, p in rounds),
        statistics.median(p["cpu_seconds"] / b["cpu_seconds"] for b, p in rounds),
        statistics.median(r["peak_rss_mb"] for r in pars),
        statistics.median(r["peak_rss_mb"] for r in base),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,500", help="file sizes in MB, comma separated")
    ap.add_argument("--repeat", type=int, default=3, help="runs per contender and file")
    ap.add_argument("--styles", default="pytest,surefire", help="report styles to generate")
    ap.add_argument("--child", nargs=2, metavar=("CONTENDER", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(*args.child)
        return 0

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="flakeguard-bench-") as tmp:
        for style in styles:
            for size in sizes:
                path = Path(tmp) / f"{style}-{size}mb.xml"
                started = time.perf_counter()
                GENERATORS[style](path, size * MB)
                size_mb = path.stat().st_size / MB
                print(
                    f"generated {path.name}: {size_mb:.0f} MB in "
                    f"{time.perf_counter() - started:.1f}s",
                    file=sys.stderr,
                )
                rows.append((f"{style} {size_mb:.0f} MB", *_bench_file(path, args.repeat)))
                path.unlink()  # keep at most one big file on disk at a time

    header = (
        f"{'file':<18} {'testcases':>10} {'baseline MB/s':>14} {'parser MB/s':>12} "
        f"{'ratio':>6} {'cpu ratio':>10} {'parser peak RSS MB':>19} {'baseline peak RSS MB':>21}"
    )
    print(
        f"medians of {args.repeat} runs, each in a fresh subprocess (lxml {_lxml_version()}); "
        "ratio = parser time / baseline time in the same round (goal <= 1.25)"
    )
    print(header)
    print("-" * len(header))
    for label, cases, base_mbs, pars_mbs, ratio, cpu_ratio, rss, base_rss in rows:
        print(
            f"{label:<18} {cases:>10} {base_mbs:>14.1f} {pars_mbs:>12.1f} "
            f"{ratio:>6.2f} {cpu_ratio:>10.2f} {rss:>19.1f} {base_rss:>21.1f}"
        )
    return 0


def _lxml_version() -> str:
    from lxml import etree

    return ".".join(map(str, etree.LXML_VERSION[:3]))


if __name__ == "__main__":
    sys.exit(main())
