"""HDR histograms of the load package: microseconds, 1 µs to 1 hour, 3 significant figures; a vectorised fold.

Example::

    from mlops_lb.load._hdr import new_histogram, fold
    h = new_histogram(); fold(h, np.array([0.002, 0.004])); h.get_value_at_percentile(50) / 1e6
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["HIST_HIGHEST_US", "HIST_LOWEST_US", "HIST_SIG_FIGS", "fold", "new_histogram"]

# HDR histograms in microseconds, 1 µs to 1 hour, 3 significant figures.
HIST_LOWEST_US = 1
HIST_HIGHEST_US = 3_600_000_000
HIST_SIG_FIGS = 3


def new_histogram() -> Any:
    """An empty HdrHistogram in microseconds (the unit every histogram of this package uses)."""
    from hdrh.histogram import HdrHistogram

    return HdrHistogram(HIST_LOWEST_US, HIST_HIGHEST_US, HIST_SIG_FIGS)


def fold(hist: Any, seconds: np.ndarray) -> None:
    """Record an array of durations (s) into ``hist`` (µs) in one vectorised step.

    A pure-Python ``record_value`` costs 1-2 µs, and a once-a-second fold of tens of thousands of values would
    hold the GIL long enough to show up as schedule lag. So the counts-array index of every value is computed
    with numpy (HdrHistogram's own bucket arithmetic) and added to the histogram's counts in place; histograms
    without that layout fall back to ``record_value`` per distinct value.
    """
    if len(seconds) == 0:
        return
    # fmax maps NaN to the lowest value (nan_to_num costs more than the rest of a small fold)
    us = np.minimum(np.fmax(seconds * 1e6, HIST_LOWEST_US), HIST_HIGHEST_US).astype(np.int64)
    try:
        counts = np.ctypeslib.as_array(hist.counts)
        half_mag = int(hist.sub_bucket_half_count_magnitude)
        unit_mag = int(hist.unit_magnitude)
        # bit_length(v | sub_bucket_mask), the smallest power of two containing the value, is frexp's exponent
        # (exact: values stay far below 2**53)
        pow2ceiling = np.frexp((us | int(hist.sub_bucket_mask)).astype(np.float64))[1].astype(np.int64)
        bucket = pow2ceiling - unit_mag - (half_mag + 1)
        sub = us >> (bucket + unit_mag)
        idx = ((bucket + 1) << half_mag) + sub - int(hist.sub_bucket_half_count)
        if counts.dtype.itemsize != 8 or idx.min() < 0 or idx.max() >= len(counts):
            raise ValueError("unexpected histogram layout")
    except (AttributeError, TypeError, ValueError):
        values, n = np.unique(us, return_counts=True)
        for v, c in zip(values.tolist(), n.tolist(), strict=False):
            hist.record_value(v, c)
        return
    if len(idx) < 4096:
        # a slice folded every few milliseconds: a full-length bincount would cost more than the values
        where, n = np.unique(idx, return_counts=True)
        counts[where] += n.astype(counts.dtype)
    else:
        counts += np.bincount(idx, minlength=len(counts)).astype(counts.dtype)
    hist.total_count += len(us)
    hist.min_value = min(hist.min_value, int(us.min()))
    hist.max_value = max(hist.max_value, int(us.max()))
