"""The HPO study: one job spec from data to ``result.json``.

1. resolve the job's engine, dataset adapter, backbone and execution backend from the
   plugin registry (:mod:`.resolve`);
2. lock and check the output folder (:mod:`.output`), then load everything the trials
   need: the backbone, the corpus (relabelled, subset) cut into the protocol's folds, the
   transfer targets (:mod:`.inputs`); open the backend's pool of ``execution.parallel``
   slots (:mod:`.slot`: each slot's worker keeps its inputs loaded between trials);
3. in each fold (:mod:`.fold_loop`), a search (:mod:`.search`): the engine asks, a slot
   fine-tunes on ``train`` and scores BCA on ``val`` (:mod:`.trial`), the engine is told,
   the driver journals the trial -- with ``parallel`` trials in flight
   (:mod:`.scheduler`);
4. in each fold, the best configuration is trained on ``train + val`` and scored once on
   ``test``, and on every transfer target;
5. ``result.json`` (:mod:`.assemble`) is written atomically.

No fold's test data is seen before its step 4 -- unless the job asks for the paper's
optimistic protocol (``select_on: test``), where step 3 scores trials on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serbench.execution.backend import ExecutionBackend, Pool

from serbench.plugin.registry import Registry, registry
from serbench.results.provenance import serbench_checkout
from serbench.results.schema import ExecutionUsed, Result, TrialRecord
from serbench.spec import JobSpec
from serbench.study.assemble import study_result
from serbench.study.events import StudyEvents
from serbench.study.fold_loop import FoldLoop, trials_per_node
from serbench.study.inputs import Inputs, load_inputs
from serbench.study.models import save_models
from serbench.study.output import StudyOutput, now
from serbench.study.resolve import make_backend, make_engine, resolve_plugins
from serbench.study.slot import InProcessWorkers, LoadingWorkers

@dataclass(frozen=True)
class Prepared:
    """A study ready for its first trial."""

    started_at: str
    wall_start: float  # time.perf_counter() when preparing began
    done: list[TrialRecord]  # journalled trials resumed from (none unless resuming)
    inflight: list[dict[str, Any]]  # trials inflight.json named when resuming (none otherwise)
    inputs: Inputs
    backend: ExecutionBackend
    pool: Pool


class Study:
    """Runs one job. ``out_dir`` receives ``study.json``, ``trials.jsonl``,
    ``result.json`` and (unless ``save_model`` is False) the final model's folder
    (:mod:`.models`); from :meth:`prepare` to the end of :meth:`run` this process holds its
    lock (:mod:`serbench.results.lock`), so no other run writes there meanwhile."""

    def __init__(
        self,
        spec: JobSpec,
        out_dir: Path,
        data_home: Path | None = None,
        events: StudyEvents | None = None,
        reg: Registry | None = None,
        save_model: bool = True,
    ):
        self.spec = spec
        self.save_model = save_model
        self.out_dir = out_dir
        self.data_home = data_home
        self.events = events or StudyEvents()
        self.registry = reg or registry()
        self.plugins = resolve_plugins(spec, self.registry)
        serbench_checkout()  # the commit as the study starts (cached for the process), not as it ends
        self.output = StudyOutput(out_dir, spec)
        self.prepared: Prepared | None = None  # by prepare()
        self._pool: Pool | None = None  # by prepare(), stopped by close()

    def prepare(self, force: bool = False, resume: bool = False) -> Prepared:
        """Everything a bad spec, corpus or model source can make fail, before any trial:
        output folder, threads, corpora, folds, audio, backbone."""
        started_at, wall_start = now(), time.perf_counter()
        done = self.output.check(force, resume)  # locks the folder until run() ends
        inflight = self.output.inflight.read() if resume else []
        try:
            inputs = load_inputs(self.spec, self.plugins, self.registry, self.data_home, self.out_dir, self.events.step)
            make_engine(self.spec, self.plugins)  # the engine may reject the space or its options
            backend = make_backend(self.spec, self.plugins)
            if backend.in_process:
                workers = InProcessWorkers(self.spec, inputs, self.events)
            else:
                workers = LoadingWorkers(self.spec, self.data_home, self.out_dir)
            execution = self.spec.execution
            self._pool = backend.open(execution.parallel, self.spec.resources, workers)  # a slot fits, or UserError
            self.output.start(resume, done)
        except BaseException:
            self.close()
            raise
        self.prepared = Prepared(started_at, wall_start, done, inflight, inputs, backend, self._pool)
        data = inputs.data
        sizes = data.folds[0].split.sizes()
        folds = f"{len(data.folds)} folds, first: " if len(data.folds) > 1 else ""
        inner = len(data.folds[0].split.inner)
        runs = f" (each trial: {inner} validation folds, this the first)" if inner else ""
        self.events.step(
            f"{data.corpus.adapter}: {len(data.corpus.utterances)} utterances, {len(data.classes)} classes; "
            f"{folds}train {sizes['train']}, val {sizes['val']}{runs}, test {sizes['test']}; torch threads {inputs.threads}"
            + (f"; trials on {backend.describe()}, {execution.parallel} in flight" if not backend.in_process else "")
            + (f"; resuming after {len(done)} finished trials" if resume else "")
        )
        if self.spec.select_on == "test":
            self.events.step(
                "select_on: test -- trials are scored on the test split (the paper's optimistic protocol): "
                "the test score this reports is selected on itself"
            )
        return self.prepared

    def run(self, force: bool = False, resume: bool = False) -> Result:
        """Prepare (unless done), search and score every fold, write ``result.json``;
        the folder's lock is released however this ends."""
        prepared = self.prepared if self.prepared is not None else self.prepare(force, resume)
        try:
            loop = FoldLoop(self.spec, self.plugins, prepared.inputs, self.output, self.events, self.save_model)
            runs = loop.run(prepared.pool, prepared.done, prepared.inflight)
            execution = ExecutionUsed(
                backend=prepared.backend.name,
                parallel=self.spec.execution.parallel,
                where=prepared.backend.describe(),
                slot_cpus=prepared.pool.resources.cpus,
                slot_memory_gb=prepared.pool.resources.memory_gb,
                trials_per_node=trials_per_node(runs),
            )
            result = study_result(
                self.spec, self.plugins, prepared.inputs, runs, len(prepared.done), prepared.started_at,
                prepared.wall_start, execution, loop.decided_by,
            )
            if self.save_model:
                self.events.step("saving the final model" + ("s" if len(runs) > 1 else ""))
                result = save_models(self.spec, self.plugins, prepared.inputs, runs, result, self.out_dir)
            self.output.write_result(result)
        finally:
            self.close()
        return result

    def close(self) -> None:
        """Stop the execution pool and release the output folder's lock, which
        :meth:`prepare` took (for a study prepared and never run; :meth:`run` does this
        itself)."""
        pool, self._pool = self._pool, None
        try:
            if pool is not None:
                pool.close()
        finally:
            self.output.close()
