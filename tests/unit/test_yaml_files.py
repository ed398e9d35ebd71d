"""Every YAML file the project ships or runs parses, and no mapping in it repeats a key.

YAML itself allows a repeated key to pass: most parsers keep the last value, so a second copy of a
CRD field (an edit applied twice) silently replaces the first, and an edit to the first copy then
changes nothing. A repeated key is always a mistake here, so it fails. Helm templates are not YAML
until rendered; `tests/cluster/test_helm_chart.py` checks what they render.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses a mapping with the same key twice."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"key {key!r} repeats the one on line {seen[key]}",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _yaml_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "*.yaml", "*.yml"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return sorted(path for path in listed if "/templates/" not in f"/{path}")


def test_the_yaml_files_are_found() -> None:
    assert "deploy/crds/externalworkerpools.flowable-worker.io.yaml" in _yaml_files()


@pytest.mark.parametrize("path", _yaml_files())
def test_no_yaml_mapping_repeats_a_key(path: str) -> None:
    text = (ROOT / path).read_text(encoding="utf-8")
    list(yaml.load_all(text, Loader=_StrictLoader))


def test_a_repeated_key_is_refused() -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match="'a' repeats the one on line 1"):
        yaml.load("a: 1\nb: 2\na: 3\n", Loader=_StrictLoader)
