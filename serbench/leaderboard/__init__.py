"""Aggregating results: the board (:mod:`.board`), its text formats (:mod:`.formats`),
the HTML report (:mod:`.html`) with its figures (:mod:`.plots`) and the report's checks
(:mod:`.check`)."""
