"""A study (:mod:`.study`, the ``Study`` callers use), one module a job:

- :mod:`.resolve`: the job's plugins from the registry, a fresh engine;
- :mod:`.output`: the output folder (``study.json`` fingerprint, resume, ``result.json``);
- :mod:`.inputs`: everything loaded before the first trial (backbone, corpus and folds,
  transfer targets, feature cache), as one ``Inputs``;
- :mod:`.fold_loop`: every fold: its search, its final model, its scores;
- :mod:`.search`: a fold's ask/tell loop;
- :mod:`.trial`: train and score one configuration (a trial, or the final model);
- :mod:`.assemble`: ``FoldResult`` and ``Result`` from the folds;
- :mod:`.events`: the progress callbacks and ``Stage`` (trial or final)."""
