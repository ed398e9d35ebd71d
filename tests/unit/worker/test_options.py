"""The declared-options mechanism both the worker and the operator read their settings with."""

from __future__ import annotations

import pytest

from flowable_worker.options import (
    ConfigError,
    Option,
    build_parser,
    int_between,
    one_of,
    parse_bool,
    parse_list,
    parse_upper,
    read_options,
    seconds,
)

TABLE = (
    Option("port", "--port", "APP_PORT", "a port", int_between(0, 65535), default=80),
    Option("level", "--level", "APP_LEVEL", "a level", one_of(("LOW", "HIGH"), parse_upper)),
    Option("names", "--name", "APP_NAMES", "names", parse_list, repeat=True, short="-n"),
    Option("on", "--on", "APP_ON", "a switch", switch=True, default=False),
    Option("alone", "--alone", None, "a switch without a variable", switch=True),
)


def read(argv: list[str], environ: dict[str, str]) -> tuple[dict[str, object], dict[str, str]]:
    parser = build_parser(TABLE, prog="app", description="d", epilog="e")
    return read_options(TABLE, parser.parse_args(argv), environ)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), (" Yes ", True), ("1", True), ("ON", True), ("false", False), ("no", False),
     ("0", False), ("Off", False)],
)
def test_booleans_read_one_way(text: str, expected: bool) -> None:
    assert parse_bool(text) is expected


def test_a_word_that_is_no_boolean_is_refused() -> None:
    with pytest.raises(ValueError, match=r"not a boolean: 'maybe' \(use true or false\)"):
        parse_bool("maybe")


def test_a_flag_wins_over_its_variable_which_wins_over_the_default() -> None:
    assert read([], {})[0] == {"port": 80, "on": False}
    values, sources = read([], {"APP_PORT": "8080", "APP_ON": "true", "APP_LEVEL": "low"})
    assert values == {"port": 8080, "on": True, "level": "LOW"}
    assert sources == {"port": "APP_PORT", "on": "APP_ON", "level": "APP_LEVEL"}
    values, sources = read(["--port", "9", "--no-on"], {"APP_PORT": "8080", "APP_ON": "true"})
    assert (values["port"], values["on"]) == (9, False)
    assert (sources["port"], sources["on"]) == ("--port", "--on")


def test_an_empty_variable_counts_as_unset() -> None:
    assert read([], {"APP_PORT": "  ", "APP_LEVEL": ""})[0] == {"port": 80, "on": False}


def test_repeated_flags_and_comma_lists_add_up() -> None:
    assert read(["-n", "a,b", "--name", "c"], {})[0]["names"] == ("a", "b", "c")
    assert read([], {"APP_NAMES": "x, y,,"})[0]["names"] == ("x", "y")


def test_a_switch_without_a_variable_is_a_plain_flag() -> None:
    assert read(["--alone"], {})[0]["alone"] is True
    with pytest.raises(ConfigError, match="unrecognized arguments: --no-alone"):
        read(["--no-alone"], {})


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        ([], {"APP_PORT": "x"}, "APP_PORT: not an integer: 'x'"),
        (["--port", "70000"], {}, "--port: must be 0..65535 (got 70000)"),
        ([], {"APP_LEVEL": "mid"}, "APP_LEVEL: 'mid' is not one of LOW, HIGH"),
        ([], {"APP_ON": "perhaps"}, "APP_ON: not a boolean: 'perhaps' (use true or false)"),
        (["--bogus"], {}, "unrecognized arguments: --bogus"),
    ],
)
def test_a_bad_value_is_one_line_naming_its_source(
    argv: list[str], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        read(argv, environ)
    assert str(caught.value) == message


def test_seconds_refuse_what_is_out_of_range() -> None:
    assert seconds(positive=False)("0") == 0.0
    assert seconds(positive=True)("2.5") == 2.5
    with pytest.raises(ValueError, match="must be positive"):
        seconds(positive=True)("0")
    with pytest.raises(ValueError, match="must not be negative"):
        seconds(positive=False)("-1")
    with pytest.raises(ValueError, match="not a number of seconds"):
        seconds(positive=False)("nan-ish")


def test_help_shows_each_variable_and_default() -> None:
    text = build_parser(TABLE, prog="app", description="d", epilog="e").format_help()
    flat = " ".join(text.split())
    assert "a port [APP_PORT; default 80]" in flat
    assert "a switch [APP_ON; default false]" in flat
    assert "a switch without a variable" in flat
