"""Configuration: flags and environment variables, defaults, one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest

from flowable_worker.cli import main
from flowable_worker.client.durations import parse_duration
from flowable_worker.config import ConfigError, WorkerSettings, load_settings

BASE_ENV = {"FLOWABLE_URL": "http://flowable:8080", "FLOWABLE_TOPIC": "invoice"}


def test_environment_variables_configure_the_worker() -> None:
    settings = load_settings(
        [],
        {
            **BASE_ENV,
            "FLOWABLE_WORKER_HANDLER_URL": "http://h/",
            "FLOWABLE_WORKER_CONCURRENCY": "4",
        },
    )
    assert settings.flowable_url == "http://flowable:8080"
    assert settings.topics == ("invoice",)
    assert settings.concurrency == 4
    assert settings.handler_url == "http://h/"


def test_flags_win_over_environment_variables() -> None:
    settings = load_settings(
        ["--concurrency", "7", "--handler-url", "http://h/"],
        {**BASE_ENV, "FLOWABLE_WORKER_CONCURRENCY": "4"},
    )
    assert settings.concurrency == 7


def test_several_topics_by_comma_or_repeated_flag() -> None:
    env = {"FLOWABLE_URL": "http://f", "FLOWABLE_WORKER_HANDLER_URL": "http://h/"}
    assert load_settings(["--topic", "a", "--topic", "b,c"], env).topics == ("a", "b", "c")
    assert load_settings([], {**env, "FLOWABLE_TOPIC": "a, b"}).topics == ("a", "b")


def test_handler_timeout_defaults_to_ninety_percent_of_the_lock() -> None:
    settings = WorkerSettings(flowable_url="http://f", lock_duration=timedelta(minutes=5))
    assert settings.effective_handler_timeout == timedelta(seconds=270)


def test_handler_timeout_must_be_shorter_than_the_lock() -> None:
    with pytest.raises(ConfigError, match=r"--handler-timeout .* shorter than --lock-duration"):
        load_settings(
            ["--handler-url", "http://h/", "--lock-duration", "PT1M", "--handler-timeout", "60s"],
            BASE_ENV,
        )


def test_worker_id_defaults_to_the_pod_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTNAME", "invoices-7d9f-abcde")
    assert WorkerSettings(flowable_url="http://f").worker_id == "invoices-7d9f-abcde"


def test_a_bad_value_names_its_source() -> None:
    with pytest.raises(ConfigError, match="FLOWABLE_WORKER_CONCURRENCY: not an integer"):
        load_settings([], {**BASE_ENV, "FLOWABLE_WORKER_CONCURRENCY": "many"})
    with pytest.raises(ConfigError, match="--concurrency"):
        load_settings(["--concurrency", "0", "--handler-url", "http://h/"], BASE_ENV)


def test_batch_size_defaults_to_concurrency() -> None:
    assert WorkerSettings(flowable_url="http://f", concurrency=5).effective_batch_size == 5
    assert WorkerSettings(flowable_url="http://f", batch_size=3).effective_batch_size == 3


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("PT5M", 300), ("300", 300), ("300s", 300), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25),
     ("P1DT1S", 86401)],
)
def test_durations_accept_iso_and_short_forms(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_bad_configuration_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FLOWABLE_URL", raising=False)
    assert main(["--topic", "t", "--handler-url", "http://h/"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "FLOWABLE_URL" in err


def test_a_handler_that_cannot_be_imported_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--flowable-url", "http://f", "--topic", "t", "--handler", "no_such_mod:f"])
    assert code == 2
    assert "cannot import handler module 'no_such_mod'" in capsys.readouterr().err


def test_unknown_flags_exit_2_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flowable_worker", "--no-such-flag"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "flowable-worker: error: unrecognized arguments: --no-such-flag"
    ]


def test_help_lists_every_environment_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flowable_worker", "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0
    for name in ("FLOWABLE_URL", "FLOWABLE_TOPIC", "FLOWABLE_WORKER_CONCURRENCY",
                 "FLOWABLE_WORKER_GRACE_PERIOD", "FLOWABLE_WORKER_METRICS_PORT"):
        assert name in result.stdout.replace("\n", "").replace(" ", "")
