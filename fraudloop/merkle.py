"""RFC 6962 Merkle trees (Certificate Transparency's hashing) over the audit events' hashes.

A leaf is `SHA-256(0x00 || data)`, an inner node `SHA-256(0x01 || left || right)`; the root of
n leaves splits at the largest power of two below n (RFC 6962 section 2.1), the same tree as
pairing each level left to right and carrying an odd last node up unchanged, which is how it is
built here. The prefixes keep a leaf from passing for a node. Inclusion proofs are checked with
RFC 9162's algorithm (section 2.1.3.2), from the proof alone: no store, no other leaves.
"""

import hashlib
from collections.abc import Iterable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()  # the root of a tree with no leaves


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class RootBuilder:
    """The root of a growing list of leaves in O(log n) memory: the complete subtrees so far,
    largest first, each merged as soon as its sibling of the same size is complete."""

    def __init__(self) -> None:
        self.size = 0
        self._subtrees: list[bytes] = []  # subtree roots, sizes = the set bits of `size`

    def add(self, leaf: bytes) -> None:
        """Add one leaf's hash (`leaf_hash` of its data)."""
        node = leaf
        self.size += 1
        size = self.size
        while not size & 1:  # each trailing zero bit: a pair of equal subtrees to merge
            node = node_hash(self._subtrees.pop(), node)
            size >>= 1
        self._subtrees.append(node)

    def extend(self, data: Iterable[bytes]) -> None:
        for item in data:
            self.add(leaf_hash(item))

    def root(self) -> bytes:
        """The root of the leaves added so far; adding more afterwards is fine."""
        if not self._subtrees:
            return EMPTY_ROOT
        node = self._subtrees[-1]
        for left in reversed(self._subtrees[:-1]):  # smaller subtrees hang off the right
            node = node_hash(left, node)
        return node


def root(data: Iterable[bytes]) -> bytes:
    builder = RootBuilder()
    builder.extend(data)
    return builder.root()


def levels(data: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the tree, leaves first: what audit paths are read from."""
    level = [leaf_hash(item) for item in data]
    out = [level]
    while len(level) > 1:
        pairs = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        level = pairs + [level[-1]] if len(level) % 2 else pairs
        out.append(level)
    return out


def audit_path(tree: Sequence[Sequence[bytes]], index: int) -> list[bytes]:
    """RFC 6962's PATH(index, D[n]), bottom-up: the sibling at each level that has one."""
    if not 0 <= index < len(tree[0]):
        raise IndexError(f"leaf {index} is not in a tree of {len(tree[0])} leaves")
    path = []
    for level in tree[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        index >>= 1
    return path


def root_from_path(leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes | None:
    """The root an inclusion proof leads to (RFC 9162 2.1.3.2), None if the path cannot be one
    for `index` in a tree of `size` leaves (too long, too short, index outside)."""
    if not 0 <= index < size:
        return None
    fn, sn, node = index, size - 1, leaf
    for sibling in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            node = node_hash(sibling, node)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            node = node_hash(node, sibling)
        fn >>= 1
        sn >>= 1
    return node if sn == 0 else None
