"""Secrets in a hostile world (issue 9): what a worker does with its credentials.

- A handler command's child process does not inherit the worker's credentials.
- A Secret value with a trailing newline authenticates (the operator strips it; so does the worker),
  and the lean transport refuses to write a header value holding a control character.
- Credentials inside a URL never reach a log line, an error message or a metric.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest

from flowable_worker import ClientSettings, FlowableClient, FlowableError
from flowable_worker.config import load_settings
from flowable_worker.handlers import CommandHandler
from flowable_worker.job import Job
from flowable_worker.redaction import redact, strip_credentials
from flowable_worker.results import Complete
from flowable_worker.runtime import Worker
from flowable_worker.transport import LeanTransport
from tests.support.emulator import FlowableEmulator

from .conftest import eventually, serving

REPO_ROOT = Path(__file__).resolve().parents[3]
JOB = Job(id="j1", topic="t", worker_id="w")
PASSWORD = "pw-7f3a9c"  # distinctive, so a search of the output cannot match by accident


# -- the command handler's environment --------------------------------------------------------


async def test_a_handler_command_does_not_inherit_the_workers_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLOWABLE_USERNAME", "admin")
    monkeypatch.setenv("FLOWABLE_PASSWORD", PASSWORD)
    monkeypatch.setenv("FLOWABLE_TOKEN", "tok-" + PASSWORD)
    monkeypatch.setenv("FLOWABLE_URL", f"http://admin:{PASSWORD}@flowable:8080/flowable-rest")
    monkeypatch.setenv("FLOWABLE_WORKER_HANDLER_URL", f"http://u:{PASSWORD}@h:8000/jobs")
    monkeypatch.setenv("UNRELATED_SETTING", "kept")
    handler = CommandHandler([
        sys.executable, "-c",
        "import json, os, sys; sys.stdin.read(); print(json.dumps({'variables': "
        "{'env': json.dumps(dict(os.environ))}}))",
    ])
    outcome = await handler.handle(JOB)
    assert isinstance(outcome, Complete)
    env = json.loads(outcome.variables["env"])
    assert PASSWORD not in json.dumps(env)
    for name in ("FLOWABLE_USERNAME", "FLOWABLE_PASSWORD", "FLOWABLE_TOKEN"):
        assert name not in env
    # URLs stay usable as addresses, without the credentials.
    assert env["FLOWABLE_URL"] == "http://flowable:8080/flowable-rest"
    assert env["FLOWABLE_WORKER_HANDLER_URL"] == "http://h:8000/jobs"
    assert env["UNRELATED_SETTING"] == "kept"
    assert env["FLOWABLE_JOB_ID"] == "j1"


# -- a trailing newline, and control characters in headers --------------------------------------


@pytest.mark.parametrize("auth", ["basic", "bearer"])
async def test_credentials_with_a_trailing_newline_authenticate(auth: str) -> None:
    secret = "s3cret"
    if auth == "basic":
        emulator = FlowableEmulator(reset_interval_seconds=None, username="admin", password=secret)
        env = {"FLOWABLE_USERNAME": "admin\n", "FLOWABLE_PASSWORD": secret + "\n"}
    else:
        emulator = FlowableEmulator(reset_interval_seconds=None, token=secret)
        env = {"FLOWABLE_TOKEN": secret + "\r\n"}
    with emulator:
        created = emulator.create_job("t")
        settings = load_settings([], {
            **env, "FLOWABLE_URL": emulator.base_url, "FLOWABLE_TOPIC": "t",
            "FLOWABLE_WORKER_METRICS_PORT": "0", "FLOWABLE_WORKER_POLL_INTERVAL_MAX": "0.1",
            "FLOWABLE_REQUEST_TIMEOUT": "2",
        }, require_handler=False)
        worker = Worker(settings)
        worker.add_handler("t", lambda job: {"ok": True})
        async with serving(worker):
            async def completed() -> bool:
                return any(c.job_id == created.id for c in emulator.completions())

            await eventually(completed, within=5)


async def test_the_lean_transport_refuses_a_header_value_with_a_control_character() -> None:
    # Port 9 of loopback is closed: a transport that tried to send would fail to connect.
    async with httpx.AsyncClient(transport=LeanTransport(max_connections=1)) as http:
        with pytest.raises(httpx.LocalProtocolError) as raised:
            await http.get("http://127.0.0.1:9/x", headers={"Authorization": "Bearer a\nb"})
    message = str(raised.value)
    assert "Authorization" in message
    assert "control character" in message
    assert "Bearer" not in message  # never the value


async def test_a_client_with_a_newline_in_its_token_fails_clearly_without_showing_it() -> None:
    client = FlowableClient(
        ClientSettings(base_url="http://127.0.0.1:9", token="abc\ndef"),
        transport=LeanTransport(max_connections=1),
    )
    async with client:
        with pytest.raises(FlowableError) as raised:
            await client.acquire_jobs(topic="t", worker_id="w", lock_duration="PT1M")
    assert "control character" in str(raised.value)
    assert "abc" not in str(raised.value)


# -- credentials inside URLs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET http://admin:pw@flowable:8080/x failed", "GET http://***@flowable:8080/x failed"),
        ("https://token@h/p?q=1", "https://***@h/p?q=1"),
        ("'http://u:p@ss@h:1/x'", "'http://***@h:1/x'"),
        ("two: http://a:b@h1/ and http://c:d@h2/", "two: http://***@h1/ and http://***@h2/"),
        ("http://h/x mail me@example", "http://h/x mail me@example"),
        ("no url here", "no url here"),
    ],
)
def test_redact_hides_the_userinfo_of_every_url(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_strip_credentials_keeps_a_usable_address() -> None:
    assert strip_credentials("http://u:p@h:8080/a?b=1") == "http://h:8080/a?b=1"
    assert strip_credentials("http://h:8080/a") == "http://h:8080/a"


@pytest.mark.parametrize("lean", [True, False])
async def test_client_errors_do_not_show_a_urls_password(
    emulator: FlowableEmulator, lean: bool
) -> None:
    transport = LeanTransport(max_connections=1) if lean else None
    for base in (f"http://admin:{PASSWORD}@127.0.0.1:9",  # refused: a transport error
                 emulator.base_url.replace("http://", f"http://admin:{PASSWORD}@")):  # 404
        client = FlowableClient(ClientSettings(base_url=base, read_retries=0), transport=transport)
        async with client:
            with pytest.raises(FlowableError) as raised:
                await client.get_job("no-such-job")
        assert PASSWORD not in str(raised.value)
        assert PASSWORD not in repr(raised.value)
        assert PASSWORD not in getattr(raised.value, "url", "")
        assert "***@127.0.0.1" in str(raised.value)
    assert PASSWORD not in repr(ClientSettings(base_url=f"http://a:{PASSWORD}@h"))


def _worker_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLOWABLE_")}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "flowable_worker"],
            env={**clean, "PYTHONPATH": str(REPO_ROOT), "FLOWABLE_TOPIC": "t",
                 "FLOWABLE_WORKER_LOG_LEVEL": "DEBUG", "FLOWABLE_WORKER_METRICS_PORT": "0",
                 "FLOWABLE_WORKER_POLL_INTERVAL_MAX": "0.2",
                 "FLOWABLE_WORKER_ERROR_BACKOFF_MAX": "0.2", **env},
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO_ROOT,
        )


@pytest.mark.parametrize("http_client", ["lean", "httpx"])
def test_no_log_line_of_a_failing_worker_shows_the_password_in_its_url(
    tmp_path: Path, http_client: str
) -> None:
    # Flowable wants other credentials (every acquire: 401), the HTTP handler is unreachable and
    # carries credentials in its URL too, and a second worker points at a closed port.
    with FlowableEmulator(reset_interval_seconds=None, username="admin", password="other") as emu:
        emu.create_job("t")
        emu.create_job("t")
        wrong = emu.base_url.replace("http://", f"http://admin:{PASSWORD}@")
        runs = [
            ({"FLOWABLE_URL": wrong}, "unauthorized"),
            ({"FLOWABLE_URL": f"http://admin:{PASSWORD}@127.0.0.1:9"}, "refused"),
        ]
        outputs = []
        for number, (env, _) in enumerate(runs):
            log = tmp_path / f"worker-{number}.log"
            process = _worker_process({
                **env, "FLOWABLE_WORKER_HTTP_CLIENT": http_client,
                "FLOWABLE_WORKER_HANDLER_URL": f"http://hook:{PASSWORD}@127.0.0.1:9/h",
            }, log)
            try:
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline and "retrying" not in log.read_text():
                    time.sleep(0.1)
                time.sleep(0.5)
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=20)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            outputs.append(log.read_text())
    for output in outputs:
        assert "acquire for t failed" in output, output
        assert "***@127.0.0.1" in output  # the start-up line names the (redacted) URL
        assert PASSWORD not in output, output


async def test_a_handler_url_with_credentials_is_not_shown_in_the_fail_message(
    emulator: FlowableEmulator,
) -> None:
    created = emulator.create_job("t")
    settings = load_settings(
        [], {"FLOWABLE_URL": emulator.base_url, "FLOWABLE_TOPIC": "t",
             "FLOWABLE_WORKER_HANDLER_URL": f"http://hook:{PASSWORD}@127.0.0.1:9/h",
             "FLOWABLE_WORKER_METRICS_PORT": "0", "FLOWABLE_WORKER_POLL_INTERVAL_MAX": "0.1",
             "FLOWABLE_WORKER_FAIL_RETRIES": "0"},
    )
    worker = Worker(settings)
    async with serving(worker):
        async def dead() -> bool:
            return any(j.id == created.id for j in emulator.dead_letter_jobs())

        await eventually(dead, within=10)
    [job] = emulator.dead_letter_jobs()
    assert PASSWORD not in (job.exception_message or "")
    assert "***@127.0.0.1" in (job.exception_message or "")
    assert PASSWORD not in generate_latest(worker.metrics.registry).decode()
