"""Per-request error codes of the load engine: ``ERROR_KINDS[code]`` names each (index 0: no error).

One table read by the engine (which stamps codes), the result (which counts them), the validity rule and the
Locust runner, so no module needs the engine to know what a code means.

Example::

    from mlops_lb.load._codes import ERROR_KINDS, E_4XX
    ERROR_KINDS[E_4XX]          # 'http_4xx'
"""

from __future__ import annotations

import numpy as np

__all__ = ["ERROR_KINDS", "LATENCY_KINDS"]

# Error codes stored per request; index = code. ``no_connection``: the request waited ``timeout_s`` past its
# intended send time without getting a connection (every connection busy or none could be opened);
# ``cancelled``: in flight or waiting when a Stop ended the run. The ``stream_*``/``bad_event``/``no_tokens``
# kinds only occur on streamed responses (SSE or chunked), whose partial token timings are kept.
ERROR_KINDS = (
    "", "timeout", "connect", "reset", "http_4xx", "http_5xx", "other", "no_connection", "cancelled",
    "stream_truncated", "bad_event", "no_tokens",
)  # fmt: skip
(
    E_OK, E_TIMEOUT, E_CONNECT, E_RESET, E_4XX, E_5XX, E_OTHER, E_NO_CONN, E_CANCELLED, E_TRUNCATED,
    E_BAD_EVENT, E_NO_TOKENS,
) = range(len(ERROR_KINDS))  # fmt: skip
# Which kinds measure the fleet's work on a request: their latency goes into the percentiles. A 5xx is the fleet
# failing after doing (some of) the work; a 4xx is the request refused (a wrong path, a bad payload, 429
# shedding), so its latency says nothing of the model's and would pass a run of 404s off as a fast fleet; a
# broken or timed-out stream is not a whole response (its partial timings stay in its record).
LATENCY_KINDS = np.zeros(len(ERROR_KINDS), dtype=bool)
LATENCY_KINDS[[E_OK, E_5XX, E_NO_TOKENS]] = True
