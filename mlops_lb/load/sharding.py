"""Sharding a profile's schedule between engines (worker processes, Ray shards): :class:`ScheduleShare` draws
share ``k`` of ``n`` lazily, chunk by chunk; :func:`due_before` counts what was due by a time; :func:`shard_indices`
gives a share's indices at once.

Example::

    share = ScheduleShare(constant(100, 10), 1, 4)     # every 4th request, from the second
    sum(len(idx) for idx, _ in share.chunks())          # 250
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._validate import check_int
from ._profile_base import CHUNK, LoadProfile

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ScheduleShare", "due_before", "shard_indices"]


@dataclass(frozen=True)
class ScheduleShare:
    """Share ``k`` of ``n`` of a profile's schedule, produced lazily as ``(global index, intended offset)`` chunks.

    What one engine sends: ``workers=N`` processes and Ray shards each get one share, and nothing larger than a
    chunk is ever held, so memory does not grow with the run. Poisson arrivals are *thinned*: each request joins
    one share at random (seeded by the profile's seed and ``n``), and independent thinning of a Poisson process
    gives independent Poisson processes, so every share is Poisson at rate/``n``; interleaving (every n-th
    request) would make each share Erlang-n, far more regular than Poisson. Uniform and trace arrivals are
    interleaved, which keeps each share evenly spaced. The shares together are exactly the unshared schedule.

    Example::

        p = constant(1000, 10, arrival="poisson", seed=3)
        share = ScheduleShare(p, 1, 4)
        sum(len(i) for i, _ in share.chunks())        # about 2,500: a quarter of the 10k requests
        share.sizes()                                  # [2511, 2483, ...]: the size of every share, one pass
    """

    profile: LoadProfile
    k: int = 0
    n: int = 1

    def __post_init__(self) -> None:
        check_int("n", self.n, 1)
        check_int("k", self.k, 0, self.n - 1)

    def _owners(self) -> Any:
        import numpy as np

        if self.n > 1 and self.profile.arrival == "poisson":
            return np.random.default_rng([self.profile.seed, self.n, 0x5EED])
        return None

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(index, offsets)`` arrays of this share, in schedule order: ``index`` into the whole schedule."""
        import numpy as np

        rng = self._owners()
        base = 0
        # Drawn at the fixed CHUNK so that every share (and sizes()) sees the same owner draws.
        for part in self.profile.iter_schedule(CHUNK):
            m = len(part)
            if self.n == 1:
                pos = np.arange(m)
            elif rng is not None:
                pos = np.flatnonzero(rng.integers(0, self.n, size=m) == self.k)
            else:
                pos = np.arange((self.k - base) % self.n, m, self.n)
            if len(pos):
                yield pos + base, part[pos]
            base += m

    def sizes(self) -> list[int]:
        """How many requests each of the ``n`` shares holds (one pass over the schedule, nothing kept)."""
        import numpy as np

        counts = np.zeros(self.n, np.int64)
        rng = self._owners()
        base = 0
        for part in self.profile.iter_schedule(CHUNK):
            m = len(part)
            if rng is not None:
                counts += np.bincount(rng.integers(0, self.n, size=m), minlength=self.n)
            else:
                first = (np.arange(self.n) - base) % self.n
                counts += np.maximum(0, (m - first + self.n - 1) // self.n)
            base += m
        return [int(c) for c in counts]


def due_before(profile: LoadProfile, horizon: float) -> int:
    """How many of ``profile``'s requests are intended at or before offset ``horizon`` (reads only what it needs).

    Example::

        due_before(constant(100, 10), 2.0)     # 201
    """
    import numpy as np

    n = 0
    for part in profile.iter_schedule(CHUNK):
        n += int(np.searchsorted(part, horizon, side="right"))
        if len(part) and part[-1] > horizon:
            break
    return n


def shard_indices(profile: LoadProfile, k: int, n: int) -> np.ndarray:
    """Indices into ``profile.schedule()`` of share ``k`` of ``n`` (see :class:`ScheduleShare`), in one array.

    Example::

        p = constant(1000, 10, arrival="poisson", seed=3)
        parts = [shard_indices(p, k, 4) for k in range(4)]     # disjoint, together all 10k requests
    """
    import numpy as np

    parts = [idx for idx, _ in ScheduleShare(profile, k, n).chunks()]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)
