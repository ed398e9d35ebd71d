"""`flowable-worker` and `Worker`: the handler is resolved once; every problem is one ConfigError.

The CLI prints it as one line and exits 2 before anything connects; `Worker.serve` raises the same
error for the same problem.
"""

from __future__ import annotations

import pytest

from flowable_worker import ConfigError, Worker
from flowable_worker.cli import main, prepare
from tests.support.worker_harness import worker_settings
from tests.unit.worker.handler_fixtures import registered

FIXTURES = "tests.unit.worker.handler_fixtures"
URL = ["--flowable-url", "http://127.0.0.1:9"]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--topic", "t", "--handler", f"{FIXTURES}:NOT_A_HANDLER"],
         "'tests.unit.worker.handler_fixtures:NOT_A_HANDLER' is neither a function nor a Worker"),
        (["--topic", "t", "--handler", "tests.unit.worker.handler_fixture_that_fails:f"],
         "importing handler module 'tests.unit.worker.handler_fixture_that_fails' raised "
         "RuntimeError: DATABASE_URL is not set"),
        (["--topic", "t", "--handler", f"{FIXTURES}:missing"], "has no attribute 'missing'"),
        (["--topic", "t", "--handler", "no-colon"], "must look like package.module:function"),
        (["--topic", "t"], "no handler for topic 't'"),
        (["--handler-url", "http://127.0.0.1:9/h"], "no topic: set --topic"),
        (["--topic", "other", "--handler", f"{FIXTURES}:registered"],
         "no handler for topic 'other'"),
    ],
)
def test_a_bad_handler_exits_2_with_one_line(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*URL, *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("flowable-worker: error: ")
    assert says in err


def test_a_topic_option_that_cannot_work_exits_2_before_serving(
    capsys: pytest.CaptureFixture[str],
) -> None:
    worker = Worker()
    worker.topic("slow", handler_timeout="PT2M", lock_duration="PT1M")(lambda job: None)
    with pytest.raises(ConfigError, match="topic 'slow': handler_timeout"):
        prepare([*URL], worker)
    assert worker.run([*URL]) == 2
    assert "topic 'slow': handler_timeout" in capsys.readouterr().err


def test_a_worker_target_brings_its_topics_and_a_function_serves_every_topic() -> None:
    adopted = prepare([*URL, "--handler", f"{FIXTURES}:registered"])
    assert adopted.settings.topics == ("registered-topic",)
    assert adopted.registered_topics == ("registered-topic",)

    shared = prepare([*URL, "--topic", "a,b", "--handler", f"{FIXTURES}:double"])
    assert shared.settings.topics == ("a", "b")


def test_configuring_twice_adopts_a_worker_target_once() -> None:
    worker = Worker()
    prepare([*URL, "--handler", f"{FIXTURES}:registered"], worker)
    prepare([*URL, "--handler", f"{FIXTURES}:registered"], worker)
    assert worker.registered_topics == ("registered-topic",)
    assert worker._adopted == [registered]


async def test_serve_raises_the_same_error_as_the_cli_for_a_bad_handler() -> None:
    settings = worker_settings(
        "http://127.0.0.1:9", topics=("t",), handler=f"{FIXTURES}:NOT_A_HANDLER"
    )
    worker = Worker(settings)
    with pytest.raises(ConfigError, match="is neither a function nor a Worker"):
        await worker.serve()
    assert not worker.stopping
