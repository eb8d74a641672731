"""Holdout protocol and subsets: disjoint, stratified, fixed by the seed."""

from collections import Counter

import pytest

from serbench.errors import DataError
from serbench.protocols import holdout_split, take_subset
from serbench.spec import HoldoutProtocol, SubsetSpec
from serbench_plugins.datasets.emodb import EmoDB


@pytest.fixture(scope="module")
def corpus(emodb_root):
    return EmoDB().scan(emodb_root)


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
