"""The identity step on both targets: dbt numbers the identifiers and turns edges into node pairs, the Python asset
resolves the integer graph, dbt names the identities and assigns every event.

The SQL models (numbering identifiers, blocked values, trust ranks, identity naming, event priority and the 'evt_'
fallback) must give exactly what python_models.identity defines on strings, also when join keys collide.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from orchestration.assets.identity import identity_graph
from orchestration.assets.keys import IDENTITY_ADDED_NODES, IDENTITY_FORWARDS, IDENTITY_REPRESENTATIVES
from orchestration.partitions import IDENTITIES_MERGED, IDENTITIES_TAG
from orchestration.resources import WarehouseResource
from orchestration.settings import SETTINGS, identity_limits_from_env
from python_models.identity import (
    DEFAULT_BLOCKED_VALUES,
    DEFAULT_EDGE_TYPE_TRUST,
    IdentityLimits,
    event_singleton_id,
    identity_id_for,
    resolve_identities,
)
from tests.conftest import run_dbt
from warehouse.client import Warehouse
from warehouse.target import PROJECT_ROOT, Target

T0 = pd.Timestamp("2026-01-05 08:00", tz="UTC")

# event_kind, event_id, minutes after T0, user_id, email_hash, cookie_id, session_id
EVENTS = [
    ("click", "K1", 0, None, None, "c1", "s1"),
    ("click", "K2", 5, "u1", None, "c1", "s2"),
    ("click", "K3", 10, "u2", None, "c2", "s3"),
    # The shared kiosk cookie 'c9' is seen with two user ids: the limit of one user id splits it.
    ("click", "K4", 20, "u1", None, "c9", None),
    ("click", "K5", 21, "u2", None, "c9", None),
    ("click", "K6", 30, None, "e1", "c3", None),
    ("click", "K7", 40, None, None, None, None),  # no identifier at all
    ("click", "K8", 50, None, None, "undefined", "s8"),  # a junk cookie: blocked, the session carries it
    ("click", "KB", 55, "u1", None, "c1", None),  # a bot click: no identity
    ("conversion", "V1", 60, None, "e1", "c4", None),
    ("conversion", "V2", 70, None, None, None, None),
    ("conversion", "V3", 80, "u2", "e2", None, None),
]
COLUMNS = ["event_kind", "event_id", "minutes", "user_id", "email_hash", "cookie_id", "session_id"]
STRONG = {"user_id": "user_id", "email": "email_hash", "cookie": "cookie_id", "session": "session_id"}
PAIRS = [("cookie", "email"), ("cookie", "session"), ("cookie", "user_id"), ("email", "session"),
         ("email", "user_id"), ("session", "user_id")]  # fmt: skip


# Loaded after the first re-fit (the hourly merge's test): a click that links two identities, a new person, a new
# cookie of u2, and a click that would give u1's identity u2's cookie (two user ids: refused).
LATE_EVENTS = [
    ("click", "K9", 90, None, None, "c4", "s1"),
    ("conversion", "V4", 95, "u3", None, "c5", None),
    ("click", "K10", 96, "u2", None, "c6", None),
    ("click", "K11", 97, "u1", None, "c2", None),
]
LOADED, LATE_LOADED = T0 + pd.Timedelta(days=1), T0 + pd.Timedelta(days=2)


def upstream(late: bool = False) -> dict[tuple[str, str], pd.DataFrame]:
    events = pd.concat(
        [
            pd.DataFrame(EVENTS, columns=COLUMNS).assign(_loaded_at=LOADED),
            pd.DataFrame(LATE_EVENTS if late else [], columns=COLUMNS).assign(_loaded_at=LATE_LOADED),
        ],
        ignore_index=True,
    )
    events["observed_at"] = T0 + pd.to_timedelta(events["minutes"], unit="m")
    human = events.loc[events["event_id"] != "KB"]
    long = pd.concat(
        [
            human.loc[human[col].notna(), ["event_kind", "event_id", "observed_at"]].assign(
                identifier_type=t, identifier_value=human.loc[human[col].notna(), col]
            )
            for t, col in STRONG.items()
        ],
        ignore_index=True,
    )
    edges = []
    for left, right in PAIRS:
        both = human.loc[human[STRONG[left]].notna() & human[STRONG[right]].notna()]
        edges.append(
            pd.DataFrame(
                {
                    "left_type": left,
                    "left_value": both[STRONG[left]],
                    "right_type": right,
                    "right_value": both[STRONG[right]],
                    "edge_type": f"{left}-{right}",
                    "observed_at": both["observed_at"],
                }
            )
        )
    edge_frame = (
        pd.concat(edges, ignore_index=True)
        .groupby(["left_type", "left_value", "right_type", "right_value", "edge_type"], as_index=False)
        .agg(
            n_events=("observed_at", "size"), first_seen_at=("observed_at", "min"), last_seen_at=("observed_at", "max")
        )
    )
    clicks = events.loc[events["event_kind"] == "click"].rename(columns={"event_id": "click_id"})
    clicks = clicks.assign(clicked_at=clicks["observed_at"], is_bot=clicks["click_id"] == "KB")
    conversions = events.loc[events["event_kind"] == "conversion"].rename(columns={"event_id": "conversion_id"})
    conversions = conversions.assign(converted_at=conversions["observed_at"], direct_click_id=None)
    keep = ["user_id", "email_hash", "cookie_id", "session_id"]
    return {
        ("intermediate", "int_identifiers"): long,
        ("intermediate", "int_identity_edges"): edge_frame,
        ("intermediate", "int_clicks"): clicks[["click_id", "clicked_at", "is_bot", "_loaded_at", *keep]],
        ("staging", "stg_raw__conversions"): conversions[
            ["conversion_id", "converted_at", "direct_click_id", "_loaded_at", *keep]
        ],
    }


def write_upstream(wh: Warehouse, late: bool = False) -> dict[tuple[str, str], pd.DataFrame]:
    tables = upstream(late)
    with wh.connect() as conn:
        wh.ensure_schemas(conn)
        # The edges table stands in for its dbt model; PostgreSQL keeps a view on it from an earlier build.
        wh.execute("drop view if exists intermediate.int_identity_node_edges", conn)
        for (schema, name), frame in tables.items():
            # Text columns with only nulls must still be text, as in the real models.
            wh.replace_table(frame.astype({c: "str" for c in frame.columns if frame[c].isna().all()}), schema, name,
                             conn)  # fmt: skip
    return tables


def build_identities(target: Target, tmp_path: Path, key_bits: int = 64) -> dict[str, object]:
    """The identity step as the pipeline's re-fit runs it: graph inputs (dbt), the Python asset, the naming models
    (dbt).

    ``key_bits`` below 64 keeps only that many bits of the join keys (dbt var identity_key_bits), so keys collide
    as a 64-bit hash rarely does. Returns the Python asset's metadata."""
    dbt_args = dbt_arguments(key_bits)
    dbt_target = tmp_path / "dbt_target"
    run_dbt(target, "build", "--select", "tag:identity_graph", *dbt_args, target_path=dbt_target)
    metadata = materialize_identity_graph(target)
    # The naming models of the stage; its journey model (int_non_converting_paths) needs clicks with link attributes.
    run_dbt(target, "build", "--select", "tag:after_identity_graph", "--exclude", "int_non_converting_paths", *dbt_args,
            target_path=dbt_target)  # fmt: skip
    return metadata


def merge_identities_hourly(target: Target, tmp_path: Path, key_bits: int = 64) -> dict[str, object]:
    """The identity step as the hourly job runs it: the new loads' identifiers and edges (dbt), the Python asset's
    merge, the events' identities (dbt, incremental). Returns the Python asset's metadata."""
    dbt_args = dbt_arguments(key_bits)
    run_dbt(target, "build", "--select", "tag:identity_increment", *dbt_args, target_path=tmp_path / "dbt_target")
    metadata = materialize_identity_graph(target, {IDENTITIES_TAG: IDENTITIES_MERGED})
    run_dbt(target, "build", "--select", "int_event_identities", *dbt_args, target_path=tmp_path / "dbt_target")
    return metadata


def dbt_arguments(key_bits: int) -> list[str]:
    return ["--exclude-resource-type", "unit_test", "--vars", json.dumps({"identity_key_bits": key_bits})]


def materialize_identity_graph(target: Target, tags: dict[str, str] | None = None) -> dict[str, object]:
    result = dg.materialize(
        [identity_graph],
        resources={"warehouse": WarehouseResource(target=target.name), "settings": SETTINGS},
        tags=tags,
        raise_on_error=False,
    )
    if not result.success:
        raise dg.Failure(str(result.get_step_failure_events()[0].event_specific_data.error.message))
    events = result.get_asset_materialization_events()
    assert [e.asset_key for e in events] == [IDENTITY_REPRESENTATIVES, IDENTITY_ADDED_NODES, IDENTITY_FORWARDS]
    return dict(events[0].materialization.metadata)


def test_identity_step_matches_the_string_reference(target: Target, tmp_path: Path) -> None:
    wh = Warehouse(target)
    tables = write_upstream(wh)
    metadata = build_identities(target, tmp_path)
    assert metadata["colliding_nodes"].value == 0
    assert_matches_reference(wh, tables)
    with wh.connect() as conn:
        n_identities = int(wh.scalar("select count(distinct identity_id) from intermediate.int_identity_map", conn))
    assert metadata["identities"].value == n_identities == 4


@pytest.mark.parametrize("key_bits", [1, 3])
def test_colliding_join_keys_still_join_exactly(target: Target, tmp_path: Path, key_bits: int) -> None:
    """13 nodes on 1-bit keys (all collide) or 3-bit keys (some collide, by pigeonhole): the same identities."""
    wh = Warehouse(target)
    tables = write_upstream(wh)
    metadata = build_identities(target, tmp_path, key_bits)
    with wh.connect() as conn:
        n_nodes = int(wh.scalar("select count(*) from intermediate.int_identity_nodes", conn))
    assert n_nodes == 13 and 5 <= metadata["colliding_nodes"].value <= n_nodes
    assert_matches_reference(wh, tables)


def test_limits_from_env_and_as_dict() -> None:
    limits = identity_limits_from_env(
        {"ATTRIBUTION_IDENTITY_MAX_EMAILS": "3", "ATTRIBUTION_IDENTITY_BLOCKED": "email:abc, cookie:kiosk"}
    )
    assert limits.max_emails == 3 and limits.max_user_ids == 1
    assert {("email", "abc"), ("cookie", "kiosk")} <= limits.blocked_values
    assert ("cookie", "undefined") in limits.blocked_values  # the default junk tokens stay blocked
    as_dict = limits.as_dict()
    assert as_dict["max_emails"] == 3 and "cookie:kiosk" in as_dict["blocked_values"]
    assert identity_limits_from_env({}) == IdentityLimits()
    with pytest.raises(ValueError, match="MAX_COOKIES"):
        identity_limits_from_env({"ATTRIBUTION_IDENTITY_MAX_COOKIES": "many"})
    with pytest.raises(ValueError, match="type:value"):
        identity_limits_from_env({"ATTRIBUTION_IDENTITY_BLOCKED": "kiosk"})


def test_sql_rules_equal_the_python_defaults() -> None:
    """The dbt vars the identity models read hold the same blocked values and trust as python_models.identity."""
    dbt_vars = yaml.safe_load((PROJECT_ROOT / "dbt_project.yml").read_text())["vars"]
    blocked = {(t, v) for t, values in dbt_vars["identity_blocked_defaults"].items() for v in values}
    assert blocked == set(DEFAULT_BLOCKED_VALUES)
    assert dbt_vars["identity_edge_type_trust"] == dict(DEFAULT_EDGE_TYPE_TRUST)
    assert "ATTRIBUTION_IDENTITY_BLOCKED" in dbt_vars["identity_blocked"]


def assert_map_matches_reference(wh: Warehouse, tables: dict[tuple[str, str], pd.DataFrame]) -> pd.DataFrame:
    """int_identity_map equals python_models.identity.resolve_identities over the same events; returns it."""
    ids = tables[("intermediate", "int_identifiers")]
    firsts = ids.groupby(["identifier_type", "identifier_value"], as_index=False)["observed_at"].min()
    expected = resolve_identities(
        firsts.rename(columns={"observed_at": "first_seen_at"}), tables[("intermediate", "int_identity_edges")]
    )
    got = wh.query_df("select * from intermediate.int_identity_map")
    key = ["identifier_type", "identifier_value"]
    pd.testing.assert_frame_equal(
        got.sort_values(key, ignore_index=True).astype(str), expected.sort_values(key, ignore_index=True).astype(str)
    )
    return got


def event_identities(wh: Warehouse) -> dict[str, str]:
    events = wh.query_df("select event_kind, event_id, identity_id from intermediate.int_event_identities")
    return dict(zip(events["event_kind"] + ":" + events["event_id"], events["identity_id"], strict=True))


def assert_matches_reference(wh: Warehouse, tables: dict[tuple[str, str], pd.DataFrame]) -> None:
    got = assert_map_matches_reference(wh, tables)
    assert ("cookie", "undefined") in IdentityLimits().blocked_values
    assert "undefined" not in set(got["identifier_value"])

    identity = dict(zip(got["identifier_type"] + ":" + got["identifier_value"], got["identity_id"], strict=True))
    by_event = event_identities(wh)
    assert "click:KB" not in by_event  # bots have no identity
    assert len(by_event) == len(EVENTS) - 1
    # Priority user_id > email > cookie > session; the kiosk cookie's clicks follow their user ids.
    assert by_event["click:K2"] == identity["user_id:u1"] == by_event["click:K4"]
    assert by_event["click:K5"] == identity["user_id:u2"] == by_event["conversion:V3"]
    assert by_event["click:K1"] == identity["cookie:c1"]
    assert by_event["click:K6"] == identity["email:e1"] == by_event["conversion:V1"]
    assert by_event["click:K8"] == identity["session:s8"]
    assert identity["user_id:u1"] != identity["user_id:u2"]
    assert by_event["click:K7"] == event_singleton_id("click", "K7")
    assert by_event["conversion:V2"] == event_singleton_id("conversion", "V2")
    # Named after the earliest identifier: cookie c1 (K1, 08:00) beats u1 (K2, 08:05).
    assert identity["user_id:u1"] == identity_id_for("cookie", "c1")


def test_hourly_merge_unites_new_loads_with_the_stored_identities(target: Target, tmp_path: Path) -> None:
    """After a re-fit, the late events are merged hourly: identities grow and join, ids stay those of their
    earliest identifier, a join that would give an identity two user ids is refused, and the incremental event
    identities equal a full build's; the next re-fit resolves everything again from the strings."""
    wh = Warehouse(target)
    write_upstream(wh)
    build_identities(target, tmp_path)
    fitted = event_identities(wh)
    tables = write_upstream(wh, late=True)  # the graph's inputs are not rebuilt: the hourly job leaves them
    metadata = merge_identities_hourly(target, tmp_path)
    merged = event_identities(wh)

    c1, u2, u3 = identity_id_for("cookie", "c1"), fitted["click:K5"], identity_id_for("user_id", "u3")
    # K9 links session s1 (c1's identity) with cookie c4 (e1's): e1's identity joins the earlier c1's.
    assert fitted["click:K6"] == fitted["conversion:V1"] != c1
    assert merged["click:K9"] == merged["click:K6"] == merged["conversion:V1"] == merged["click:K1"] == c1
    assert merged["conversion:V4"] == u3  # a new person, named after the higher-priority of two new identifiers
    assert merged["click:K10"] == u2 == merged["click:K3"]  # a new cookie of u2
    # K11 has u1 with u2's cookie c2: the limit of one user id refuses the join; each keeps its own identity.
    assert merged["click:K11"] == c1 != merged["click:K3"]
    unchanged = [e for e in fitted if e not in {"click:K6", "conversion:V1"}]
    assert {e: merged[e] for e in unchanged} == {e: fitted[e] for e in unchanged}
    assert metadata["identifiers_first_seen"].value == 3  # u3, c5 and c6; s1, c4, u1, u2 and c2 have nodes
    assert metadata["units_joined"].value >= 1 and metadata["components_over_limit"].value == 1

    # The incremental model holds what a full build over the same state selects.
    incremental = wh.query_df("select * from intermediate.int_event_identities")
    run_dbt(target, "build", "--select", "int_event_identities", "--full-refresh", *dbt_arguments(64),
            target_path=tmp_path / "dbt_target")  # fmt: skip
    full = wh.query_df("select * from intermediate.int_event_identities")
    key = ["event_kind", "event_id"]
    pd.testing.assert_frame_equal(
        incremental.sort_values(key, ignore_index=True).astype(str),
        full.sort_values(key, ignore_index=True).astype(str),
    )

    # Nothing new loaded: the next hour changes nothing.
    again = merge_identities_hourly(target, tmp_path)
    assert again["new_edges"].value == 0 and event_identities(wh) == merged

    # The re-fit resolves every event from the strings again and empties what the merges added.
    build_identities(target, tmp_path)
    assert_map_matches_reference(wh, tables)
    assert wh.scalar("select count(*) from intermediate.identity_added_nodes") == 0
    assert wh.scalar("select count(distinct _identities_fitted_at) from intermediate.int_event_identities") == 1
    assert (
        wh.scalar(
            "select count(*) from intermediate.int_event_identities e inner join intermediate.identity_graph_state s "
            "on s.fitted_at = e._identities_fitted_at"
        )
        == len(EVENTS) + len(LATE_EVENTS) - 1
    )


def test_hourly_merge_stops_on_a_join_key_it_cannot_join_exactly(target: Target, tmp_path: Path) -> None:
    """On 1-bit join keys every new identifier shares a key with a fitted node: the merge refuses to guess and
    names the job that resolves it."""
    wh = Warehouse(target)
    write_upstream(wh)
    build_identities(target, tmp_path, key_bits=1)
    write_upstream(wh, late=True)
    with pytest.raises(dg.Failure, match="daily_refit"):
        merge_identities_hourly(target, tmp_path, key_bits=1)
