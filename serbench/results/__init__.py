"""What a study writes and how it is scored: the result schema (:mod:`.schema`), the
trials journal's in-flight marker (:mod:`.inflight`), metrics (:mod:`.metrics`) and the
provenance of a result (:mod:`.provenance`)."""
