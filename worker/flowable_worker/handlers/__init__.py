"""Handler kinds: Python callables, HTTP endpoints and commands, all behind `Handler`."""

from flowable_worker.handlers.base import Handler
from flowable_worker.handlers.command import CommandHandler
from flowable_worker.handlers.http import HttpHandler
from flowable_worker.handlers.protocol import ProtocolError, parse_answer
from flowable_worker.handlers.python import PythonHandler, import_callable, is_async_callable

__all__ = [
    "CommandHandler",
    "Handler",
    "HttpHandler",
    "ProtocolError",
    "PythonHandler",
    "import_callable",
    "is_async_callable",
    "parse_answer",
]
