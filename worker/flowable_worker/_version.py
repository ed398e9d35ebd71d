"""The one place the project's version is written.

Everything else reads it from here: pyproject.toml (setuptools' dynamic `version`, read from this
file's text without importing the package), `flowable_worker.__version__`, both CLIs' `--version`,
the operator's default worker image tag, `make images` (the images' tags) and `make version`
(what the release workflow checks the tag against). Chart.yaml, deploy/operator.yaml,
examples/handler-image/Dockerfile and CHANGELOG.md repeat it as plain text (a chart, a manifest
and a Dockerfile cannot import it), and tests/unit/test_version.py fails when any of them differs
from this.

Kept a plain string literal on one line: setuptools reads it statically, and
`sed -n 's/^__version__ = "\\(.*\\)"$/\\1/p' worker/flowable_worker/_version.py` reads it with no
Python at all.
"""

__version__ = "0.1.0"
