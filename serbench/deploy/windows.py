"""Cutting a recording into the windows a model scores.

A recording no longer than the window is one window. A longer one is cut into windows of
``window`` samples starting every ``hop`` samples; when the last of them stops short of
the end, one more window ends exactly at the end, so every sample is scored and every
window has the full length.
"""

from __future__ import annotations


def windows(samples: int, window: int, hop: int) -> list[tuple[int, int]]:
    """``(start, end)`` sample ranges covering ``samples`` samples (see the module)."""
    if window < 1 or hop < 1:
        raise ValueError(f"window ({window}) and hop ({hop}) must be at least one sample")
    if samples <= window:
        return [(0, samples)]
    spans = [(start, start + window) for start in range(0, samples - window + 1, hop)]
    if spans[-1][1] < samples:
        spans.append((samples - window, samples))
    return spans
