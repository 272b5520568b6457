"""Identity graph: strong identifiers linked by co-occurrence, resolved into stable identities.

Nodes are strong identifiers only (``user_id``, ``email``, ``cookie``, ``session``); IP addresses and
fingerprints are shared by strangers (carrier NAT, identical phones), so they never merge identities.
Identities are the connected components of the strong edges, except that a component which breaks an
:class:`IdentityLimits` bound (two user_ids, a kiosk cookie with 500 sessions...) is rebuilt by a constrained
maximum spanning forest: its edges are added strongest first (most events, most trusted edge type, oldest) and
an edge is dropped when the union would break a limit. On a path between two user_ids this cuts the weakest edge
of the strongest path, so the offending component is split, never merged wholesale. Only violating components
take this per-edge route (sessions hanging off a single cookie are attached afterwards, vectorised); everything
else is one ``scipy.sparse.csgraph.connected_components`` call.

Identifier strings are hashed once with Arrow's dictionary encoding; all later work is on integer arrays.
Identity ids are ``'idn_' + sha256('<type>:<value>')[:16]`` of the component's earliest identifier (minimum
``first_seen_at``, ties by type priority then value), so they survive reruns, input reordering and growth that
does not merge components. Events without a strong identifier get ``'evt_' + sha256('<kind>:<id>')[:16]``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

# Priority order: when a limit split puts an event's identifiers in different identities, the event follows
# the first type present in this order.
STRONG_TYPES: tuple[str, ...] = ("user_id", "email", "cookie", "session")
WEAK_TYPES: tuple[str, ...] = ("fingerprint", "ip")

# How much an edge type is trusted when a component must be split (higher = kept longer). A session id lives
# inside one browser; a login ties an email to its account; a forwarded campaign email or a shared link can
# carry someone else's email / click id to a stranger's browser.
DEFAULT_EDGE_TYPE_TRUST: Mapping[str, int] = {
    "cookie-session": 5,
    "email-user_id": 4,
    "cookie-user_id": 3,
    "session-user_id": 3,
    "direct_click-cookie": 2,
    "cookie-email": 1,
    "email-session": 1,
}

_MISSING_TIME = np.iinfo(np.int64).max // 8  # sorts after every real timestamp, leaves room for *4 keys
_HASH_CHARS = 16


# Placeholder tokens broken trackers write into identifier fields; staging should null them, this is the backstop
# (a shared 'undefined' cookie would otherwise merge thousands of people). Emails arrive hashed, so they are
# listed by the operator as hashes when needed.
JUNK_TOKENS: tuple[str, ...] = ("null", "undefined", "none", "nan", "0", "-1", "00000000-0000-0000-0000-000000000000")
DEFAULT_BLOCKED_VALUES: frozenset[tuple[str, str]] = frozenset(
    (t, v) for t in ("user_id", "cookie", "session") for v in JUNK_TOKENS
)
_ENV_PREFIX = "ATTRIBUTION_IDENTITY_"


@dataclass(frozen=True)
class IdentityLimits:
    """Upper bounds on what one person can plausibly own; components beyond them are split.

    ``blocked_values`` are (identifier_type, identifier_value) pairs that never link anything and are left out of
    the identity map. ``edge_type_trust`` ranks edge types for splitting (higher = cut later).
    """

    max_user_ids: int = 1
    max_emails: int = 5
    max_cookies: int = 200
    max_sessions: int = 2000
    blocked_values: frozenset[tuple[str, str]] = DEFAULT_BLOCKED_VALUES
    edge_type_trust: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_EDGE_TYPE_TRUST))

    def __post_init__(self) -> None:
        for name in ("max_user_ids", "max_emails", "max_cookies", "max_sessions"):
            if getattr(self, name) < 1:
                raise ValueError(f"IdentityLimits.{name} must be >= 1, got {getattr(self, name)!r}")
        bad = sorted({t for t, _ in self.blocked_values} - set(STRONG_TYPES) - set(WEAK_TYPES))
        if bad:
            raise ValueError(f"IdentityLimits.blocked_values has unknown identifier types {bad}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> IdentityLimits:
        """Limits from ``ATTRIBUTION_IDENTITY_MAX_USER_IDS`` / ``_MAX_EMAILS`` / ``_MAX_COOKIES`` / ``_MAX_SESSIONS``
        and ``ATTRIBUTION_IDENTITY_BLOCKED`` (comma-separated ``type:value``, added to the default junk tokens);
        unset variables keep the defaults. ``environ`` defaults to ``os.environ``."""
        env = os.environ if environ is None else environ
        kwargs: dict[str, object] = {}
        for name in ("max_user_ids", "max_emails", "max_cookies", "max_sessions"):
            raw = env.get(_ENV_PREFIX + name.upper(), "").strip()
            if raw:
                try:
                    kwargs[name] = int(raw)
                except ValueError as exc:
                    raise ValueError(f"{_ENV_PREFIX}{name.upper()} must be an integer, got {raw!r}") from exc
        blocked = set(DEFAULT_BLOCKED_VALUES)
        for item in env.get(_ENV_PREFIX + "BLOCKED", "").split(","):
            if item.strip():
                type_, sep, value = item.strip().partition(":")
                if not sep:
                    raise ValueError(f"{_ENV_PREFIX}BLOCKED entries must be type:value, got {item.strip()!r}")
                blocked.add((type_, value))
        return cls(blocked_values=frozenset(blocked), **kwargs)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly view for asset metadata."""
        return {
            "max_user_ids": self.max_user_ids,
            "max_emails": self.max_emails,
            "max_cookies": self.max_cookies,
            "max_sessions": self.max_sessions,
            "blocked_values": sorted(f"{t}:{v}" for t, v in self.blocked_values),
            "edge_type_trust": dict(self.edge_type_trust),
        }

    def as_array(self) -> np.ndarray:
        """Limits in ``STRONG_TYPES`` order."""
        return np.array([self.max_user_ids, self.max_emails, self.max_cookies, self.max_sessions])


# --------------------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------------------


def _require(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"{name} lacks column(s) {missing}; has {list(frame.columns)}")


def _as_large_string(values: pd.Series) -> pa.Array:
    """Arrow large_string view of a text column (zero-copy for Arrow-backed pandas strings)."""
    dtype = values.dtype
    if isinstance(dtype, pd.ArrowDtype) or (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"):
        arr = pa.array(values.array)
    else:
        if not pd.api.types.is_string_dtype(values):
            values = values.astype("str")
        arr = pa.array(values.to_numpy(dtype=object), type=pa.large_string(), from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr if arr.type == pa.large_string() else arr.cast(pa.large_string())


def _encode_strings(parts: list[pd.Series | pa.Array]) -> tuple[list[np.ndarray], pa.Array]:
    """Dictionary-encode several text columns jointly: integer codes per part and the shared dictionary."""
    arrays = [p if isinstance(p, pa.Array) else _as_large_string(p) for p in parts]
    encoded = pa.chunked_array(arrays, type=pa.large_string()).dictionary_encode()
    if encoded.num_chunks == 0 or len(encoded) == 0:
        return [np.zeros(0, dtype=np.int64) for _ in parts], pa.array([], type=pa.large_string())
    dictionary = encoded.chunks[-1].dictionary
    codes = np.concatenate([chunk.indices.to_numpy(zero_copy_only=False).astype(np.int64) for chunk in encoded.chunks])
    return np.split(codes, np.cumsum([len(a) for a in arrays])[:-1]), dictionary


def _micros(values: pd.Series, missing: int = _MISSING_TIME) -> np.ndarray:
    """UTC timestamps as int64 microseconds; missing values become ``missing``."""
    ts = pd.to_datetime(values, utc=True).dt.as_unit("us")
    return np.where(ts.isna().to_numpy(), missing, ts.array.asi8)


def _short_hash(prefix: str, keys: Iterable[str]) -> list[str]:
    """``prefix + sha256(key)[:16]``; one call per identity / identifier-less event (not per click row)."""
    sha = hashlib.sha256
    return [prefix + sha(k.encode()).hexdigest()[:_HASH_CHARS] for k in keys]


def identity_id_for(identifier_type: str, identifier_value: str) -> str:
    """The identity id of a component whose earliest identifier is (``identifier_type``, ``identifier_value``)."""
    return _short_hash("idn_", [f"{identifier_type}:{identifier_value}"])[0]


def event_singleton_id(event_kind: str, event_id: str) -> str:
    """The identity id given to an event that carries no resolved strong identifier."""
    return _short_hash("evt_", [f"{event_kind}:{event_id}"])[0]


def _lookup_small(values: pd.Series | pa.Array, mapping: Mapping[str, int], default: int) -> np.ndarray:
    """Map a low-cardinality text column through ``mapping`` (missing or unknown -> ``default``), via Arrow."""
    arr = values if isinstance(values, pa.Array) else _as_large_string(values)
    encoded = arr.dictionary_encode()
    table = np.array([mapping.get(k, default) for k in encoded.dictionary.to_pylist()] + [default], np.int64)
    indices = encoded.indices.fill_null(len(table) - 1).to_numpy(zero_copy_only=False)
    return table[indices]


def _type_codes(types: pd.Series | pa.Array) -> np.ndarray:
    """Rank of each identifier type in ``STRONG_TYPES``; -1 for weak or unknown types."""
    return _lookup_small(types, {t: i for i, t in enumerate(STRONG_TYPES)}, -1)


def _blocked_mask(types: np.ndarray, values: pa.Array, blocked: frozenset[tuple[str, str]]) -> np.ndarray:
    """Rows whose (type, value) is blocked; ``types`` are ``_type_codes`` (weak types are never nodes)."""
    mask = np.zeros(len(types), dtype=bool)
    by_type: dict[str, list[str]] = {}
    for t, v in blocked:
        by_type.setdefault(t, []).append(v)
    for t, vals in by_type.items():
        if t not in STRONG_TYPES:
            continue
        hit = pc.is_in(values, value_set=pa.array(vals, type=pa.large_string())).to_numpy(zero_copy_only=False)
        mask |= (types == STRONG_TYPES.index(t)) & hit
    return mask


def _edge_trust(edge_types: pd.Series, trust: Mapping[str, int]) -> np.ndarray:
    """Trust rank per edge; 'a-b' and 'b-a' are the same edge type, unknown types rank 0."""
    full = dict(trust)
    for key, value in trust.items():
        left, _, right = key.partition("-")
        full.setdefault(f"{right}-{left}", value)
    return _lookup_small(edge_types, full, 0)


# --------------------------------------------------------------------------------------------------------------
# Graph construction
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Graph:
    node_type: np.ndarray  # int8 rank in STRONG_TYPES
    node_value: pa.Array  # large_string, one per node
    node_first_seen: np.ndarray  # int64 microseconds (_MISSING_TIME when unknown)
    u: np.ndarray
    v: np.ndarray
    n_events: np.ndarray
    trust: np.ndarray
    first_seen: np.ndarray
    last_seen: np.ndarray


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


# --------------------------------------------------------------------------------------------------------------
# Splitting components that break the limits
# --------------------------------------------------------------------------------------------------------------


def _canonical_rank(node_type: np.ndarray, node_value: pa.Array) -> np.ndarray:
    """Rank of each node by (type priority, value): a tie-break that does not depend on input row order."""
    order = pd.DataFrame({"t": node_type, "v": node_value.to_pylist()}).sort_values(["t", "v"]).index.to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def _constrained_forest(
    n_nodes: int, a: np.ndarray, b: np.ndarray, node_type: np.ndarray, limits: np.ndarray
) -> np.ndarray:
    """Union edges (a[k], b[k]) in the given order unless the union breaks a limit; returns each node's root.

    This is the module's only per-edge Python loop. It sees only edges of components that violate a limit, minus
    session leaves (attached afterwards, vectorised, by :func:`_attach_leaves`).
    """
    parent = list(range(n_nodes))
    size = [1] * n_nodes
    types = node_type.tolist()
    cu, ce, cc, cs = ([int(t == k) for t in types] for k in range(4))
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


def _split_violations(
    graph: _Graph, labels: np.ndarray, bad_component: np.ndarray, limits: IdentityLimits
) -> tuple[np.ndarray, int]:
    """Relabel the nodes of violating components; returns (local labels for those nodes, count)."""
    bad_node = bad_component[labels]
    nodes = np.flatnonzero(bad_node)
    local = np.full(len(labels), -1, dtype=np.int64)
    local[nodes] = np.arange(len(nodes))
    sel = bad_node[graph.u]
    a, b = local[graph.u[sel]], local[graph.v[sel]]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    pairs = (
        pd.DataFrame(
            {
                "lo": lo,
                "hi": hi,
                "n_events": graph.n_events[sel],
                "trust": graph.trust[sel],
                "first_seen": graph.first_seen[sel],
                "last_seen": graph.last_seen[sel],
            }
        )
        .loc[lo != hi]
        .groupby(["lo", "hi"], as_index=False, sort=False)
        .agg(n_events=("n_events", "sum"), trust=("trust", "max"), first_seen=("first_seen", "min"),
             last_seen=("last_seen", "max"))
    )  # fmt: skip
    node_type = graph.node_type[nodes].astype(np.int64)
    rank = _canonical_rank(node_type, graph.node_value.take(pa.array(nodes)))
    p_lo, p_hi = pairs["lo"].to_numpy(), pairs["hi"].to_numpy()
    r_lo, r_hi = rank[p_lo], rank[p_hi]
    # Strongest first: most events, most trusted type, oldest, most recently confirmed, then canonical order.
    order = np.lexsort(
        (
            np.maximum(r_lo, r_hi),
            np.minimum(r_lo, r_hi),
            -pairs["last_seen"].to_numpy(),
            pairs["first_seen"].to_numpy(),
            -pairs["trust"].to_numpy(),
            -pairs["n_events"].to_numpy(),
        )
    )
    p_lo, p_hi = p_lo[order], p_hi[order]
    # Session leaves (a session seen with one cookie only: most nodes) connect nothing, so they stay out of the
    # loop and are attached afterwards; sessions then never block a merge of stronger identifiers. Other leaves
    # (a user_id at the end of a path) stay in the loop, where they compete for their type's budget in order.
    session = STRONG_TYPES.index("session")
    degree = np.bincount(p_lo, minlength=len(nodes)) + np.bincount(p_hi, minlength=len(nodes))
    lo_leaf = (degree[p_lo] == 1) & (node_type[p_lo] == session)
    hi_leaf = (degree[p_hi] == 1) & (node_type[p_hi] == session)
    core = lo_leaf == hi_leaf  # neither end is a leaf, or an isolated pair
    bounds = limits.as_array()
    roots = _constrained_forest(len(nodes), p_lo[core], p_hi[core], node_type, bounds)
    hang = ~core
    leaf = np.where(lo_leaf[hang], p_lo[hang], p_hi[hang])
    anchor = np.where(lo_leaf[hang], p_hi[hang], p_lo[hang])
    roots = _attach_leaves(roots, leaf, anchor, node_type, bounds)
    new_labels, uniques = pd.factorize(roots)
    return new_labels.astype(np.int64), len(uniques)


# --------------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------------


def _resolve_labels(graph: _Graph, limits: IdentityLimits) -> tuple[np.ndarray, int, int]:
    """Component label per node (limits enforced), number of components, number of components split."""
    n = len(graph.node_type)
    if n == 0:
        return np.zeros(0, dtype=np.int64), 0, 0
    adjacency = coo_array((np.ones(len(graph.u), dtype=np.int8), (graph.u, graph.v)), shape=(n, n))
    n_comp, labels = connected_components(adjacency, directed=True, connection="weak")
    labels = labels.astype(np.int64)
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


def _representatives(graph: _Graph, labels: np.ndarray, n_comp: int) -> np.ndarray:
    """Node index of each component's earliest identifier (first_seen, then type priority, then value)."""
    key = graph.node_first_seen * 4 + graph.node_type.astype(np.int64)
    comp_min = np.full(n_comp, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(comp_min, labels, key)
    candidates = np.flatnonzero(key == comp_min[labels])
    cand_labels = labels[candidates]
    n_cand = np.bincount(cand_labels, minlength=n_comp)
    rep = np.full(n_comp, -1, dtype=np.int64)
    unique = n_cand[cand_labels] == 1
    rep[cand_labels[unique]] = candidates[unique]
    tied = candidates[~unique]
    if len(tied):
        # Same first_seen and type: the smallest value wins (rare; sorted on the tied rows only).
        frame = pd.DataFrame({"label": labels[tied], "value": graph.node_value.take(pa.array(tied)).to_pylist()})
        first = frame.sort_values(["label", "value"]).drop_duplicates("label")
        rep[first["label"].to_numpy()] = tied[first.index.to_numpy()]
    return rep


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
        for t, v in zip(graph.node_type[rep].tolist(), graph.node_value.take(pa.array(rep)).to_pylist(), strict=True)
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
    stats = {
        "n_identifiers": len(graph.node_type),
        "n_edges": len(graph.u),
        "n_identities": n_comp,
        "n_components_split": n_split,
    }
    return identity_map, stats


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


@dataclass(frozen=True)
class _EventKeys:
    """Integer key ``id_code * n_kinds + kind_code`` for (event_kind, event_id), shared by several frames."""

    codes: list[np.ndarray]
    kinds: pa.Array
    ids: pa.Array

    @property
    def size(self) -> int:
        return max(len(self.kinds), 1) * len(self.ids)

    def kind_of(self, key: np.ndarray) -> pa.Array:
        return self.kinds.take(pa.array(key % max(len(self.kinds), 1)))

    def id_of(self, key: np.ndarray) -> pa.Array:
        return self.ids.take(pa.array(key // max(len(self.kinds), 1)))


def _event_keys(kinds: list[pd.Series], ids: list[pd.Series]) -> _EventKeys:
    kind_codes, kind_dict = _encode_strings(kinds)
    id_codes, id_dict = _encode_strings(ids)
    n_kinds = max(len(kind_dict), 1)
    return _EventKeys(
        codes=[i * n_kinds + k for i, k in zip(id_codes, kind_codes, strict=True)], kinds=kind_dict, ids=id_dict
    )


@dataclass(frozen=True)
class _Assignment:
    """Identity of every event present in ``event_identifiers``."""

    events: np.ndarray  # event key codes, one per event
    entry: np.ndarray  # identity_map row of the event's identity, -1 for identifier-less events
    singleton_ids: pa.Array  # 'evt_...' ids of the events with entry == -1, in event order
    map_ids: pa.Array  # identity_map.identity_id as Arrow strings

    def identity_strings(self) -> pa.Array:
        source = pa.concat_arrays([self.map_ids, self.singleton_ids])
        index = self.entry.copy()
        lonely = np.flatnonzero(index < 0)
        index[lonely] = len(self.map_ids) + np.arange(len(lonely))
        return source.take(pa.array(index))


def _assign_events(
    event_identifiers: pd.DataFrame, event_code: np.ndarray, keys: _EventKeys, identity_map: pd.DataFrame
) -> _Assignment:
    ei = event_identifiers
    present = np.zeros(keys.size, dtype=bool)
    present[event_code] = True

    # Row of identity_map matched by each strong event identifier (-1: not a strong identifier / not mapped).
    ei_type = _type_codes(ei["identifier_type"])
    ei_values = _as_large_string(ei["identifier_value"])
    map_type = _type_codes(identity_map["identifier_type"])
    map_values = _as_large_string(identity_map["identifier_value"])
    map_ids = _as_large_string(identity_map["identity_id"])
    row_entry = np.full(len(ei), -1, dtype=np.int64)
    for t in range(len(STRONG_TYPES)):
        rows, entries = np.flatnonzero(ei_type == t), np.flatnonzero(map_type == t)
        if len(rows) == 0 or len(entries) == 0:
            continue
        pos = pc.index_in(ei_values.take(pa.array(rows)), value_set=map_values.take(pa.array(entries)))
        found = pos.is_valid().to_numpy(zero_copy_only=False)
        row_entry[rows[found]] = entries[pos.filter(found).to_numpy().astype(np.int64)]

    # Best rows per event: lowest type priority. Several rows of that type (two sessions on one event) normally
    # share an identity; if a split put them apart, the lexicographically smallest identity id wins.
    found_rows = np.flatnonzero(row_entry >= 0)
    found_event = event_code[found_rows]
    best_type = np.full(keys.size, len(STRONG_TYPES), dtype=np.int64)
    np.minimum.at(best_type, found_event, ei_type[found_rows])
    winners = found_rows[ei_type[found_rows] == best_type[found_event]]
    win_event, win_entry = event_code[winners], row_entry[winners]
    best_entry = np.full(keys.size, -1, dtype=np.int64)
    best_entry[win_event] = win_entry
    n_winners = np.bincount(win_event, minlength=keys.size)
    crowded = n_winners[win_event] > 1
    if crowded.any():
        tied = pd.DataFrame(
            {
                "event": win_event[crowded],
                "entry": win_entry[crowded],
                "identity": map_ids.take(pa.array(win_entry[crowded])).to_pylist(),
            }
        )
        first = tied.sort_values(["event", "identity"]).drop_duplicates("event")
        best_entry[first["event"].to_numpy()] = first["entry"].to_numpy()

    events = np.flatnonzero(present)
    entry = best_entry[events]
    lonely = events[entry < 0]
    kinds = keys.kind_of(lonely).to_pylist()
    ids = keys.id_of(lonely).to_pylist()
    singleton = _short_hash("evt_", (f"{k}:{i}" for k, i in zip(kinds, ids, strict=True)))
    return _Assignment(
        events=events, entry=entry, singleton_ids=pa.array(singleton, type=pa.large_string()), map_ids=map_ids
    )


def _event_frame(keys: _EventKeys, assignment: _Assignment) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_kind": _str_series(keys.kind_of(assignment.events)),
            "event_id": _str_series(keys.id_of(assignment.events)),
            "identity_id": _str_series(assignment.identity_strings()),
        }
    )


_EVENT_IDENTIFIER_COLUMNS = ["event_kind", "event_id", "identifier_type", "identifier_value"]
_MAP_COLUMNS = ["identifier_type", "identifier_value", "identity_id"]
_CLICK_COLUMNS = ["event_id", "observed_at", "user_agent", "device_family"]


def event_identities(event_identifiers: pd.DataFrame, identity_map: pd.DataFrame) -> pd.DataFrame:
    """One identity per event.

    ``event_identifiers``: event_kind ('click' / 'conversion'), event_id, identifier_type, identifier_value (one
    row per identifier on an event; an event with no identifier at all may appear once with nulls). The event
    takes the identity of its highest-priority strong identifier found in ``identity_map`` (user_id > email >
    cookie > session; ties by smallest identity_id). Events without one get ``'evt_' + sha256(kind:id)[:16]``.
    Identifiers absent from the map (blocked values) are ignored.
    """
    _require(event_identifiers, _EVENT_IDENTIFIER_COLUMNS, "event_identifiers")
    _require(identity_map, _MAP_COLUMNS, "identity_map")
    keys = _event_keys([event_identifiers["event_kind"]], [event_identifiers["event_id"]])
    return _event_frame(keys, _assign_events(event_identifiers, keys.codes[0], keys, identity_map))


def _distinct_per_group(group: np.ndarray, values: pd.Series | pa.Array, n_groups: int) -> np.ndarray:
    """Number of distinct non-null ``values`` per group code (rows with group < 0 are ignored)."""
    arr = values if isinstance(values, pa.Array) else _as_large_string(values)
    valid = arr.is_valid().to_numpy(zero_copy_only=False) & (group >= 0)
    (codes,), dictionary = _encode_strings([arr.filter(pa.array(valid))])
    width = len(dictionary) + 1
    pairs = pd.unique(group[valid] * width + codes)
    return np.bincount(pairs // width, minlength=n_groups)


def _latest_value(group: np.ndarray, observed: np.ndarray, values: pa.Array, n_groups: int) -> np.ndarray:
    """Per group, the non-null value of the latest row (ties: greatest value); None where a group has none."""
    rows = np.flatnonzero(values.is_valid().to_numpy(zero_copy_only=False) & (group >= 0) & (observed != _MISSING_TIME))
    latest = np.full(n_groups, -1, dtype=np.int64)
    np.maximum.at(latest, group[rows], observed[rows])
    last_rows = rows[observed[rows] == latest[group[rows]]]
    frame = pd.DataFrame({"group": group[last_rows], "value": values.take(pa.array(last_rows)).to_pylist()})
    frame = frame.sort_values(["group", "value"]).drop_duplicates("group", keep="last")
    out = np.full(n_groups, None, dtype=object)
    out[frame["group"].to_numpy()] = frame["value"].to_numpy()
    return out


def _profile_frame(
    identities: pa.Array,
    event_identifiers: pd.DataFrame,
    ei_identity: np.ndarray,
    clicks: pd.DataFrame,
    click_identity: np.ndarray,
    strong_counts: dict[str, np.ndarray] | None,
) -> pd.DataFrame:
    """The dim_identities rows, given each event-identifier row's and each click's identity code."""
    n_id = len(identities)
    observed = _micros(event_identifiers["observed_at"])
    seen = (ei_identity >= 0) & (observed != _MISSING_TIME)
    first_seen = np.full(n_id, _MISSING_TIME, dtype=np.int64)
    last_seen = np.full(n_id, -1, dtype=np.int64)
    np.minimum.at(first_seen, ei_identity[seen], observed[seen])
    np.maximum.at(last_seen, ei_identity[seen], observed[seen])

    types = (*STRONG_TYPES, "fingerprint")
    ei_type = _lookup_small(event_identifiers["identifier_type"], {t: i for i, t in enumerate(types)}, -1)
    ei_values = _as_large_string(event_identifiers["identifier_value"])
    counts = dict(strong_counts or {})
    for i, t in enumerate(types):
        if t not in counts:
            rows = np.flatnonzero(ei_type == i)
            counts[t] = _distinct_per_group(ei_identity[rows], ei_values.take(pa.array(rows)), n_id)

    n_families = _distinct_per_group(click_identity, clicks["device_family"], n_id)
    agents = _as_large_string(clicks["user_agent"])
    last_agent = _latest_value(click_identity, _micros(clicks["observed_at"]), agents, n_id)

    def stamps(values: np.ndarray, missing: np.ndarray) -> pd.Series:
        return pd.Series(pd.to_datetime(np.where(missing, np.iinfo(np.int64).min, values), unit="us", utc=True))

    profile = pd.DataFrame(
        {
            "identity_id": _str_series(identities),
            "first_seen_at": stamps(first_seen, first_seen == _MISSING_TIME),
            "last_seen_at": stamps(last_seen, last_seen < 0),
            **{f"n_{t}s": counts[t].astype(np.int64) for t in types},
            "n_devices": np.where(n_families > 0, n_families, counts["fingerprint"]).astype(np.int64),
            "last_user_agent": pd.array(last_agent, dtype="str"),
        }
    )
    return profile.take(pc.sort_indices(identities).to_numpy()).reset_index(drop=True)


def _click_kinds(clicks: pd.DataFrame) -> pd.Series:
    if "event_kind" in clicks:
        return clicks["event_kind"]
    return pd.Series("click", index=clicks.index, dtype="str")


def _map_strong_counts(identity_map: pd.DataFrame, map_identity: np.ndarray, n_id: int) -> dict[str, np.ndarray]:
    map_type = _type_codes(identity_map["identifier_type"])
    return {t: np.bincount(map_identity[map_type == i], minlength=n_id) for i, t in enumerate(STRONG_TYPES)}


def identity_profiles(
    event_identifiers: pd.DataFrame,
    event_identities: pd.DataFrame,
    clicks: pd.DataFrame,
    identity_map: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per identity of ``event_identities`` for ``dim_identities``.

    * ``event_identifiers``: event_kind, event_id, identifier_type, identifier_value, observed_at (UTC) - the
      identifiers seen on clicks and conversions. first/last seen span all of the identity's events;
      ``n_<type>s`` count the distinct identifiers of each type seen on them (fingerprints included).
    * ``event_identities``: event_kind, event_id, identity_id (from :func:`event_identities`).
    * ``clicks``: event_id (the click_id), observed_at, user_agent, device_family; event_kind optional
      ('click'). ``n_devices`` approximates distinct physical devices as the distinct device families of the
      identity's clicks (an in-app webview and Safari on one phone count once), or its distinct fingerprints
      when no device family is known. ``last_user_agent`` is the user agent of its latest click that has one.
    * ``identity_map`` (optional): when given, the strong counts (user_ids, emails, cookies, sessions) come from
      it instead of the events, i.e. exactly the identifiers resolved into the identity, and identities without
      an event are listed too (null timestamps).

    :func:`event_identities_with_profiles` gives the same two tables from one encoding of the event ids (about
    twice as fast on large inputs).
    """
    _require(event_identifiers, [*_EVENT_IDENTIFIER_COLUMNS, "observed_at"], "event_identifiers")
    _require(event_identities, ["event_kind", "event_id", "identity_id"], "event_identities")
    _require(clicks, _CLICK_COLUMNS, "clicks")
    keys = _event_keys(
        [event_identifiers["event_kind"], event_identities["event_kind"], _click_kinds(clicks)],
        [event_identifiers["event_id"], event_identities["event_id"], clicks["event_id"]],
    )
    parts = [event_identities["identity_id"]]
    if identity_map is not None:
        _require(identity_map, _MAP_COLUMNS, "identity_map")
        parts.append(identity_map["identity_id"])
    identity_codes, identities = _encode_strings(parts)
    identity_by_key = np.full(keys.size, -1, dtype=np.int64)
    identity_by_key[keys.codes[1]] = identity_codes[0]
    strong = None
    if identity_map is not None:
        strong = _map_strong_counts(identity_map, identity_codes[1], len(identities))
    return _profile_frame(
        identities,
        event_identifiers,
        identity_by_key[keys.codes[0]],
        clicks,
        identity_by_key[keys.codes[2]],
        strong,
    )


def event_identities_with_profiles(
    event_identifiers: pd.DataFrame, identity_map: pd.DataFrame, clicks: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`event_identities` and :func:`identity_profiles` (strong counts from ``identity_map``) in one pass.

    Same inputs and outputs as the two functions; the event ids are encoded once, which at 10M events saves
    more than the cost of the profiles themselves.
    """
    _require(event_identifiers, [*_EVENT_IDENTIFIER_COLUMNS, "observed_at"], "event_identifiers")
    _require(identity_map, _MAP_COLUMNS, "identity_map")
    _require(clicks, _CLICK_COLUMNS, "clicks")
    keys = _event_keys(
        [event_identifiers["event_kind"], _click_kinds(clicks)], [event_identifiers["event_id"], clicks["event_id"]]
    )
    assignment = _assign_events(event_identifiers, keys.codes[0], keys, identity_map)
    events = _event_frame(keys, assignment)
    # Identity codes: identity_map's identities first, then one per identifier-less event.
    (map_identity,), map_identities = _encode_strings([identity_map["identity_id"]])
    n_map = len(map_identities)
    code_of_event = np.where(assignment.entry >= 0, map_identity[np.maximum(assignment.entry, 0)], -1)
    lonely = np.flatnonzero(assignment.entry < 0)
    code_of_event[lonely] = n_map + np.arange(len(lonely))
    identity_by_key = np.full(keys.size, -1, dtype=np.int64)
    identity_by_key[assignment.events] = code_of_event
    identities = pa.concat_arrays([map_identities, assignment.singleton_ids])
    profiles = _profile_frame(
        identities,
        event_identifiers,
        identity_by_key[keys.codes[0]],
        clicks,
        identity_by_key[keys.codes[1]],
        _map_strong_counts(identity_map, map_identity, len(identities)),
    )
    return events, profiles
