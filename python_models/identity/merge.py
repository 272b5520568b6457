"""The hourly merge: the identifiers and edges of newly loaded events united with the stored identities.

Between two re-fits the graph only grows. Each stored identity touched by a new edge enters as one unit (with its
identifiers per type), each new identifier as a unit of its own, and the new edges are united as in
:func:`python_models.identity.resolve_identity_nodes`: where no limit is broken, a union of components; where a
union would break an :class:`IdentityLimits` bound, the same constrained forest (strongest edges first, an edge
that would break a limit is not taken) over the units of that component only. A stored identity is never cut:
the daily re-fit, which sees every edge, may split a grown component elsewhere.

Every merged identity is named by the same rule as a fitted one (its earliest identifier), so an identity keeps its
id unless it joins an earlier one, and then its events take that one's id.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from python_models.identity.resolve import earliest
from python_models.identity.rules import IdentityLimits
from python_models.identity.split import _canonical_rank, _constrained_forest, pair_edges, strongest_first

# Identifiers per type of a unit, in STRONG_TYPES order.
UNIT_COUNT_COLUMNS: tuple[str, ...] = ("n_user_ids", "n_emails", "n_cookies", "n_sessions")
UNIT_COLUMNS: tuple[str, ...] = ("node", "type_rank", "identifier_value", "first_seen_us", *UNIT_COUNT_COLUMNS)
UNIT_EDGE_COLUMNS: tuple[str, ...] = ("u", "v", "n_events", "trust", "first_seen_us", "last_seen_us")


def merge_identities(
    units: pd.DataFrame, edges: pd.DataFrame, limits: IdentityLimits | None = None
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Unite ``units`` along ``edges`` within ``limits``.

    * ``units``: one row per unit, a stored identity (``node`` its representative's node) or a new identifier
      (``node`` its own new node): type_rank, identifier_value and first_seen_us of that representative, and the
      unit's identifiers per type (:data:`UNIT_COUNT_COLUMNS`).
    * ``edges``: u, v (nodes of ``units``), n_events, trust, first_seen_us, last_seen_us; several rows per pair and
      edges inside one unit are allowed.

    Returns one row per unit: node, rep_node (the representative of the identity it is now part of), and counts
    for asset metadata.
    """
    n = len(units)
    counts = units[list(UNIT_COUNT_COLUMNS)].to_numpy(dtype=np.int64).reshape(n, len(UNIT_COUNT_COLUMNS))
    position = pd.Index(units["node"].to_numpy(dtype=np.int64))
    a, b = (
        position.get_indexer(edges["u"].to_numpy(dtype=np.int64)),
        position.get_indexer(edges["v"].to_numpy(dtype=np.int64)),
    )
    if (a < 0).any() or (b < 0).any():
        raise ValueError("merge_identities: every edge end must be the node of one of the units")
    pairs = pair_edges(
        np.minimum(a, b),
        np.maximum(a, b),
        {
            "n_events": edges["n_events"].to_numpy(dtype=np.int64),
            "trust": edges["trust"].to_numpy(dtype=np.int64),
            "first_seen": edges["first_seen_us"].to_numpy(dtype=np.int64),
            "last_seen": edges["last_seen_us"].to_numpy(dtype=np.int64),
        },
    )
    lo, hi = pairs["lo"].to_numpy(dtype=np.int64), pairs["hi"].to_numpy(dtype=np.int64)
    adjacency = coo_array((np.ones(len(lo)), (lo, hi)), shape=(n, n))
    n_groups, labels = connected_components(adjacency, directed=True, connection="weak")
    labels = labels.astype(np.int64)
    group_counts = np.zeros((n_groups, counts.shape[1]), dtype=np.int64)
    np.add.at(group_counts, labels, counts)
    over = (group_counts > limits_array(limits)).any(axis=1)
    if over.any():
        members = np.flatnonzero(over[labels])
        local = np.full(n, -1, dtype=np.int64)
        local[members] = np.arange(len(members))
        inside = over[labels[lo]]
        sub = pd.DataFrame(
            {"lo": local[lo[inside]], "hi": local[hi[inside]]}
            | {c: pairs[c].to_numpy()[inside] for c in ("n_events", "trust", "first_seen", "last_seen")}
        )
        rank = _canonical_rank(
            units["type_rank"].to_numpy(dtype=np.int64)[members],
            pa.array(units["identifier_value"].iloc[members].tolist(), type=pa.large_string()),
        )
        order = strongest_first(sub, rank)
        roots = _constrained_forest(
            sub["lo"].to_numpy()[order], sub["hi"].to_numpy()[order], counts[members], limits_array(limits)
        )
        labels[members] = n_groups + roots
        labels, uniques = pd.factorize(labels)
        labels, n_groups = labels.astype(np.int64), len(uniques)
    values = units["identifier_value"]
    rep = earliest(
        units["first_seen_us"].to_numpy(dtype=np.int64),
        units["type_rank"].to_numpy(dtype=np.int64),
        labels,
        n_groups,
        lambda rows: pa.array(values.iloc[rows].tolist(), type=pa.large_string()),
    )
    rep_unit = rep[labels]
    nodes = position.to_numpy()
    stats = {
        "units": n,
        "edges": len(pairs),
        "units_joined": int((rep_unit != np.arange(n)).sum()),
        "components_over_limit": int(over.sum()),
    }
    return pd.DataFrame({"node": nodes, "rep_node": nodes[rep_unit]}), stats


def limits_array(limits: IdentityLimits | None) -> np.ndarray:
    return (limits or IdentityLimits()).as_array()
