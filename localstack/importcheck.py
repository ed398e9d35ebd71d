"""Import-direction check of the project's packages: no circles, and layers imported downwards.

`make lint` runs `python -m localstack.importcheck` from the repository root. What it enforces is
read from `[tool.importcheck]` in pyproject.toml, not written here, so moving a module between
layers is a one-line configuration change that a reviewer sees:

    [[tool.importcheck.packages]]
    path = "operator/flowable_worker_operator"      # a package directory, from the root

    [[tool.importcheck.packages.layers]]             # the top layer first ...
    name = "wiring"
    modules = ["main", "serve", "handlers"]

    [[tool.importcheck.packages.layers]]             # ... the bottom layer last
    name = "core"
    modules = ["spec", "scaling", "status"]

Modules are named relative to their package (`client.retry`; `__init__` is the package itself,
`client` a sub-package's `__init__.py`) and may be `fnmatch` patterns (`client.*`).

Two rules, per package:

1. No import cycle among the package's modules. Only imports that run when a module is imported
   count: those at module level, in its `if`/`try`/`with` blocks and class bodies, and imports
   under `if TYPE_CHECKING:` too (a circle mypy resolves is still a circle a reader must hold in
   their head). An import inside a function is left out: it runs later, and is how code that
   needs a late import says so. Importing `a.b.c` counts as importing `a.b.c` only, not its
   parent packages' `__init__`, which Python runs on the way but which no reader sees as a
   dependency.
2. A module imports only from its own layer or the ones listed below it: any import into a layer
   above, function-level ones included, is a violation (a pure core that reaches up into the
   shell, lazily or not, is no longer pure).

Every module must be in exactly one layer, and every configured name must match a module: a new
module has to be placed, and a renamed one cannot leave a stale entry behind. Imports of other
packages (the standard library, third parties, the project's other package) are not checked.

The exit status is 0 when the packages keep both rules, 1 with one line per violation otherwise,
and 2 when the configuration itself is wrong.
"""

from __future__ import annotations

import argparse
import ast
import sys
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from itertools import pairwise
from pathlib import Path

PYPROJECT = "pyproject.toml"


class ConfigError(Exception):
    """`[tool.importcheck]` is missing, malformed, or does not match the package on disk."""


@dataclass(frozen=True)
class Layer:
    name: str
    modules: tuple[str, ...]  # names relative to the package, fnmatch patterns allowed


@dataclass(frozen=True)
class PackageRules:
    path: Path  # the package directory, relative to the repository root
    layers: tuple[Layer, ...]  # top first

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Import:
    """One import of a module of the same package: where it is written and whether it runs at
    import time (module level) or only when a function is called."""

    source: str  # relative module names
    target: str
    line: int
    module_level: bool


@dataclass
class Package:
    """The modules of one package on disk and the imports between them."""

    rules: PackageRules
    files: dict[str, Path]  # relative module name -> its file, relative to the package directory
    imports: list[Import] = field(default_factory=list)


def load_rules(pyproject: Path) -> list[PackageRules]:
    """The packages and layers configured in `pyproject`'s `[tool.importcheck]` table."""
    try:
        data = tomllib.loads(pyproject.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{pyproject}: {exc}") from exc
    packages = data.get("tool", {}).get("importcheck", {}).get("packages")
    if not isinstance(packages, list) or not packages:
        raise ConfigError(f"{pyproject}: no [[tool.importcheck.packages]] configured")
    rules = []
    for package in packages:
        path, layers = package.get("path"), package.get("layers")
        if not isinstance(path, str) or not isinstance(layers, list) or not layers:
            raise ConfigError(f"{pyproject}: each package needs a `path` and at least one layer")
        parsed = []
        for layer in layers:
            name, modules = layer.get("name"), layer.get("modules")
            if not isinstance(name, str) or not isinstance(modules, list) or not all(
                isinstance(module, str) for module in modules
            ):
                raise ConfigError(f"{pyproject}: {path}: each layer needs a `name` and `modules`")
            parsed.append(Layer(name, tuple(modules)))
        rules.append(PackageRules(Path(path), tuple(parsed)))
    return rules


# --------------------------------------------------------------------------------------------
# Reading a package
# --------------------------------------------------------------------------------------------


def module_files(directory: Path) -> dict[str, Path]:
    """Every module of the package in `directory`, by its name relative to the package, with its
    file relative to `directory`."""
    found = {}
    for file in sorted(directory.rglob("*.py")):
        relative = file.relative_to(directory)
        parts = list(relative.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts) or "__init__"] = relative
    return found


def _walk(
    node: ast.AST, *, in_function: bool = False
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement under `node`, with whether it runs at import time."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, not in_function
        nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
        yield from _walk(child, in_function=nested)


def _absolute(module: str, statement: ast.ImportFrom, is_package: bool) -> str:
    """The absolute module a `from` import names, resolving leading dots against `module`."""
    if not statement.level:
        return statement.module or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (statement.level - 1)]
    return ".".join([*base, *([statement.module] if statement.module else [])])


def read_package(root: Path, rules: PackageRules) -> Package:
    """Parse every module of the package and keep the imports that stay inside it."""
    directory = root / rules.path
    if not directory.is_dir():
        raise ConfigError(f"{rules.path}: no such package directory")
    files = module_files(directory)
    package = Package(rules, files)
    prefix = rules.name

    def relative(absolute: str) -> str | None:
        if absolute == prefix:
            return "__init__"
        if absolute.startswith(prefix + "."):
            name = absolute[len(prefix) + 1 :]
            return name if name in files else None
        return None

    for name, file in files.items():
        absolute_name = prefix if name == "__init__" else f"{prefix}.{name}"
        is_package = file.name == "__init__.py"
        tree = ast.parse((directory / file).read_text(), filename=str(rules.path / file))
        for statement, module_level in _walk(tree):
            targets: list[str | None] = []
            if isinstance(statement, ast.Import):
                targets = [relative(alias.name) for alias in statement.names]
            else:
                base = _absolute(absolute_name, statement, is_package)
                for alias in statement.names:
                    # `from pkg import mod` imports the module pkg.mod when there is one,
                    # else a name defined in pkg.
                    targets.append(relative(f"{base}.{alias.name}") or relative(base))
            for target in dict.fromkeys(targets):
                if target is not None and target != name:
                    package.imports.append(Import(name, target, statement.lineno, module_level))
    return package


# --------------------------------------------------------------------------------------------
# The two rules
# --------------------------------------------------------------------------------------------


def layer_of(package: Package) -> dict[str, int]:
    """Each module's layer index (0 = top); ConfigError unless every module has exactly one and
    every configured name matches a module."""
    index: dict[str, int] = {}
    problems = []
    for position, layer in enumerate(package.rules.layers):
        for pattern in layer.modules:
            matched = [name for name in package.files if fnmatchcase(name, pattern)]
            if not matched:
                problems.append(f"layer {layer.name!r} lists {pattern!r}, which matches no module")
            for name in matched:
                if name in index and index[name] != position:
                    other = package.rules.layers[index[name]].name
                    problems.append(f"{name} is in two layers, {other!r} and {layer.name!r}")
                index[name] = position
    problems += [f"{name} is in no layer" for name in package.files if name not in index]
    if problems:
        raise ConfigError("\n".join(f"{package.rules.name}: {problem}" for problem in problems))
    return index


def layer_violations(package: Package) -> list[str]:
    """Imports from a module into a layer above its own."""
    index = layer_of(package)
    layers = package.rules.layers
    found = []
    for edge in package.imports:
        source, target = index[edge.source], index[edge.target]
        if target < source:
            found.append(
                f"{package.rules.name}: {edge.source} ({layers[source].name}) imports "
                f"{edge.target} ({layers[target].name}), a layer above it "
                f"({_where(package, edge)})"
            )
    return found


def _where(package: Package, edge: Import) -> str:
    return f"{package.rules.path / package.files[edge.source]}:{edge.line}"


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (iterative)."""
    indices: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components = []
    for start in sorted(graph):
        if start in indices:
            continue
        work = [(start, iter(sorted(graph[start])))]
        indices[start] = low[start] = len(indices)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in indices:
                    indices[successor] = low[successor] = len(indices)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], indices[successor])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == indices[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def shortest_cycle(graph: dict[str, set[str]], start: str, within: set[str]) -> list[str]:
    """The shortest path from `start` back to itself inside one component (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph[node] & within):
                if successor == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if successor not in previous:
                    previous[successor] = node
                    following.append(successor)
        frontier = following
    raise AssertionError(f"{start} is in a component but on no cycle")


def cycle_violations(package: Package) -> list[str]:
    """One line per import circle: the shortest cycle through the circle's first module, then
    every module caught in it (a circle of five can hold several cycles; breaking this one
    shows the next on the following run)."""
    graph: dict[str, set[str]] = {name: set() for name in package.files}
    lines: dict[tuple[str, str], int] = {}
    for edge in package.imports:
        if edge.module_level:
            graph[edge.source].add(edge.target)
            lines.setdefault((edge.source, edge.target), edge.line)
    found = []
    for component in strongly_connected(graph):
        cycle = shortest_cycle(graph, component[0], set(component))
        steps = ", ".join(
            f"{source}:{lines[source, target]} imports {target}"
            for source, target in pairwise(cycle)
        )
        found.append(
            f"{package.rules.name}: import cycle {' -> '.join(cycle)} ({steps}); "
            f"modules in the circle: {', '.join(component)}"
        )
    return found


def check(root: Path, rules: Sequence[PackageRules]) -> list[str]:
    """Every violation of both rules in every configured package, one line each."""
    found = []
    for package_rules in rules:
        package = read_package(root, package_rules)
        found += cycle_violations(package)
        found += layer_violations(package)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localstack.importcheck", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the repository root")
    args = parser.parse_args(argv)
    root: Path = args.root
    try:
        rules = load_rules(root / PYPROJECT)
        violations = check(root, rules)
    except (ConfigError, SyntaxError) as exc:
        print(f"importcheck: {exc}", file=sys.stderr)
        return 2
    for line in violations:
        print(line)
    names = ", ".join(package.name for package in rules)
    if violations:
        print(f"importcheck: {len(violations)} violation(s) in {names}")
        return 1
    print(f"importcheck: {names}: no import cycles, every layer imports downwards only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
