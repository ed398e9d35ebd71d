"""Which failed reads are worth repeating.

Only reads are repeated: a repeated POST could complete a job twice or acquire a second batch the
caller never sees. How long to wait between them is `backoff.Backoff` with full jitter.
"""

from __future__ import annotations

from flowable_worker.client.errors import FlowableError, FlowableTransportError, ServerError


def is_retryable(error: FlowableError) -> bool:
    """True for failures a repeat may cure: no answer at all, or a 5xx."""
    return isinstance(error, FlowableTransportError | ServerError)
