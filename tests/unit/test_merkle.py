"""RFC 6962 hashing: the Certificate Transparency reference tree heads and audit paths, every
tree shape against the RFC's recursive definition, and proofs that must fail."""

import hashlib

import pytest

from fraudloop import merkle

# RFC 6962 reference inputs, the tree heads of their first n for n = 1..8, two audit paths
DATA = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
PATHS = {
    0: [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    5: [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}


def _mth(data: list[bytes]) -> bytes:
    """RFC 6962 2.1, as written: split at the largest power of two below n."""
    if not data:
        return hashlib.sha256(b"").digest()
    if len(data) == 1:
        return merkle.leaf_hash(data[0])
    k = 1 << ((len(data) - 1).bit_length() - 1)
    return merkle.node_hash(_mth(data[:k]), _mth(data[k:]))


def _path(m: int, data: list[bytes]) -> list[bytes]:
    """RFC 6962 2.1.1's PATH(m, D[n])."""
    if len(data) <= 1:
        return []
    k = 1 << ((len(data) - 1).bit_length() - 1)
    if m < k:
        return _path(m, data[:k]) + [_mth(data[k:])]
    return _path(m - k, data[k:]) + [_mth(data[:k])]


def test_reference_tree_heads_and_paths() -> None:
    assert merkle.root([]).hex() == hashlib.sha256(b"").hexdigest()
    builder = merkle.RootBuilder()
    for n, item in enumerate(DATA, start=1):
        builder.add(merkle.leaf_hash(item))
        assert builder.root().hex() == ROOTS[n - 1]  # a prefix's root, then it grows on
        assert merkle.levels(DATA[:n])[-1][0].hex() == ROOTS[n - 1]
    tree = merkle.levels(DATA)
    for index, expected in PATHS.items():
        assert [p.hex() for p in merkle.audit_path(tree, index)] == expected


def test_every_shape_matches_the_rfc_and_every_path_verifies() -> None:
    data = [f"event-{i}".encode() for i in range(40)]
    for n in range(1, len(data) + 1):
        leaves = data[:n]
        expected = _mth(leaves)
        assert merkle.root(leaves) == expected
        tree = merkle.levels(leaves)
        for m in range(n):
            path = merkle.audit_path(tree, m)
            assert path == _path(m, leaves)
            leaf = merkle.leaf_hash(leaves[m])
            assert merkle.root_from_path(leaf, m, n, path) == expected
            if n > 1:  # the same path for another leaf, index or size leads elsewhere
                other = merkle.leaf_hash(leaves[(m + 1) % n])
                assert merkle.root_from_path(other, m, n, path) != expected
                assert merkle.root_from_path(leaf, (m + 1) % n, n, path) != expected


@pytest.mark.parametrize(
    ("index", "size", "cut"),
    [(0, 8, 1), (5, 8, -1), (8, 8, 0), (-1, 8, 0), (0, 0, 0)],
)
def test_malformed_proofs_lead_nowhere(index: int, size: int, cut: int) -> None:
    """A path too short, too long or for an index outside the tree gives no root at all."""
    tree = merkle.levels(DATA)
    path = merkle.audit_path(tree, max(0, min(index, 7)))
    if cut > 0:
        path = path[:-cut]
    elif cut < 0:
        path = [*path, path[0]]
    leaf = merkle.leaf_hash(DATA[max(0, min(index, 7))])
    assert merkle.root_from_path(leaf, index, size, path) is None


def test_a_leaf_cannot_pass_for_a_node() -> None:
    """The 0x00 / 0x01 prefixes: the two children of a node, given as one leaf, are not it."""
    a, b = merkle.leaf_hash(b"a"), merkle.leaf_hash(b"b")
    assert merkle.root([a + b]) != merkle.node_hash(a, b)
