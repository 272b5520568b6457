"""Unit tests for the identity graph (python_models.identity)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from python_models.identity import (
    STRONG_TYPES,
    IdentityLimits,
    _components,
    identity_id_for,
    resolve_identities,
    resolve_identities_with_stats,
    resolve_identity_nodes,
    trust_by_edge_type,
)

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def day(n: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=n)


def identifiers(*rows: tuple[str, str, float]) -> pd.DataFrame:
    """(type, value, first_seen day offset)."""
    return pd.DataFrame(
        {
            "identifier_type": [r[0] for r in rows],
            "identifier_value": [r[1] for r in rows],
            "first_seen_at": [day(r[2]) for r in rows],
            "n_events": 1,
        }
    )


def edges(*rows: tuple[str, str, str, str, int] | tuple[str, str, str, str, int, float]) -> pd.DataFrame:
    """(left_type, left_value, right_type, right_value, n_events[, first_seen day offset])."""
    first = [day(r[5] if len(r) > 5 else 0) for r in rows]
    return pd.DataFrame(
        {
            "left_type": [r[0] for r in rows],
            "left_value": [r[1] for r in rows],
            "right_type": [r[2] for r in rows],
            "right_value": [r[3] for r in rows],
            "edge_type": [f"{r[0]}-{r[2]}" for r in rows],
            "n_events": [r[4] for r in rows],
            "first_seen_at": first,
            "last_seen_at": first,
        }
    )


def groups(identity_map: pd.DataFrame) -> set[frozenset[str]]:
    """Identities as sets of 'type:value' for order-free comparisons."""
    keys = identity_map["identifier_type"] + ":" + identity_map["identifier_value"]
    return {frozenset(g) for g in keys.groupby(identity_map["identity_id"]).agg(set)}


def identity_of(identity_map: pd.DataFrame, type_: str, value: str) -> str:
    row = identity_map[(identity_map["identifier_type"] == type_) & (identity_map["identifier_value"] == value)]
    assert len(row) == 1, (type_, value)
    return row["identity_id"].iloc[0]


def assert_within_limits(identity_map: pd.DataFrame, limits: IdentityLimits) -> None:
    counts = identity_map.groupby(["identity_id", "identifier_type"]).size().unstack(fill_value=0)
    for type_, bound in [
        ("user_id", limits.max_user_ids),
        ("email", limits.max_emails),
        ("cookie", limits.max_cookies),
        ("session", limits.max_sessions),
    ]:
        if type_ in counts:
            assert counts[type_].max() <= bound, type_


# ----------------------------------------------------------------------------------------------------------------
# resolve_identities
# ----------------------------------------------------------------------------------------------------------------


def test_connected_strong_identifiers_share_one_identity_and_weak_ones_never_merge() -> None:
    ids = identifiers(
        ("cookie", "c1", 0),
        ("session", "s1", 0),
        ("user_id", "u1", 1),
        ("cookie", "c2", 2),
        ("cookie", "c3", 3),
        ("fingerprint", "f1", 0),
        ("ip", "ip1", 0),
    )
    e = edges(
        ("session", "s1", "cookie", "c1", 3),
        ("cookie", "c1", "user_id", "u1", 2),
        ("cookie", "c2", "user_id", "u1", 1),
        # Edges with a weak endpoint are ignored even if dbt ever sent one.
        ("fingerprint", "f1", "cookie", "c3", 9),
        ("ip", "ip1", "cookie", "c1", 9),
    )
    result = resolve_identities(ids, e)
    assert list(result.columns) == ["identifier_type", "identifier_value", "identity_id"]
    assert groups(result) == {
        frozenset({"cookie:c1", "session:s1", "user_id:u1", "cookie:c2"}),
        frozenset({"cookie:c3"}),
    }
    assert set(result["identifier_type"]) <= {"user_id", "email", "cookie", "session"}
    # Named after the earliest identifier: c1 and s1 both day 0 -> cookie outranks session.
    assert identity_of(result, "user_id", "u1") == identity_id_for("cookie", "c1")
    assert identity_of(result, "cookie", "c3") == identity_id_for("cookie", "c3")
    assert result["identity_id"].str.fullmatch(r"idn_[0-9a-f]{16}").all()


def test_two_user_ids_are_split_by_cutting_the_weakest_edge() -> None:
    # A household laptop: cookie c1 logged into u1 ten times and u2 once.
    ids = identifiers(("cookie", "c1", 0), ("user_id", "u1", 0), ("user_id", "u2", 1), ("cookie", "c2", 1))
    e = edges(
        ("cookie", "c1", "user_id", "u1", 10),
        ("cookie", "c1", "user_id", "u2", 1),
        ("cookie", "c2", "user_id", "u2", 4),
    )
    result, stats = resolve_identities_with_stats(ids, e)
    assert groups(result) == {frozenset({"cookie:c1", "user_id:u1"}), frozenset({"user_id:u2", "cookie:c2"})}
    assert stats["n_components_split"] == 1
    assert stats["n_identities"] == 2
    assert stats["largest_identity"] == 2  # identifiers in the biggest identity, after the split


def test_weakest_edge_on_a_long_path_between_user_ids_is_the_one_cut() -> None:
    # u1 - c1 - e1 - c2 - u2: the middle edge c2-e1 (1 event) is the weakest on the path.
    ids = identifiers(
        ("user_id", "u1", 0), ("cookie", "c1", 0), ("email", "e1", 0), ("cookie", "c2", 0), ("user_id", "u2", 0)
    )
    e = edges(
        ("cookie", "c1", "user_id", "u1", 5),
        ("cookie", "c1", "email", "e1", 4),
        ("cookie", "c2", "email", "e1", 1),
        ("cookie", "c2", "user_id", "u2", 3),
    )
    result = resolve_identities(ids, e)
    assert groups(result) == {
        frozenset({"user_id:u1", "cookie:c1", "email:e1"}),
        frozenset({"cookie:c2", "user_id:u2"}),
    }


def test_equal_n_events_less_trusted_edge_type_is_cut_first() -> None:
    # Same evidence count: a forwarded campaign email (cookie-email) is trusted less than a login.
    ids = identifiers(("user_id", "u1", 0), ("user_id", "u2", 0), ("cookie", "c1", 0), ("email", "e1", 0))
    e = edges(
        ("cookie", "c1", "user_id", "u1", 2),
        ("email", "e1", "user_id", "u2", 2),
        ("cookie", "c1", "email", "e1", 2),
    )
    result = resolve_identities(ids, e)
    assert groups(result) == {frozenset({"user_id:u1", "cookie:c1"}), frozenset({"email:e1", "user_id:u2"})}


def test_more_than_five_emails_are_split_and_every_part_respects_limits() -> None:
    emails = [f"e{i}" for i in range(8)]
    ids = identifiers(("cookie", "c1", 0), *[("email", e, 1) for e in emails])
    e = edges(*[("cookie", "c1", "email", em, 10 - i) for i, em in enumerate(emails)])
    limits = IdentityLimits()
    result = resolve_identities(ids, e, limits)
    assert_within_limits(result, limits)
    # The five best-supported emails stay with the cookie; the rest become their own identities.
    assert {"email:e0", "email:e1", "email:e2", "email:e3", "email:e4", "cookie:c1"} in groups(result)
    assert result["identity_id"].nunique() == 4


def test_kiosk_cookie_with_many_users_and_sessions_is_split_within_all_limits() -> None:
    limits = IdentityLimits(max_cookies=3, max_sessions=50)
    rows = [("cookie", "kiosk", 0)]
    links = []
    for p in range(40):
        rows += [("user_id", f"u{p}", p), ("cookie", f"c{p}", p)]
        links += [("cookie", f"c{p}", "user_id", f"u{p}", 20), ("cookie", "kiosk", "user_id", f"u{p}", 1 + p % 3)]
        for s in range(5):
            rows.append(("session", f"s{p}_{s}", p))
            links.append(("session", f"s{p}_{s}", "cookie", f"c{p}", 5))
    for s in range(120):
        rows.append(("session", f"k{s}", 0))
        links.append(("session", f"k{s}", "cookie", "kiosk", 2))
    result = resolve_identities(identifiers(*rows), edges(*links), limits)
    assert_within_limits(result, limits)
    # Every person keeps their own cookie and sessions.
    for p in range(40):
        assert identity_of(result, "cookie", f"c{p}") == identity_of(result, "user_id", f"u{p}")
        assert identity_of(result, "session", f"s{p}_0") == identity_of(result, "user_id", f"u{p}")


def test_blocked_value_edges_are_dropped_and_value_left_out_of_the_map() -> None:
    ids = identifiers(("email", "test@x", 0), ("cookie", "c1", 1), ("cookie", "c2", 2))
    e = edges(("cookie", "c1", "email", "test@x", 5), ("cookie", "c2", "email", "test@x", 5))
    unblocked = resolve_identities(ids, e)
    assert unblocked["identity_id"].nunique() == 1
    limits = IdentityLimits(blocked_values=frozenset({("email", "test@x")}))
    result = resolve_identities(ids, e, limits)
    assert groups(result) == {frozenset({"cookie:c1"}), frozenset({"cookie:c2"})}


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_user_ids"):
        IdentityLimits(max_user_ids=0)
    with pytest.raises(ValueError, match="unknown identifier types"):
        IdentityLimits(blocked_values=frozenset({("phone", "1")}))
    with pytest.raises(KeyError, match="edges lacks"):
        resolve_identities(identifiers(("cookie", "c1", 0)), pd.DataFrame({"left_type": []}))


def test_ids_are_stable_across_reruns_input_order_and_growth() -> None:
    ids = identifiers(
        ("cookie", "c1", 0), ("user_id", "u1", 1), ("cookie", "c2", 2), ("session", "s2", 2), ("email", "e9", 5)
    )
    e = edges(
        ("cookie", "c1", "user_id", "u1", 3, 1),
        ("session", "s2", "cookie", "c2", 1, 2),
        ("cookie", "c2", "email", "e9", 1, 5),
    )
    first = resolve_identities(ids, e)
    shuffled = resolve_identities(ids.sample(frac=1, random_state=3), e.sample(frac=1, random_state=4))
    key = ["identifier_type", "identifier_value"]
    pd.testing.assert_frame_equal(
        first.sort_values(key, ignore_index=True), shuffled.sort_values(key, ignore_index=True)
    )
    # Growth: a later cookie joins u1, a new person appears; no existing component merges with another.
    grown = resolve_identities(
        pd.concat([ids, identifiers(("cookie", "c3", 9), ("cookie", "c4", 9))], ignore_index=True),
        pd.concat([e, edges(("cookie", "c3", "user_id", "u1", 1, 9))], ignore_index=True),
    )
    merged = first.merge(grown, on=key, suffixes=("_before", "_after"))
    assert len(merged) == len(first)
    assert (merged["identity_id_before"] == merged["identity_id_after"]).all()
    assert identity_of(grown, "cookie", "c3") == identity_of(first, "user_id", "u1")
    assert identity_of(grown, "cookie", "c4") == identity_id_for("cookie", "c4")


def test_identity_named_after_earliest_identifier_with_type_then_value_tie_breaks() -> None:
    ids = identifiers(("cookie", "cb", 1), ("cookie", "ca", 1), ("session", "s", 1), ("email", "e", 3))
    e = edges(
        ("session", "s", "cookie", "ca", 1, 1),
        ("session", "s", "cookie", "cb", 1, 1),
        ("cookie", "ca", "email", "e", 1, 3),
    )
    result = resolve_identities(ids, e)
    assert result["identity_id"].unique().tolist() == [identity_id_for("cookie", "ca")]


def test_empty_inputs() -> None:
    empty_ids = identifiers()
    empty_edges = edges()
    result = resolve_identities(empty_ids, empty_edges)
    assert list(result.columns) == ["identifier_type", "identifier_value", "identity_id"]
    assert result.empty
    only_nodes = resolve_identities(identifiers(("cookie", "c1", 0)), empty_edges)
    assert only_nodes["identity_id"].tolist() == [identity_id_for("cookie", "c1")]


def test_junk_tokens_never_link_by_default() -> None:
    ids = identifiers(("cookie", "undefined", 0), ("user_id", "u1", 0), ("user_id", "u2", 0))
    e = edges(("cookie", "undefined", "user_id", "u1", 5), ("cookie", "undefined", "user_id", "u2", 5))
    result = resolve_identities(ids, e)
    assert groups(result) == {frozenset({"user_id:u1"}), frozenset({"user_id:u2"})}


# ----------------------------------------------------------------------------------------------------------------
# Scale
# ----------------------------------------------------------------------------------------------------------------


def synthetic_graph(n_persons: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Persons with 1-2 cookies, 1-3 sessions per cookie, some logins and emails, 1% shared household cookies."""
    rng = np.random.default_rng(seed)
    cookie_owner = np.repeat(np.arange(n_persons), rng.integers(1, 3, n_persons))
    session_cookie = np.repeat(np.arange(len(cookie_owner)), rng.integers(1, 4, len(cookie_owner)))
    has_user = rng.random(n_persons) < 0.3
    has_email = rng.random(n_persons) < 0.2

    def names(prefix: str, idx: np.ndarray) -> np.ndarray:
        return np.char.add(prefix, idx.astype(str))

    def stamps(n: int) -> pd.Series:
        return pd.Series(T0 + pd.to_timedelta(rng.integers(0, 90 * 86400, n), unit="s"))

    cookies = names("c", np.arange(len(cookie_owner)))
    sessions = names("s", np.arange(len(session_cookie)))
    users, emails = np.flatnonzero(has_user), np.flatnonzero(has_email)
    ident = pd.concat(
        [
            pd.DataFrame({"identifier_type": "cookie", "identifier_value": cookies}),
            pd.DataFrame({"identifier_type": "session", "identifier_value": sessions}),
            pd.DataFrame({"identifier_type": "user_id", "identifier_value": names("u", users)}),
            pd.DataFrame({"identifier_type": "email", "identifier_value": names("e", emails)}),
        ],
        ignore_index=True,
    )
    ident["first_seen_at"] = stamps(len(ident))
    ident["n_events"] = 3
    ck_u = np.flatnonzero(has_user[cookie_owner])
    ck_e = np.flatnonzero(has_email[cookie_owner])
    shared = rng.choice(len(cookie_owner), size=len(cookie_owner) // 100, replace=False)
    other_user = users[rng.integers(0, len(users), len(shared))]
    parts = [
        ("session", sessions, "cookie", cookies[session_cookie]),
        ("cookie", cookies[ck_u], "user_id", names("u", cookie_owner[ck_u])),
        ("cookie", cookies[ck_e], "email", names("e", cookie_owner[ck_e])),
        ("cookie", cookies[shared], "user_id", names("u", other_user)),
    ]
    e = pd.concat(
        [
            pd.DataFrame({"left_type": lt, "left_value": lv, "right_type": rt, "right_value": rv})
            for lt, lv, rt, rv in parts
        ],
        ignore_index=True,
    )
    e["edge_type"] = e["left_type"] + "-" + e["right_type"]
    e["n_events"] = rng.integers(1, 10, len(e))
    e["first_seen_at"] = stamps(len(e))
    e["last_seen_at"] = e["first_seen_at"]
    return ident.astype({"identifier_type": "str", "identifier_value": "str"}), e.astype(
        {c: "str" for c in ["left_type", "left_value", "right_type", "right_value", "edge_type"]}
    )


def test_scale_smoke_one_million_edges() -> None:
    ident, e = synthetic_graph(130_000)
    assert len(e) >= 1_000_000 * 0.3  # the generator's edge count per person
    reps = max(1, 1_000_000 // len(e))
    # Stack independent copies (suffixing values) to reach >= 1M edges without changing the structure.
    ident = pd.concat(
        [ident.assign(identifier_value=ident["identifier_value"] + f"_{r}") for r in range(reps + 1)], ignore_index=True
    )
    e = pd.concat(
        [
            e.assign(left_value=e["left_value"] + f"_{r}", right_value=e["right_value"] + f"_{r}")
            for r in range(reps + 1)
        ],
        ignore_index=True,
    )
    assert len(e) >= 1_000_000
    limits = IdentityLimits()
    wall, cpu = time.perf_counter(), time.process_time()
    result, stats = resolve_identities_with_stats(ident, e, limits)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"\nresolve_identities: {len(ident):,} identifiers, {len(e):,} edges: {wall:.2f}s wall, {cpu:.2f}s cpu, {stats}"
    )
    assert len(result) == len(ident)
    assert stats["n_components_split"] > 0
    assert_within_limits(result, limits)
    assert cpu < 60


# ----------------------------------------------------------------------------------------------------------------
# Integer-coded input (the pipeline's path: the warehouse numbers the identifiers)
# ----------------------------------------------------------------------------------------------------------------


def encode(ident: pd.DataFrame, e: pd.DataFrame, limits: IdentityLimits, seed: int) -> tuple[pd.DataFrame, ...]:
    """What the identity asset's SQL hands to Python: nodes numbered in an arbitrary order, edges as node pairs."""
    rng = np.random.default_rng(seed)
    nodes = (
        ident.groupby(["identifier_type", "identifier_value"], as_index=False)["first_seen_at"]
        .min()
        .sample(frac=1.0, random_state=seed)
        .reset_index(drop=True)
    )
    nodes["node"] = rng.permutation(len(nodes))
    nodes["type_rank"] = nodes["identifier_type"].map({t: i for i, t in enumerate(STRONG_TYPES)})
    nodes["first_seen_us"] = nodes["first_seen_at"].astype("datetime64[us, UTC]").astype("int64")
    key = nodes.set_index(["identifier_type", "identifier_value"])["node"]
    coded = pd.DataFrame(
        {
            "u": key.reindex(pd.MultiIndex.from_frame(e[["left_type", "left_value"]])).to_numpy(),
            "v": key.reindex(pd.MultiIndex.from_frame(e[["right_type", "right_value"]])).to_numpy(),
            "n_events": e["n_events"].to_numpy(),
            "trust": e["edge_type"].map(trust_by_edge_type(limits.edge_type_trust)).fillna(0).astype(int).to_numpy(),
            "first_seen_us": e["first_seen_at"].astype("datetime64[us, UTC]").astype("int64").to_numpy(),
            "last_seen_us": e["last_seen_at"].astype("datetime64[us, UTC]").astype("int64").to_numpy(),
        }
    ).sample(frac=1.0, random_state=seed + 1)
    return nodes, coded


def identities_from_nodes(nodes: pd.DataFrame, labels: pd.DataFrame) -> pd.Series:
    """identifier 'type:value' -> identity_id, naming each identity after its representative node."""
    by_node = nodes.set_index("node")
    rep = labels.set_index("node")["rep_node"]
    names = {n: identity_id_for(by_node.at[n, "identifier_type"], by_node.at[n, "identifier_value"]) for n in set(rep)}
    keys = by_node["identifier_type"] + ":" + by_node["identifier_value"]
    return pd.Series([names[rep[n]] for n in by_node.index], index=keys.to_numpy()).sort_index()


@pytest.mark.parametrize("seed", [0, 1])
def test_integer_coded_graph_resolves_exactly_like_the_string_api(seed: int) -> None:
    ident, e = synthetic_graph(3000, seed=seed)
    limits = IdentityLimits(max_cookies=3)
    expected, expected_stats = resolve_identities_with_stats(ident, e, limits)
    nodes, coded = encode(ident, e, limits, seed)
    labels, stats = resolve_identity_nodes(nodes, coded, limits)
    assert stats == expected_stats
    assert stats["n_components_split"] > 0  # shared cookies and the cookie limit force splits
    assert labels["node"].tolist() == list(range(len(nodes)))
    got = identities_from_nodes(nodes, labels)
    want = pd.Series(
        expected["identity_id"].to_numpy(),
        index=(expected["identifier_type"] + ":" + expected["identifier_value"]).to_numpy(),
    ).sort_index()
    pd.testing.assert_series_equal(got, want, check_names=False)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_value_lookup_gives_the_same_identities_and_reads_only_tie_breaking_values(seed: int) -> None:
    ident, e = synthetic_graph(3000, seed=seed)
    limits = IdentityLimits(max_cookies=3)
    nodes, coded = encode(ident, e, limits, seed)
    expected, expected_stats = resolve_identity_nodes(nodes, coded, limits)
    by_node = nodes.set_index("node")["identifier_value"]
    asked: list[int] = []

    def lookup(ids: np.ndarray) -> pa.Array:
        asked.extend(ids.tolist())
        return pa.array(by_node.reindex(ids).tolist(), type=pa.string())

    labels, stats = resolve_identity_nodes(nodes.drop(columns=["identifier_value"]), coded, limits, lookup)
    assert stats == expected_stats
    pd.testing.assert_frame_equal(labels, expected)
    assert 0 < len(asked) < len(nodes) / 2  # split components and first_seen ties only
    with pytest.raises(ValueError, match="value_lookup returned"):
        resolve_identity_nodes(nodes, coded, limits, lambda ids: pa.array(["x"], type=pa.string()))


def test_integer_coded_input_is_validated() -> None:
    nodes = pd.DataFrame(
        {"node": [0, 1], "type_rank": [2, 3], "identifier_value": ["c1", "s1"], "first_seen_us": [0, 5]}
    )
    coded = pd.DataFrame({"u": [0], "v": [1], "n_events": [1], "trust": [5], "first_seen_us": [0], "last_seen_us": [0]})
    labels, _ = resolve_identity_nodes(nodes, coded)
    assert labels["rep_node"].tolist() == [0, 0]  # the cookie, seen first
    with pytest.raises(ValueError, match="0 .. len"):
        resolve_identity_nodes(nodes.assign(node=[0, 2]), coded)
    with pytest.raises(ValueError, match="type_rank"):
        resolve_identity_nodes(nodes.assign(type_rank=[2, 7]), coded)
    with pytest.raises(ValueError, match="node ids"):
        resolve_identity_nodes(nodes, coded.assign(v=[9]))
    with pytest.raises(KeyError, match="first_seen_us"):
        resolve_identity_nodes(nodes.drop(columns=["first_seen_us"]), coded)
    empty, stats = resolve_identity_nodes(nodes.iloc[:0], coded.iloc[:0])
    assert empty.empty and stats["n_identities"] == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_leaf_sessions_left_out_of_the_component_search_change_no_component(seed: int) -> None:
    """_components attaches leaf sessions after the scipy call; the partition must be scipy's on every edge."""
    rng = np.random.default_rng(seed)
    n = 3000
    node_type = rng.choice(len(STRONG_TYPES), n, p=[0.05, 0.1, 0.25, 0.6]).astype(np.int8)
    sessions = np.flatnonzero(node_type == STRONG_TYPES.index("session"))
    others = np.flatnonzero(node_type != STRONG_TYPES.index("session"))
    # Most sessions hang off one cookie; some link two identifiers; a few pairs of sessions, parallel edges and
    # self-loops (which make a session no leaf).
    u = np.concatenate([sessions, sessions[:300], sessions[:50:2], others[:40], sessions[300:320]])
    v = np.concatenate(
        [rng.choice(others, len(sessions)), rng.choice(others, 300), sessions[1:50:2], rng.choice(others, 40),
         sessions[300:320]]
    )  # fmt: skip
    flip = rng.random(len(u)) < 0.5
    u, v = np.where(flip, v, u), np.where(flip, u, v)
    k, labels = _components(n, u, v, node_type)
    want_k, want = connected_components(coo_array((np.ones(len(u)), (u, v)), shape=(n, n)), connection="weak")
    assert k == want_k and sorted(set(labels.tolist())) == list(range(k))
    pairs = set(zip(labels.tolist(), want.tolist(), strict=True))
    assert len(pairs) == k  # the same partition, labelled differently
    assert k < n - 1000  # most sessions really were attached to a neighbour
