"""Which handler serves which topic: decided once, before anything connects, with one error type.

Handlers come from four places: functions (or `Handler` objects) registered on the `Worker`;
`--handler module:function`, one function for every topic without its own; `--handler
module:worker`, a `Worker` (any `Registry`) whose registrations are taken over; and
`--handler-url` / `--handler-command`, one shared handler for every topic left. The topics are
`--topic`, else every registered one.

Every problem is a `ConfigError` (a ValueError) whose text is one line naming the flag, so the CLI
and the library say the same thing: the CLI prints it and exits 2, `Worker.serve` raises it.
Nothing here builds a handler object or opens a connection: `topic_runtime` does that at serve.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from flowable_worker.config import ConfigError, WorkerSettings
from flowable_worker.handlers import Handler
from flowable_worker.handlers.python import HandlerFunction, import_callable
from flowable_worker.registry import Registry
from flowable_worker.topic_options import ResolvedTopic, TopicOptions

HANDLER_FLAG = "--handler/FLOWABLE_WORKER_HANDLER"


@dataclass(frozen=True)
class TopicPlan:
    """One topic to work: its handler (None: the shared `--handler-url`/`--handler-command` one)
    and its settings with nothing left to look up."""

    topic: str
    handler: HandlerFunction | Handler | None
    options: ResolvedTopic


def import_target(spec: str, flag: str = HANDLER_FLAG) -> object:
    """Import `package.module:attribute`; a ConfigError naming `flag` when it cannot.

    Importing runs the module's top level, which may raise anything (a missing setting, a failed
    connection, sys.exit): still a configuration error, not a traceback.
    """
    try:
        return import_callable(spec)
    except ValueError as error:
        raise ConfigError(f"{flag}: {error}") from None
    except (Exception, SystemExit) as error:
        module = spec.partition(":")[0]
        raise ConfigError(
            f"{flag}: importing handler module {module!r} raised {type(error).__name__}: {error}"
        ) from None


def not_a_handler(spec: str, flag: str = HANDLER_FLAG) -> ConfigError:
    """The error for a `--handler` target that is neither a function nor a `Worker`."""
    return ConfigError(f"{flag}: {spec!r} is neither a function nor a Worker")


def plan_topics(
    settings: WorkerSettings,
    registered: Mapping[str, HandlerFunction | Handler],
    options_of: Callable[[str], TopicOptions],
    function: HandlerFunction | None = None,
) -> tuple[TopicPlan, ...]:
    """The topics to work and who handles each; `function` is a `--handler module:function`.

    A registered handler wins; then `function`; then the shared URL or command handler.
    """
    topics = settings.topics or tuple(registered)
    if not topics:
        raise ConfigError("no topic: set --topic or FLOWABLE_TOPIC (comma-separated for several)")
    shared = bool(settings.handler_url or settings.handler_command)
    plans = []
    for topic in topics:
        handler = registered.get(topic, function)
        if handler is None and not shared:
            raise ConfigError(
                f"no handler for topic {topic!r}: set one of --handler MODULE:FUNC, "
                "--handler-url URL, --handler-command CMD"
            )
        plans.append(TopicPlan(topic, handler, options_of(topic).resolve(topic, settings)))
    return tuple(plans)


def resolve(settings: WorkerSettings, registry: Registry) -> tuple[TopicPlan, ...]:
    """Who handles each topic of `registry` under `settings`; ConfigError when one has none.

    A `--handler module:worker` target's registrations are added to `registry` (its own win);
    a `--handler module:function` handles every topic without a handler of its own.
    """
    function: HandlerFunction | None = None
    if settings.handler is not None:
        target = import_target(settings.handler)
        if isinstance(target, Registry):
            registry.adopt(target)
        elif callable(target):
            function = target
        else:
            raise not_a_handler(settings.handler)
    registered = {topic: registry.handler_of(topic) for topic in registry.registered_topics}
    return plan_topics(settings, registered, registry.topic_options, function)
