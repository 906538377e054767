#!/usr/bin/env python3
"""Generate golden placement vectors for the Rust hash ring from Python tooz.

Usage (any Python >= 3.9):

    python3 -m venv /tmp/tooz-venv
    /tmp/tooz-venv/bin/pip install tooz==9.1.0
    /tmp/tooz-venv/bin/python scripts/gen-hashring-vectors.py [OUTPUT]

OUTPUT defaults to crates/tooz/tests/data/hashring-golden.json in the
repository. The output is deterministic (independent of PYTHONHASHSEED): rings
whose nodes produce identical points are built with ordered add_node calls
rather than the constructor, whose set() iteration order varies.

File format (JSON, read by tests/hashring_golden.rs):

    {"format": 1, "tooz_version": ..., "shapes": [shape, ...]}

    shape = {
      "name": str, "hash_function": "md5" | "sha1" | ..., "partitions": int,
      "ops": [["new", [node, ...]] | ["add", [node, ...], weight]
              | ["remove", node], ...],       # replayed in order
      "len": int,                             # len(ring) afterwards
      "nodes": [[node, weight], ...],         # ring.nodes, sorted by name
      "owners": [node, ...],                  # table that results index into
      "key_prefix": hex, "key_count": int,    # key i = prefix + b"%d" % i
      "queries": [{"replicas": int, "ignore": [node, ...],
                   "results": "i,j k ..."}]   # one space-separated token per
                                              # key: sorted owner indices
                                              # joined by ","; "-" if empty
    }

Every node is written as the hex of its UTF-8/bytes form.
"""

import json
import sys
from importlib.metadata import version
from pathlib import Path

from tooz.hashring import HashRing

KEY_COUNT = 10_000


def to_bytes(node):
    return node.encode("utf-8") if isinstance(node, str) else node


def hx(node):
    return to_bytes(node).hex()


SHAPES = [
    {
        "name": "default-10",
        "ops": [("new", [f"node-{i}" for i in range(10)])],
        "key_prefix": b"key-",
        "queries": [(1, []), (3, []), (2, ["node-3", "node-7"])],
    },
    {
        "name": "weighted",
        "ops": [("add", [f"worker-{i}"], 1 + i % 5) for i in range(8)],
        "key_prefix": b"object/",
        "queries": [(1, []), (3, ["worker-1"])],
    },
    {
        "name": "churn-64",
        "partitions": 64,
        "ops": [("new", [f"n{i:02d}" for i in range(20)])]
        + [("remove", f"n{i:02d}") for i in (0, 4, 9, 13, 19)]
        + [("add", ["n20", "n21"], 1), ("add", ["n04"], 2)],
        "key_prefix": b"",
        "queries": [(1, []), (2, ["n01", "n20"]), (4, [])],
    },
    {
        "name": "bytes-8",
        "partitions": 8,
        "ops": [
            ("add", [b"\xff\x00\x01", "\u0447\u0443\u043f\u0430\u043a\u0430\u0431\u0440\u0430"], 1),
            ("add", [b""], 1),
            ("add", ["node", "n" * 100], 2),
        ],
        # A 70-byte prefix makes every key span two md5 blocks.
        "key_prefix": bytes(range(200, 256)) + b"\x00" * 14,
        "queries": [(1, []), (2, ["node"]), (5, [])],
    },
    {
        # "abab" and "ababab" repeat "ab": their points collide with "ab"'s and the later
        # node takes them over; re-adding "x" with a smaller weight leaves orphan points
        # that still map keys onto "x" after its removal; removing "ab" deletes points
        # that "abab"/"ababab" had taken over.
        "name": "quirks",
        "ops": [
            ("add", ["ab"], 1),
            ("add", ["abab"], 1),
            ("add", ["ababab"], 2),
            ("add", ["x"], 3),
            ("add", ["x"], 1),
            ("remove", "x"),
            ("add", ["c", "d"], 1),
            ("remove", "ab"),
        ],
        "key_prefix": b"q",
        "queries": [(1, []), (3, []), (2, ["abab"]), (3, ["x"]), (9, [])],
    },
    {
        "name": "sha1-16",
        "hash_function": "sha1",
        "partitions": 16,
        "ops": [("new", [f"s{i}" for i in range(12)]), ("add", ["big"], 3)],
        "key_prefix": b"k",
        "queries": [(1, []), (2, ["big"])],
    },
    {
        "name": "sha256-weighted",
        "hash_function": "sha256",
        "ops": [("add", [f"w{i}"], i + 1) for i in range(6)] + [("remove", "w2")],
        "key_prefix": b"sha256-",
        "queries": [(1, []), (3, ["w5"])],
    },
    {
        "name": "sha224-4",
        "hash_function": "sha224",
        "partitions": 4,
        "ops": [("new", ["a", "b", "c", "d", "e"])],
        "key_prefix": b"",
        "queries": [(1, []), (2, [])],
    },
    {
        "name": "large-1000",
        "ops": [("add", [f"node-{i}"], 1 + i % 4) for i in range(1000)],
        "key_prefix": b"key-",
        "queries": [(1, [])],
    },
]


def build(shape):
    ring = HashRing(
        [],
        shape.get("partitions", HashRing.DEFAULT_PARTITION_NUMBER),
        shape.get("hash_function", HashRing.DEFAULT_HASH_FUNCTION),
    )
    ops = []
    for op in shape["ops"]:
        if op[0] == "new":
            # Same as HashRing(nodes): add_nodes(set(nodes)); these nodes never collide.
            ring.add_nodes(set(op[1]))
            ops.append(["new", [hx(n) for n in op[1]]])
        elif op[0] == "add":
            ring.add_nodes(op[1], op[2])
            ops.append(["add", [hx(n) for n in op[1]], op[2]])
        else:
            ring.remove_node(op[1])
            ops.append(["remove", hx(op[1])])
    return ring, ops


def generate(shape):
    ring, ops = build(shape)
    owners = sorted({to_bytes(n) for n in ring._ring.values()} | {to_bytes(n) for n in ring.nodes})
    position = {n: i for i, n in enumerate(owners)}
    keys = [shape["key_prefix"] + b"%d" % i for i in range(KEY_COUNT)]
    queries = []
    for replicas, ignore in shape["queries"]:
        tokens = []
        for key in keys:
            found = sorted(position[to_bytes(n)] for n in ring.get_nodes(key, ignore, replicas))
            tokens.append(",".join(map(str, found)) or "-")
        queries.append({"replicas": replicas, "ignore": [hx(n) for n in ignore], "results": " ".join(tokens)})
    return {
        "name": shape["name"],
        "hash_function": shape.get("hash_function", "md5"),
        "partitions": shape.get("partitions", HashRing.DEFAULT_PARTITION_NUMBER),
        "ops": ops,
        "len": len(ring),
        "nodes": sorted([hx(n), w] for n, w in ring.nodes.items()),
        "owners": [n.hex() for n in owners],
        "key_prefix": shape["key_prefix"].hex(),
        "key_count": KEY_COUNT,
        "queries": queries,
    }


def main():
    default = (
        Path(__file__).resolve().parent.parent
        / "crates" / "tooz" / "tests" / "data" / "hashring-golden.json"
    )
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    doc = {
        "format": 1,
        "generator": "scripts/gen-hashring-vectors.py",
        "tooz_version": version("tooz"),
        "shapes": [generate(s) for s in SHAPES],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        # One shape per line keeps diffs readable without inflating the file.
        header = {k: v for k, v in doc.items() if k != "shapes"}
        f.write(json.dumps(header)[:-1] + ', "shapes": [\n')
        f.write(",\n".join(json.dumps(s, separators=(",", ":")) for s in doc["shapes"]))
        f.write("\n]}\n")
    print(f"wrote {out} ({out.stat().st_size} bytes, {len(SHAPES)} shapes x {KEY_COUNT} keys)")


if __name__ == "__main__":
    main()
