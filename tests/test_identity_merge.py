"""The hourly identity merge (python_models.identity.merge_identities) against a full resolution of every edge."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from python_models.identity import STRONG_TYPES, UNIT_COUNT_COLUMNS, IdentityLimits, merge_identities
from python_models.identity import resolve_identity_nodes as resolve

UNLIMITED = IdentityLimits(max_user_ids=10**6, max_emails=10**6, max_cookies=10**6, max_sessions=10**6)


def random_graph(seed: int, n_nodes: int = 400, n_edges: int = 500) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    nodes = pd.DataFrame(
        {
            "node": np.arange(n_nodes),
            "type_rank": rng.choice(4, n_nodes, p=[0.1, 0.1, 0.4, 0.4]),
            "identifier_value": [f"v{i:04d}" for i in range(n_nodes)],
            # Coarse times: ties are broken by type, then value, as in a real graph.
            "first_seen_us": rng.integers(0, 50, n_nodes) * 1_000_000,
        }
    )
    u, v = rng.integers(0, n_nodes, n_edges), rng.integers(0, n_nodes, n_edges)
    seen = rng.integers(0, 100, n_edges) * 1_000_000
    edges = pd.DataFrame(
        {
            "u": u,
            "v": v,
            "n_events": rng.integers(1, 5, n_edges),
            "trust": rng.integers(1, 6, n_edges),
            "first_seen_us": seen,
            "last_seen_us": seen + 1,
        }
    ).loc[lambda e: e["u"] != e["v"]]
    return nodes, edges


def merge_into(
    stored: pd.DataFrame, nodes: pd.DataFrame, new_nodes: np.ndarray, new_edges: pd.DataFrame, limits: IdentityLimits
) -> pd.DataFrame:
    """What the identity asset does each hour: the stored identities the new edges touch, as units, and the new
    nodes, merged; returns every node's representative afterwards."""
    known = stored.merge(nodes, on="node")
    counts = (
        pd.crosstab(known["rep_node"], known["type_rank"])
        .reindex(columns=range(len(STRONG_TYPES)), fill_value=0)
        .set_axis(list(UNIT_COUNT_COLUMNS), axis=1)
    )
    identities = nodes.set_index("node").loc[counts.index].reset_index().join(counts.reset_index(drop=True))
    fresh = nodes.loc[nodes["node"].isin(new_nodes)].reset_index(drop=True)
    fresh = fresh.join(pd.DataFrame(np.eye(4, dtype=np.int64)[fresh["type_rank"]], columns=list(UNIT_COUNT_COLUMNS)))
    rep = dict(zip(stored["node"], stored["rep_node"], strict=True))
    ends = new_edges.assign(
        u=new_edges["u"].map(lambda x: rep.get(x, x)), v=new_edges["v"].map(lambda x: rep.get(x, x))
    )
    merged, _ = merge_identities(pd.concat([identities, fresh], ignore_index=True), ends, limits)
    moved = dict(zip(merged["node"], merged["rep_node"], strict=True))
    after = pd.concat([stored, fresh[["node"]].assign(rep_node=fresh["node"])], ignore_index=True)
    return after.assign(rep_node=after["rep_node"].map(lambda r: moved.get(r, r))).sort_values("node")


def split_by_time(nodes: pd.DataFrame, edges: pd.DataFrame, cut: int) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """The graph before ``cut`` (the last re-fit) and the edges and nodes first seen after it (the new loads)."""
    old_edges = edges.loc[edges["first_seen_us"] < cut]
    new_edges = edges.loc[edges["first_seen_us"] >= cut]
    old_nodes = np.union1d(old_edges["u"], old_edges["v"])
    # A node of the new loads alone is new; every node still has a first sighting before or with its edges.
    new_nodes = np.setdiff1d(nodes["node"], old_nodes)
    return new_nodes, old_edges, new_edges


@pytest.mark.parametrize("seed", range(5))
def test_merge_without_limits_gives_the_full_resolution(seed: int) -> None:
    nodes, edges = random_graph(seed)
    new_nodes, old_edges, new_edges = split_by_time(nodes, edges, cut=60_000_000)
    old = nodes.loc[~nodes["node"].isin(new_nodes)].reset_index(drop=True)
    # The stored graph numbers its nodes 0..n-1; the new ones come after (the asset numbers them so).
    renumber = dict(zip(pd.concat([old["node"], pd.Series(new_nodes)]), range(len(nodes)), strict=True))
    nodes = nodes.assign(node=nodes["node"].map(renumber)).sort_values("node").reset_index(drop=True)
    old_edges, new_edges = (e.assign(u=e["u"].map(renumber), v=e["v"].map(renumber)) for e in (old_edges, new_edges))
    new_nodes = np.array([renumber[x] for x in new_nodes])

    stored, _ = resolve(nodes.loc[~nodes["node"].isin(new_nodes)], old_edges, UNLIMITED)
    merged = merge_into(stored, nodes, new_nodes, new_edges, UNLIMITED)
    full, _ = resolve(nodes, pd.concat([old_edges, new_edges]), UNLIMITED)

    assert len(new_edges) and len(merged) == len(nodes)
    # The same identities, named after the same (earliest) identifier: ids are stable across the merge.
    pd.testing.assert_frame_equal(merged.reset_index(drop=True), full.reset_index(drop=True), check_dtype=False)


@pytest.mark.parametrize("seed", range(5))
def test_merge_keeps_stored_identities_whole_and_every_identity_within_its_limits(seed: int) -> None:
    limits = IdentityLimits(max_user_ids=1, max_emails=2, max_cookies=4, max_sessions=8)
    nodes, edges = random_graph(seed)
    cut = 60_000_000
    new_nodes, old_edges, new_edges = split_by_time(nodes, edges, cut)
    old = nodes["node"].isin(np.union1d(old_edges["u"], old_edges["v"]))
    stored, _ = resolve(
        nodes.loc[old].assign(node=np.arange(old.sum())), old_edges.pipe(renumbered, nodes, old), limits
    )
    stored = stored.assign(
        node=nodes.loc[old, "node"].to_numpy(), rep_node=nodes.loc[old, "node"].to_numpy()[stored["rep_node"]]
    )
    merged = merge_into(stored, nodes, new_nodes, new_edges, limits)

    before = stored.set_index("node")["rep_node"]
    after = merged.set_index("node")["rep_node"]
    # Never cut: two identifiers of one stored identity are still together.
    assert (after.loc[before.index].groupby(before).nunique() == 1).all()
    sizes = pd.crosstab(after, nodes.set_index("node").loc[after.index, "type_rank"]).reindex(
        columns=range(4), fill_value=0
    )
    assert (sizes.to_numpy() <= limits.as_array()).all()
    # The representative is a member, and the earliest one (first seen, then type).
    key = nodes.set_index("node").eval("first_seen_us * 4 + type_rank")
    assert (
        key.loc[after.to_numpy()].to_numpy()
        == key.loc[after.index].groupby(after.to_numpy()).min().loc[after.to_numpy()].to_numpy()
    ).all()
    # Something was merged, and something was refused, or the test proves nothing about the limits.
    unlimited = merge_into(stored, nodes, new_nodes, new_edges, UNLIMITED).set_index("node")["rep_node"]
    assert after.nunique() > unlimited.nunique()
    assert after.nunique() < len(after)


def renumbered(edges: pd.DataFrame, nodes: pd.DataFrame, kept: pd.Series) -> pd.DataFrame:
    """Edges among the kept nodes, numbered 0..k-1 in their order."""
    number = pd.Series(np.arange(kept.sum()), index=nodes.loc[kept, "node"].to_numpy())
    return edges.assign(u=number.loc[edges["u"]].to_numpy(), v=number.loc[edges["v"]].to_numpy())


def test_merge_refuses_the_edge_that_would_give_an_identity_a_second_user_id() -> None:
    units = pd.DataFrame(
        {
            "node": [0, 5, 9],
            "type_rank": [0, 0, 2],
            "identifier_value": ["alice", "bob", "cookie-new"],
            "first_seen_us": [0, 10, 20],
            "n_user_ids": [1, 1, 0],
            "n_emails": [0, 0, 0],
            "n_cookies": [3, 1, 1],
            "n_sessions": [0, 0, 0],
        }
    )
    # The new cookie was seen three times with bob and once with alice: it joins bob, alice and bob stay apart.
    edges = pd.DataFrame(
        {
            "u": [9, 9],
            "v": [5, 0],
            "n_events": [3, 1],
            "trust": [3, 3],
            "first_seen_us": [20, 20],
            "last_seen_us": [30, 30],
        }
    )
    merged, stats = merge_identities(units, edges, IdentityLimits())
    assert dict(zip(merged["node"], merged["rep_node"], strict=True)) == {0: 0, 5: 5, 9: 5}
    assert stats["components_over_limit"] == 1 and stats["units_joined"] == 1


def test_merge_rejects_an_edge_to_an_unknown_node() -> None:
    units = pd.DataFrame(
        {c: [0] for c in ("node", "type_rank", "first_seen_us", *UNIT_COUNT_COLUMNS)} | {"identifier_value": ["x"]}
    )
    edges = pd.DataFrame({"u": [0], "v": [7], "n_events": [1], "trust": [1], "first_seen_us": [0], "last_seen_us": [0]})
    with pytest.raises(ValueError, match="every edge end"):
        merge_identities(units, edges)
