"""`python -m flowable_worker`: the same as the `flowable-worker` command."""

import sys

from flowable_worker.cli import main

sys.exit(main())
