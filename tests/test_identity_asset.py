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
from orchestration.assets.keys import IDENTITY_REPRESENTATIVES
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


def upstream() -> dict[tuple[str, str], pd.DataFrame]:
    events = pd.DataFrame(EVENTS, columns=COLUMNS)
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
    conversions = conversions.assign(converted_at=conversions["observed_at"])
    keep = ["user_id", "email_hash", "cookie_id", "session_id"]
    return {
        ("intermediate", "int_identifiers"): long,
        ("intermediate", "int_identity_edges"): edge_frame,
        ("intermediate", "int_clicks"): clicks[["click_id", "clicked_at", "is_bot", *keep]],
        ("staging", "stg_raw__conversions"): conversions[["conversion_id", "converted_at", *keep]],
    }


def write_upstream(wh: Warehouse) -> dict[tuple[str, str], pd.DataFrame]:
    tables = upstream()
    with wh.connect() as conn:
        wh.ensure_schemas(conn)
        for (schema, name), frame in tables.items():
            # Text columns with only nulls must still be text, as in the real models.
            wh.replace_table(frame.astype({c: "str" for c in frame.columns if frame[c].isna().all()}), schema, name,
                             conn)  # fmt: skip
    return tables


def build_identities(target: Target, tmp_path: Path, key_bits: int = 64) -> dict[str, object]:
    """The identity step as the pipeline runs it: graph inputs (dbt), the Python asset, the naming models (dbt).

    ``key_bits`` below 64 keeps only that many bits of the join keys (dbt var identity_key_bits), so keys collide
    as a 64-bit hash rarely does. Returns the Python asset's metadata."""
    dbt_args = ["--exclude-resource-type", "unit_test", "--vars", json.dumps({"identity_key_bits": key_bits})]
    dbt_target = tmp_path / "dbt_target"
    run_dbt(target, "build", "--select", "tag:identity_graph", *dbt_args, target_path=dbt_target)
    result = dg.materialize(
        [identity_graph], resources={"warehouse": WarehouseResource(target=target.name), "settings": SETTINGS}
    )
    assert result.success
    # The naming models of the stage; its journey model (int_non_converting_paths) needs clicks with link attributes.
    run_dbt(target, "build", "--select", "tag:after_identity_graph", "--exclude", "int_non_converting_paths", *dbt_args,
            target_path=dbt_target)  # fmt: skip
    events = result.get_asset_materialization_events()
    assert [e.asset_key for e in events] == [IDENTITY_REPRESENTATIVES]
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


def assert_matches_reference(wh: Warehouse, tables: dict[tuple[str, str], pd.DataFrame]) -> None:
    ids = tables[("intermediate", "int_identifiers")]
    firsts = ids.groupby(["identifier_type", "identifier_value"], as_index=False)["observed_at"].min()
    expected = resolve_identities(
        firsts.rename(columns={"observed_at": "first_seen_at"}), tables[("intermediate", "int_identity_edges")]
    )
    with wh.connect() as conn:
        got = wh.query_df("select * from intermediate.int_identity_map", conn)
        events = wh.query_df("select * from intermediate.int_event_identities", conn)
    key = ["identifier_type", "identifier_value"]
    pd.testing.assert_frame_equal(
        got.sort_values(key, ignore_index=True).astype(str), expected.sort_values(key, ignore_index=True).astype(str)
    )
    assert ("cookie", "undefined") in IdentityLimits().blocked_values
    assert "undefined" not in set(got["identifier_value"])

    identity = dict(zip(got["identifier_type"] + ":" + got["identifier_value"], got["identity_id"], strict=True))
    by_event = dict(zip(events["event_kind"] + ":" + events["event_id"], events["identity_id"], strict=True))
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
