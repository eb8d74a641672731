"""A study: prepare the folds, run each fold's search (:mod:`.search`, the ask/tell
loop), train the final model, assemble the result (:mod:`.study`)."""
