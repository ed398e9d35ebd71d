"""The import-direction check (`localstack/importcheck.py`) on small packages written to tmp_path.

Each test writes a package and a pyproject.toml with its layers, runs the check's `main` on that
root as `make lint` runs it on the repository, and reads its exit status and lines.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from localstack import importcheck

LAYERS = """
[[tool.importcheck.packages]]
path = "src/pkg"

[[tool.importcheck.packages.layers]]
name = "wiring"
modules = ["__init__", "main"]

[[tool.importcheck.packages.layers]]
name = "shell"
modules = ["reconcile", "io.*", "io"]

[[tool.importcheck.packages.layers]]
name = "core"
modules = ["spec", "scaling"]
"""


def write_package(root: Path, modules: dict[str, str], layers: str = LAYERS) -> Path:
    """`modules` maps a file under src/pkg (e.g. "io/http.py") to its source."""
    (root / "pyproject.toml").write_text(layers)
    for name, source in {"__init__.py": "", **modules}.items():
        file = root / "src" / "pkg" / name
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(textwrap.dedent(source))
    return root


CLEAN = {
    "main.py": "from pkg import reconcile\nfrom pkg.io import http\n",
    "reconcile.py": "from pkg.scaling import decide\nfrom . import spec\nimport pkg.io.http\n",
    "io/__init__.py": "",
    "io/http.py": "import json\nimport httpx\nfrom ..spec import Pool\n",
    "spec.py": "from pkg import scaling\nfrom dataclasses import dataclass\nPool = int\n",
    "scaling.py": "def decide() -> int:\n    return 1\n",
}


def run(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    status = importcheck.main(["--root", str(root)])
    captured = capsys.readouterr()
    return status, (captured.out + captured.err).splitlines()


def test_a_clean_package_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, lines = run(write_package(tmp_path, CLEAN), capsys)

    assert status == 0, lines
    assert lines == ["importcheck: pkg: no import cycles, every layer imports downwards only"]


def test_a_cycle_is_found_with_the_line_of_each_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    modules = {
        **CLEAN,
        # reconcile -> io.http -> reconcile, all in or below the shell: only the circle is wrong.
        "io/http.py": "import json\nfrom pkg.reconcile import tick\n",
        "reconcile.py": "from pkg.io.http import get\ntick = 1\n",
    }
    status, lines = run(write_package(tmp_path, modules), capsys)

    assert status == 1
    assert lines[0] == (
        "pkg: import cycle io.http -> reconcile -> io.http "
        "(io.http:2 imports reconcile, reconcile:1 imports io.http); "
        "modules in the circle: io.http, reconcile"
    )
    assert lines[-1] == "importcheck: 1 violation(s) in pkg"


def test_a_type_checking_import_closes_a_cycle_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    modules = {
        **CLEAN,
        "spec.py": """\
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from pkg.scaling import decide
            """,
        "scaling.py": "from pkg import spec\n",
    }
    status, lines = run(write_package(tmp_path, modules), capsys)

    assert status == 1
    assert lines[0].startswith("pkg: import cycle scaling -> spec -> scaling ")


def test_an_import_inside_a_function_closes_no_cycle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    modules = {
        **CLEAN,
        "spec.py": "def later() -> None:\n    from pkg import scaling\n",
        "scaling.py": "from pkg import spec\n",
    }
    status, lines = run(write_package(tmp_path, modules), capsys)

    assert status == 0, lines


def test_a_core_module_importing_the_shell_is_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    modules = {**CLEAN, "scaling.py": "from pkg.reconcile import tick\n"}
    status, lines = run(write_package(tmp_path, modules), capsys)

    assert status == 1
    # reconcile imports scaling, so this is a circle as well: each rule says its own line.
    assert (
        "pkg: scaling (core) imports reconcile (shell), a layer above it (src/pkg/scaling.py:1)"
    ) in lines
    assert lines[-1] == "importcheck: 2 violation(s) in pkg"


@pytest.mark.parametrize(
    "source",
    [
        "from pkg import main\n",  # a module of the package, by `from package import module`
        "from . import main\n",  # relatively
        "def late() -> None:\n    import pkg.main\n",  # lazily: still a dependency upwards
        "from pkg import Version\n",  # a name the package's __init__ (in the wiring) defines
    ],
)
def test_a_core_module_importing_the_wiring_is_found_however_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str
) -> None:
    status, lines = run(write_package(tmp_path, {**CLEAN, "spec.py": source}), capsys)

    assert status == 1
    [upwards] = [line for line in lines if line.startswith("pkg: spec (core) imports ")]
    assert "(wiring), a layer above it (src/pkg/spec.py:" in upwards


def test_a_module_in_no_layer_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, lines = run(write_package(tmp_path, {**CLEAN, "new.py": ""}), capsys)

    assert status == 2
    assert lines == ["importcheck: pkg: new is in no layer"]


def test_a_configured_name_without_a_module_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_package(tmp_path, {name: s for name, s in CLEAN.items() if name != "spec.py"})
    status, lines = run(root, capsys)

    assert status == 2
    assert lines == ["importcheck: pkg: layer 'core' lists 'spec', which matches no module"]

