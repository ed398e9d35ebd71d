"""The fault ledger: what each fault test injected and what happened to the jobs, summed up.

A fault test is marked `@pytest.mark.fault("kind")` and records through the `fault_ledger`
fixture how often it injected its fault and, from Flowable's own record (history, or the
emulator's log of completions), how many jobs were lost and how many were completed twice,
before it asserts anything. At the end of the run one line sums it all up:

    faults injected: N, survived: N, jobs lost: 0, duplicates: 0

N counts fault kinds: a kind survived when its test passed. The figures are computed from what
happened, never written down in advance: a test that records nothing for its kind fails, and
`--faults-min-kinds` fails the run when fewer kinds ran than the suite promises
(`make test-faults` asks for at least 20).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pytest


@dataclass
class FaultRecord:
    """One fault kind's test: what it injected and what became of the jobs it judged."""

    kind: str
    injected: int = 0
    jobs_judged: int = 0
    lost: int = 0
    duplicates: int = 0
    passed: bool | None = None
    notes: list[str] = field(default_factory=list)


class FaultLedger:
    """Handed to a fault test by the `fault_ledger` fixture."""

    def __init__(self, record: FaultRecord) -> None:
        self._record = record

    @property
    def kind(self) -> str:
        return self._record.kind

    def injected(self, count: int = 1) -> None:
        """Count injections of this test's fault (only those that really fired)."""
        if count < 0:
            raise ValueError("count must not be negative")
        self._record.injected += count

    def judge(self, expected: Iterable[str], completions: Mapping[str, int]) -> None:
        """Record lost and duplicated jobs: `expected` instance ids, `completions` per instance.

        An instance expected but never completed is lost; one completed more than once is a
        duplicate (counted once per extra completion).
        """
        wanted = set(expected)
        self._record.jobs_judged += len(wanted)
        self._record.lost += sum(1 for i in wanted if completions.get(i, 0) == 0)
        self._record.duplicates += sum(max(0, completions.get(i, 0) - 1) for i in wanted)

    def count(self, *, judged: int, lost: int, duplicates: int) -> None:
        """Record jobs judged another way (e.g. a job that must still exist, not yet done)."""
        self._record.jobs_judged += judged
        self._record.lost += lost
        self._record.duplicates += duplicates

    def note(self, text: str) -> None:
        """A line for the summary: what the system did under this fault."""
        self._record.notes.append(text)


_RECORDS = pytest.StashKey[FaultRecord]()
_ALL: list[FaultRecord] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--faults-min-kinds",
        type=int,
        default=0,
        help="fail the run when fewer fault kinds than this were exercised (make test-faults)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", 'fault(kind): a fault-injection test of kind `kind` (make test-faults)'
    )


@pytest.fixture
def fault_ledger(request: pytest.FixtureRequest) -> FaultLedger:
    """The ledger of the calling test's fault kind (from its `fault` marker)."""
    marker = request.node.get_closest_marker("fault")
    if marker is None or not marker.args:
        raise pytest.UsageError(
            f"{request.node.nodeid}: fault_ledger needs @pytest.mark.fault(kind)"
        )
    record = request.node.stash.get(_RECORDS, None)
    if record is None:
        record = FaultRecord(kind=str(marker.args[0]))
        request.node.stash[_RECORDS] = record
        _ALL.append(record)
    return FaultLedger(record)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    record = item.stash.get(_RECORDS, None)
    if record is None or not isinstance(report, pytest.TestReport):
        return report
    if report.when == "call" and report.passed and record.injected == 0:
        # A fault test whose fault never fired proves nothing: it fails.
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid}: no {record.kind!r} fault was injected"
    if report.failed:
        record.passed = False
    elif report.when == "call" and record.passed is None:
        record.passed = True
    return report


def summary(records: Iterable[FaultRecord]) -> str:
    """The one closing line, computed from the records."""
    records = list(records)
    survived = sum(1 for r in records if r.passed)
    lost = sum(r.lost for r in records)
    duplicates = sum(r.duplicates for r in records)
    return (
        f"faults injected: {len(records)}, survived: {survived}, "
        f"jobs lost: {lost}, duplicates: {duplicates}"
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _ALL:
        return
    terminalreporter.section("faults")
    for record in _ALL:
        outcome = {True: "survived", False: "FAILED", None: "not run"}[record.passed]
        terminalreporter.write_line(
            f"{record.kind}: injected {record.injected}x, {record.jobs_judged} jobs judged, "
            f"lost {record.lost}, duplicates {record.duplicates}: {outcome}"
        )
        for note in record.notes:
            terminalreporter.write_line(f"    {note}")
    terminalreporter.write_line(summary(_ALL))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    wanted = session.config.getoption("--faults-min-kinds")
    kinds = {r.kind for r in _ALL}
    if wanted and len(kinds) < wanted and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"fault ledger: only {len(kinds)} fault kinds ran, {wanted} expected"
            )
    if any(r.lost or r.duplicates for r in _ALL) and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
