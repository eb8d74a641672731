"""The model card, ``README.md`` beside a saved model, written from its ``model.json``:
what it predicts, what it was trained on and how it was chosen, its scores, how to use
it, and its limits."""

from __future__ import annotations

from serbench.deploy.format import ModelInfo

# What the corpora serbench ships adapters for are (a user's own corpus says nothing).
CORPORA = {
    "emodb": "EmoDB (Berlin Database of Emotional Speech): 10 German actors (5 female, 5 male) reading 10 "
    "German sentences in 7 emotions, studio recordings",
    "ravdess": "RAVDESS: 24 North American English actors, 2 fixed English sentences",
    "cremad": "CREMA-D: 91 English-speaking actors of varied ages and ethnicities, 12 English sentences",
}


def model_card(info: ModelInfo) -> str:
    t, scores = info.training, info.scores
    test = scores.test
    lines = [
        f"# {t.job}: speech emotion recognition ({len(info.classes)} classes)",
        "",
        f"A {info.backbone.name} encoder (`{info.backbone.source}`) fine-tuned by serbench "
        f"{info.serbench.get('version')} to label a recording with one of: {', '.join(info.classes)}.",
        "",
        "## Use",
        "",
        "```",
        "serbench predict MODEL_FOLDER recording.wav --format table",
        "```",
        "",
        "```python",
        "import serbench",
        "model = serbench.load_model(\"MODEL_FOLDER\")",
        "print(model.predict_files([\"recording.wav\"])[0].label)",
        "```",
        "",
        f"Audio is read mono at {info.sample_rate} Hz. Recordings longer than {info.maxlen / info.sample_rate:g} s "
        "(`maxlen`) are cut into windows of that length, side by side (the last one ending at the recording's end); "
        "the file's probabilities are the "
        "mean of its windows'. Recordings shorter than 0.1 s are refused. The pre-trained encoder is loaded from "
        f"`{info.backbone.source}` and must have the recorded fingerprint `{info.backbone.fingerprint[:16]}…`.",
        "",
        *_speaker_norm_use(t.params, t.train_speakers),
        "## Training",
        "",
        f"- corpus: `{t.dataset}`, {t.utterances} training utterances (train + validation) of "
        f"{len(t.train_speakers)} speakers; audio fingerprint `{t.audio_fingerprint[:16]}…`"
        + (f", checked against `{t.manifest}`" if t.manifest else ""),
        f"- protocol: {_protocol(t.protocol)}; fold {t.fold}"
        + (f", test speakers {', '.join(t.test_speakers)}" if t.test_speakers else ""),
        f"- chosen by: `{t.engine}` search, {t.trials} trials (pruner `{t.pruner}`), on validation data only; "
        f"best trial {t.best_trial}, validation BCA {t.best_val_bca:.3f}",
        f"- hyperparameters: {_params(t.params)}",
        f"- seed {t.seed}; job fingerprint `{t.job_fingerprint[:16]}…`; serbench commit "
        f"`{(info.serbench.get('commit') or 'unknown')[:12]}`",
        f"- stored weights: {info.weights.bytes / 1e6:.2f} MB, {info.weights.parameters:,} numbers "
        f"({info.weights.encoder}); the rest is the pre-trained encoder",
        "",
        "## Scores",
        "",
        f"Test split, scored once after the search: balanced class accuracy (BCA) **{test['bca']:.3f}** "
        f"(accuracy {test['accuracy']:.3f}, n = {test['n']}).",
        "",
        "| class | test recall |",
        "|---|---|",
        *[f"| {c} | {r:.3f} |" for c, r in test["per_class_recall"].items()],
        "",
    ]
    if scores.transfer:
        lines += [
            "Zero-shot on other corpora (through the job's label map, over the classes both share):",
            "",
            "| target | n | BCA | accuracy |",
            "|---|---|---|---|",
            *[f"| {name} | {s['n']} | {s['bca']:.3f} | {s['accuracy']:.3f} |" for name, s in scores.transfer.items()],
            "",
        ]
    lines += [
        "## Limits",
        "",
        f"- Trained on {CORPORA.get(t.dataset, f'the corpus `{t.dataset}`')}: acted speech, in that corpus's "
        "language only" + (f". The corpus's licence: {t.licence}." if t.licence else "."),
        "- Acted emotions are more intense and more prototypical than spontaneous ones; expect lower scores on "
        "natural speech, other languages, other microphones and noisy recordings.",
        f"- The test score rests on {test['n']} utterances"
        + (f" of {len(t.test_speakers)} speakers" if t.test_speakers else "")
        + ": read it with that uncertainty.",
        "- Emotion recognition about people raises consent and privacy questions; do not use it to make "
        "decisions about individuals.",
        "",
    ]
    return "\n".join(lines)


def _speaker_norm_use(params: dict, speakers: list[str]) -> list[str]:
    """How a ``speaker_norm`` model is called: with one speaker's recordings together, or
    (``speaker_enrolment``) naming a speaker it trained on."""
    if not params.get("speaker_norm"):
        return []
    lines = ["This model standardises each speaker with that speaker's own statistics (`speaker_norm`): "
             "the recordings of one `predict` call are taken to be one speaker's (at least two) and "
             "standardised together."]
    if params.get("speaker_enrolment"):
        lines[0] += (" It also keeps the training statistics of the speakers it trained on "
                     f"({', '.join(speakers)}): `serbench predict MODEL_FOLDER --speaker ID ...` "
                     "(`predict_files(..., speaker=ID)`) scores an enrolled speaker's recordings with those, "
                     "as its test split was scored.")
    return [*lines, ""]


def _protocol(protocol: dict) -> str:
    name = protocol.get("name", "?")
    rest = ", ".join(f"{k} {v}" for k, v in protocol.items() if k != "name" and v is not None)
    return f"`{name}`" + (f" ({rest})" if rest else "")


def _params(params: dict) -> str:
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in params.items())
