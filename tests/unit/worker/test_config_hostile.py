"""Configuration values that used to crash or pass: each must exit 2 with one line, no traceback.

Issue 9 ("A hostile world"): a URL without a host, an unparsable IPv6 URL, a port out of range, a
handler module that raises on import, a negative grace period, a negative request timeout (a
pydantic trace), a missing CA bundle (an error not naming the file), and credentials with control
characters in them. Run through the real CLI in a subprocess, as a user (or a pod) runs it, with
a deadline: a value that is wrongly accepted would otherwise serve forever.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from flowable_worker.config import ConfigError, load_settings

REPO_ROOT = Path(__file__).resolve().parents[3]
# Nothing listens on port 9 of loopback: a wrongly accepted configuration fails to connect
# and keeps retrying, which the deadline below turns into a test failure, not a hang.
CLOSED = "http://127.0.0.1:9"


def _run_cli(args: list[str], env: Mapping[str, str] | None = None,
             pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLOWABLE_")}
    paths = [str(REPO_ROOT)] + ([str(pythonpath)] if pythonpath else [])
    full_env = {
        **clean,
        "PYTHONPATH": os.pathsep.join(paths),
        "FLOWABLE_TOPIC": "t",
        "FLOWABLE_WORKER_HANDLER_URL": "http://127.0.0.1:9/h",
        "FLOWABLE_WORKER_METRICS_PORT": "0",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "flowable_worker", *args],
        env=full_env, capture_output=True, text=True, timeout=20, cwd=REPO_ROOT,
    )


def _one_line_exit_2(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("flowable-worker: error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://", "no host"),
        ("http://[::1", "Invalid IPv6 URL"),
        ("http://localhost:99999", "port"),
        ("http://:8080", "no host"),
    ],
)
def test_a_broken_flowable_url_exits_2_with_one_line(url: str, expected: str) -> None:
    line = _one_line_exit_2(_run_cli(["--flowable-url", url]))
    assert "--flowable-url" in line
    assert expected.lower() in line.lower()


def test_a_broken_handler_url_exits_2_with_one_line() -> None:
    line = _one_line_exit_2(_run_cli(
        ["--flowable-url", CLOSED], {"FLOWABLE_WORKER_HANDLER_URL": "http://localhost:70000/h"}
    ))
    assert "FLOWABLE_WORKER_HANDLER_URL" in line
    assert "port out of range" in line.lower()


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("raise RuntimeError('no database configured')", "RuntimeError: no database configured"),
        ("1 / 0", "ZeroDivisionError"),
        ("import sys\nsys.exit(3)", "SystemExit"),
    ],
)
def test_a_handler_module_raising_on_import_exits_2_naming_module_and_error(
    tmp_path: Path, source: str, error: str
) -> None:
    (tmp_path / "exploding_handlers.py").write_text(source + "\n")
    line = _one_line_exit_2(_run_cli(
        ["--flowable-url", CLOSED, "--handler", "exploding_handlers:check"],
        {"FLOWABLE_WORKER_HANDLER_URL": ""},
        pythonpath=tmp_path,
    ))
    assert "'exploding_handlers'" in line
    assert error in line


def test_a_negative_grace_period_exits_2() -> None:
    line = _one_line_exit_2(_run_cli(["--flowable-url", CLOSED, "--grace-period", "-5"]))
    assert "--grace-period" in line
    assert "negative" in line


@pytest.mark.parametrize("value", ["-1", "0"])
def test_a_request_timeout_that_is_not_positive_exits_2(value: str) -> None:
    line = _one_line_exit_2(_run_cli(["--flowable-url", CLOSED, "--request-timeout", value]))
    assert "--request-timeout" in line
    assert "positive" in line


@pytest.mark.parametrize(
    "flag", ["--poll-interval-min", "--error-backoff-max", "--fail-retry-timeout"]
)
def test_other_negative_durations_exit_2(flag: str) -> None:
    line = _one_line_exit_2(_run_cli(["--flowable-url", CLOSED, flag, "-2"]))
    assert flag in line


def test_a_missing_ca_bundle_exits_2_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    line = _one_line_exit_2(_run_cli(
        ["--flowable-url", "https://127.0.0.1:9", "--ca-bundle", str(missing)]
    ))
    assert "--ca-bundle" in line
    assert str(missing) in line


def test_a_ca_bundle_that_is_not_pem_exits_2_naming_the_file(tmp_path: Path) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    line = _one_line_exit_2(_run_cli(
        ["--flowable-url", "https://127.0.0.1:9"], {"FLOWABLE_CA_BUNDLE": str(garbage)}
    ))
    assert "FLOWABLE_CA_BUNDLE" in line
    assert str(garbage) in line


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("FLOWABLE_PASSWORD", "pass\nword"),
        ("FLOWABLE_TOKEN", "tok\ren"),
        ("FLOWABLE_USERNAME", "us\x1ber"),
    ],
)
def test_a_credential_with_a_control_character_inside_exits_2_without_showing_it(
    env: str, value: str
) -> None:
    extra = {"FLOWABLE_USERNAME": "u", "FLOWABLE_PASSWORD": "p"} if env != "FLOWABLE_TOKEN" else {}
    if "\x1b" in value:
        # The flag, not the environment, is named when the value came from the flag.
        result = _run_cli(
            ["--flowable-url", CLOSED, "--username", value], {"FLOWABLE_PASSWORD": "p"}
        )
        where = "--username"
    else:
        result = _run_cli(["--flowable-url", CLOSED], {**extra, env: value})
        where = env
    line = _one_line_exit_2(result)
    assert where in line
    assert "control character" in line
    assert value.split()[0] not in line.split(": ", 2)[-1]


@pytest.mark.parametrize("ending", ["\n", "\r\n", " \n"])
def test_credentials_lose_a_trailing_newline_as_in_the_operator(ending: str) -> None:
    # `kubectl create secret --from-file` keeps the file's last newline; the operator strips it.
    base = {"FLOWABLE_URL": CLOSED, "FLOWABLE_TOPIC": "t", "FLOWABLE_WORKER_HANDLER_URL": "http://h"}
    basic = load_settings([], {**base, "FLOWABLE_USERNAME": "admin" + ending,
                               "FLOWABLE_PASSWORD": "s3cret" + ending})
    assert (basic.username, basic.password) == ("admin", "s3cret")
    bearer = load_settings([], {**base, "FLOWABLE_TOKEN": "abc.def" + ending})
    assert bearer.token == "abc.def"
    assert load_settings([], {**base, "FLOWABLE_URL": CLOSED + ending}).flowable_url == CLOSED


def test_the_error_for_a_bad_url_does_not_show_its_password() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(["--flowable-url", "htp://user:hunter2@flowable:8080"],
                      {"FLOWABLE_TOPIC": "t", "FLOWABLE_WORKER_HANDLER_URL": "http://h"})
    assert "hunter2" not in str(raised.value)
    assert "***@flowable" in str(raised.value)
