"""YAML text -> plain dicts plus the line of every key path; `--set key.path=value` overrides.

`parse_yaml` is the one YAML reader of the tool: scene files, settings next to a drawing, `--set`
values and scenes embedded in rendered PNGs all go through it, with the same limits (alias bombs,
self-references, nesting, list length) and every value it cannot construct reported as a problem.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import yaml

from semanticdraw_cli import defaults as D
from semanticdraw_cli.errors import Problem
from semanticdraw_cli.scene.safe_io import SCENE, InputRefused, Kind, read_text

_QUOTE = "put it in quotes to make it text"

# --- YAML with line numbers --------------------------------------------------------------------


class _Map(dict):
    lines: dict
    duplicates: list


class _Seq(list):
    lines: list


class _Refusal(yaml.YAMLError):
    """A YAML text refused while it is composed or constructed: key path, line, what, hint."""

    def __init__(self, key: str, message: str, mark, hint: str | None = None):
        self.key, self.message, self.hint = key, message, hint
        self.line = mark.line + 1 if mark is not None else None
        super().__init__(message)


class _LineCounting:
    """Mappings and sequences that remember the line of each key and item (mixed into a SafeLoader).

    While composing it counts values, list items and nesting, so a long list or a deep nest is refused
    before it is built; a scalar it cannot construct (`2024-02-30`, `!!float abc`) becomes a problem.
    """

    def __init__(self, stream):
        super().__init__(stream)
        self._path: list[str] = []  # key path steps of the node being composed: ".canvas", "[2]"
        self._nodes = 0

    def compose_node(self, parent, index):
        mark = self.peek_event().start_mark
        step = f"[{index}]" if isinstance(index, int) else f".{index.value}" if isinstance(index, yaml.ScalarNode) else ""
        here = _short("".join(self._path).lstrip("."), 80)
        self._nodes += 1
        if self._nodes > D.MAX_YAML_NODES:
            raise _Refusal(here, f"more than {D.MAX_YAML_NODES:,} values", mark, "split the file or write less")
        if isinstance(index, int) and index >= D.MAX_POLYGON_POINTS:
            raise _Refusal(here, f"a list of more than {D.MAX_POLYGON_POINTS:,} items", mark,
                           f"no list of a scene is longer (a polygon has at most {D.MAX_POLYGON_POINTS:,} points)")
        if len(self._path) >= D.MAX_YAML_DEPTH:
            raise _Refusal(here, f"nested too deeply: more than {D.MAX_YAML_DEPTH} levels", mark)
        self._path.append(step)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._path.pop()
        if not hasattr(node, "key_path"):  # an alias returns its anchor's node, which has one already
            node.key_path = (here + step).lstrip(".")
        return node

    def construct_object(self, node, deep=False):
        try:
            value = super().construct_object(node, deep)
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError, IndexError) as error:
            message, hint = _not_valid(node, error)
            raise _Refusal(getattr(node, "key_path", ""), message, node.start_mark, hint) from None
        if isinstance(value, str) and (bad := _SURROGATE.search(value)):
            raise _Refusal(getattr(node, "key_path", ""), f"text that cannot be encoded as UTF-8 (a lone surrogate "
                           f"\\u{ord(bad[0]):04x} at character {bad.start()})", node.start_mark, "remove the \\u escape")
        return value


def _not_valid(node: yaml.Node, error: Exception) -> tuple[str, str]:
    """(`'2024-02-30' is not a valid date (day is out of range for month)`, hint), short whatever the value."""
    text = node.value if isinstance(node.value, str) else "this value"
    what = _TAGS.get(node.tag, node.tag)
    if node.tag == "tag:yaml.org,2002:int" and len(text) > 100:
        return f"a whole number of {len(text):,} digits is too large", "use a smaller number"
    if isinstance(error, KeyError):
        reason = "not one of the words YAML reads as this type"
    else:
        reason = str(error) if len(str(error)) <= 80 else type(error).__name__
    return f"{_short(text)!r} is not a valid {what} ({reason})", _QUOTE


_TAGS = {"tag:yaml.org,2002:timestamp": "date", "tag:yaml.org,2002:int": "whole number",
         "tag:yaml.org,2002:float": "number", "tag:yaml.org,2002:bool": "true/false value"}
_SURROGATE = re.compile("[\ud800-\udfff]")


def _construct_map(loader: _LineLoader, node: yaml.MappingNode):
    data = _Map()
    yield data
    data.duplicates, seen = [], set()
    for key_node, _ in node.value:  # before merge keys (<<) are flattened in
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            if key_node.value in seen:
                data.duplicates.append((key_node.value, key_node.start_mark.line + 1))
            seen.add(key_node.value)
    data.update(loader.construct_mapping(node))
    data.lines = {}
    for key_node, _ in node.value:
        data.lines.setdefault(loader.construct_object(key_node), key_node.start_mark.line + 1)


def _construct_seq(loader: _LineLoader, node: yaml.SequenceNode):
    data = _Seq()
    yield data
    data.extend(loader.construct_sequence(node))
    data.lines = [item.start_mark.line + 1 for item in node.value]


class _LineLoader(_LineCounting, yaml.SafeLoader):
    """Pure Python: slow on large texts, but its messages name the value and key at fault."""


try:
    from yaml.cyaml import CParser
except ImportError:  # PyYAML built without libyaml
    CParser = None

if CParser is not None:

    class _FastLineLoader(_LineCounting, yaml.composer.Composer, CParser, yaml.constructor.SafeConstructor,
                          yaml.resolver.Resolver):
        """libyaml scans and parses (a 1 MB scene about 3x faster); the nodes are still composed in Python,
        so that they are counted and refused as they are built. Invalid text is read again by `_LineLoader`."""

        def __init__(self, stream):
            CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            self._path, self._nodes = [], 0

    _LOADERS = (_FastLineLoader, _LineLoader)
else:
    _LOADERS = (_LineLoader,)

for _loader in _LOADERS:
    _loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
    _loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def _load(text: str) -> object:
    """The YAML of `text` through the fast loader; text it refuses is read again by the pure Python one,
    whose messages say more ("a lone surrogate at character 5" for libyaml's "invalid Unicode character")."""
    if len(_LOADERS) == 1:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    try:
        return yaml.load(text, Loader=_FastLineLoader)  # noqa: S506 - safe constructors only
    except _Refusal:
        raise  # our own limits: the same refusal from either loader
    except (yaml.YAMLError, RecursionError):
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass


def read_yaml(path: Path, kind: Kind = SCENE) -> tuple[object, dict[str, int], list[Problem]]:
    """`parse_yaml` of a file read through the bounded reader (`kind` sets its byte limit)."""
    try:
        text = read_text(path, kind)
    except InputRefused as error:
        return None, {}, [Problem(str(path), "", error.reason, hint=error.hint or ("check the path" if error.missing else None))]
    return parse_yaml(text, str(path))


def parse_yaml(text: str, file: str) -> tuple[object, dict[str, int], list[Problem]]:
    """(plain data, key path -> line, problems) of YAML text; data is None when the text is refused."""
    try:
        raw = _load(text)
    except _Refusal as refusal:
        return None, {}, [Problem(file, refusal.key, refusal.message, refusal.line, refusal.hint)]
    except RecursionError:
        return None, {}, [Problem(file, "", "not valid YAML: nested too deeply")]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        message = " ".join(filter(None, [getattr(error, "context", None), getattr(error, "problem", None)]))
        hint = "check indentation, colons and quotes; a value holding ': ' or starting with '#' needs quotes"
        if isinstance(error, yaml.constructor.ConstructorError):
            hint = "only plain values are read: remove the !!tag"
        return None, {}, [Problem(file, "", f"not valid YAML: {message or error}", line, hint)]
    try:
        size = _expanded_size(raw, 1, {}, set())
    except ValueError as error:
        return None, {}, [Problem(file, "", str(error), hint="an alias (*name) may not refer to its own anchor")]
    if size > D.MAX_YAML_NODES:
        return None, {}, [Problem(file, "", f"{size:,} values with aliases expanded; at most {D.MAX_YAML_NODES:,}",
                                  hint="write the values out instead of repeating aliases")]
    lines, duplicates = {}, []
    data = _plain(raw, "", lines, duplicates)
    problems = [Problem(file, key, f"appears twice (the first at line {lines.get(key)})", line, "keep one")
                for key, line in duplicates]
    return data, lines, problems


def _expanded_size(node: object, level: int, memo: dict[int, tuple[int, int]], open_: set[int]) -> int:
    """Values in `node` once aliases are expanded, each shared node measured once (O(unique nodes)).

    Aliases can nest data deeper than the text does; past `MAX_YAML_DEPTH` levels it is refused.
    """
    if not isinstance(node, (dict, list)):
        return 1
    if id(node) in open_:
        raise ValueError("an alias refers to a mapping or list that contains it")
    if id(node) not in memo:
        if level > D.MAX_YAML_DEPTH:
            raise ValueError(f"nested too deeply: more than {D.MAX_YAML_DEPTH} levels with aliases expanded")
        open_.add(id(node))
        children = list(node.values() if isinstance(node, dict) else node)
        sizes = [_expanded_size(child, level + 1, memo, open_) for child in children]
        height = 1 + max((memo[id(c)][1] for c in children if isinstance(c, (dict, list))), default=0)
        memo[id(node)] = (1 + sum(sizes), height)
        open_.discard(id(node))
    size, height = memo[id(node)]
    if level - 1 + height > D.MAX_YAML_DEPTH:
        raise ValueError(f"nested too deeply: more than {D.MAX_YAML_DEPTH} levels with aliases expanded")
    return size


def _short(text: str, keep: int = 40) -> str:
    return text if len(text) <= keep else f"{text[:keep - 3]}... ({len(text):,} characters)"


def _plain(node: object, path: str, lines: dict, duplicates: list) -> object:
    """Plain dicts and lists, recording the line of every key path ("regions[2].mask")."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            child = f"{path}.{key}" if path else str(key)
            if isinstance(node, _Map):
                lines[child] = node.lines.get(key)
            out[key] = _plain(value, child, lines, duplicates)
        duplicates += [(f"{path}.{k}" if path else str(k), line) for k, line in getattr(node, "duplicates", ())]
        return out
    if isinstance(node, list):
        out = []
        for i, value in enumerate(node):
            if isinstance(node, _Seq):
                lines[f"{path}[{i}]"] = node.lines[i]
            out.append(_plain(value, f"{path}[{i}]", lines, duplicates))
        return out
    return node


# --- overrides (--set key.path=value) ----------------------------------------------------------

_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)$")
TEXT_FIELDS = frozenset({"prompt", "negative", "name"})  # prose: an unquoted value is taken as written
NULLS = ("", "~", "null", "Null", "NULL")  # still unset a text field, e.g. background.prompt=null


def apply_overrides(data: dict, overrides: Sequence[str], file: str) -> tuple[list[str], list[Problem]]:
    """Apply each `key.path=value` (value parsed as YAML; an unquoted prompt, negative or name is taken as
    written) in place; returns the paths set and problems."""
    done, problems = [], []
    for text in overrides:
        try:
            tokens, value = _parse_override(text)
            _set(data, tokens, value)
        except ValueError as error:
            hint = "write --set key.path=value, e.g. sampler.seed=7, sampler.steps=[0,10], regions[0].prompt=a cat"
            problems.append(Problem(file, "--set", f"{text!r}: {error}", hint=hint))
            continue
        done.append("".join(f"[{t}]" if isinstance(t, int) else f".{t}" for t in tokens).lstrip("."))
    return done, problems


def _parse_override(text: str) -> tuple[list[str | int], object]:
    key, equals, raw = text.partition("=")
    if not equals:
        raise ValueError("no '=' between the key and the value")
    tokens: list[str | int] = []
    for segment in key.strip().split("."):
        match = _SEGMENT.match(segment)
        if not match:
            raise ValueError(f"bad key {key.strip()!r}: {segment!r} is not a name optionally followed by [index]")
        tokens += [match[1], *(int(i) for i in re.findall(r"\d+", match[2]))]
    if tokens[-1] in TEXT_FIELDS and not raw.strip().startswith(('"', "'")) and raw.strip() not in NULLS:
        return tokens, raw.strip()  # prose: `prompt=a cat: black #1` is neither a mapping nor a comment
    value, _, problems = parse_yaml(raw, "--set") if raw.strip() else (None, {}, [])
    if problems:
        raise ValueError(f"the value: {problems[0].message}")
    return tokens, value


def _set(data: dict, tokens: list[str | int], value: object) -> None:
    node: object = data
    for i, token in enumerate(tokens):
        where = "".join(f"[{t}]" if isinstance(t, int) else f".{t}" for t in tokens[: i + 1]).lstrip(".")
        if isinstance(token, int) and (not isinstance(node, list) or token >= len(node)):
            size = f"has {len(node)} items" if isinstance(node, list) else "is not a list"
            raise ValueError(f"{where}: no such item (the list {size}; indices start at 0)")
        if isinstance(token, str) and not isinstance(node, dict):
            raise ValueError(f"{where}: the parent is not a mapping")
        if i == len(tokens) - 1:
            node[token] = value
        else:
            if isinstance(token, str) and node.get(token) is None:
                node[token] = {}  # create a missing section on the way, e.g. background.prompt
            node = node[token]


def deep_copy(value: object) -> object:
    """A copy of nested dicts and lists (overrides change the copy, not the caller's data)."""
    if isinstance(value, dict):
        return {k: deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [deep_copy(v) for v in value]
    return value
