"""The backbone contract as a test kit, for plugin authors and for serbench's own backbones.

One test checks a backbone against every clause of the contract, on a source it can load
and a few real clips (16 kHz mono; :class:`serbench.data.base.Clip` or plain arrays)::

    from serbench.testing.backbones import check_backbone
    from my_package.serbench_plugin import MyBackbone

    def test_my_backbone_keeps_the_backbone_contract(clips):
        check_backbone(MyBackbone, "/models/my-checkpoint", {"layer": 6}, clips)

(``CONTRACT_CHECKS`` holds the checks, for a parametrisation with one test per clause.)
A broken clause raises ``BackboneContractError`` (an ``AssertionError``, and a
:class:`serbench.testing.contract.ContractError`) saying which clause and what was seen.

The clauses:

- ``check_declaration``: a ``Backbone`` subclass with a non-empty ``name`` and
  ``default_source``; ``Options`` rejects unknown keys; the class is cheap to construct
  and ``check_source()`` accepts the source (nothing is loaded).
- ``check_model``: ``build(n)`` gives a ``SERModel`` whose ``encode`` returns one row per
  clip of ``feature_dim`` (or ``(feature_layers, feature_dim)``) and whose head gives ``n``
  logits; the encoder's parameters exist and exclude the head's.
- ``check_deterministic``: features are the same from two encodes, from a model built
  under another seed (trials share one feature cache), and in train mode with the encoder
  frozen (no dropout while frozen); all bit-identical.
- ``check_batch_invariance``: a clip's features alone equal its features in a batch of
  clips of other lengths, within ``atol``.
- ``check_frozen_unchanged``: ``serbench.training.fit.fit`` with the encoder frozen for
  every epoch trains the head and leaves every other parameter and buffer bit-identical,
  and the frozen encoder's features carry no gradient (it runs without autograd; with a
  learned pooling, ``pool``, that is the frames ``encode_frames`` gives, and the head
  includes ``pool``).
- ``check_unfrozen_trains``: an epoch with the encoder unfrozen changes encoder parameters
  and none of its ``fixed_parameters()``.
- ``check_prefix_states``: for a model with a cacheable frozen prefix (``prefix_rows``
  set), features from cached prefix states equal ``encode``'s within ``atol``; nothing to
  check otherwise.
- ``check_input_key``: when a clip shorter than two cut lengths gets different features
  under them, ``input_key`` tells the two apart (or a feature cache would serve one for
  the other).
- ``check_cache_key``: ``cache_key()`` is stable, and changes with the source and with
  every option: for each field of ``Options``, a variant with that field changed to
  another valid value must have another key. The kit finds such a value for booleans,
  literals, enums, numbers, strings and optional fields; ``alternatives={"field": value}``
  gives one where it cannot (or to choose it). A field none of whose other values
  combines with the given options (valid alone, refused with them) is not varied.

Every check takes ``(backbone_cls, source, options=None, clips=(), *, alternatives=None,
other_source=None, maxlen=32000, atol=1e-4)``: ``options`` a mapping (validated by the
backbone's ``Options``) or an ``Options`` instance; at least two ``clips`` of at least
``maxlen / 2`` samples for the checks that encode (they are cut to ``maxlen``);
``other_source`` a second source for ``check_cache_key`` (default: ``source`` with a
suffix, which need not exist: the key is computed, nothing is loaded).
"""

from __future__ import annotations

import enum
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Mapping, Sequence, Union

from pydantic import BaseModel, ValidationError

from serbench.backbones.base import Backbone
from serbench.testing.contract import ContractError, clause, options_problem

if TYPE_CHECKING:
    import numpy as np

    from serbench.backbones.model import SERModel

MAXLEN = 32000  # samples the clips are cut to (2 s at 16 kHz)
ATOL = 1e-4  # tolerance of the batching and prefix checks
NUM_CLASSES = 3


class BackboneContractError(ContractError):
    """A backbone breaks a clause of the backbone contract."""

    kind = "backbone"


def make_backbone(backbone_cls: type[Backbone], source: str, options: Mapping[str, Any] | BaseModel | None = None) -> Backbone:
    """A backbone as a study makes one: the source and validated options."""
    if isinstance(options, BaseModel):
        options = options.model_dump()
    return backbone_cls(source, backbone_cls.Options.model_validate(dict(options or {})))


def build(backbone: Backbone, seed: int = 0, num_classes: int = NUM_CLASSES) -> SERModel:
    """A model as a trial builds one: ``torch.manual_seed(seed)``, then ``build``."""
    import torch

    torch.manual_seed(seed)
    return backbone.build(num_classes)


# --- the clauses ------------------------------------------------------------------------


def check_declaration(backbone_cls, source, options=None, clips=(), **kit) -> None:
    """A ``Backbone`` subclass with a ``name``, a ``default_source`` and an ``Options`` model
    that rejects unknown keys; constructing it and ``check_source()`` load nothing."""
    clause = "declaration"
    if not (isinstance(backbone_cls, type) and issubclass(backbone_cls, Backbone)):
        raise BackboneContractError(backbone_cls, clause, "the class must subclass serbench.backbones.base.Backbone")
    for attribute in ("name", "default_source"):
        if not isinstance(getattr(backbone_cls, attribute, None), str) or not getattr(backbone_cls, attribute):
            raise BackboneContractError(backbone_cls, clause, f"the class needs a non-empty string `{attribute}`")
    problem = options_problem(backbone_cls.Options, _options_dict(options))
    if problem is not None:
        raise BackboneContractError(backbone_cls, clause, problem)
    with _clause(backbone_cls, clause):
        backbone = make_backbone(backbone_cls, source, options)
        where = backbone.check_source()
    if backbone.source != source:
        raise BackboneContractError(backbone_cls, clause, f"constructed with source {source!r}, it holds {backbone.source!r}")
    if not isinstance(where, str) or not where:
        raise BackboneContractError(backbone_cls, clause, f"check_source() returned {where!r}, not where the model comes from")


def check_model(backbone_cls, source, options=None, clips=(), *, maxlen=MAXLEN, **kit) -> None:
    """``build(n)``: a ``SERModel``; ``encode`` gives a row per clip of the declared shape;
    ``classify`` gives ``n`` logits; encoder parameters exist and are not the head's."""
    import torch

    from serbench.backbones.model import SERModel

    clause = "model"
    waves = _waves(clips, maxlen, 2)
    with _clause(backbone_cls, clause):
        model = build(make_backbone(backbone_cls, source, options), num_classes=NUM_CLASSES + 2)
    if not isinstance(model, SERModel):
        raise BackboneContractError(backbone_cls, clause, f"build() returned a {type(model).__name__}, not a SERModel")
    head = {id(p) for module in model.head_modules() for p in module.parameters()}
    encoder = list(model.encoder_parameters())
    if not encoder:
        raise BackboneContractError(backbone_cls, clause, "encoder_parameters() is empty: encoder_modules() names no weights")
    if any(id(p) in head for p in encoder):
        raise BackboneContractError(backbone_cls, clause, "encoder_parameters() includes the head's: freezing would freeze the head")
    model.set_encoder_trainable(False)
    model.eval()
    with _clause(backbone_cls, clause), torch.no_grad():
        features = model.encode(waves, maxlen)
        logits = model.classify(features)
    expected = (len(waves), model.feature_dim) if model.feature_layers is None else (
        len(waves), model.feature_layers, model.feature_dim)
    if tuple(features.shape) != expected:
        raise BackboneContractError(
            backbone_cls, clause, f"encode() of {len(waves)} clips has shape {tuple(features.shape)}, not {expected}"
        )
    if tuple(logits.shape) != (len(waves), NUM_CLASSES + 2):
        raise BackboneContractError(
            backbone_cls, clause, f"built for {NUM_CLASSES + 2} classes, the head gives logits of shape {tuple(logits.shape)}"
        )
    if not torch.isfinite(features).all():
        raise BackboneContractError(backbone_cls, clause, "encode() gave non-finite features")


def check_deterministic(backbone_cls, source, options=None, clips=(), *, maxlen=MAXLEN, **kit) -> None:
    """Frozen features, bit for bit: two encodes of one model; a model built under another
    seed; the same model in train mode (a frozen encoder runs no dropout)."""
    import torch

    clause = "deterministic features"
    waves = _waves(clips, maxlen, 2)
    with _clause(backbone_cls, clause):
        backbone = make_backbone(backbone_cls, source, options)
        model, other = _frozen(build(backbone, seed=0)), _frozen(build(backbone, seed=1))
        with torch.no_grad():
            first, again, rebuilt = model.encode(waves, maxlen), model.encode(waves, maxlen), other.encode(waves, maxlen)
            model.train()
            training = model.encode(waves, maxlen)
    for what, features in (
        ("a second encode of the same clips", again),
        ("a model built after torch.manual_seed(1) (trials share one feature cache)", rebuilt),
        ("train mode with the encoder frozen (dropout must not run while frozen)", training),
    ):
        if not torch.equal(first, features):
            raise BackboneContractError(
                backbone_cls, clause, f"{what} gives other features (max difference {_max_diff(first, features):.3g})"
            )


def check_batch_invariance(backbone_cls, source, options=None, clips=(), *, maxlen=MAXLEN, atol=ATOL, **kit) -> None:
    """Each clip's features alone equal its features in one batch of all the clips, cut to
    different lengths (so the shorter ones are padded), within ``atol``."""
    import torch

    clause = "a clip alone = in a batch"
    waves = _waves(clips, maxlen, 2, distinct_lengths=True)
    with _clause(backbone_cls, clause):
        model = _frozen(build(make_backbone(backbone_cls, source, options)))
        with torch.no_grad():
            batched = model.encode(waves, maxlen)
            alone = torch.cat([model.encode([wave], maxlen) for wave in waves])
    for index, wave in enumerate(waves):
        if not torch.allclose(alone[index], batched[index], atol=atol, rtol=0):
            raise BackboneContractError(
                backbone_cls,
                clause,
                f"clip {index} ({len(wave)} samples, in a batch of lengths {[len(w) for w in waves]}) differs by "
                f"{_max_diff(alone[index], batched[index]):.3g} from its features alone (atol {atol:g})",
            )


def check_frozen_unchanged(backbone_cls, source, options=None, clips=(), *, maxlen=MAXLEN, **kit) -> None:
    """``fit`` for two epochs with ``unfreeze`` 2 (frozen throughout): the head trains, every
    parameter and buffer outside the head is bit-identical afterwards, and while frozen the
    encoder's features carry no gradient."""
    from serbench.spec import TrainParams
    from serbench.training.fit import fit

    clause = "frozen means unchanged"
    training = _clips(clips, maxlen, 2)
    with _clause(backbone_cls, clause):
        model = build(make_backbone(backbone_cls, source, options))
        head_before = _state(_head_state(model))
        before = _state(_encoder_state(model))
        model.set_encoder_trainable(False)
        model.train()
        waves = [c.wave for c in training[:2]]
        # A learned pooling (``pool``) is the head's: the encoder's frames must carry no
        # graph, the pooled features may (through the pooling only).
        encoded = model.encode_frames(waves, maxlen) if model.pool is not None else [model.encode(waves, maxlen)]
        if any(tensor.requires_grad for tensor in encoded):
            raise BackboneContractError(
                backbone_cls, clause, "with the encoder frozen, encode() builds an autograd graph (it should run without one)"
            )
        params = TrainParams(lr=1e-2, epochs=2, unfreeze=2, maxlen=maxlen, batch_size=2)
        fit(model, training, params, seed=0)
    changed = _changed(before, _state(_encoder_state(model)))
    if changed:
        raise BackboneContractError(
            backbone_cls, clause, f"two frozen epochs changed {len(changed)} encoder tensors (first: {changed[0]})"
        )
    if not _changed(head_before, _state(_head_state(model))):
        raise BackboneContractError(backbone_cls, clause, "two frozen epochs left the head unchanged: nothing trained")


def check_unfrozen_trains(backbone_cls, source, options=None, clips=(), *, maxlen=MAXLEN, **kit) -> None:
    """``fit`` for one epoch with ``unfreeze`` 0: some encoder parameters change, none of the
    ``fixed_parameters()``, and the model is no longer ``encoder_pristine``."""
    import torch

    from serbench.spec import TrainParams
    from serbench.training.fit import fit

    clause = "unfrozen trains"
    training = _clips(clips, maxlen, 2)
    with _clause(backbone_cls, clause):
        model = build(make_backbone(backbone_cls, source, options))
        trained = {id(p) for p in model.encoder_parameters()}
        names = {id(p): name for name, p in model.named_parameters()}
        fixed = {names.get(id(p), repr(p.shape)): p.detach().clone() for p in model.fixed_parameters()}
        before = {id(p): p.detach().clone() for p in model.parameters() if id(p) in trained}
        params = TrainParams(lr=1e-3, epochs=1, unfreeze=0, maxlen=maxlen, batch_size=2, standardize=False)
        fit(model, training, params, seed=0)
    if model.encoder_pristine:
        raise BackboneContractError(backbone_cls, clause, "after an unfrozen epoch the model still says encoder_pristine")
    if not any(not torch.equal(before[id(p)], p.detach()) for p in model.parameters() if id(p) in trained):
        raise BackboneContractError(
            backbone_cls, clause, f"an unfrozen epoch changed none of the {len(before)} encoder parameters"
        )
    now = {names.get(id(p), repr(p.shape)): p.detach() for p in model.fixed_parameters()}
    moved = [name for name in fixed if not torch.equal(fixed[name], now[name])]
    if moved:
        raise BackboneContractError(backbone_cls, clause, f"an unfrozen epoch changed fixed parameters: {moved[:3]}")


def check_prefix_states(backbone_cls, source, options=None, clips=(), *, maxlen=MAXLEN, atol=ATOL, **kit) -> None:
    """With ``prefix_rows`` set: ``encode_from_prefix(encode_prefix(waves))`` equals
    ``encode(waves)`` within ``atol``, batched as the cache batches them."""
    import torch

    clause = "prefix states"
    with _clause(backbone_cls, clause):
        model = _frozen(build(make_backbone(backbone_cls, source, options)))
    if model.prefix_rows is None:
        return
    waves = _waves(clips, maxlen, 2, distinct_lengths=True)
    with _clause(backbone_cls, clause), torch.no_grad():
        states = [model.encode_prefix([wave], maxlen)[0] for wave in waves]
        from_prefix = model.encode_from_prefix(states, [len(w) for w in waves])
        direct = model.encode(waves, maxlen)
    if tuple(from_prefix.shape) != tuple(direct.shape) or not torch.allclose(from_prefix, direct, atol=atol, rtol=0):
        raise BackboneContractError(
            backbone_cls,
            clause,
            f"features from cached prefix states differ from encode() (max difference {_max_diff(from_prefix, direct):.3g}, "
            f"atol {atol:g})",
        )


def check_input_key(backbone_cls, source, options=None, clips=(), *, maxlen=MAXLEN, **kit) -> None:
    """A clip shorter than both ``maxlen`` and ``2 * maxlen`` whose features differ between
    the two cuts must have a different ``input_key`` under each."""
    import torch

    clause = "input key"
    wave = _waves(clips, maxlen, 1)[0][: maxlen // 2]
    with _clause(backbone_cls, clause):
        model = _frozen(build(make_backbone(backbone_cls, source, options)))
        with torch.no_grad():
            short, long = model.encode([wave], maxlen), model.encode([wave], 2 * maxlen)
        keys = model.input_key(len(wave), maxlen), model.input_key(len(wave), 2 * maxlen)
    if not torch.equal(short, long) and keys[0] == keys[1]:
        raise BackboneContractError(
            backbone_cls,
            clause,
            f"a clip of {len(wave)} samples has other features cut at {maxlen} and at {2 * maxlen}, but input_key "
            f"gives {keys[0]!r} for both: a feature cache would serve one for the other",
        )


def check_cache_key(backbone_cls, source, options=None, clips=(), *, alternatives=None, other_source=None, **kit) -> None:
    """``cache_key()`` is a string, the same for two equal backbones, and another for another
    source and for a change of any one option (see the module docstring)."""
    clause = "cache key"
    base_options = _options_dict(options)
    with _clause(backbone_cls, clause):
        key = make_backbone(backbone_cls, source, base_options).cache_key()
        again = make_backbone(backbone_cls, source, base_options).cache_key()
    if not isinstance(key, str) or not key:
        raise BackboneContractError(backbone_cls, clause, f"cache_key() returned {key!r}, not a non-empty string")
    if key != again:
        raise BackboneContractError(backbone_cls, clause, "two equal backbones give different cache keys")
    other = other_source if other_source is not None else f"{source}-kit-other"
    with _clause(backbone_cls, clause):
        other_key = make_backbone(backbone_cls, other, base_options).cache_key()
    if other_key == key:
        raise BackboneContractError(backbone_cls, clause, f"sources {source!r} and {other!r} give the same cache key")
    for field, value in _option_variants(backbone_cls, base_options, dict(alternatives or {})):
        variant = {**base_options, field: value}
        with _clause(backbone_cls, clause):
            changed = make_backbone(backbone_cls, source, variant).cache_key()
        if changed == key:
            raise BackboneContractError(
                backbone_cls, clause, f"option {field}={value!r} gives the same cache key as {field}="
                f"{_validated(backbone_cls, base_options).model_dump().get(field)!r}: a feature cache would mix them"
            )


CONTRACT_CHECKS = (
    check_declaration,
    check_model,
    check_deterministic,
    check_batch_invariance,
    check_frozen_unchanged,
    check_unfrozen_trains,
    check_prefix_states,
    check_input_key,
    check_cache_key,
)


def check_backbone(
    backbone_cls: type[Backbone],
    source: str,
    options: Mapping[str, Any] | BaseModel | None = None,
    clips: Sequence[Any] = (),
    *,
    alternatives: Mapping[str, Any] | None = None,
    other_source: str | None = None,
    maxlen: int = MAXLEN,
    atol: float = ATOL,
) -> None:
    """Run every clause of the contract on ``backbone_cls`` loaded from ``source`` with these
    ``options``, on ``clips``; the first broken one raises ``BackboneContractError``.
    ``alternatives``: another valid value for options the kit cannot vary itself."""
    for check in CONTRACT_CHECKS:
        check(
            backbone_cls, source, options, clips,
            alternatives=alternatives, other_source=other_source, maxlen=maxlen, atol=atol,
        )


# --- helpers --------------------------------------------------------------------------


def _clause(backbone_cls, name: str):
    return clause(BackboneContractError, backbone_cls, name)


def _options_dict(options: Mapping[str, Any] | BaseModel | None) -> dict[str, Any]:
    if isinstance(options, BaseModel):
        return options.model_dump()
    return dict(options or {})


def _validated(backbone_cls, options: Mapping[str, Any]) -> BaseModel:
    return backbone_cls.Options.model_validate(dict(options))


def _waves(clips: Sequence[Any], maxlen: int, at_least: int, distinct_lengths: bool = False) -> list[np.ndarray]:
    """The clips' samples (float32), cut to ``maxlen``; ``distinct_lengths``: cut further so
    that no two have the same length (by up to a quarter)."""
    import numpy as np

    waves = [np.asarray(getattr(clip, "wave", clip), dtype=np.float32)[:maxlen] for clip in clips]
    if len(waves) < at_least:
        raise ValueError(f"the backbone kit needs at least {at_least} clips, got {len(waves)}")
    if any(len(w) < maxlen // 2 for w in waves):
        raise ValueError(f"the backbone kit needs clips of at least maxlen / 2 = {maxlen // 2} samples")
    if distinct_lengths:
        shortest = min(len(w) for w in waves)
        waves = [w[: shortest - (shortest // 4) * i // max(len(waves) - 1, 1)] for i, w in enumerate(waves)]
    return waves


def _clips(clips: Sequence[Any], maxlen: int, at_least: int) -> list[Any]:
    """Training clips: the clips given (``Clip``s keep their labels), or arrays labelled in turn."""
    from serbench.data.base import Clip

    waves = _waves(clips, maxlen, at_least)
    return [
        Clip(getattr(clip, "id", f"kit-{i}"), wave, int(getattr(clip, "label", i)) % NUM_CLASSES)
        for i, (clip, wave) in enumerate(zip(clips, waves))
    ]


def _frozen(model: SERModel) -> SERModel:
    model.set_encoder_trainable(False)
    return model.eval()


def _head_state(model: SERModel) -> dict[str, Any]:
    return {name: p for part in model.HEAD_PARTS if getattr(model, part) is not None
            for name, p in getattr(model, part).named_parameters(part)}


def _encoder_state(model: SERModel) -> dict[str, Any]:
    """Every parameter and buffer of the model outside its head (``pool``, ``norm``, ``head``)."""
    head = {id(t) for module in model.head_modules() for t in [*module.parameters(), *module.buffers()]}
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    return {name: t for name, t in tensors.items() if id(t) not in head}


def _state(tensors: Mapping[str, Any]) -> dict[str, Any]:
    return {name: t.detach().clone() for name, t in tensors.items()}


def _changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    import torch

    return [name for name in before if name not in after or not torch.equal(before[name], after[name])]


def _max_diff(a, b) -> float:
    if tuple(a.shape) != tuple(b.shape):
        return float("inf")
    return float((a - b).abs().max()) if a.numel() else 0.0


def _option_variants(backbone_cls, options: dict[str, Any], alternatives: dict[str, Any]) -> list[tuple[str, Any]]:
    """One ``(field, value)`` per field of ``Options``: a valid value other than the current
    one, from ``alternatives`` or invented from the field's type."""
    model = backbone_cls.Options
    unknown = sorted(set(alternatives) - set(model.model_fields))
    if unknown:
        raise ValueError(f"alternatives name options that {model.__name__} does not have: {unknown}")
    current = _validated(backbone_cls, options).model_dump()
    variants = []
    for field, info in model.model_fields.items():
        candidates = [alternatives[field]] if field in alternatives else list(_candidates(info.annotation, current[field]))
        conflicts = False  # a candidate valid on its own, refused only with these options
        for candidate in candidates:
            try:
                dumped = _validated(backbone_cls, {**options, field: candidate}).model_dump()
            except ValidationError:
                try:
                    _validated(backbone_cls, {field: candidate})
                    conflicts = True
                except ValidationError:
                    pass
                continue
            if dumped[field] != current[field]:
                variants.append((field, candidate))
                break
        else:
            if conflicts and field not in alternatives:
                continue  # no other value combines with these options: nothing for a cache to mix up
            if field in alternatives:
                raise ValueError(f"alternatives[{field!r}] = {alternatives[field]!r} is not another valid value of {field}")
            raise ValueError(
                f"the backbone kit cannot invent another valid value for option {field!r} "
                f"(type {info.annotation!r}, now {current[field]!r}): pass alternatives={{{field!r}: value}}"
            )
    return variants


def _candidates(annotation: Any, current: Any) -> Iterator[Any]:
    """Values of type ``annotation`` to try in place of ``current`` (validation decides)."""
    origin = typing.get_origin(annotation)
    if origin is Union or origin is getattr(types, "UnionType", Union):
        for argument in typing.get_args(annotation):
            yield from _candidates(argument, current)
    elif origin is Literal:
        yield from typing.get_args(annotation)
    elif origin is typing.Annotated:
        yield from _candidates(typing.get_args(annotation)[0], current)
    elif annotation is type(None):
        yield None
    elif annotation is bool:
        yield not current if isinstance(current, bool) else True
        yield False
    elif isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        yield from annotation
    elif annotation is int:
        if isinstance(current, int) and not isinstance(current, bool):
            yield from (current + 1, current - 1, current * 2)
        yield from (1, 2, 0, 8)
    elif annotation is float:
        if isinstance(current, (int, float)) and not isinstance(current, bool):
            yield from (current * 2, current / 2, current + 1, current - 1)
        yield from (1.0, 0.5, 0.0)
    elif annotation is str:
        yield f"{current}-kit" if isinstance(current, str) else "kit-alternative"
    elif isinstance(annotation, type) and issubclass(annotation, Path):
        yield Path(f"{current}-kit") if current is not None else Path("kit-alternative")
