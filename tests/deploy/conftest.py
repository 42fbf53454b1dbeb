"""Print the deploy test's report (timings, the job's timeline, commands) after the run."""

from __future__ import annotations

import pytest

from tests.deploy.stack import REPORT


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT:
        terminalreporter.section("deploy test report")
        for line in REPORT:
            terminalreporter.write_line(line)
