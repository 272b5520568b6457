"""Identity graph: strong identifiers linked by co-occurrence, resolved into stable identities.

Nodes are strong identifiers only (``user_id``, ``email``, ``cookie``, ``session``); IP addresses and
fingerprints are shared by strangers (carrier NAT, identical phones), so they never merge identities.
Identities are the connected components of the strong edges, except that a component which breaks an
:class:`IdentityLimits` bound (two user_ids, a kiosk cookie with 500 sessions...) is rebuilt by a constrained
maximum spanning forest: its edges are added strongest first (most events, most trusted edge type, oldest) and
an edge is dropped when the union would break a limit. On a path between two user_ids this cuts the weakest edge
of the strongest path, so the offending component is split, never merged wholesale. Only violating components
take this per-edge route (sessions hanging off a single cookie are attached afterwards, vectorised); everything
else is one ``scipy.sparse.csgraph.connected_components`` call, which such leaf sessions skip too.

Two entry points share that logic: :func:`resolve_identities` takes identifier strings and encodes them once
with Arrow's dictionary encoding; :func:`resolve_identity_nodes` takes a graph the warehouse has already
encoded as integer node ids (the pipeline's path, since the engine groups and joins strings far faster).
Identity ids are ``'idn_' + sha256('<type>:<value>')[:16]`` of the component's earliest identifier (minimum
``first_seen_at``, ties by type priority then value), so they survive reruns, input reordering and growth that
does not merge components. An event takes the identity of its highest-priority strong identifier (see
``STRONG_TYPES``); events without one get ``'evt_' + sha256('<kind>:<id>')[:16]`` (:func:`event_singleton_id`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping
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

# Identifier values of the given node ids, in that order (non-null): how a caller that keeps 13M strings in the
# warehouse lets the graph read the few it needs.
ValueLookup = Callable[[np.ndarray], pa.Array]

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
    if isinstance(values.dtype, pd.ArrowDtype) and pa.types.is_timestamp(values.dtype.pyarrow_dtype):
        # Straight from the engine's Arrow batches: cast in Arrow (pandas would go through Python objects).
        arr = pa.array(values.array).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        return arr.fill_null(missing).to_numpy(zero_copy_only=False)
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


def trust_by_edge_type(trust: Mapping[str, int]) -> dict[str, int]:
    """``trust`` with both spellings of every edge type: 'a-b' and 'b-a' are the same edge."""
    full = dict(trust)
    for key, value in trust.items():
        left, _, right = key.partition("-")
        full.setdefault(f"{right}-{left}", value)
    return full


def _edge_trust(edge_types: pd.Series, trust: Mapping[str, int]) -> np.ndarray:
    """Trust rank per edge; unknown types rank 0."""
    return _lookup_small(edge_types, trust_by_edge_type(trust), 0)


# --------------------------------------------------------------------------------------------------------------
# Graph construction
# --------------------------------------------------------------------------------------------------------------


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
    sel = np.flatnonzero(bad_node[graph.u])
    a, b = local[graph.u[sel]], local[graph.v[sel]]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    pairs = (
        pd.DataFrame(
            {
                "lo": lo,
                "hi": hi,
                "n_events": graph.edge_values("n_events", sel),
                "trust": graph.edge_values("trust", sel),
                "first_seen": graph.edge_values("first_seen", sel),
                "last_seen": graph.edge_values("last_seen", sel),
            }
        )
        .loc[lo != hi]
        .groupby(["lo", "hi"], as_index=False, sort=False)
        .agg(n_events=("n_events", "sum"), trust=("trust", "max"), first_seen=("first_seen", "min"),
             last_seen=("last_seen", "max"))
    )  # fmt: skip
    node_type = graph.node_type[nodes].astype(np.int64)
    rank = _canonical_rank(node_type, graph.values_of(nodes))
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
        frame = pd.DataFrame({"label": labels[tied], "value": graph.values_of(tied).to_pylist()})
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


# --------------------------------------------------------------------------------------------------------------
# Integer-coded input: the warehouse encodes the identifiers, Python only sees the graph
# --------------------------------------------------------------------------------------------------------------

NODE_COLUMNS: tuple[str, ...] = ("node", "type_rank", "identifier_value", "first_seen_us")
# _Graph edge attribute -> (column of the coded edges frame, value of a null).
_CODED_EDGE_ATTRIBUTES: dict[str, tuple[str, int]] = {
    "n_events": ("n_events", 0),
    "trust": ("trust", 0),
    "first_seen": ("first_seen_us", _MISSING_TIME),
    "last_seen": ("last_seen_us", 0),
}
CODED_EDGE_COLUMNS: tuple[str, ...] = ("u", "v", "n_events", "trust", "first_seen_us", "last_seen_us")


def _int_column(frame: pd.DataFrame, column: str, missing: int) -> np.ndarray:
    values = frame[column]
    if isinstance(values.dtype, pd.ArrowDtype):
        arr = pa.array(values.array)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if arr.null_count:
            arr = arr.fill_null(missing)
        return arr.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return values.fillna(missing).to_numpy(dtype=np.int64)


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
