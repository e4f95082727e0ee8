"""Writes the sample history to disk: reports (ZIP artifacts or XML), manifest and truth.

For each run of the timeline and each attempt, it decides every test's outcome per matrix
job from the plan, renders the job's report, writes it with one write per file, and appends
the attempt to ``manifest.jsonl`` in the run-manifest format of DESIGN.md. Failed runs are
re-run (attempt 2, rarely 3) with the configured probability. ``truth.json`` records the
plan and what was observed per test. All randomness comes from seeded generators, one per
concern, so the same configuration gives the same bytes.
"""

from __future__ import annotations

import json
import random
import re
import struct
import zlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ingest.sample_history.catalogue import DURATION_VARIANTS, draw_values
from ingest.sample_history.render import (
    SUREFIRE_RERUNS,
    Failed,
    Layout,
    PytestWriter,
    SurefireWriter,
    Writer,
)
from ingest.sample_history.timeline import Run, build_timeline
from ingest.sample_history.truth import Behaviour, Incident, Plan, build_plan

_ABOUT = {
    "tests": "per test key 'classname::name': category, kind and parameters of its behaviour",
    "categories": "stable, flaky (random, job_specific, bursty, order_dependent), failing, "
    "pr_broken, fixed_flake, skipped; a test only infrastructure failed keeps its category",
    "jobs": "the matrix jobs a behaviour applies to; null for all",
    "rate": "chance to fail per result (bursty: outside bursts; order_dependent: share of "
    "commits it fails on, reproducibly)",
    "main_commit": "index of a commit on main (0 is the commit before the history); "
    "pull request runs count as based on the main commit current when they ran",
    "fail_rate": "failing, pr_broken: chance each attempt fails while broken (below 1: broken "
    "on most attempts, a re-run now and then passes)",
    "observed": "results written and results with <failure>/<error> (infrastructure "
    "included); infra_failures: those infrastructure caused; surefire: flaky_passes are "
    "results that passed on an in-run rerun",
    "infra_outages": "job attempts where infrastructure failed tests (first attempts; the "
    "re-run passes): kind runner (a runner died or a service container was down: 10-100% "
    "of the job's tests, mostly one error), noisy_neighbour (a few percent time out "
    "together), outage (about an hour over several runs and jobs), partial (a service "
    "the tests of some areas use was down); share: chance each test it reached failed; "
    "tests_failed: how many did",
}
_JOB_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class HistoryConfig:
    """What to generate; the defaults give about 240,000 results."""

    repo: str = "acme/webshop"
    runs: int = 300  # workflow runs; each has one or more attempts
    tests: int = 400  # distinct test cases over the whole history
    jobs: tuple[str, ...] = ("linux-py3.11", "linux-py3.12")  # one report per job per attempt
    seed: int = 7
    start: datetime = datetime(2026, 9, 1, tzinfo=UTC)
    zip_artifacts: bool = True  # one "junit-<job>.zip" per job and attempt, else plain XML
    flavour: str = "pytest"  # "pytest" or "surefire"
    rerun_rate: float = 0.3  # chance a failed attempt is re-run (attempt 3 at a quarter of it)


@dataclass(frozen=True)
class GeneratedHistory:
    manifest_path: Path
    truth_path: Path
    runs: int
    attempts: int  # manifest lines
    files: int  # manifest file entries (ZIPs or XML files)
    results: int  # <testcase> elements written
    report_bytes: int  # size of the report files on disk
    truth: dict[str, str] = field(repr=False)  # "classname::name" -> category


def generate_history(out_dir: Path, config: HistoryConfig = HistoryConfig()) -> GeneratedHistory:
    """Write a made-up CI history under ``out_dir`` and return what was written.

    Files of the same names are overwritten; other files already in ``out_dir`` are left
    alone (the manifest only names what this call wrote).
    """
    _check(config)
    out_dir = Path(out_dir)
    timeline = build_timeline(
        random.Random(f"{config.seed}/timeline"), runs=config.runs, start=config.start
    )
    plan = build_plan(
        random.Random(f"{config.seed}/plan"),
        timeline,
        tests=config.tests,
        jobs=config.jobs,
        flavour=config.flavour,
        repo=config.repo,
    )
    history = _History(out_dir, config, plan)
    manifest = []
    for run in timeline.runs:
        manifest.extend(history.write_run(run))
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / "manifest.jsonl"
    manifest_path.write_text("".join(manifest), encoding="utf-8")
    truth_path = out_dir / "truth.json"
    truth = history.truth()
    truth_path.write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    return GeneratedHistory(
        manifest_path=manifest_path,
        truth_path=truth_path,
        runs=len(timeline.runs),
        attempts=len(manifest),
        files=history.files,
        results=history.results,
        report_bytes=history.report_bytes,
        truth={key: str(entry["category"]) for key, entry in plan.truth_tests.items()},
    )


def _check(config: HistoryConfig) -> None:
    if not _REPO.fullmatch(config.repo):
        raise ValueError(f"repo must be owner/name, not {config.repo!r}")
    if config.runs < 40 or config.tests < 40:
        raise ValueError("runs and tests must be at least 40 to hold every category")
    if not config.jobs or len(set(config.jobs)) != len(config.jobs):
        raise ValueError("jobs must be distinct and not empty")
    for job in config.jobs:
        if not _JOB_LABEL.fullmatch(job):
            raise ValueError(f"job label {job!r} is not usable in a file name")
    if config.flavour not in ("pytest", "surefire"):
        raise ValueError(f"flavour must be 'pytest' or 'surefire', not {config.flavour!r}")
    if not 0 <= config.rerun_rate <= 1:
        raise ValueError("rerun_rate must be between 0 and 1")
    if config.start.utcoffset() is None:
        raise ValueError("start must be timezone-aware")


class _History:
    def __init__(self, out_dir: Path, config: HistoryConfig, plan: Plan) -> None:
        self.out_dir, self.config, self.plan = out_dir, config, plan
        self.rng = random.Random(f"{config.seed}/results")
        skipped = {i: b.skip_reason for i, b in plan.behaviours.items() if b.kind == "skipped"}
        writer_class = PytestWriter if config.flavour == "pytest" else SurefireWriter
        self.writer: Writer = writer_class(plan.cases, skipped, self.rng)
        self.skipped = set(skipped)
        self.changes = sorted(
            {since for since, _ in plan.present if since}
            | {until for _, until in plan.present if until is not None}
        )
        self.layouts: dict[tuple[bool, ...], Layout] = {}
        self.reports: dict[tuple[bool, ...], int] = {}  # reports written per layout
        self.failures = [0] * len(plan.cases)
        self.infra_failures = [0] * len(plan.cases)
        self.incident_failures: dict[tuple[int, str], int] = {}  # (run seq, job)
        self.flaky_passes = [0] * len(plan.cases)
        self.files = self.results = self.report_bytes = 0

    def layout(self, main: int) -> tuple[tuple[bool, ...], Layout]:
        state = tuple(main >= change for change in self.changes)
        if state not in self.layouts:
            plan, cases = self.plan, self.plan.cases
            present = [
                i
                for i, (since, until) in enumerate(plan.present)
                if since <= main and (until is None or main < until)
            ]
            layout = Layout(
                present=present,
                position={case: pos for pos, case in enumerate(present)},
                specials=[
                    (i, plan.behaviours[i])
                    for i in present
                    if i in plan.behaviours and i not in self.skipped
                ],
                skipped=self.skipped.intersection(present),
            )
            for pos, i in enumerate(present):
                if pos == 0 or cases[i].classname != cases[present[pos - 1]].classname:
                    if layout.groups:
                        layout.groups[-1] = (*layout.groups[-1][:2], pos)
                    layout.groups.append((i, pos, len(present)))
                    layout.seconds.append(0.0)
                    layout.group_skipped.append(0)
                layout.seconds[-1] += cases[i].median
                layout.group_skipped[-1] += i in self.skipped
            self.layouts[state] = layout
        return state, self.layouts[state]

    def write_run(self, run: Run) -> list[str]:
        lines = []
        started = run.started_at
        incidents = self.plan.outages.get(run.seq, [])
        for attempt in (1, 2, 3):
            entries, failed = [], False
            (self.out_dir / f"runs/{run.run_id}/{attempt}").mkdir(parents=True, exist_ok=True)
            for job in self.config.jobs:
                path, job_failed = self.write_report(run, attempt, job, started)
                entries.append({"path": path, "job": job})
                failed = failed or job_failed
            record = {
                "repo": self.config.repo,
                "run_id": run.run_id,
                "run_attempt": attempt,
                "sha": run.sha,
                "branch": run.branch,
                "event": run.event,
                "started_at": started.isoformat(),
                "workflow": "ci",
                "files": entries,
            }
            lines.append(json.dumps(record) + "\n")
            # Runs infrastructure broke are re-run (if anything is), once it is back;
            # otherwise a failed attempt is re-run at the configured rate, a failed
            # re-run at a quarter of it.
            rate = self.config.rerun_rate * (1 if attempt == 1 else 0.25)
            if attempt == 1 and rate and any(incident.rerun for incident in incidents):
                rate = 1.0
            if not failed or self.rng.random() >= rate:
                break
            started += timedelta(minutes=round(self.rng.uniform(12, 90)))
            back = [i.rerun_after for i in incidents if i.rerun_after is not None]
            if attempt == 1 and back and started < max(back):
                started = max(back).replace(microsecond=0)
        return lines

    def write_report(self, run: Run, attempt: int, job: str, started: datetime) -> tuple[str, bool]:
        rng, writer = self.rng, self.writer
        state, layout = self.layout(run.main)
        present, position = layout.present, layout.position
        passing = writer.passing
        mask = DURATION_VARIANTS - 1
        draws = rng.randbytes(len(present))  # one byte picks each passing test's duration
        parts = [passing[i][b & mask] for i, b in zip(present, draws, strict=True)]
        marks: dict[int, str] = {}
        for index, behaviour in layout.specials:
            retry_fails = behaviour.failure(run, job, rng)
            if retry_fails is not None:
                failed = self._failed(index, behaviour, retry_fails)
                pos = position[index]
                parts[pos] = writer.failed(index, failed)
                marks[pos] = "flaky" if failed.passed_on_rerun else "failure"
        for incident in self.plan.outages.get(run.seq, []) if attempt == 1 else []:
            if incident.job == job:
                self._infra(run, incident, layout, parts, marks)
        for pos, mark in marks.items():
            if mark == "flaky":
                self.flaky_passes[present[pos]] += 1
            else:
                self.failures[present[pos]] += 1
        self.reports[state] = self.reports.get(state, 0) + 1
        self.results += len(parts)

        finished = started + timedelta(seconds=rng.randint(60, 600))
        docs = writer.documents(
            layout,
            parts,
            marks,
            split=self.config.zip_artifacts,
            rng=rng,
            timestamp=finished.isoformat(),
            job=job,
            repo=self.config.repo,
        )
        folder = f"runs/{run.run_id}/{attempt}"
        if self.config.zip_artifacts:
            path, data = f"{folder}/junit-{job}.zip", _zip(docs, finished)
        else:
            path, data = f"{folder}/junit-{job}.xml", docs[0][1].encode()
        (self.out_dir / path).write_bytes(data)
        self.files += 1
        self.report_bytes += len(data)
        return path, any(mark != "flaky" for mark in marks.values())

    def _infra(
        self, run: Run, incident: Incident, layout: Layout, parts: list[str], marks: dict[int, str]
    ) -> None:
        """Fail the tests an incident reaches (not those that failed on their own already)."""
        rng, values = self.rng, incident.values
        reruns = SUREFIRE_RERUNS if self.config.flavour == "surefire" else 0  # all fail too
        reached = (
            layout.present
            if incident.tests is None
            else sorted(
                incident.tests.intersection(layout.present), key=layout.position.__getitem__
            )
        )
        hit = 0
        for index in reached:
            pos = layout.position[index]
            if pos in marks or index in self.skipped or rng.random() >= incident.share:
                continue
            profile = incident.profile
            if incident.secondary is not None and rng.random() < incident.secondary_share:
                profile = incident.secondary
            if profile.timeout:
                seconds = float(values["secs"]) + rng.uniform(0.01, 0.4)  # type: ignore[arg-type]
            else:
                seconds = rng.uniform(0.001, 0.05)
            failed = Failed(incident.element, profile, values, seconds, reruns)
            parts[pos] = self.writer.failed(index, failed)
            marks[pos] = incident.element
            self.infra_failures[index] += 1
            hit += 1
        key = (run.seq, incident.job)
        self.incident_failures[key] = self.incident_failures.get(key, 0) + hit

    def _failed(self, index: int, behaviour: Behaviour, retry_fails: float) -> Failed:
        rng = self.rng
        values = behaviour.values or draw_values(rng)
        assert behaviour.profile is not None
        if behaviour.profile.timeout:
            seconds = float(values["secs"]) + rng.uniform(0.01, 0.4)  # type: ignore[arg-type]
        else:
            seconds = self.plan.cases[index].median * rng.uniform(0.8, 3.0)
        if self.config.flavour != "surefire":
            return Failed("failure", behaviour.profile, values, seconds)
        reruns = 0
        while reruns < SUREFIRE_RERUNS and rng.random() < retry_fails:
            reruns += 1
        passed = reruns < SUREFIRE_RERUNS
        return Failed("failure", behaviour.profile, values, seconds, reruns, passed)

    def truth(self) -> dict[str, object]:
        results = [0] * len(self.plan.cases)
        for state, count in self.reports.items():
            for index in self.layouts[state].present:
                results[index] += count
        planned = self.plan.truth_tests
        tests = {}
        for index, case in enumerate(self.plan.cases):
            observed = {
                "results": results[index],
                "failures": self.failures[index],
                "infra_failures": self.infra_failures[index],
            }
            if self.config.flavour == "surefire":
                observed["flaky_passes"] = self.flaky_passes[index]
            tests[case.key] = {**planned[case.key], "observed": observed}
        config = {**asdict(self.config), "start": self.config.start.isoformat()}
        return {
            "about": _ABOUT,
            "config": config,
            "categories": sorted({entry["category"] for entry in tests.values()}),
            "tests": tests,
            "infra_outages": [
                {**entry, "tests_failed": self.incident_failures.get((seq, entry["job"]), 0)}
                for entry, seq in zip(self.plan.truth_outages, self._incident_seqs(), strict=True)
            ],
        }

    def _incident_seqs(self) -> list[int]:
        """The run seq of each entry of ``Plan.truth_outages``, in the same order."""
        outages = self.plan.outages
        return [seq for seq in sorted(outages) for _ in outages[seq]]


def _zip(docs: list[tuple[str, str]], when: datetime) -> bytes:
    """A deflated ZIP like an Actions artifact, with fixed metadata so the bytes reproduce.

    Written directly rather than through ``zipfile``, whose per-member overhead dominated
    Surefire reports (a member per test class); ``zipfile`` reads it in the tests. Deflate
    runs at level 3 with an 8 KiB window instead of upload-artifact's level 6 and 32 KiB:
    a few percent larger, several times faster (setting up a full window dominates small
    members).
    """
    stamp = (
        (when.hour << 11) | (when.minute << 5) | (when.second // 2),
        ((when.year - 1980) << 9) | (when.month << 5) | when.day,
    )
    chunks, directory, offset = [], [], 0
    for name, text in docs:
        raw, path = text.encode(), name.encode()
        deflate = zlib.compressobj(3, zlib.DEFLATED, -13, 6)
        data, crc = deflate.compress(raw) + deflate.flush(), zlib.crc32(raw)
        sizes = (crc, len(data), len(raw), len(path))
        local = struct.pack("<4s5H3LHH", b"PK\x03\x04", 20, 0, 8, *stamp, *sizes, 0)
        entry = (b"PK\x01\x02", 0x0314, 20, 0, 8, *stamp, *sizes, 0, 0, 0, 0, 0o644 << 16, offset)
        directory.append(struct.pack("<4s6H3L5H2L", *entry) + path)  # made by Unix, rw-r--r--
        chunks += (local, path, data)
        offset += len(local) + len(path) + len(data)
    central = b"".join(directory)
    count = len(docs)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(central), offset, 0)
    return b"".join(chunks) + central + end
