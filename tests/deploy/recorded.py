"""What the deploy tests share (tests/deploy/, on the path of its tests): a real study run
once for a test module, and the check that a saved model predicts a study's test
utterances exactly as the study recorded them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from serbench.results.metrics import score_predictions

PROBABILITY_TOLERANCE = 1e-5


def serbench(*args: object) -> int:
    """``serbench ARGS`` in this process (for module fixtures, which cannot use ``cli``)."""
    from serbench.cli.main import main

    return main([str(a) for a in args])


def run_study(job: dict[str, Any] | Path, out: Path, *flags: str) -> tuple[Path, dict[str, Any]]:
    """``serbench run JOB --out OUT FLAGS``, which must succeed; (the job's result folder,
    its result.json)."""
    if isinstance(job, dict):
        path = out / f"{job['name']}.yaml"
        path.write_text(yaml.safe_dump(job), encoding="utf-8")
        job = path
        name = path.stem
    else:
        name = yaml.safe_load(job.read_text(encoding="utf-8"))["name"]
    code = serbench("run", job, "--out", out, *flags)
    assert code == 0, f"serbench run {job} exited {code}"
    folder = out / name
    return folder, json.loads((folder / "result.json").read_text(encoding="utf-8"))


def assert_predicts_as_recorded(cli, model: Path, evaluation: dict[str, Any], root: Path) -> dict[str, float]:
    """``serbench predict MODEL <the test files> --cut --format json``: every label equals
    the one the study recorded, every probability is within 1e-5 of it, and BCA and
    confusion matrix recomputed from the output equal the recorded ones exactly.
    Returns the figures (max probability difference, BCA, n)."""
    recorded = evaluation["predictions"]
    assert recorded and len(recorded) == evaluation["n"]
    classes = evaluation["labels"]
    paths = [root / p["id"] for p in recorded]
    code, out, err = cli("predict", model, *paths, "--cut", "--format", "json")
    assert code == 0, err
    output = json.loads(out)
    assert output["classes"] == classes
    assert [Path(f["path"]) for f in output["files"]] == paths
    differences = []
    for clip, predicted in zip(recorded, output["files"]):
        assert predicted["label"] == clip["predicted"], clip["id"]
        assert len(predicted["windows"]) == 1  # --cut: the first maxlen samples, as the study scored
        assert predicted["windows"][0]["start_s"] == 0
        got = np.array([predicted["probabilities"][c] for c in classes])
        differences.append(float(np.abs(got - np.array(clip["probabilities"])).max()))
    assert max(differences) <= PROBABILITY_TOLERANCE, max(differences)
    truth = np.array([classes.index(clip["label"]) for clip in recorded])
    labels = np.array([classes.index(f["label"]) for f in output["files"]])
    score = score_predictions(truth, labels, classes)
    assert score.n == evaluation["n"]
    assert score.bca == evaluation["bca"]
    assert score.confusion_matrix == evaluation["confusion_matrix"]
    assert score.per_class_recall == evaluation["per_class_recall"]
    return {"max_probability_difference": max(differences), "bca": score.bca, "n": score.n}
