"""One version everywhere: every place that names the project's version or its image references
agrees with `flowable_worker.__version__` (worker/flowable_worker/_version.py).

A release publishes `ghcr.io/flowable-worker-operator/{worker,operator}:<version>` and the chart
`<version>` (.github/workflows/release.yml). A chart, manifest or built-in default naming another
tag would install an image that was never published, or an operator and workers of different
releases; these tests make such drift fail here instead of on a user's cluster.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

import flowable_worker_operator.main as operator_cli
from flowable_worker import __version__
from flowable_worker.cli import run as run_worker
from flowable_worker_operator import config as operator_config

ROOT = Path(__file__).parents[2]
CHART = ROOT / "charts" / "flowable-worker-operator"
RELEASE = ROOT / ".github" / "workflows" / "release.yml"
REGISTRY = "ghcr.io/flowable-worker-operator"
"""Where the release workflow publishes, and what every default names."""


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_the_version_is_semantic() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", __version__), __version__


def test_the_version_file_reads_without_python() -> None:
    # `make version`, the image builds and the release workflow's tag check read it with sed.
    text = (ROOT / "worker" / "flowable_worker" / "_version.py").read_text()
    assert re.findall(r'^__version__ = "(.*)"$', text, re.MULTILINE) == [__version__]


def test_pyproject_takes_the_version_from_the_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"], "a second copy of the version"
    assert "version" in pyproject["project"]["dynamic"]
    dynamic = pyproject["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "flowable_worker._version.__version__"}


def test_both_commands_print_the_version(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No configuration at all: --version answers before any is required.
    for name in ("FLOWABLE_TOPIC", "FLOWABLE_WORKER_HANDLER", "FLOWABLE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert run_worker(["--version"]) == 0
    assert capsys.readouterr().out == f"flowable-worker {__version__}\n"
    assert run_worker(["--topic", "t", "--version"]) == 0
    assert capsys.readouterr().out == f"flowable-worker {__version__}\n"

    with pytest.raises(SystemExit) as exited:
        operator_cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"flowable-worker-operator {__version__}\n"


def test_the_chart_is_versioned_with_the_package() -> None:
    chart = _yaml(CHART / "Chart.yaml")
    assert chart["version"] == __version__
    assert chart["appVersion"] == __version__


def test_the_charts_images_default_to_its_app_version() -> None:
    values = _yaml(CHART / "values.yaml")
    assert values["image"]["repository"] == f"{REGISTRY}/operator"
    assert values["image"]["tag"] in ("", __version__)
    assert values["image"]["pullPolicy"] == "IfNotPresent"
    assert values["workerImage"] in ("", f"{REGISTRY}/worker:{__version__}")
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    # An empty image.tag or workerImage falls back to appVersion, checked equal above.
    assert ".Values.image.tag | default .Chart.AppVersion" in helpers
    assert f'printf "{REGISTRY}/worker:%s" .Chart.AppVersion' in helpers


def test_the_operator_manifest_pins_this_version() -> None:
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "operator.yaml").read_text()))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{REGISTRY}/operator:{__version__}"
    assert container["imagePullPolicy"] == "IfNotPresent"


def test_the_operators_default_worker_image_is_this_release(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FLOWABLE_OPERATOR_WORKER_IMAGE", raising=False)
    assert f"{REGISTRY}/worker" == operator_config.WORKER_IMAGE_REPOSITORY
    assert f"{REGISTRY}/worker:{__version__}" == operator_config.DEFAULT_WORKER_IMAGE
    assert operator_cli.parse_args([]).worker_image == operator_config.DEFAULT_WORKER_IMAGE


def test_the_handler_image_example_builds_on_this_releases_worker() -> None:
    # Users copy examples/handler-image; its default base must be a worker that was published.
    dockerfile = (ROOT / "examples" / "handler-image" / "Dockerfile").read_text()
    defaults = re.findall(r"^ARG WORKER_IMAGE=(\S+)$", dockerfile, re.M)
    assert defaults == [f"{REGISTRY}/worker:{__version__}"]


@pytest.mark.parametrize("doc", ["README.md", "charts/flowable-worker-operator/README.md"])
def test_install_docs_name_this_version(doc: str) -> None:
    # Copy-pasted install commands must fetch what this release published.
    text = (ROOT / doc).read_text()
    registry = re.escape(REGISTRY)
    images = re.findall(rf"{registry}/(?:worker|operator):([^\s`<]+)", text)
    charts = re.findall(rf"oci://{registry}/charts/\S+ --version (\S+)", text)
    assert charts or images, f"{doc} names no published image or chart"
    assert set(images) | set(charts) <= {__version__}


def test_the_changelogs_newest_release_is_this_version() -> None:
    headings = re.findall(r"^## \[([^\]]+)\](.*)$", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert headings[0] == ("Unreleased", "")
    newest, date = headings[1]
    assert newest == __version__
    assert re.fullmatch(r" - \d{4}-\d{2}-\d{2}", date), date


def test_the_release_workflow_publishes_what_the_defaults_name() -> None:
    workflow = _yaml(RELEASE)
    assert workflow["env"]["REGISTRY"] == REGISTRY
    images = workflow["jobs"]["images"]
    targets = {entry["target"]: entry for entry in images["strategy"]["matrix"]["include"]}
    assert set(targets) == {"worker", "operator"}
    # Both are Dockerfile targets, and each answers --version with its own command's name.
    dockerfile = (ROOT / "Dockerfile").read_text()
    commands = {"worker": "flowable-worker", "operator": "flowable-worker-operator"}
    for target, entry in targets.items():
        assert re.search(rf"^FROM \S+ AS {target}$", dockerfile, re.M | re.I), target
        assert entry["command"] == commands[target]
    assert images["env"]["IMAGE"] == f"{REGISTRY}/${{{{ matrix.target }}}}"
    steps = {step.get("id"): step for step in images["steps"]}
    assert steps["meta"]["with"]["images"] == "${{ env.REGISTRY }}/${{ matrix.target }}"
    assert steps["meta"]["with"]["tags"] == "type=raw,value=${{ env.VERSION }}"
    build = next(s for s in images["steps"] if s.get("uses", "").startswith("docker/build-push"))
    assert build["with"]["platforms"] == "linux/amd64,linux/arm64"
    chart_push = " ".join(step.get("run", "") for step in workflow["jobs"]["chart"]["steps"])
    assert 'helm push "dist/flowable-worker-operator-$VERSION.tgz" "oci://$REGISTRY/charts"' in (
        chart_push
    )
    # The tag check reads the version the way `make version` does.
    assert "make -s version" in workflow["jobs"]["version"]["steps"][1]["run"]
