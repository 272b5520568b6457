"""Splitting components that break an IdentityLimits bound: a constrained maximum spanning forest, strongest edges
first, with session leaves attached afterwards."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from python_models.identity.graph import _Graph
from python_models.identity.rules import STRONG_TYPES, IdentityLimits


def _canonical_rank(node_type: np.ndarray, node_value: pa.Array) -> np.ndarray:
    """Rank of each node by (type priority, value): a tie-break that does not depend on input row order."""
    order = pd.DataFrame({"t": node_type, "v": node_value.to_pylist()}).sort_values(["t", "v"]).index.to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def _constrained_forest(a: np.ndarray, b: np.ndarray, counts: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """Union edges (a[k], b[k]) in the given order unless the union breaks a limit; returns each node's root.

    ``counts`` holds each node's identifiers per type (one row per node, ``STRONG_TYPES`` order): one 1 for an
    identifier, a whole stored identity's counts when the hourly merge unites identities. This is the module's only
    per-edge Python loop. It sees only edges of components that violate a limit, minus session leaves (attached
    afterwards, vectorised, by :func:`_attach_leaves`).
    """
    n_nodes = len(counts)
    parent = list(range(n_nodes))
    size = [1] * n_nodes
    cu, ce, cc, cs = (counts[:, k].tolist() for k in range(4))
    lu, le, lc, ls = (int(x) for x in limits)
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        while parent[y] != y:
            parent[y] = parent[parent[y]]
            y = parent[y]
        if x == y:
            continue
        u_, e_, c_, s_ = cu[x] + cu[y], ce[x] + ce[y], cc[x] + cc[y], cs[x] + cs[y]
        if u_ > lu or e_ > le or c_ > lc or s_ > ls:
            continue
        if size[x] < size[y]:
            x, y = y, x
        parent[y] = x
        size[x] += size[y]
        cu[x], ce[x], cc[x], cs[x] = u_, e_, c_, s_
    roots = np.asarray(parent, dtype=np.int64)
    # Pointer jumping until every node points at its root.
    while True:
        nxt = roots[roots]
        if np.array_equal(nxt, roots):
            return roots
        roots = nxt


def _attach_leaves(
    roots: np.ndarray, leaf: np.ndarray, anchor: np.ndarray, node_type: np.ndarray, limits: np.ndarray
) -> np.ndarray:
    """Attach leaf nodes (one neighbour) to their neighbour's part, strongest first, while the limits allow.


    ``leaf``/``anchor`` are in strength order. A leaf can only ever join its neighbour's part and only changes
    its own type's count, so the budget check is a rank within (part, type).
    """
    roots = roots.copy()
    part = roots[anchor]
    t = node_type[leaf]
    n_types = len(limits)
    used = np.zeros((len(roots), n_types), dtype=np.int64)
    np.add.at(used, (roots, node_type), 1)
    rank = pd.Series(part * n_types + t).groupby(part * n_types + t, sort=False).cumcount().to_numpy()
    ok = used[part, t] + rank + 1 <= limits[t]
    roots[leaf[ok]] = part[ok]
    return roots


def pair_edges(lo: np.ndarray, hi: np.ndarray, attributes: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per pair (lo, hi), lo != hi, of the edges between them: events summed, the most trusted type, first
    seen earliest, last seen latest (an edge type per row in, all of a pair's evidence out)."""
    return (
        pd.DataFrame({"lo": lo, "hi": hi, **attributes})
        .loc[lo != hi]
        .groupby(["lo", "hi"], as_index=False, sort=False)
        .agg(n_events=("n_events", "sum"), trust=("trust", "max"), first_seen=("first_seen", "min"),
             last_seen=("last_seen", "max"))
    )  # fmt: skip


def strongest_first(pairs: pd.DataFrame, rank: np.ndarray) -> np.ndarray:
    """The order in which :func:`_constrained_forest` unites ``pairs`` (lo, hi, n_events, trust, first_seen,
    last_seen): most events, most trusted type, oldest, most recently confirmed, then the canonical ``rank`` of the
    two ends, so the order never depends on input row order."""
    r_lo, r_hi = rank[pairs["lo"].to_numpy()], rank[pairs["hi"].to_numpy()]
    return np.lexsort(
        (
            np.maximum(r_lo, r_hi),
            np.minimum(r_lo, r_hi),
            -pairs["last_seen"].to_numpy(),
            pairs["first_seen"].to_numpy(),
            -pairs["trust"].to_numpy(),
            -pairs["n_events"].to_numpy(),
        )
    )


def _split_violations(
    graph: _Graph, labels: np.ndarray, bad_component: np.ndarray, limits: IdentityLimits
) -> tuple[np.ndarray, int]:
    """Relabel the nodes of violating components; returns (local labels for those nodes, count)."""
    bad_node = bad_component[labels]
    nodes = np.flatnonzero(bad_node)
    local = np.full(len(labels), -1, dtype=np.int64)
    local[nodes] = np.arange(len(nodes))
    sel = np.flatnonzero(bad_node[graph.u])
    a, b = local[graph.u[sel]], local[graph.v[sel]]
    pairs = pair_edges(
        np.minimum(a, b),
        np.maximum(a, b),
        {name: graph.edge_values(name, sel) for name in ("n_events", "trust", "first_seen", "last_seen")},
    )
    node_type = graph.node_type[nodes].astype(np.int64)
    order = strongest_first(pairs, _canonical_rank(node_type, graph.values_of(nodes)))
    p_lo, p_hi = pairs["lo"].to_numpy()[order], pairs["hi"].to_numpy()[order]
    # Session leaves (a session seen with one cookie only: most nodes) connect nothing, so they stay out of the
    # loop and are attached afterwards; sessions then never block a merge of stronger identifiers. Other leaves
    # (a user_id at the end of a path) stay in the loop, where they compete for their type's budget in order.
    session = STRONG_TYPES.index("session")
    degree = np.bincount(p_lo, minlength=len(nodes)) + np.bincount(p_hi, minlength=len(nodes))
    lo_leaf = (degree[p_lo] == 1) & (node_type[p_lo] == session)
    hi_leaf = (degree[p_hi] == 1) & (node_type[p_hi] == session)
    core = lo_leaf == hi_leaf  # neither end is a leaf, or an isolated pair
    bounds = limits.as_array()
    roots = _constrained_forest(p_lo[core], p_hi[core], np.eye(len(STRONG_TYPES), dtype=np.int64)[node_type], bounds)
    hang = ~core
    leaf = np.where(lo_leaf[hang], p_lo[hang], p_hi[hang])
    anchor = np.where(lo_leaf[hang], p_hi[hang], p_lo[hang])
    roots = _attach_leaves(roots, leaf, anchor, node_type, bounds)
    new_labels, uniques = pd.factorize(roots)
    return new_labels.astype(np.int64), len(uniques)
