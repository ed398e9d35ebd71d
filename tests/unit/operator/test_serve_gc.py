"""The operator process's garbage-collector thresholds (`serve.GC_THRESHOLDS`): young collections
rare enough that what a tick keeps for one interval dies before it is promoted to the generation
whose growth starts full collections."""

from __future__ import annotations

import gc

from flowable_worker_operator import serve


def test_the_operator_collects_young_objects_every_ten_thousand_allocations() -> None:
    before = gc.get_threshold()
    try:
        serve.tune_garbage_collector()
        assert gc.get_threshold() == serve.GC_THRESHOLDS
        assert serve.GC_THRESHOLDS[0] >= 10_000
    finally:
        gc.set_threshold(*before)
