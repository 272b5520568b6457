"""Public entry points: connected components, limit splits and representatives, on strings or on integer codes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from python_models.identity.encoding import _short_hash
from python_models.identity.graph import ValueLookup, _build_graph, _Graph, _graph_from_codes, _type_counts
from python_models.identity.rules import STRONG_TYPES, IdentityLimits
from python_models.identity.split import _split_violations


def _components(n: int, u: np.ndarray, v: np.ndarray, node_type: np.ndarray) -> tuple[int, np.ndarray]:
    """Connected components of the undirected graph: their number and a label 0 .. k-1 per node.

    A session seen with one other identifier only (a leaf: at 10M clicks, two thirds of the nodes and four fifths
    of the edges) cannot connect anything, so it is left out of the scipy call and takes its neighbour's label.
    """
    session = STRONG_TYPES.index("session")
    degree = np.bincount(u, minlength=n) + np.bincount(v, minlength=n)
    leaf = (degree == 1) & (node_type == session)
    u_leaf, v_leaf = leaf[u], leaf[v]
    hang = u_leaf != v_leaf
    core = ~hang
    # float64 data: connected_components converts anything else, a copy of every edge. 32-bit indices when they
    # fit: scipy's CSR/CSC conversions then move half the bytes.
    index = np.int32 if n < np.iinfo(np.int32).max else np.int64
    ends = (u[core].astype(index, copy=False), v[core].astype(index, copy=False))
    adjacency = coo_array((np.ones(len(ends[0]), dtype=np.float64), ends), shape=(n, n))
    _, labels = connected_components(adjacency, directed=True, connection="weak")
    labels = labels.astype(np.int64)
    hang_u, hang_v, hang_u_leaf = u[hang], v[hang], u_leaf[hang]
    leaves = np.where(hang_u_leaf, hang_u, hang_v)
    labels[leaves] = labels[np.where(hang_u_leaf, hang_v, hang_u)]
    # The leaves' own (now empty) singleton labels drop out.
    used = np.zeros(labels.max() + 1 if n else 0, dtype=bool)
    used[labels] = True
    remap = np.cumsum(used) - 1
    return int(used.sum()), remap[labels]


def _resolve_labels(graph: _Graph, limits: IdentityLimits) -> tuple[np.ndarray, int, int]:
    """Component label per node (limits enforced), number of components, number of components split."""
    n = len(graph.node_type)
    if n == 0:
        return np.zeros(0, dtype=np.int64), 0, 0
    n_comp, labels = _components(n, graph.u, graph.v, graph.node_type)
    counts = _type_counts(labels, graph.node_type, n_comp)
    bad = (counts > limits.as_array()[None, :]).any(axis=1)
    n_bad = int(bad.sum())
    if n_bad:
        bad_node = bad[labels]
        sub_labels, n_sub = _split_violations(graph, labels, bad, limits)
        # Keep good components' labels, give split parts fresh labels, then compact.
        labels = labels.copy()
        labels[bad_node] = n_comp + sub_labels
        labels, uniques = pd.factorize(labels)
        labels = labels.astype(np.int64)
        n_comp = len(uniques)
    return labels, n_comp, n_bad


def earliest(
    first_seen: np.ndarray,
    type_rank: np.ndarray,
    labels: np.ndarray,
    n_labels: int,
    values_of: Callable[[np.ndarray], pa.Array],
) -> np.ndarray:
    """Index of each label's earliest identifier: minimum first_seen, then type priority, then value (read through
    ``values_of`` for the tied rows only). The rule that picks an identity's representative, and so its name."""
    key = first_seen * 4 + type_rank.astype(np.int64)
    comp_min = np.full(n_labels, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(comp_min, labels, key)
    candidates = np.flatnonzero(key == comp_min[labels])
    cand_labels = labels[candidates]
    n_cand = np.bincount(cand_labels, minlength=n_labels)
    rep = np.full(n_labels, -1, dtype=np.int64)
    unique = n_cand[cand_labels] == 1
    rep[cand_labels[unique]] = candidates[unique]
    tied = candidates[~unique]
    if len(tied):
        # Same first_seen and type: the smallest value wins (rare; sorted on the tied rows only).
        frame = pd.DataFrame({"label": labels[tied], "value": values_of(tied).to_pylist()})
        first = frame.sort_values(["label", "value"]).drop_duplicates("label")
        rep[first["label"].to_numpy()] = tied[first.index.to_numpy()]
    return rep


def _representatives(graph: _Graph, labels: np.ndarray, n_comp: int) -> np.ndarray:
    """Node index of each component's earliest identifier."""
    return earliest(graph.node_first_seen, graph.node_type, labels, n_comp, graph.values_of)


def resolve_identities_with_stats(
    identifiers: pd.DataFrame, edges: pd.DataFrame, limits: IdentityLimits | None = None
) -> tuple[pd.DataFrame, dict[str, int]]:
    """:func:`resolve_identities` plus sizes for asset metadata (nodes, edges used, identities, splits)."""
    limits = limits or IdentityLimits()
    graph = _build_graph(identifiers, edges, limits)
    labels, n_comp, n_split = _resolve_labels(graph, limits)
    rep = _representatives(graph, labels, n_comp)
    rep_keys = [
        f"{STRONG_TYPES[t]}:{v}"
        for t, v in zip(graph.node_type[rep].tolist(), graph.values_of(rep).to_pylist(), strict=True)
    ]
    ids = pa.array(_short_hash("idn_", rep_keys), type=pa.large_string())
    type_names = pa.array(list(STRONG_TYPES), type=pa.large_string())
    identity_map = pd.DataFrame(
        {
            "identifier_type": _str_series(type_names.take(pa.array(graph.node_type.astype(np.int64)))),
            "identifier_value": _str_series(graph.node_value),
            "identity_id": _str_series(ids.take(pa.array(labels))),
        }
    )
    return identity_map, _stats(graph, labels, n_comp, n_split)


def _stats(graph: _Graph, labels: np.ndarray, n_comp: int, n_split: int) -> dict[str, int]:
    return {
        "n_identifiers": len(graph.node_type),
        "n_edges": len(graph.u),
        "n_identities": n_comp,
        "n_components_split": n_split,
        "largest_identity": int(np.bincount(labels).max()) if len(labels) else 0,
    }


def resolve_identities(
    identifiers: pd.DataFrame, edges: pd.DataFrame, limits: IdentityLimits | None = None
) -> pd.DataFrame:
    """Map every strong identifier to a resolved identity.

    ``identifiers``: identifier_type, identifier_value, first_seen_at (UTC), n_events. Weak types (ip,
    fingerprint) are ignored. ``edges``: left_type, left_value, right_type, right_value, edge_type, n_events,
    first_seen_at, last_seen_at. Edges touching ``limits.blocked_values`` are dropped and blocked identifiers are
    left out of the map (events then fall back to their other identifiers). Identifiers that only appear in
    ``edges`` are dated by their earliest edge.

    Returns identifier_type, identifier_value, identity_id (one row per strong, non-blocked identifier).
    """
    return resolve_identities_with_stats(identifiers, edges, limits)[0]


def _str_series(values: pa.Array) -> pd.Series:
    return pd.Series(pd.array(values, dtype="str"))


def resolve_identity_nodes(
    nodes: pd.DataFrame,
    edges: pd.DataFrame,
    limits: IdentityLimits | None = None,
    value_lookup: ValueLookup | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The identity graph on integer-coded input: :func:`resolve_identities` for a warehouse that has already
    replaced every identifier by a node id (a GROUP BY and a join it runs far faster than Python can hash
    13M strings).

    * ``nodes``: node (the ids 0 .. n-1, any order), type_rank (index in ``STRONG_TYPES``), identifier_value
      (read only to break ties), first_seen_us (earliest event, UTC microseconds; null = unknown). Blocked
      values must already be left out.
    * ``edges``: u, v (node ids), n_events, trust (rank of the edge type, higher is cut later; see
      :func:`trust_by_edge_type`), first_seen_us, last_seen_us.
    * ``value_lookup``: instead of the identifier_value column, a function returning the values of given node
      ids. Values only break ties (equal first_seen within a component, the canonical order of a component that
      is split), so at 10M clicks a few thousand are read instead of 13M strings moved out of the warehouse.

    Same components, limits, splits and representatives as :func:`resolve_identities`. Returns one row per node:
    node, rep_node (the node of the identity's earliest identifier, whose ``identity_id_for(type, value)`` names
    the identity), and the sizes for asset metadata.
    """
    limits = limits or IdentityLimits()
    graph = _graph_from_codes(nodes, edges, value_lookup)
    labels, n_comp, n_split = _resolve_labels(graph, limits)
    rep = _representatives(graph, labels, n_comp)
    result = pd.DataFrame({"node": np.arange(len(labels), dtype=np.int64), "rep_node": rep[labels]})
    return result, _stats(graph, labels, n_comp, n_split)
