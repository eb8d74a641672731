"""Job files as strict YAML: a key given twice in one mapping, tabs used for
indentation and characters YAML forbids are one-line ``SpecError``s naming the line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from serbench.errors import SpecError


class DuplicateKeyError(yaml.YAMLError):
    """A mapping that names one key twice; ``path`` is the key's dotted path."""

    def __init__(self, path: str, first: yaml.Mark, again: yaml.Mark):
        self.path, self.first, self.again = path, first, again
        where, before = f"line {again.line + 1}", f"line {first.line + 1}"
        if first.line == again.line:  # a flow mapping on one line
            where, before = f"{where}, column {again.column + 1}", f"{before}, column {first.column + 1}"
        super().__init__(f"duplicate key {path!r} at {where} (first at {before})")


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key given twice in one mapping (block or flow,
    at any depth, in lists too) with :class:`DuplicateKeyError`.

    Merge keys keep working: a key of the mapping itself may override one merged in
    with ``<<``; only the mapping's own keys must be distinct.
    """

    def __init__(self, stream: Any):
        super().__init__(stream)
        self._paths: dict[int, tuple[str, ...]] = {}  # id(mapping node) -> its dotted path
        self._checked: set[int] = set()

    def construct_document(self, node: yaml.Node) -> Any:
        self._paths, self._checked = {}, set()
        _record_paths(node, (), self._paths)
        return super().construct_document(node)

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        # Called by construct_mapping, and on every mapping merged in with ``<<``, before
        # the merged keys are spliced into ``node.value``: check the mapping's own keys
        # then, once (an anchored mapping may be flattened again).
        if id(node) not in self._checked:
            self._checked.add(id(node))
            self._check_unique(node)
        super().flatten_mapping(node)

    def _check_unique(self, node: yaml.MappingNode) -> None:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # a list or mapping as key: PyYAML rejects it as unhashable
            if key_node.tag in ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"):
                key: Any = key_node.value
            else:
                key = self.construct_object(key_node)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:
                continue
            if first is not key_node.start_mark:
                parent = self._paths.get(id(node), ())
                raise DuplicateKeyError(".".join((*parent, str(key))), first, key_node.start_mark)


def _record_paths(node: yaml.Node, path: tuple[str, ...], paths: dict[int, tuple[str, ...]]) -> None:
    """``paths[id(mapping node)]``: the dotted path of every mapping in the document
    (list items by index), for messages. An aliased node keeps its first path."""
    if id(node) in paths:
        return
    if isinstance(node, yaml.MappingNode):
        paths[id(node)] = path
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            _record_paths(value_node, path if key == "<<" else (*path, key), paths)
    elif isinstance(node, yaml.SequenceNode):
        paths[id(node)] = path
        for index, item in enumerate(node.value):
            _record_paths(item, (*path, str(index)), paths)


def load_yaml(text: str, path: Path) -> Any:
    """``text`` parsed with :class:`StrictLoader`; ``SpecError`` with a one-line message."""
    try:
        return yaml.load(text, Loader=StrictLoader)
    except DuplicateKeyError as exc:
        raise SpecError(f"{path}: {exc}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise SpecError(
            f"{path}: YAML does not parse at line {line}: character U+{code:04X} "
            "is not allowed in a YAML file"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        if mark is not None and "'\\t'" in problem:
            rows = re.split("\r\n|[\r\n\x85\u2028\u2029]", text)  # PyYAML's line breaks
            row = rows[mark.line] if mark.line < len(rows) else ""
            if not row[: mark.column].strip(" \t-"):  # only indentation (and list dashes) before it
                problem = "tabs are not allowed for indentation; indent with spaces"
            else:
                problem = f"a tab at column {mark.column + 1}: outside quoted strings and comments, use spaces"
        raise SpecError(f"{path}: YAML does not parse{where}: {problem}") from None
