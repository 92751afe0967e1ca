"""Reading the files a user hands to harness (suites, result files, run descriptions) defensively.

Every problem is one :class:`~harness.errors.HarnessError` line naming the file (and the line where it is known):

* a file that is not UTF-8 text: UTF-16 (a byte-order mark, or NUL bytes between ASCII ones), a binary file
  (NUL bytes), or a stray byte of another encoding such as Latin-1 (the line and the byte are named);
* YAML: the document is composed into nodes first and its size *with aliases expanded* is counted before any
  Python object is built, so an alias bomb ("billion laughs") is refused in microseconds wherever it sits, and a
  recursive alias is refused too; a key given twice in one mapping is refused naming both lines (PyYAML keeps the
  last one silently); merge keys (``<<: *defaults``) stay allowed;
* a file too large to be what it claims (:data:`MAX_TEXT_BYTES` for a suite).
"""
from __future__ import annotations

import codecs
import os
from typing import Any

import yaml

from harness.errors import HarnessError

__all__ = ["read_text", "load_yaml", "MAX_YAML_NODES", "MAX_TEXT_BYTES"]

#: Values (scalars, lists, mappings) a YAML document may hold once its aliases are expanded. A suite has hundreds.
MAX_YAML_NODES = 100_000
#: Bytes a suite or run description may have (a results file has no limit: it is read line by line).
MAX_TEXT_BYTES = 16 * 2**20
_MERGE = "tag:yaml.org,2002:merge"


def _utf16(raw: bytes) -> bool:
    """A byte-order mark, or every other byte of the start NUL (ASCII text saved as UTF-16 without a mark)."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return True
    head = raw[:64] if len(raw) % 2 == 0 else raw[:63]
    return len(head) >= 4 and (head[1::2].count(0) == len(head) // 2 or head[0::2].count(0) == len(head) // 2)


def _decode(raw: bytes, where: str) -> str:
    if _utf16(raw):
        raise HarnessError(f"{where}: the file is UTF-16 text; save it as UTF-8")
    if b"\x00" in raw:
        line = raw[:raw.index(b"\x00")].count(b"\n") + 1
        raise HarnessError(f"{where}:{line}: a binary file (a NUL byte), not UTF-8 text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise HarnessError(f"{where}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}; a file saved as Latin-1 or "
                           "another encoding?): save it as UTF-8") from None


def read_text(path: str | os.PathLike[str], what: str = "file", max_bytes: int | None = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of ``path`` (a byte-order mark is dropped), or one line saying why it cannot be read:
    missing, a folder, unreadable, too large, UTF-16, binary or another encoding."""
    where = str(path)
    try:
        size = os.path.getsize(path)
        if max_bytes is not None and size > max_bytes:
            raise HarnessError(f"{where}: {size / 2**20:.0f} MiB is too large for a {what} "
                               f"(at most {max_bytes // 2**20} MiB)")
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise HarnessError(f"{where}: no such {what}") from None
    except IsADirectoryError:
        raise HarnessError(f"{where}: a folder, not a {what}") from None
    except OSError as exc:
        raise HarnessError(f"{where}: cannot read: {exc.strerror or exc}") from None
    return _decode(raw, where)


class _Duplicate(Exception):
    def __init__(self, key: Any, first: yaml.Mark, second: yaml.Mark) -> None:
        super().__init__(key)
        self.key, self.first, self.second = key, first, second


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node)
            if key in seen:
                raise _Duplicate(key, seen[key], key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep)


def _expanded_size(root: yaml.Node, where: str, limit: int) -> int:
    """Values in the document once every alias is expanded (an alias shares its node, so a memo keeps this linear
    in the document's size); a recursive alias is refused."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise HarnessError(f"{where}:{node.start_mark.line + 1}: a recursive YAML alias (a value that contains "
                               "itself) is refused")
        active.add(key)
        if isinstance(node, yaml.SequenceNode):
            n = 1 + sum(size(v) for v in node.value)
        elif isinstance(node, yaml.MappingNode):
            n = 1 + sum(size(k) + size(v) for k, v in node.value)
        else:
            n = 1
        active.discard(key)
        sizes[key] = min(n, limit + 1)  # past the limit the exact count does not matter
        return sizes[key]

    return size(root)


def load_yaml(text: str, where: str, max_nodes: int = MAX_YAML_NODES) -> Any:
    """``yaml.safe_load`` of ``text`` with one-line errors naming ``where`` and the line: malformed YAML, a key
    given twice, aliases that expand past ``max_nodes`` values, a recursive alias, nesting too deep."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, where, max_nodes) > max_nodes:
            raise HarnessError(f"{where}: its YAML aliases expand to more than {max_nodes:,} values (an alias bomb?); "
                               "refused before expanding them")
        return loader.construct_document(node)
    except _Duplicate as exc:
        raise HarnessError(f"{where}:{exc.second.line + 1}: key {exc.key!r} given twice in one mapping (first on line "
                           f"{exc.first.line + 1}); YAML would keep the last one silently") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        pos = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise HarnessError(f"{where}{pos}: malformed YAML: {problem}") from None
    except RecursionError:
        raise HarnessError(f"{where}: YAML nested too deeply") from None
    finally:
        loader.dispose()
