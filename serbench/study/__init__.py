"""A study (:mod:`.study`, the ``Study`` callers use), one module a job:

- :mod:`.resolve`: the job's plugins from the registry, a fresh engine, the backend;
- :mod:`.output`: the output folder (``study.json`` fingerprint, resume, ``result.json``);
- :mod:`.inputs`: everything loaded before the first trial (backbone, corpus and folds,
  transfer targets, feature cache), as one ``Inputs``;
- :mod:`.fold_loop`: every fold: its search, its final model, its scores;
- :mod:`.scheduler`: ``parallel`` calls in flight over the folds, on the backend's pool;
- :mod:`.search`: a fold's search (asks, tells, lost trials, the budget);
- :mod:`.replay`: a fold's journal replayed to a fresh engine for ``--resume``;
- :mod:`.slot`: the worker on an execution slot (its inputs loaded once);
- :mod:`.trial`: train and score one configuration (a trial, or the final model);
- :mod:`.assemble`: ``FoldResult`` and ``Result`` from the folds;
- :mod:`.events`: the progress callbacks and ``Stage`` (trial or final)."""
