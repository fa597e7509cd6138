"""Shared pytest setup: make the helper modules in tests/ (diffharness, ...) importable."""

import os
import sys

_TESTS = os.path.dirname(os.path.abspath(__file__))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

import signal

import pytest


@pytest.fixture(autouse=True)
def default_sigint():
    """Tests send themselves SIGINT and expect KeyboardInterrupt.  A process
    started in the background by a non-interactive shell inherits SIGINT as
    ignored, and then Python installs no handler; put the default one in
    place for every test (and restore what was there)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
