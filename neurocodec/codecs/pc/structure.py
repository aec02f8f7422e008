"""The compiled Hidden Chow-Liu Tree: a parent array turned into flat arrays the kernels walk.

The tree has one node per variable (pixel); the compiled form is a handful of flat int32 arrays
(parent, children in CSR form, post-order, depth). No Python objects per node. The arrays are
read-only: a compiled tree belongs to a model that may be shared by every decode of a process.
Learning a tree from data is training and lives in :mod:`.train_structure`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import UsageError


@dataclass(frozen=True)
class Tree:
    """Compiled tree: flat arrays the kernels walk.

    ``parent[v]`` (-1 at the root), children of ``v`` are ``child_idx[child_ptr[v]:child_ptr[v+1]]``
    (ascending), ``post`` lists every node after all its descendants, ``depth[v]`` (root 0).
    """

    parent: np.ndarray
    child_ptr: np.ndarray
    child_idx: np.ndarray
    post: np.ndarray
    depth: np.ndarray
    root: int

    @property
    def size(self) -> int:
        return int(self.parent.shape[0])

    @property
    def height(self) -> int:
        return int(self.depth.max()) + 1


def compile_tree(parent: np.ndarray) -> Tree:
    """Validate a parent array (one root, no cycles) and build the flat (read-only) arrays.

    ``parent`` is copied: the caller's array is neither kept nor frozen."""
    parent = np.array(parent, dtype=np.int32)  # a private copy
    if parent.ndim != 1 or parent.shape[0] < 1:
        raise UsageError(f"tree parent array must be 1-D and non-empty, got shape {parent.shape}")
    d = parent.shape[0]
    roots = np.flatnonzero(parent < 0)
    if len(roots) != 1 or (parent >= d).any():
        raise UsageError("tree must have exactly one root and parents inside the variable range")
    root = int(roots[0])
    counts = np.bincount(parent[parent >= 0], minlength=d)
    child_ptr = np.zeros(d + 1, dtype=np.int32)
    child_ptr[1:] = np.cumsum(counts)
    child_idx = np.zeros(max(d - 1, 0), dtype=np.int32)
    fill = child_ptr[:-1].copy()
    for v in range(d):
        p = parent[v]
        if p >= 0:
            child_idx[fill[p]] = v
            fill[p] += 1
    # BFS from the root: reversed BFS order is a valid post-order
    bfs = [root]
    depth = np.zeros(d, dtype=np.int32)
    for v in bfs:
        for c in child_idx[child_ptr[v]:child_ptr[v + 1]]:
            depth[c] = depth[v] + 1
            bfs.append(int(c))
    if len(bfs) != d:
        raise UsageError("tree is not connected (parent array has a cycle)")
    post = np.array(bfs[::-1], dtype=np.int32)
    for arr in (parent, child_ptr, child_idx, post, depth):
        arr.flags.writeable = False  # fresh arrays owned by the tree: freezing them costs nothing
    return Tree(parent, child_ptr, child_idx, post, depth, root)


