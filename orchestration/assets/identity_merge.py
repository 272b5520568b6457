"""The hourly identity merge: what the identity_graph asset does in the hourly job instead of re-fitting.

The re-fit (daily) writes ``identity_representatives``, the resolution of every node. Between re-fits the graph only
grows, kept in three small tables the asset rewrites each hour, emptied by the next re-fit:

* ``identity_added_nodes``: identifiers first seen since the re-fit, numbered after int_identity_nodes, with their
  identity's representative;
* ``identity_forwards``: identities (fitted, or founded by a merge) that joined an earlier one, old → new
  representative, with the old id so int_event_identities finds the events that carry it;
* ``identity_graph_state``: the newest event load the graph covers, the next free node number, and when the last
  re-fit ran (int_event_identities is rebuilt whole after a re-fit).

dbt applies them (macros identity_nodes and identity_representatives). Here the stored identities that the new edges
touch and the new identifiers become units of :func:`python_models.identity.merge_identities`; this module only
reads what the merge needs and writes what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd

from orchestration.assets.common import PYTHON_SCHEMA, PhaseTimer
from orchestration.assets.keys import (
    IDENTITY_REPRESENTATIVES,
    INT_CLICKS,
    INT_IDENTITY_INCREMENT_EDGES,
    INT_IDENTITY_INCREMENT_NODES,
    INT_IDENTITY_NODES,
)
from python_models.identity import STRONG_TYPES, UNIT_COUNT_COLUMNS, IdentityLimits, identity_id_for, merge_identities
from warehouse.client import Warehouse, qualified

FORWARDS, ADDED_NODES, GRAPH_STATE = "identity_forwards", "identity_added_nodes", "identity_graph_state"
REPRESENTATIVES = qualified(PYTHON_SCHEMA, IDENTITY_REPRESENTATIVES.path[-1])
_NODES = qualified(*INT_IDENTITY_NODES.path)
_LOOKUP = "identity_merge_lookup__tmp"
# Lookups of a few nodes (the relation {w}, column node): their fitted representatives; the fitted identities'
# identifiers per type; the identifiers of representatives.
_REPS_OF = f"select r.node, r.rep_node from {REPRESENTATIVES} as r inner join {{w}} as w on w.node = r.node"
_TYPES_OF = (
    f"select r.rep_node, n.type_rank, count(*) as n from {REPRESENTATIVES} as r "
    f"inner join {{w}} as w on w.node = r.rep_node inner join {_NODES} as n on n.node = r.node "
    "group by r.rep_node, n.type_rank"
)
_IDENTIFIERS_OF = (
    f"select n.node, n.type_rank, n.identifier_value, n.first_seen_us from {_NODES} as n "
    "inner join {w} as w on w.node = n.node"
)
_ADDED_COLUMNS = ["node", "type_rank", "identifier_value", "node_key", "first_seen_us", "rep_node"]
_FORWARD_COLUMNS = ["old_rep", "rep_node", "old_identity_id"]
# Before any load: a mark older than every load stamp.
_NO_LOADS = pd.Timestamp(0, tz="UTC")


@dataclass(frozen=True)
class MergeState:
    """The tables a merge rewrites, as one hour leaves them."""

    added: pd.DataFrame
    forwards: pd.DataFrame
    loaded_through: pd.Timestamp
    next_node: int
    fitted_at: str

    @property
    def forward(self) -> dict[int, int]:
        """Each forwarded identity's representative → the representative it joined."""
        return dict(zip(self.forwards["old_rep"], self.forwards["rep_node"], strict=True))


def empty_state(next_node: int, loaded_through: pd.Timestamp | None) -> MergeState:
    """The state a re-fit leaves (now): nothing added or forwarded since."""
    added = pd.DataFrame({c: pd.Series(dtype="int64") for c in _ADDED_COLUMNS}).astype({"identifier_value": "str"})
    forwards = pd.DataFrame({"old_rep": pd.Series(dtype="int64"), "rep_node": pd.Series(dtype="int64"),
                             "old_identity_id": pd.Series(dtype="str")})  # fmt: skip
    loaded = loaded_through if loaded_through is not None else _NO_LOADS
    return MergeState(added, forwards, loaded, next_node, pd.Timestamp.now(tz="UTC").isoformat())


def write_state(wh: Warehouse, conn: object, state: MergeState) -> None:
    # Node numbers stay integers whatever an empty list or a nullable read made of them: a float column would make
    # the lookups that join it to int_identity_nodes compare as floats, past every index.
    nodes = {"node": "int64", "type_rank": "int64", "first_seen_us": "int64", "rep_node": "int64"}
    wh.replace_table(state.added[_ADDED_COLUMNS].astype(nodes), PYTHON_SCHEMA, ADDED_NODES, conn)
    forwards = state.forwards[_FORWARD_COLUMNS].astype({"old_rep": "int64", "rep_node": "int64"})
    wh.replace_table(forwards, PYTHON_SCHEMA, FORWARDS, conn)
    wh.replace_table(
        pd.DataFrame(
            {"loaded_through": [state.loaded_through], "next_node": [state.next_node], "fitted_at": [state.fitted_at]}
        ),
        PYTHON_SCHEMA,
        GRAPH_STATE,
        conn,
    )


def fitted_loaded_through(wh: Warehouse, conn: object) -> pd.Timestamp | None:
    """The newest load among the events a re-fit resolved: the clicks and conversions its edges were built from."""
    value = wh.scalar(
        "select max(_loaded_at) from ("
        f"select max(_loaded_at) as _loaded_at from {qualified(*INT_CLICKS.path)} "
        f"union all select max(_loaded_at) from {qualified('staging', 'stg_raw__conversions')}) as loads",
        conn,
    )
    return None if value is None else _utc(value)


def _utc(value: object) -> pd.Timestamp:
    """A load stamp as a UTC timestamp (the engines return it naive in UTC or zoned)."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _read_state(wh: Warehouse, conn: object) -> MergeState | None:
    """The state the last re-fit or merge left; None before the first re-fit."""
    if not wh.table_exists(PYTHON_SCHEMA, GRAPH_STATE, conn):
        return None
    state = wh.query_df(
        f"select loaded_through, next_node, fitted_at from {qualified(PYTHON_SCHEMA, GRAPH_STATE)}", conn
    )
    added = wh.query_df(f"select {', '.join(_ADDED_COLUMNS)} from {qualified(PYTHON_SCHEMA, ADDED_NODES)}", conn)
    forwards = wh.query_df(f"select {', '.join(_FORWARD_COLUMNS)} from {qualified(PYTHON_SCHEMA, FORWARDS)}", conn)
    return MergeState(
        added,
        forwards,
        _utc(state["loaded_through"].iloc[0]),
        int(state["next_node"].iloc[0]),
        state["fitted_at"].iloc[0],
    )


def _lookup(wh: Warehouse, conn: object, sql: str, nodes: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """``columns`` of ``sql`` (which joins the relation {w} of column node) for the given nodes."""
    wanted = pd.DataFrame({"node": np.unique(nodes).astype(np.int64)})
    if wanted.empty:
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in columns})
    with wh.registered(_LOOKUP, wanted, conn) as name:
        return wh.query_df(sql.replace("{w}", name), conn)[columns]


def merge_new_events(
    wh: Warehouse, conn: object, limits: IdentityLimits, timer: PhaseTimer
) -> tuple[MergeState, dict[str, int]] | None:
    """Unite the identifiers and edges of the events loaded since the graph's mark with the stored identities, and
    write the new state. Returns it with counts for the asset's metadata; None before the first re-fit, which the
    merges build on."""
    with timer("read_increment"):
        state = _read_state(wh, conn)
        if state is None:
            return None
        new = wh.query_df(
            "select type_rank, identifier_value, node_key, first_seen_us, last_loaded_at, node, key_shared "
            f"from {qualified(*INT_IDENTITY_INCREMENT_NODES.path)}",
            conn,
        )
        edges = wh.query_df(
            "select left_rank, left_value, right_rank, right_value, n_events, trust, first_seen_us, last_seen_us "
            f"from {qualified(*INT_IDENTITY_INCREMENT_EDGES.path)}",
            conn,
        )
    new = _number_identifiers(new, state)
    with timer("read_identities"):
        fitted = new["fitted_node"].notna().to_numpy()
        reps = _lookup(wh, conn, _REPS_OF, new.loc[fitted, "node"].to_numpy(), ["node", "rep_node"])
        forward = state.forward
        fitted_rep = dict(zip(reps["node"].astype(np.int64), reps["rep_node"].astype(np.int64), strict=True))
        added_rep = dict(
            zip(state.added["node"].astype(np.int64), state.added["rep_node"].astype(np.int64), strict=True)
        )

        def current(node: int) -> int:
            if node in added_rep:
                return added_rep[node]
            if node in fitted_rep:
                rep = fitted_rep[node]
                return forward.get(rep, rep)
            return node  # first seen this hour

        new["rep"] = [current(n) for n in new["node"].astype(np.int64).tolist()]
        position = pd.MultiIndex.from_frame(new[["type_rank", "identifier_value"]].astype({"type_rank": "int64"}))
        ends = {}
        for side in ("left", "right"):
            at = position.get_indexer(
                pd.MultiIndex.from_arrays([edges[f"{side}_rank"].astype("int64"), edges[f"{side}_value"]])
            )
            if (at < 0).any():
                raise dg.Failure("int_identity_increment_nodes lacks an end of int_identity_increment_edges")
            ends[side] = new["rep"].to_numpy()[at]
        fresh = new.loc[new["fresh"]]
        touched = np.setdiff1d(np.union1d(ends["left"], ends["right"]), fresh["node"].to_numpy())
        units = pd.concat([_stored_units(wh, conn, touched, state), _fresh_units(fresh)], ignore_index=True)
    with timer("merge"):
        unit_edges = pd.DataFrame({"u": ends["left"], "v": ends["right"]}).join(
            edges[["n_events", "trust", "first_seen_us", "last_seen_us"]]
        )
        merged, stats = merge_identities(units, unit_edges, limits)
        moved = dict(zip(merged["node"], merged["rep_node"], strict=True))
        merged_state = _next_state(state, new, units, moved)
    with timer("write"):
        write_state(wh, conn, merged_state)
    return merged_state, {
        "new_events_identifiers": len(new),
        "identifiers_first_seen": int(new["fresh"].sum()),
        "new_edges": len(edges),
        **stats,
        "identifiers_added_since_refit": len(merged_state.added),
        "identities_forwarded_since_refit": len(merged_state.forwards),
    }


def _number_identifiers(new: pd.DataFrame, state: MergeState) -> pd.DataFrame:
    """Each identifier's node: its fitted one, the one an earlier merge added, or the next free number."""
    new = new.rename(columns={"node": "fitted_node"}).astype({"type_rank": "int64"})
    added = state.added[["type_rank", "identifier_value", "node"]].astype({"type_rank": "int64"})
    new = new.merge(added.rename(columns={"node": "added_node"}), on=["type_rank", "identifier_value"], how="left")
    fresh = new["fitted_node"].isna() & new["added_node"].isna()
    # A 64-bit key shared with another node: only the re-fit joins such keys exactly (int_identity_key_collisions).
    shared = (fresh & new["key_shared"].astype(bool)) | (
        fresh & (new["node_key"].isin(state.added["node_key"]) | new["node_key"].duplicated(keep=False))
    )
    if shared.any():
        raise dg.Failure(
            f"{int(shared.sum())} identifiers first seen since the last identity re-fit share a 64-bit join key with "
            "another identifier (about once in 10^5 graphs); the hourly merge cannot join them exactly. Run the "
            "daily_refit job, which resolves such keys by their strings.",
        )
    new["fresh"] = fresh
    new["node"] = new["fitted_node"].fillna(new["added_node"]).astype("Int64")
    new.loc[fresh, "node"] = state.next_node + np.arange(int(fresh.sum()))
    new["node"] = new["node"].astype(np.int64)
    return new


def _fresh_units(fresh: pd.DataFrame) -> pd.DataFrame:
    counts = np.eye(len(STRONG_TYPES), dtype=np.int64)[fresh["type_rank"].to_numpy(dtype=np.int64)]
    return (
        fresh[["node", "type_rank", "identifier_value", "first_seen_us"]]
        .reset_index(drop=True)
        .join(pd.DataFrame(counts, columns=list(UNIT_COUNT_COLUMNS)))
    )


def _stored_units(wh: Warehouse, conn: object, reps: np.ndarray, state: MergeState) -> pd.DataFrame:
    """The stored identities of representatives ``reps``: the representative's identifier and the identity's
    identifiers per type (its fitted nodes, with those of identities forwarded to it, and its added nodes)."""
    added = state.added.astype({"node": "int64", "rep_node": "int64", "type_rank": "int64"})
    fitted_reps = np.union1d(reps, state.forwards.loc[state.forwards["rep_node"].isin(reps), "old_rep"].to_numpy())
    counted = _lookup(wh, conn, _TYPES_OF, fitted_reps, ["rep_node", "type_rank", "n"])
    fitted_members = pd.DataFrame(
        {
            "rep": _follow(counted["rep_node"], state.forward),
            "type_rank": counted["type_rank"].astype(np.int64),
            "n": counted["n"].astype(np.int64),
        }
    )
    added_members = added.loc[added["rep_node"].isin(reps)]
    added_members = pd.DataFrame({"rep": added_members["rep_node"], "type_rank": added_members["type_rank"], "n": 1})
    counts = (
        pd.concat([fitted_members, added_members])
        .pivot_table(index="rep", columns="type_rank", values="n", aggfunc="sum", fill_value=0)
        .reindex(index=reps, columns=range(len(STRONG_TYPES)), fill_value=0)
        .set_axis(list(UNIT_COUNT_COLUMNS), axis=1)
        .astype(np.int64)
    )
    columns = ["node", "type_rank", "identifier_value", "first_seen_us"]
    attributes = pd.concat(
        [_lookup(wh, conn, _IDENTIFIERS_OF, reps, columns), added.loc[added["node"].isin(reps), columns]]
    ).astype({"node": "int64", "type_rank": "int64", "first_seen_us": "int64"})
    if set(attributes["node"]) != set(reps.tolist()):
        raise dg.Failure("an identity representative is neither in int_identity_nodes nor in identity_added_nodes")
    return attributes.set_index("node").loc[reps].reset_index().join(counts.reset_index(drop=True))


def _follow(nodes: pd.Series, moved: dict[int, int]) -> list[int]:
    """Each node's representative after a merge (unchanged unless it moved)."""
    return [moved.get(n, n) for n in nodes.astype(np.int64).tolist()]


def _next_state(state: MergeState, new: pd.DataFrame, units: pd.DataFrame, moved: dict[int, int]) -> MergeState:
    """The state after a merge: forwards for every stored identity that joined another (earlier forwards follow
    it), added nodes with their identity now and the identifiers first seen this hour, the mark moved on."""
    fresh = new.loc[new["fresh"]]
    stored = units.loc[~units["node"].isin(fresh["node"])]
    joined = stored.loc[[moved[n] != n for n in stored["node"].tolist()]]
    old_ids = [
        identity_id_for(STRONG_TYPES[t], v)
        for t, v in zip(joined["type_rank"].tolist(), joined["identifier_value"].tolist(), strict=True)
    ]
    forwards = pd.concat(
        [
            state.forwards.assign(rep_node=_follow(state.forwards["rep_node"], moved)),
            pd.DataFrame(
                {
                    "old_rep": joined["node"].to_numpy(),
                    "rep_node": _follow(joined["node"], moved),
                    "old_identity_id": old_ids,
                }
            ),
        ],
        ignore_index=True,
    )
    added = pd.concat(
        [
            state.added.assign(rep_node=_follow(state.added["rep_node"], moved)),
            fresh[["node", "type_rank", "identifier_value", "node_key", "first_seen_us"]].assign(
                rep_node=_follow(fresh["node"], moved)
            ),
        ],
        ignore_index=True,
    )
    newest = new["last_loaded_at"].dropna()
    loaded = max(state.loaded_through, _utc(newest.max())) if len(newest) else state.loaded_through
    return MergeState(added, forwards, loaded, state.next_node + len(fresh), state.fitted_at)
