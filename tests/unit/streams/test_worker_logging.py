"""The worker undoes what Faust's startup spinner leaves on the root logger (found by profiling: with the root
logger at DEBUG every aiokafka debug call built a record nobody printed, ~8 % of a busy worker)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from faust.utils.terminal.spinners import Spinner, SpinnerHandler

from healing_guard.streams.worker import _drop_finished_spinner


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    yield root
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]


def test_a_stopped_spinner_goes_and_the_root_level_comes_back(root: logging.Logger) -> None:
    first = logging.StreamHandler(io.StringIO())
    first.setLevel(logging.WARNING)
    spinner = Spinner(file=io.StringIO())
    handler = SpinnerHandler(spinner)
    root.handlers[:] = [first, handler]
    root.setLevel(logging.DEBUG)
    _drop_finished_spinner()  # still spinning (startup): left alone
    assert handler in root.handlers and root.level == logging.DEBUG
    spinner.stop()
    _drop_finished_spinner()
    assert handler not in root.handlers and root.level == logging.WARNING
    assert not logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG)
