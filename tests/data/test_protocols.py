"""Holdout protocol and subsets: disjoint, stratified, fixed by the seed."""

from collections import Counter

import pytest

from serbench.errors import DataError
from serbench.data.folds import holdout_split, take_subset
from serbench.spec import HoldoutProtocol, SubsetSpec
from serbench.data.adapters.emodb import EmoDB


@pytest.fixture(scope="module")
def corpus(emodb_root):
    return EmoDB().scan(emodb_root).utterances


def test_holdout_splits_are_disjoint_and_cover_the_corpus(corpus):
    split = holdout_split(corpus, HoldoutProtocol(), seed=0)
    train, val, test = ({u.id for u in part} for part in (split.train, split.val, split.test))
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == {u.id for u in corpus}
    files = [u.path for u in split.train + split.val + split.test]
    assert len(files) == len(set(files))


def test_holdout_sizes_follow_the_fractions(corpus):
    split = holdout_split(corpus, HoldoutProtocol(test_fraction=0.2, val_fraction=0.2), seed=0)
    assert len(split.test) == 107  # ceil(0.2 * 535)
    assert len(split.val) == 86  # ceil(0.2 * 428)
    assert len(split.train) == 535 - 107 - 86


def test_holdout_is_stratified(corpus):
    split = holdout_split(corpus, HoldoutProtocol(), seed=0)
    whole = Counter(u.label for u in corpus)
    for part in (split.test, split.val):
        counts = Counter(u.label for u in part)
        for label, n in whole.items():
            assert abs(counts[label] / len(part) - n / len(corpus)) < 0.03


def test_holdout_depends_on_the_seed_only(corpus):
    a = holdout_split(corpus, HoldoutProtocol(), seed=1)
    b = holdout_split(list(corpus), HoldoutProtocol(), seed=1)
    c = holdout_split(corpus, HoldoutProtocol(), seed=2)
    assert [u.id for u in a.test] == [u.id for u in b.test]
    assert [u.id for u in a.test] != [u.id for u in c.test]


def test_subset_caps_each_class_and_is_seeded(corpus):
    subset = take_subset(corpus, SubsetSpec(per_class=5), seed=0)
    assert Counter(u.label for u in subset) == {label: 5 for label in EmoDB.classes}
    assert subset == take_subset(corpus, SubsetSpec(per_class=5), seed=0)
    assert subset != take_subset(corpus, SubsetSpec(per_class=5), seed=1)


def test_subset_by_fraction_keeps_class_balance(corpus):
    subset = take_subset(corpus, SubsetSpec(fraction=0.1), seed=0)
    counts = Counter(u.label for u in subset)
    assert counts["anger"] == 13 and counts["disgust"] == 5
    assert len(subset) == sum(max(1, round(n * 0.1)) for n in Counter(u.label for u in corpus).values())


def test_too_small_for_a_stratified_split_is_a_clear_error(corpus):
    tiny = take_subset(corpus, SubsetSpec(per_class=1), seed=0)
    with pytest.raises(DataError, match="too few utterances"):
        holdout_split(tiny, HoldoutProtocol(), seed=0)


from serbench.data.folds import loso_folds, make_folds, speaker_holdout_split  # noqa: E402
from serbench.spec import LosoProtocol, SpeakerHoldoutProtocol  # noqa: E402


def assert_disjoint(split):
    parts = [split.train, split.val, split.test]
    ids = [{u.id for u in part} for part in parts]
    paths = [{u.path for u in part} for part in parts]
    for a in range(3):
        for b in range(a + 1, 3):
            assert not ids[a] & ids[b] and not paths[a] & paths[b]


def speakers(part):
    return {u.speaker for u in part}


@pytest.mark.parametrize(
    "protocol",
    [
        HoldoutProtocol(),
        SpeakerHoldoutProtocol(name="speaker-holdout"),
        SpeakerHoldoutProtocol(name="speaker-holdout", test_speakers=["03", "16"]),
        LosoProtocol(name="loso"),
    ],
    ids=["holdout", "speaker-holdout", "speaker-holdout-named", "loso"],
)
def test_every_protocol_keeps_files_disjoint_and_covers_the_corpus(corpus, protocol):
    for fold in make_folds(corpus, protocol, seed=0):
        assert_disjoint(fold.split)
        assert len(fold.split.train) + len(fold.split.val) + len(fold.split.test) == len(corpus)


@pytest.mark.parametrize("seed", [0, 1])
def test_speaker_holdout_keeps_speakers_disjoint(corpus, seed):
    fold = speaker_holdout_split(corpus, SpeakerHoldoutProtocol(name="speaker-holdout"), seed)
    train, val, test = speakers(fold.split.train), speakers(fold.split.val), speakers(fold.split.test)
    assert not train & val and not train & test and not val & test
    assert (len(train), len(val), len(test)) == (6, 2, 2)
    assert set(fold.test_speakers) == test


def test_named_test_speakers_are_the_test_set(corpus):
    fold = speaker_holdout_split(corpus, SpeakerHoldoutProtocol(name="speaker-holdout", test_speakers=["03", "16"]), 0)
    assert speakers(fold.split.test) == {"03", "16"}
    with pytest.raises(DataError, match="unknown speakers"):
        speaker_holdout_split(corpus, SpeakerHoldoutProtocol(name="speaker-holdout", test_speakers=["99"]), 0)


def test_loso_on_emodb_gives_ten_speaker_disjoint_folds(corpus):
    folds = loso_folds(corpus, LosoProtocol(name="loso"), seed=0)
    assert len(folds) == 10
    assert sorted(f.test_speakers[0] for f in folds) == sorted(speakers(corpus))
    for fold in folds:
        train, val, test = speakers(fold.split.train), speakers(fold.split.val), speakers(fold.split.test)
        assert len(test) == 1 and len(val) == 2 and len(train) == 7
        assert not train & val and not train & test and not val & test
    # every utterance is tested exactly once over the folds
    tested = [u.id for f in folds for u in f.split.test]
    assert sorted(tested) == sorted(u.id for u in corpus)


def test_loso_can_run_a_chosen_subset_of_folds(corpus):
    folds = loso_folds(corpus, LosoProtocol(name="loso", folds=["08", "03"]), seed=0)
    assert [f.test_speakers for f in folds] == [("03",), ("08",)]


def test_subset_by_speakers(corpus):
    subset = take_subset(corpus, SubsetSpec(speakers=["03", "08"], per_class=3), seed=0)
    assert speakers(subset) == {"03", "08"}
    assert max(Counter(u.label for u in subset).values()) == 3
    with pytest.raises(DataError, match="speakers"):
        take_subset(corpus, SubsetSpec(speakers=["77"]), seed=0)


def ids(part):
    return {u.id for u in part}


def test_validation_folds_partition_the_non_test_utterances_stratified(corpus):
    one = holdout_split(corpus, HoldoutProtocol(), seed=0)
    split = holdout_split(corpus, HoldoutProtocol(val_folds=5), seed=0)
    assert ids(split.test) == ids(one.test)  # the test split does not depend on val_folds
    runs = split.validation_runs()
    assert len(runs) == 5 and (runs[0][0], runs[0][1]) == (split.train, split.val)
    vals = [ids(val) for _, val in runs]
    assert set().union(*vals) == ids(split.selection) and sum(map(len, vals)) == len(split.selection)
    whole = Counter(u.label for u in split.selection)
    for train, val in runs:
        assert ids(train) | ids(val) == ids(split.selection) and not ids(train) & ids(val)
        counts = Counter(u.label for u in val)
        assert all(abs(counts[label] - n / 5) <= 1 for label, n in whole.items())  # stratified
    assert one.validation_runs() == [(one.train, one.val)]


def test_speaker_validation_folds_are_disjoint_speaker_groups_outside_the_test_speaker(corpus):
    one = loso_folds(corpus, LosoProtocol(name="loso", folds=["03"]), seed=0)[0]
    fold = loso_folds(corpus, LosoProtocol(name="loso", folds=["03"], val_folds=3), seed=0)[0]
    groups = [speakers(val) for _, val in fold.split.validation_runs()]
    assert [len(group) for group in groups] == [2, 2, 2]
    assert not groups[0] & groups[1] and not groups[1] & groups[2] and not groups[0] & groups[2]
    assert all("03" not in group for group in groups)
    for train, val in fold.split.validation_runs():
        assert speakers(train) == speakers(corpus) - {"03"} - speakers(val)
    assert ids(fold.split.test) == ids(one.split.test)
    # one validation fold is the draw the protocol always made
    assert loso_folds(corpus, LosoProtocol(name="loso", val_folds=1), seed=0)[0].split.val == \
        loso_folds(corpus, LosoProtocol(name="loso"), seed=0)[0].split.val
    with pytest.raises(DataError, match="val_folds: 5 groups of 2 validation speakers need at least 11"):
        loso_folds(corpus, LosoProtocol(name="loso", val_folds=5), seed=0)
    held = speaker_holdout_split(corpus, SpeakerHoldoutProtocol(name="speaker-holdout", val_folds=3), 0)
    assert [len(speakers(val)) for _, val in held.split.validation_runs()] == [2, 2, 2]


def test_validation_folds_need_enough_of_every_class(corpus):
    small = take_subset(corpus, SubsetSpec(per_class=5), seed=0)  # 4 of each class outside the test split
    with pytest.raises(DataError, match="val_folds: 6 stratified validation folds need at least 6 utterances"):
        holdout_split(small, HoldoutProtocol(val_folds=6), seed=0)
