"""YAML scene text -> plain dicts plus the line of every key path; `--set key.path=value` overrides."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import yaml

from semanticdraw_cli.errors import Problem

MAX_NODES = 1_000_000  # values in one scene file, aliases expanded; stops "billion laughs" before expanding

# --- YAML with line numbers --------------------------------------------------------------------


class _Map(dict):
    lines: dict
    duplicates: list


class _Seq(list):
    lines: list


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences remember the line of each key and item."""


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


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def read_yaml(path: Path) -> tuple[object, dict[str, int], list[Problem]]:
    """(plain data, key path -> line, problems) of a YAML scene file."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, {}, [Problem(file, "", "file not found", hint="check the path")]
    except (OSError, UnicodeDecodeError) as error:
        return None, {}, [Problem(file, "", f"cannot read the file: {error}")]
    try:
        raw = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        return None, {}, [Problem(file, "", "not valid YAML: nested too deeply")]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        message = " ".join(filter(None, [getattr(error, "context", None), getattr(error, "problem", None)]))
        hint = "check indentation, colons and quotes; a value holding ': ' or starting with '#' needs quotes"
        return None, {}, [Problem(file, "", f"not valid YAML: {message or error}", line, hint)]
    lines, duplicates = {}, []
    try:
        size = _expanded_size(raw, {}, set())
    except RecursionError:
        return None, {}, [Problem(file, "", "not valid YAML: nested too deeply")]
    except ValueError as error:
        return None, {}, [Problem(file, "", str(error), hint="an alias (*name) may not refer to its own anchor")]
    if size > MAX_NODES:
        return None, {}, [Problem(file, "", f"{size:,} values with aliases expanded; at most {MAX_NODES:,}",
                                  hint="write the values out instead of repeating aliases")]
    data = _plain(raw, "", lines, duplicates)
    problems = [Problem(file, key, f"appears twice (the first at line {lines.get(key)})", line, "keep one")
                for key, line in duplicates]
    if data is None:
        problems.append(Problem(file, "", "the file is empty", hint="a scene needs at least canvas and regions"))
    elif not isinstance(data, dict):
        problems.append(Problem(file, "", f"expected a mapping of keys (version, canvas, ...), got {type(data).__name__}"))
    return data, lines, problems


def _expanded_size(node: object, memo: dict[int, int], open_: set[int]) -> int:
    """Values in `node` once aliases are expanded, counting each shared node once per use (O(unique nodes))."""
    if not isinstance(node, (dict, list)):
        return 1
    if id(node) in memo:
        return memo[id(node)]
    if id(node) in open_:
        raise ValueError("an alias refers to a mapping or list that contains it")
    open_.add(id(node))
    children = node.values() if isinstance(node, dict) else node
    memo[id(node)] = 1 + sum(_expanded_size(child, memo, open_) for child in children)
    open_.discard(id(node))
    return memo[id(node)]


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
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        raise ValueError(f"the value is not valid YAML ({getattr(error, 'problem', None) or error})") from None
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
