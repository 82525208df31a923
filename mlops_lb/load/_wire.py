"""A request body that brings its own header lines: how a payload carries a per-request routing key.

``run_load`` accepts a :class:`Keyed` wherever it accepts a body (in a payload list or from a payload callable):
its headers are added to that request only, after the run's own headers. The routing key of a cache-aware
policy travels this way (``X-Prefix-Key``, see :mod:`mlops_lb.load.prefix_replay`).

Example::

    Keyed(b'{"prompt": "hi"}', (("X-Prefix-Key", "3f2a"),))
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Keyed"]


@dataclass(frozen=True)
class Keyed:
    """A body and the extra ``(name, value)`` header lines of its request (names and values already checked)."""

    body: bytes
    headers: tuple[tuple[str, str], ...] = ()

    def head_lines(self) -> bytes:
        """The header lines, each ending with CRLF, ready to append to a request head."""
        return "".join(f"{k}: {v}\r\n" for k, v in self.headers).encode("latin-1")
