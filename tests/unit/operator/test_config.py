"""The operator's configuration: one declared table, flags over variables over defaults, and every
bad value, wherever it came from, exits 2 with one line naming it (never a traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowable_worker_operator import config as operator_config
from flowable_worker_operator import main as cli
from flowable_worker_operator.config import OPTIONS, ConfigError, load_config

REPO = Path(__file__).parents[3]


@pytest.fixture(autouse=True)
def _no_operator_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FLOWABLE_OPERATOR_"):
            monkeypatch.delenv(name)


def _run_cli(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    """The installed entry point's code path, as a pod runs it: a fresh interpreter."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLOWABLE_OPERATOR_")}
    return subprocess.run(
        [sys.executable, "-m", "flowable_worker_operator.main", *argv],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FLOWABLE_OPERATOR_LOG_LEVEL", "verbose"),  # crashed with a traceback before
        ("FLOWABLE_OPERATOR_LOG_FORMAT", "xml"),  # was accepted without a word before
    ],
)
def test_a_bad_log_setting_in_the_environment_exits_2_with_one_line(name: str, value: str) -> None:
    done = _run_cli({name: value})
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"flowable-worker-operator: error: {name}: {value!r} is not one of")


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        ([], {"FLOWABLE_OPERATOR_LOG_LEVEL": "verbose"}, "FLOWABLE_OPERATOR_LOG_LEVEL"),
        ([], {"FLOWABLE_OPERATOR_LOG_FORMAT": "xml"}, "FLOWABLE_OPERATOR_LOG_FORMAT"),
        (["--log-format", "xml"], {}, "--log-format"),
        (["--log-level", "loud"], {}, "--log-level"),
        ([], {"FLOWABLE_OPERATOR_METRICS_PORT": "http"}, "FLOWABLE_OPERATOR_METRICS_PORT"),
        (["--metrics-port", "70000"], {}, "--metrics-port"),
        ([], {"FLOWABLE_OPERATOR_PROBE_SHARE_SECONDS": "-1"}, "PROBE_SHARE_SECONDS"),
        (["--discovery-interval", "0"], {}, "--discovery-interval"),
        ([], {"FLOWABLE_OPERATOR_DISCOVERY_INTERVAL": "soon"}, "DISCOVERY_INTERVAL"),
        ([], {"FLOWABLE_OPERATOR_LEADER_ELECTION": "perhaps"}, "LEADER_ELECTION"),
        (["--worker-image", " "], {}, "--worker-image"),
        (["--no-such-flag"], {}, "--no-such-flag"),
        (["-A", "-n", "billing"], {}, "--all-namespaces"),
        (["--shards", "-1"], {}, "--shards"),
        ([], {"FLOWABLE_OPERATOR_SHARDS": "many"}, "FLOWABLE_OPERATOR_SHARDS"),
        (["--shards", "4"], {}, "--shard-lease-namespace"),  # outside a pod
        (["--shards", "4", "--shard-lease-namespace", "Ops!"], {}, "--shard-lease-namespace"),
        (
            ["--shards", "4", "--shard-lease-namespace", "o", "--shard-lease-prefix", "-x"],
            {},
            "-prefix",
        ),
        (
            ["--shards", "4", "--shard-lease-namespace", "o", "--shard-lease-duration", "2"],
            {},
            "-duration",
        ),
        (["--shards", "4", "--leader-election"], {}, "--leader-election"),
    ],
)
def test_every_bad_value_exits_2_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
    named: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("flowable-worker-operator: error: ")
    assert named in lines[0]


def test_defaults_come_from_the_table() -> None:
    config = load_config([], environ={})
    assert config.namespaces == ()
    assert config.worker_image == operator_config.DEFAULT_WORKER_IMAGE
    assert (config.metrics_host, config.metrics_port) == ("0.0.0.0", 8080)
    assert (config.probe_share_seconds, config.discovery_interval_seconds) == (1.0, 60.0)
    assert (config.log_format, config.log_level) == ("json", "INFO")
    assert config.leader_election is None
    assert config.sharding is None
    assert config.pod_security == "privileged"
    assert config.max_replicas_limit == operator_config.DEFAULT_MAX_REPLICAS_LIMIT
    assert config.metrics_tls_cert is None


def test_flags_win_over_the_environment_and_an_empty_variable_is_unset() -> None:
    env = {
        "FLOWABLE_OPERATOR_METRICS_PORT": "9000",
        "FLOWABLE_OPERATOR_LOG_LEVEL": "debug",
        "FLOWABLE_OPERATOR_LOG_FORMAT": "TEXT",
        "FLOWABLE_OPERATOR_WORKER_IMAGE": "",
        "FLOWABLE_OPERATOR_NAMESPACES": "billing, shipping",
    }
    from_env = load_config([], environ=env)
    assert from_env.metrics_port == 9000
    assert (from_env.log_level, from_env.log_format) == ("DEBUG", "text")
    assert from_env.worker_image == operator_config.DEFAULT_WORKER_IMAGE
    assert from_env.namespaces == ("billing", "shipping")
    flags = load_config(["--metrics-port", "0", "-n", "a", "--namespace", "b"], environ=env)
    assert flags.metrics_port == 0
    assert flags.namespaces == ("a", "b")
    assert load_config(["-A"], environ=env).namespaces == ()


def test_a_bad_value_is_a_config_error_naming_where_it_came_from() -> None:
    with pytest.raises(ConfigError, match=r"^FLOWABLE_OPERATOR_MAX_REPLICAS_LIMIT: must be 1\.\."):
        load_config([], environ={"FLOWABLE_OPERATOR_MAX_REPLICAS_LIMIT": "0"})
    with pytest.raises(ConfigError, match=r"^--pod-security: 'strict' is not one of"):
        load_config(["--pod-security", "strict"], environ={})


def test_help_teaches_every_option_and_its_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in OPTIONS:
        assert option.flag in text
        if option.env:
            assert option.env in text
    assert "default 8080" in text
    assert "flowable-worker-operator --all-namespaces --leader-election" in text


def test_shards_read_with_their_lease_settings() -> None:
    env = {"FLOWABLE_OPERATOR_SHARDS": "16", "FLOWABLE_OPERATOR_SHARD_LEASE_NAMESPACE": "ops"}
    config = load_config(["--shard-lease-duration", "30"], environ=env)
    assert config.sharding is not None
    assert (config.sharding.shards, config.sharding.namespace) == (16, "ops")
    assert (config.sharding.prefix, config.sharding.lease_seconds) == (
        "flowable-worker-operator",
        30,
    )
    assert config.sharding.identity
    assert config.leader_election is None
