"""Shared fixtures for the benchmarks, and a summary of guest MIPS at the end."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

FIGURES: list[str] = []


@pytest.fixture
def report() -> object:
    return FIGURES.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("lguest figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
