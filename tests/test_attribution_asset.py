"""The dbt model of non-converting paths (int_non_converting_paths) on both targets, against the pandas definition
in python_models that it implements in the engine."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from python_models.attribution import null_paths, null_paths_from_keys
from tests.conftest import run_dbt
from warehouse.client import Warehouse
from warehouse.target import Target

T0 = pd.Timestamp("2026-03-01 12:00", tz="UTC")


def clicks_world(seed: int = 3, n_clicks: int = 400) -> tuple[pd.DataFrame, pd.DataFrame]:
    """int_clicks and int_event_identities with the cases null paths must get right: bots, converting identities,
    clicks beyond the lookback of an identity's last click, equal click times (click_id breaks the tie), missing
    grain values and text that needs quoting."""
    rng = np.random.default_rng(seed)
    minutes = rng.integers(0, 60 * 24 * 50, n_clicks)
    minutes[:40] = minutes[0]  # ties on clicked_at within identities
    clicks = pd.DataFrame(
        {
            "click_id": [f"k{i:04d}" for i in rng.permutation(n_clicks)],
            "clicked_at": T0 + pd.to_timedelta(minutes, unit="m"),
            "channel": rng.choice(np.array(["tiktok", "instagram", "o'reilly; drop", None], dtype=object), n_clicks),
            "link_id": rng.choice(["l1", "l2", "l3"], n_clicks),
            "is_bot": rng.random(n_clicks) < 0.1,
        }
    )
    clicks["clicked_date"] = clicks["clicked_at"].dt.date
    identity = pd.Series(rng.integers(0, 60, n_clicks)).map("idn_{:02d}".format)
    converters = [f"idn_{i:02d}" for i in range(0, 60, 4)]
    # idn_01 only put something in a cart: not a conversion type, so its journey stays non-converting.
    identities = pd.concat(
        [
            pd.DataFrame({"event_kind": "click", "event_id": clicks["click_id"], "identity_id": identity}),
            pd.DataFrame(
                {
                    "event_kind": "conversion",
                    "event_id": [*(f"v{i}" for i in range(len(converters))), "cart"],
                    "identity_id": [*converters, "idn_01"],
                }
            ),  # fmt: skip
        ],
        ignore_index=True,
    )
    return clicks, identities


def conversion_types(identities: pd.DataFrame) -> pd.DataFrame:
    """int_conversions as far as the journeys read it: which events are of a conversion type."""
    events = identities.loc[identities["event_kind"] == "conversion", ["event_id"]]
    return pd.DataFrame({"conversion_id": events["event_id"], "is_conversion": events["event_id"] != "cart"})


@pytest.mark.parametrize("grain", ["channel", "link_id"])
def test_engine_null_paths_equal_the_pandas_definition(target: Target, grain: str, tmp_path) -> None:
    clicks, identities = clicks_world()
    wh = Warehouse(target)
    with wh.connect() as conn:
        wh.ensure_schemas(conn)
        wh.replace_table(clicks, "intermediate", "int_clicks", conn)
        wh.replace_table(identities, "intermediate", "int_event_identities", conn)
        wh.replace_table(conversion_types(identities), "intermediate", "int_conversions", conn)
        # A window that starts before every click: every journey counts.
        window = pd.DataFrame({"starts_after": [pd.Timestamp("2000-01-01").date()]})
        wh.replace_table(window, "intermediate", "int_channel_fit_window", conn)
    dbt_vars = json.dumps({"attribution_grain": grain, "lookback_days": 30})
    run_dbt(target, "run", "--select", "int_non_converting_paths", "--vars", dbt_vars, target_path=tmp_path / "t")
    counts = wh.query_df("select path_key, identities from intermediate.int_non_converting_paths")
    got = null_paths_from_keys(counts["path_key"], counts["identities"])

    converting = set(identities.loc[identities["event_kind"] == "conversion", "identity_id"]) - {"idn_01"}
    by_click = identities.loc[identities["event_kind"] == "click"].set_index("event_id")["identity_id"]
    human = clicks.loc[~clicks["is_bot"]].assign(identity_id=lambda f: f["click_id"].map(by_click))
    want = null_paths(human.loc[~human["identity_id"].isin(converting)], grain, "identity_id", 30.0)

    assert len(want) > 10 and want["nulls"].sum() == 45  # 45 identities never converted: every one has a path
    pd.testing.assert_frame_equal(got, want)


def test_an_unknown_grain_is_refused_before_reaching_sql(tmp_path) -> None:
    from warehouse.target import resolve_target

    target = resolve_target("duckdb", environ={"ATTRIBUTION_DUCKDB_PATH": str(tmp_path / "w.duckdb")})
    with pytest.raises(pytest.fail.Exception, match="attribution_grain"):
        run_dbt(target, "compile", "--select", "int_non_converting_paths", "--vars", '{"attribution_grain": "x; drop"}')
