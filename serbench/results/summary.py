"""What a fold's trials add up to: the best trial, and when each validation threshold was
first reached (minutes of study time and the efficiency 𝓔 = BCA / minutes)."""

from __future__ import annotations

from serbench.results.schema import Best, ThresholdHit, TrialRecord


def threshold_hits(trials: list[TrialRecord], thresholds: list[float]) -> list[ThresholdHit]:
    """For each threshold, the first trial whose validation BCA reached it, and when."""
    hits = []
    for threshold in thresholds:
        first = next((t for t in trials if t.status == "ok" and t.value is not None and t.value >= threshold), None)
        if first is None:
            hits.append(ThresholdHit(threshold=threshold, reached=False))
            continue
        minutes = first.cumulative_s / 60
        hits.append(
            ThresholdHit(
                threshold=threshold,
                reached=True,
                trial=first.number,
                minutes=minutes,
                efficiency=threshold / minutes if minutes > 0 else None,
            )
        )
    return hits


def best_trial(trials: list[TrialRecord]) -> Best | None:
    """The finished trial with the highest validation BCA (earliest on ties); a pruned
    trial only when no trial finished (its last report's BCA)."""
    finished = [t for t in trials if t.status == "ok" and t.value is not None]
    if not finished:
        finished = [t for t in trials if t.status == "pruned" and t.value is not None]
    if not finished:
        return None
    top = max(finished, key=lambda t: (t.value, -t.number))
    minutes = top.cumulative_s / 60
    return Best(
        trial=top.number,
        params=top.params,
        val_bca=top.value,
        epoch=top.best_epoch,
        pruned=top.status == "pruned",
        minutes=minutes,
        efficiency=top.value / minutes if minutes > 0 else None,
    )
