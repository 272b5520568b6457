"""The identity graph as arrays: built from identifier strings (Arrow dictionary encoding) or from a graph the
warehouse has already encoded as integer node numbers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from python_models.identity.encoding import (
    _MISSING_TIME,
    _as_large_string,
    _blocked_mask,
    _edge_trust,
    _encode_strings,
    _int_column,
    _micros,
    _require,
    _type_codes,
)
from python_models.identity.rules import STRONG_TYPES, IdentityLimits

# Identifier values of the given node ids, in that order (non-null): how a caller that keeps 13M strings in the
# warehouse lets the graph read the few it needs.
ValueLookup = Callable[[np.ndarray], pa.Array]

NODE_COLUMNS: tuple[str, ...] = ("node", "type_rank", "identifier_value", "first_seen_us")
# _Graph edge attribute -> (column of the coded edges frame, value of a null).
_CODED_EDGE_ATTRIBUTES: dict[str, tuple[str, int]] = {
    "n_events": ("n_events", 0),
    "trust": ("trust", 0),
    "first_seen": ("first_seen_us", _MISSING_TIME),
    "last_seen": ("last_seen_us", 0),
}
CODED_EDGE_COLUMNS: tuple[str, ...] = ("u", "v", "n_events", "trust", "first_seen_us", "last_seen_us")


@dataclass(frozen=True)
class _Graph:
    node_type: np.ndarray  # int8 rank in STRONG_TYPES
    node_value: pa.Array  # large_string, one per node (in value_row order when that is set)
    node_first_seen: np.ndarray  # int64 microseconds (_MISSING_TIME when unknown)
    u: np.ndarray
    v: np.ndarray
    # Edge attributes, only read to split components that break a limit: arrays, or None with ``edge_frame`` (the
    # integer-coded input) holding them, converted for the edges of those components alone.
    n_events: np.ndarray | None
    trust: np.ndarray | None
    first_seen: np.ndarray | None
    last_seen: np.ndarray | None
    edge_frame: pd.DataFrame | None = None
    # Row of node_value holding each node's value, None when node i is row i. Values only break ties, so the
    # 13M strings are not reordered up front; the few that are read are looked up through this.
    value_row: np.ndarray | None = None
    # Or, instead of node_value, a function giving the values of some nodes (the warehouse keeps the strings).
    value_lookup: ValueLookup | None = None

    def edge_values(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Attribute ``name`` (n_events, trust, first_seen, last_seen) of the edges at ``rows``."""
        held = getattr(self, name)
        if held is not None:
            return held[rows]
        assert self.edge_frame is not None, "a graph holds its edge attributes or the frame they come from"
        column, missing = _CODED_EDGE_ATTRIBUTES[name]
        return _int_column(self.edge_frame[[column]].take(rows), column, missing)

    def values_of(self, nodes: np.ndarray) -> pa.Array:
        if self.value_lookup is not None:
            return _checked_lookup(self.value_lookup, nodes)
        rows = nodes if self.value_row is None else self.value_row[nodes]
        return self.node_value.take(pa.array(rows))


def _checked_lookup(lookup: ValueLookup, nodes: np.ndarray) -> pa.Array:
    values = lookup(np.asarray(nodes, dtype=np.int64))
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if len(values) != len(nodes) or values.null_count:
        raise ValueError(
            f"value_lookup returned {len(values)} values ({values.null_count} null) for {len(nodes)} nodes"
        )
    return values.cast(pa.large_string())


def _build_graph(identifiers: pd.DataFrame, edges: pd.DataFrame, limits: IdentityLimits) -> _Graph:
    _require(identifiers, ["identifier_type", "identifier_value", "first_seen_at"], "identifiers")
    _require(edges, ["left_type", "left_value", "right_type", "right_value"], "edges")

    i_values = _as_large_string(identifiers["identifier_value"])
    it = _type_codes(identifiers["identifier_type"])
    keep_i = (it >= 0) & i_values.is_valid().to_numpy(zero_copy_only=False)
    keep_i &= ~_blocked_mask(it, i_values, limits.blocked_values)

    l_values, r_values = _as_large_string(edges["left_value"]), _as_large_string(edges["right_value"])
    lt, rt = _type_codes(edges["left_type"]), _type_codes(edges["right_type"])
    keep_e = (lt >= 0) & (rt >= 0)
    keep_e &= l_values.is_valid().to_numpy(zero_copy_only=False)
    keep_e &= r_values.is_valid().to_numpy(zero_copy_only=False)
    keep_e &= ~_blocked_mask(lt, l_values, limits.blocked_values)
    keep_e &= ~_blocked_mask(rt, r_values, limits.blocked_values)
    ident_rows, edge_rows = np.flatnonzero(keep_i), np.flatnonzero(keep_e)
    it, lt, rt = it[ident_rows], lt[edge_rows], rt[edge_rows]
    if len(ident_rows) < len(i_values):
        i_values = i_values.take(pa.array(ident_rows))
    if len(edge_rows) < len(l_values):
        l_values, r_values = l_values.take(pa.array(edge_rows)), r_values.take(pa.array(edge_rows))

    # Encode per type so that equal strings of different types stay different nodes.
    n_e = len(edge_rows)
    u = np.empty(n_e, dtype=np.int64)
    v = np.empty(n_e, dtype=np.int64)
    ident_node = np.empty(len(ident_rows), dtype=np.int64)
    node_types: list[np.ndarray] = []
    node_values: list[pa.Array] = []
    offset = 0
    for t in range(len(STRONG_TYPES)):
        mi, ml, mr = it == t, lt == t, rt == t
        (ci, cl, cr), dictionary = _encode_strings(
            [i_values.filter(pa.array(mi)), l_values.filter(pa.array(ml)), r_values.filter(pa.array(mr))]
        )
        ident_node[mi], u[ml], v[mr] = ci + offset, cl + offset, cr + offset
        node_types.append(np.full(len(dictionary), t, dtype=np.int8))
        node_values.append(dictionary)
        offset += len(dictionary)

    n_nodes = offset
    first_seen = np.full(n_nodes, _MISSING_TIME, dtype=np.int64)
    np.minimum.at(first_seen, ident_node, _micros(identifiers["first_seen_at"].iloc[ident_rows]))
    n_all = len(edges)
    e_first = _micros(edges["first_seen_at"]) if "first_seen_at" in edges else np.full(n_all, _MISSING_TIME)
    e_last = _micros(edges["last_seen_at"], missing=0) if "last_seen_at" in edges else np.zeros(n_all, np.int64)
    n_events = edges["n_events"].fillna(0).to_numpy(dtype=np.int64) if "n_events" in edges else np.ones(n_all, np.int64)
    trust = (
        _edge_trust(edges["edge_type"], limits.edge_type_trust) if "edge_type" in edges else np.zeros(n_all, np.int64)
    )
    e_first, e_last, n_events, trust = (x[edge_rows] for x in (e_first, e_last, n_events, trust))
    # The identifiers table is authoritative; edges only date nodes it does not list.
    edge_first_seen = np.full(n_nodes, _MISSING_TIME, dtype=np.int64)
    np.minimum.at(edge_first_seen, u, e_first)
    np.minimum.at(edge_first_seen, v, e_first)
    first_seen = np.where(first_seen == _MISSING_TIME, edge_first_seen, first_seen)
    return _Graph(
        node_type=np.concatenate(node_types) if node_types else np.zeros(0, np.int8),
        node_value=pa.concat_arrays(node_values),
        node_first_seen=first_seen,
        u=u,
        v=v,
        n_events=n_events,
        trust=trust,
        first_seen=e_first,
        last_seen=e_last,
    )


def _type_counts(labels: np.ndarray, node_type: np.ndarray, n_components: int) -> np.ndarray:
    """(n_components, len(STRONG_TYPES)) counts of identifiers per type."""
    return np.stack(
        [np.bincount(labels[node_type == t], minlength=n_components) for t in range(len(STRONG_TYPES))],
        axis=1,
    )


def _graph_from_codes(nodes: pd.DataFrame, edges: pd.DataFrame, value_lookup: ValueLookup | None = None) -> _Graph:
    _require(nodes, [c for c in NODE_COLUMNS if c != "identifier_value" or value_lookup is None], "nodes")
    _require(edges, CODED_EDGE_COLUMNS, "edges")
    node = _int_column(nodes, "node", -1)
    n = len(node)
    # The row of each node id, by scattering (linear) rather than sorting; it must be a permutation.
    if n and (node.min() < 0 or node.max() >= n or np.bincount(node, minlength=n).max() != 1):
        raise ValueError("nodes.node must hold the ids 0 .. len(nodes) - 1, each exactly once")
    order = np.empty(n, dtype=np.int64)
    order[node] = np.arange(n, dtype=np.int64)
    if np.array_equal(order, np.arange(n)):
        order = None
    node_type = _int_column(nodes, "type_rank", -1)
    if ((node_type < 0) | (node_type >= len(STRONG_TYPES))).any():
        raise ValueError(f"nodes.type_rank must index STRONG_TYPES {STRONG_TYPES}")
    values = _as_large_string(nodes["identifier_value"]) if value_lookup is None else pa.array([], pa.large_string())
    first_seen = _int_column(nodes, "first_seen_us", _MISSING_TIME)
    if order is not None:
        node_type, first_seen = node_type[order], first_seen[order]
    u, v = _int_column(edges, "u", -1), _int_column(edges, "v", -1)
    if len(u) and (min(u.min(), v.min()) < 0 or max(u.max(), v.max()) >= n):
        raise ValueError("edges.u / edges.v must be node ids of nodes")
    return _Graph(
        node_type=node_type.astype(np.int8),
        node_value=values,
        value_row=order,
        value_lookup=value_lookup,
        node_first_seen=first_seen,
        u=u,
        v=v,
        n_events=None,
        trust=None,
        first_seen=None,
        last_seen=None,
        edge_frame=edges,
    )
