"""Command-line options declared once: flag, environment variable, default, help, how to read text.

The worker (`config`) and the operator (`flowable_worker_operator.config`) both describe their
settings as a table of `Option`s, and this module turns a table into the `--help` text and into
the values a command line and an environment give. One mechanism, so that the two behave alike:

* a flag wins over its environment variable; an empty variable counts as unset;
* every text, from a flag or from the environment, goes through the option's `parse`, so a value
  outside its choices (`LOG_FORMAT=xml`) is refused wherever it came from (argparse's `choices`
  would check the flag alone);
* anything unusable raises `ConfigError` with one line naming where the value came from (the flag
  or the variable) and what is wrong; the commands turn it into exit code 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

__all__ = [
    "ConfigError",
    "Option",
    "build_parser",
    "int_between",
    "one_of",
    "parse_bool",
    "parse_int",
    "parse_list",
    "parse_lower",
    "parse_optional_int",
    "parse_upper",
    "read_options",
    "seconds",
]


class ConfigError(ValueError):
    """The configuration is unusable; `str(error)` is one line for a human."""


@dataclass(frozen=True)
class Option:
    """One setting as a user sets it: a flag, an environment variable and how to read the text.

    `default`: the value when neither the flag nor the variable gives one (None: leave it to the
    caller, e.g. a model's own default); shown in `--help` when it is not None. `switch`: a flag
    taking no value, with `--no-flag` when there is a variable (which takes true or false). `env`
    None: a flag without a variable. `repeat`:
    the flag may be given several times, and `parse` returns a list for each text.
    """

    field: str
    flag: str
    env: str | None
    help: str
    parse: Callable[[str], Any] = str
    repeat: bool = False
    metavar: str | None = None
    default: Any = None
    short: str | None = None
    switch: bool = False


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and a `ConfigError`, like every other bad value."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def build_parser(
    options: Iterable[Option],
    *,
    prog: str,
    description: str,
    epilog: str,
    formatter_class: type[argparse.HelpFormatter] = argparse.HelpFormatter,
) -> argparse.ArgumentParser:
    """The command line of `options`: every flag defaults to None, so that `read_options` can tell
    a flag given from one left out. Each help line ends with its variable, and its default."""
    parser = _Parser(
        prog=prog, description=description, epilog=epilog, formatter_class=formatter_class
    )
    for option in options:
        names = [option.short, option.flag] if option.short else [option.flag]
        shown = [option.env] if option.env else []
        if option.default is not None:
            shown.append(f"default {_shown(option.default)}")
        help_text = f"{option.help} [{'; '.join(shown)}]" if shown else option.help
        if option.switch:
            # With a variable, `--no-flag` can turn off what the environment turned on.
            action = argparse.BooleanOptionalAction if option.env else "store_true"
            parser.add_argument(
                *names, dest=option.field, action=action, default=None, help=help_text
            )
            continue
        parser.add_argument(
            *names,
            dest=option.field,
            action="append" if option.repeat else "store",
            default=None,
            metavar=option.metavar,
            help=help_text,
        )
    return parser


def _shown(default: object) -> str:
    if isinstance(default, bool):
        return "true" if default else "false"
    return str(default).replace("%", "%%")


def read_options(
    options: Iterable[Option],
    namespace: argparse.Namespace,
    environ: Mapping[str, str],
) -> tuple[dict[str, Any], dict[str, str]]:
    """The parsed value of each option given (flag over variable over default), and where each
    came from (the flag, the variable, or `default`); raises `ConfigError` naming the source.

    An option with neither a value nor a default is left out: its caller's model decides."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in options:
        given = getattr(namespace, option.field)
        source = option.flag
        if option.switch and given is not None:
            values[option.field] = bool(given)
            sources[option.field] = source
            continue
        if given is not None:
            texts: list[str] = given if option.repeat else [given]
        elif option.env and environ.get(option.env, "").strip():
            texts = [environ[option.env]]
            source = option.env
        elif option.default is not None:
            values[option.field] = option.default
            sources[option.field] = "default"
            continue
        else:
            continue
        parse: Callable[[str], Any] = parse_bool if option.switch else option.parse
        try:
            if option.repeat:
                values[option.field] = tuple(x for text in texts for x in parse(text))
            else:
                values[option.field] = parse(texts[0])
        except ValueError as error:
            raise ConfigError(f"{source}: {error}") from None
        sources[option.field] = source
    return values, sources


# --- reading one value ------------------------------------------------------------------------


def parse_bool(text: str) -> bool:
    """`true`/`false` (also 1/0, yes/no, on/off, any case); ValueError otherwise."""
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {text!r} (use true or false)")


def parse_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"not an integer: {text!r}") from None


def parse_optional_int(text: str) -> int | None:
    """An integer, or None for `none`/`default`."""
    return None if text.strip().lower() in {"", "none", "default"} else parse_int(text)


def parse_list(text: str) -> list[str]:
    """A comma-separated list, blanks dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_upper(text: str) -> str:
    return text.strip().upper()


def parse_lower(text: str) -> str:
    return text.strip().lower()


def int_between(low: int, high: int) -> Callable[[str], int]:
    """An integer from `low` to `high`, both included."""

    def parse(text: str) -> int:
        value = parse_int(text)
        if not low <= value <= high:
            raise ValueError(f"must be {low}..{high} (got {value})")
        return value

    return parse


def seconds(*, positive: bool) -> Callable[[str], float]:
    """A number of seconds: above zero if `positive`, else at least zero."""

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"not a number of seconds: {text!r}") from None
        if positive and not value > 0:
            raise ValueError(f"must be positive (got {value:g})")
        if not positive and not value >= 0:
            raise ValueError(f"must not be negative (got {value:g})")
        return value

    return parse


def one_of(
    choices: Sequence[str], normalize: Callable[[str], str] = str.strip
) -> Callable[[str], str]:
    """One of `choices`, after `normalize` (e.g. `parse_upper` for log levels)."""

    def parse(text: str) -> str:
        value = normalize(text)
        if value not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return value

    return parse
