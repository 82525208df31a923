"""The test harness keeps an orphaned main-thread event loop alive until the session ends (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import gc
import weakref


def test_a_loop_orphaned_by_asyncio_run_is_not_freed_inside_a_later_test() -> None:
    """A loop set current (as Pulumi's mocks do) and orphaned by asyncio.run() stays referenced and open, so the
    garbage collector cannot free it, unclosed, inside whichever test runs next (a run-order-dependent failure)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    ref = weakref.ref(loop)
    del loop
    asyncio.run(asyncio.sleep(0))  # ends with set_event_loop(None)
    gc.collect()
    kept = ref()
    assert kept is not None and not kept.is_closed()
