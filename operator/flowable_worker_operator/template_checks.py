"""Shape checks for the parts of `spec.worker` the CRD leaves open (`template`, `env[].valueFrom`).

The CRD keeps `worker.template` and `env[].valueFrom` schemaless (`x-kubernetes-preserve-unknown-
fields`) so that any PodTemplateSpec field works without the CRD repeating Kubernetes' schema. The
operator merges the template into its own defaults field by field (`targets`), and reads the
`secretKeyRef`s of `env` (`secrethash`): a `containers: "oops"` there would crash that merge and
a `valueFrom: {bogus: 1}` would reach the API server as a pod it refuses. These checks look at
exactly the fields the operator itself handles, and say what is wrong with a path the user can
find; everything else is left to the API server, whose refusal of the Deployment is reported too.

Pure and total: any JSON value in, a list of problems out (empty: fine), never an exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["check_env", "check_template"]

_SOURCES = ("secretKeyRef", "configMapKeyRef", "fieldRef", "resourceFieldRef")
_KEYED = ("secretKeyRef", "configMapKeyRef")


def check_template(template: object) -> list[str]:
    """Problems with a `worker.template`, as `template.spec.containers[0].name: ...` lines."""
    if not isinstance(template, Mapping):
        return [f"template: must be an object (a PodTemplateSpec), got {_kind(template)}"]
    problems: list[str] = []
    metadata = template.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            problems.append(f"template.metadata: must be an object, got {_kind(metadata)}")
        else:
            for key in ("labels", "annotations"):
                problems += _string_map(metadata.get(key), f"template.metadata.{key}")
    spec = template.get("spec")
    if spec is None:
        return problems
    if not isinstance(spec, Mapping):
        return [*problems, f"template.spec: must be an object (a PodSpec), got {_kind(spec)}"]
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool) or grace < 0):
        problems.append(
            "template.spec.terminationGracePeriodSeconds: must be a whole number of seconds "
            f">= 0, got {_kind(grace)}"
        )
    problems += _named_list(spec.get("volumes"), "template.spec.volumes", key="name")
    problems += _object(spec.get("securityContext"), "template.spec.securityContext")
    containers = spec.get("containers")
    problems += _named_list(containers, "template.spec.containers", key="name")
    if isinstance(containers, list):
        for index, container in enumerate(containers):
            if isinstance(container, Mapping):
                problems += _container(container, f"template.spec.containers[{index}]")
    return problems


def check_env(env: object, where: str) -> list[str]:
    """Problems with a list of core/v1 EnvVars (`worker.env`, or a template container's)."""
    if env is None:
        return []
    if not isinstance(env, list | tuple):
        return [f"{where}: must be a list of variables, got {_kind(env)}"]
    problems: list[str] = []
    for index, item in enumerate(env):
        at = f"{where}[{index}]"
        if not isinstance(item, Mapping):
            problems.append(f"{at}: must be an object with a name, got {_kind(item)}")
            continue
        if not isinstance(item.get("name"), str) or not item["name"]:
            problems.append(f"{at}.name: must be a non-empty string")
        if "value" in item and item["value"] is not None and not isinstance(item["value"], str):
            problems.append(f"{at}.value: must be a string, got {_kind(item['value'])}")
        source = item.get("valueFrom")
        if source is None:
            continue
        if item.get("value") not in (None, ""):
            problems.append(f"{at}: give value or valueFrom, not both")
        problems += _value_from(source, f"{at}.valueFrom")
    return problems


def _value_from(source: object, at: str) -> list[str]:
    if not isinstance(source, Mapping):
        return [f"{at}: must be an object, got {_kind(source)}"]
    given = [key for key in _SOURCES if source.get(key) is not None]
    if len(given) != 1 or set(source) - set(_SOURCES):
        return [f"{at}: must hold exactly one of {', '.join(_SOURCES)}"]
    ref = source[given[0]]
    if not isinstance(ref, Mapping):
        return [f"{at}.{given[0]}: must be an object, got {_kind(ref)}"]
    problems = []
    if given[0] in _KEYED:
        for field in ("name", "key"):
            if not isinstance(ref.get(field), str) or not ref[field]:
                problems.append(f"{at}.{given[0]}.{field}: must be a non-empty string")
        if "optional" in ref and not isinstance(ref["optional"], bool):
            problems.append(f"{at}.{given[0]}.optional: must be true or false")
    return problems


def _container(container: Mapping[str, Any], at: str) -> list[str]:
    problems = check_env(container.get("env"), f"{at}.env")
    problems += _named_list(container.get("volumeMounts"), f"{at}.volumeMounts", key="mountPath")
    for key in ("securityContext", "resources"):
        problems += _object(container.get(key), f"{at}.{key}")
    context = container.get("securityContext")
    if isinstance(context, Mapping):
        problems += _object(context.get("capabilities"), f"{at}.securityContext.capabilities")
    resources = container.get("resources")
    if isinstance(resources, Mapping):
        for key in ("requests", "limits"):
            problems += _object(resources.get(key), f"{at}.resources.{key}")
    return problems


def _named_list(value: object, at: str, *, key: str) -> list[str]:
    """None, or a list of objects that each have a string `key` (the operator merges by it)."""
    if value is None:
        return []
    if not isinstance(value, list):
        return [f"{at}: must be a list, got {_kind(value)}"]
    problems = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            problems.append(f"{at}[{index}]: must be an object, got {_kind(item)}")
        elif not isinstance(item.get(key), str) or not item[key]:
            problems.append(f"{at}[{index}].{key}: must be a non-empty string")
    return problems


def _object(value: object, at: str) -> list[str]:
    if value is None or isinstance(value, Mapping):
        return []
    return [f"{at}: must be an object, got {_kind(value)}"]


def _string_map(value: object, at: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, Mapping):
        return [f"{at}: must be an object of strings, got {_kind(value)}"]
    bad = [str(key) for key, item in value.items() if not isinstance(item, str)]
    return [f"{at}.{key}: must be a string" for key in bad[:5]]


def _kind(value: object) -> str:
    """What a value is, never the value itself: it may be long, or something to keep out of
    status."""
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return names.get(type(value), type(value).__name__)
