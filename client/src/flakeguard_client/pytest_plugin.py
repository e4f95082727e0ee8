"""pytest plugin: failures of quarantined tests are reported but do not fail the session.

Loaded through the ``pytest11`` entry point (or ``-p flakeguard_client.pytest_plugin``)
and inert unless FLAKEGUARD_URL is set; ``-p no:flakeguard`` turns it off. A
quarantined test still runs, and its failure still goes into ``--junitxml``
output as a failure, so the server keeps seeing how the test behaves.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator
from dataclasses import dataclass

import pytest

from flakeguard_client.api import ApiError, Client, Quarantine
from flakeguard_client.config import ConfigError, repository, server_settings
from flakeguard_client.keys import test_key

# pytest's own functions for the names junitxml writes: reusing them keeps the
# keys identical to the reports'. They are internal, so their absence is
# survived (nothing is forgiven) rather than breaking every pytest run.
try:
    from _pytest import junitxml as _junitxml
except ImportError:  # pragma: no cover
    _junitxml = None  # type: ignore[assignment]

STATE_NAME = "flakeguard-state"
PLUGIN_NAMES = ("flakeguard", "flakeguard_client.pytest_plugin")


@dataclass(frozen=True)
class _Forgiven:
    nodeid: str
    when: str
    quarantine: Quarantine
    message: str


def junit_identity(
    nodeid: str, prefix: str | None = None, family: str = "xunit2", location: str = ""
) -> tuple[str, str, str]:
    """(classname, file, name) as pytest's junitxml writes them for this node id."""
    names = _junitxml.mangle_test_address(nodeid)
    classnames = names[:-1]
    if prefix:
        classnames.insert(0, prefix)
    # Only the legacy xunit1 family writes the file attribute.
    file = location if family == "xunit1" else ""
    return ".".join(classnames), file, _junitxml.bin_xml_escape(names[-1])


class FlakeGuardPlugin:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.quarantined: dict[str, Quarantine] | None = None
        self.problem = ""
        self.forgiven: list[_Forgiven] = []
        self.unforgiven = 0
        self.collection_errors = 0
        self.internal_error = False
        self.decided = ""
        self._keys: dict[str, str] = {}

    # -- the list -----------------------------------------------------------

    def fetch(self) -> None:
        if not all(hasattr(_junitxml, name) for name in ("mangle_test_address", "bin_xml_escape")):
            self.problem = "this pytest has no _pytest.junitxml.mangle_test_address"
            return
        try:
            settings = server_settings(os.environ)
            repo = repository(os.environ)
            quarantines = Client(settings).quarantine(repo)
        except (ConfigError, ApiError) as exc:
            self.problem = str(exc)
            return
        self.quarantined = {q.test_key: q for q in quarantines}

    def key(self, report: pytest.TestReport) -> str:
        cached = self._keys.get(report.nodeid)
        if cached is None:
            try:
                family = self.config.getini("junit_family") or "xunit2"
            except ValueError:  # -p no:junitxml: the option is not registered
                family = "xunit2"
            location = report.location[0] if report.location else ""
            prefix = getattr(self.config.option, "junitprefix", None)
            classname, file, name = junit_identity(report.nodeid, prefix, family, location)
            cached = self._keys[report.nodeid] = test_key(classname, file, name)
        return cached

    def quarantine_for(self, report: pytest.TestReport) -> Quarantine | None:
        if self.quarantined is None or not report.failed:
            return None
        return self.quarantined.get(self.key(report))

    # -- hooks --------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionstart(self, session: pytest.Session) -> Generator[None, None, None]:
        # After the other implementations, so the warning follows pytest's header.
        yield
        self.fetch()
        if self.problem:
            self._warn(f"flakeguard: nothing will be forgiven: {self.problem}")

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(
        self, report: pytest.TestReport, config: pytest.Config
    ) -> tuple[str, str, str] | None:
        if self.quarantine_for(report) is not None:
            return "quarantined", "Q", "QUARANTINED"
        return None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not report.failed:
            return
        quarantine = self.quarantine_for(report)
        if quarantine is None:
            self.unforgiven += 1
        else:
            crash = getattr(report.longrepr, "reprcrash", None)
            message = getattr(crash, "message", "") or ""
            self.forgiven.append(
                _Forgiven(report.nodeid, report.when, quarantine, message.split("\n", 1)[0])
            )

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collection_errors += 1

    def pytest_internalerror(self) -> None:
        self.internal_error = True

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if exitstatus != pytest.ExitCode.TESTS_FAILED or not self.forgiven:
            return
        if self.quarantined is None:
            return
        if self.unforgiven:
            self.decided = f"{self.unforgiven} failure(s) not quarantined: exit status unchanged"
        elif self.collection_errors or self.internal_error:
            self.decided = "collection or internal errors: exit status unchanged"
        elif session.shouldstop or session.shouldfail:
            # -x or --maxfail stopped the run: tests that never ran cannot be vouched for.
            self.decided = "the session stopped early: exit status unchanged"
        else:
            session.exitstatus = pytest.ExitCode.OK
            self.decided = "every failure is a quarantined test: exit status 0"

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.forgiven:
            return
        terminalreporter.ensure_newline()
        terminalreporter.section("flakeguard")
        seen: set[tuple[str, str]] = set()
        for item in self.forgiven:
            if (item.nodeid, item.when) in seen:
                continue
            seen.add((item.nodeid, item.when))
            phase = "" if item.when == "call" else f" (in {item.when})"
            q = item.quarantine
            terminalreporter.write_line(
                f"QUARANTINED {item.nodeid}{phase} - {q.reason or 'no reason given'} "
                f"(owner: {q.owner or 'nobody'})"
            )
            if item.message:
                # The FAILURES section leaves quarantined tests out; their
                # tracebacks are in the JUnit report; this says why each failed.
                terminalreporter.write_line(f"    {item.message}")
        if self.decided:
            terminalreporter.write_line(self.decided)

    def _warn(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(line, yellow=True)
        else:
            print(line, file=sys.stderr)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    # The module can arrive under two names: "flakeguard" (the entry point) and
    # its module name (-p flakeguard_client.pytest_plugin, pytest_plugins).
    # pluggy refuses a module registered twice, so once it is in under one
    # name the other is blocked. This is the first hook a plugin gets.
    me = sys.modules[__name__]
    name = pluginmanager.get_name(me)
    for alias in PLUGIN_NAMES:
        if alias != name and pluginmanager.get_plugin(alias) is None:
            pluginmanager.set_blocked(alias)


def pytest_configure(config: pytest.Config) -> None:
    # xdist workers only run tests; the controller sees every report and decides.
    if hasattr(config, "workerinput"):
        return
    if not os.environ.get("FLAKEGUARD_URL", "").strip():
        if _requested(config):
            print(
                "flakeguard: FLAKEGUARD_URL is not set: the quarantine list is not used",
                flush=True,
            )
        return
    config.pluginmanager.register(FlakeGuardPlugin(config), STATE_NAME)


def _requested(config: pytest.Config) -> bool:
    plugins = getattr(config.option, "plugins", None) or []
    return any(name in PLUGIN_NAMES for name in plugins)
