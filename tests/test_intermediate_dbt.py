"""The dbt intermediate layer on both targets, from a small hand-made raw world with known answers.

One build per target (staging + intermediate, then a partitioned rerun of the candidates); the checks read the
outputs. The world holds one person per rule: a same-session converter, an email-only match, a click outside the
lookback, a click after the conversion, a crowd behind one carrier-grade NAT IP, an in-app to main-browser switch,
a cross-browser direct click, an identity-only match, an IP burst bot and a link-preview bot. The dbt unit tests in
_intermediate__models.yml cover the same rules row by row; this file checks them end to end on real engines.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_dbt
from warehouse.client import Warehouse
from warehouse.loader import RAW_COLUMNS, load_folder
from warehouse.target import Target

IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1"
)
IPHONE_INSTAGRAM = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 Instagram 312.0.0.32.112 (iPhone15,2; iOS 18_1; en_US; en; scale=3.00; 1179x2556; 548339486)"
)
IPHONE_TIKTOK = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 musical_ly_34.1.0 JsSdk/2.0 NetType/WIFI Channel/App Store ByteLocale/en Region/US"
)
ANDROID_CHROME = (
    "Mozilla/5.0 (Linux; Android 14; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 "
    "Mobile Safari/537.36"
)
WIN_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 "
    "Safari/537.36"
)
CGNAT_IP = "172.56.10.20"
CROWD = 60  # distinct phones behind the carrier-grade NAT IP: above candidate_max_ip_popularity (50)

LINKS = [
    {"link_id": "L_IG", "channel": "instagram", "created_at": "2026-02-20T10:00:00Z"},
    {"link_id": "L_TT", "channel": "tiktok", "created_at": "2026-03-01T02:00:00+02:00"},
    {"link_id": "L_EM", "channel": "email", "created_at": "2026-03-04T09:00:00Z"},
    {"link_id": "L_NEW", "channel": "youtube", "created_at": "2026-03-09T12:00:00Z"},
]


def _click(click_id: str, link_id: str, clicked_at: str, ip: str, ua: str, **ids: str) -> dict[str, str]:
    return {"click_id": click_id, "link_id": link_id, "clicked_at": clicked_at, "ip": ip, "user_agent": ua, **ids}


def _conversion(conversion_id: str, converted_at: str, ip: str, ua: str, **ids: str) -> dict[str, str]:
    row = {"conversion_id": conversion_id, "converted_at": converted_at, "ip": ip, "user_agent": ua}
    return {"event_type": "purchase", "revenue": "10.00", "currency": "USD", **row, **ids}


def raw_world() -> dict[str, list[dict[str, str]]]:
    """The hand-made raw rows (text, as delivered); missing columns are written as ''."""
    clicks = [
        # Alice: an instagram click days before, then a tiktok click in the converting session (direct click id).
        _click("a1", "L_IG", "2026-03-02T10:00:00Z", "73.10.0.1", IPHONE_SAFARI,
               cookie_id="ck_alice", session_id="ss_a1", device_fingerprint="fp_alice"),
        _click("a2", "L_TT", "2026-03-05T12:00:00Z", "73.10.0.1", IPHONE_SAFARI,
               cookie_id="ck_alice", session_id="ss_a2", device_fingerprint="fp_alice"),
        # Bob: an email-campaign click on his desktop; he buys on his phone behind the carrier NAT.
        _click("b1", "L_EM", "2026-03-04T09:30:00Z", "73.20.0.2", WIN_CHROME,
               cookie_id="ck_bob_desktop", device_fingerprint="fp_bob_desktop", email="bob@example.com"),
        # Carol: a click 49 days before her conversion (outside the 30-day lookback).
        _click("c1", "L_IG", "2026-01-20T10:00:00Z", "73.30.0.3", IPHONE_SAFARI,
               cookie_id="ck_carol", device_fingerprint="fp_carol"),
        # Dave: a click one day after his conversion.
        _click("d1", "L_IG", "2026-03-11T12:00:00Z", "73.40.0.4", WIN_CHROME,
               cookie_id="ck_dave", device_fingerprint="fp_dave"),
        # Erin: an in-app instagram click; she converts later in Safari on the same phone at home.
        _click("e1", "L_TT", "2026-03-08T20:00:00Z", "73.50.0.5", IPHONE_INSTAGRAM,
               cookie_id="ck_erin_inapp", device_fingerprint="fp_erin"),
        # Frank: a tiktok in-app click whose click id survives to a conversion in his main browser.
        _click("f1", "L_TT", "2026-03-10T22:00:00Z", "73.60.0.6", IPHONE_TIKTOK,
               cookie_id="aa_frank_tt", device_fingerprint="fp_frank_tt"),
        # Grace: nothing in common with her conversion but the identity resolved upstream.
        _click("g1", "L_IG", "2026-03-09T08:00:00Z", "73.70.0.7", WIN_CHROME,
               cookie_id="ck_grace_1", device_fingerprint="fp_grace_1"),
        # A human click on the new link ten minutes after it is posted (not a preview).
        _click("h1", "L_NEW", "2026-03-09T12:10:00Z", "73.80.0.8", ANDROID_CHROME,
               cookie_id="ck_henry", device_fingerprint="fp_henry"),
        # A preview fetch with a browser user agent, 2 seconds after the link is posted.
        _click("p1", "L_NEW", "2026-03-09T12:00:02Z", "73.90.0.9", WIN_CHROME, cookie_id="ck_preview"),
    ]  # fmt: skip
    # Ten clicks from one IP in 27 seconds: a burst.
    clicks += [
        _click(f"burst{i:02d}", "L_IG", f"2026-03-06T03:00:{3 * i:02d}Z", "68.1.2.3", WIN_CHROME, cookie_id=f"ck_b{i}")
        for i in range(10)
    ]
    # Seven clicks from another IP within a minute: below bot_burst_clicks (8), people.
    clicks += [
        _click(f"slow{i}", "L_IG", f"2026-03-06T04:00:{8 * i:02d}Z", "68.4.5.6", WIN_CHROME, cookie_id=f"ck_s{i}")
        for i in range(7)
    ]
    # The crowd: CROWD phones behind one carrier-grade NAT IP, one click every 10 minutes, same user agent.
    start = pd.Timestamp("2026-03-07T00:00:00Z")
    clicks += [
        _click(
            f"crowd{i:02d}",
            "L_IG",
            (start + pd.Timedelta(minutes=10 * i)).isoformat(),
            CGNAT_IP,
            ANDROID_CHROME,
            cookie_id=f"ck_crowd{i:02d}",
            device_fingerprint=f"fp_crowd{i:02d}",
        )
        for i in range(CROWD)
    ]
    conversions = [
        _conversion("cv_alice", "2026-03-05T12:20:00Z", "73.10.0.1", IPHONE_SAFARI, cookie_id="ck_alice",
                    session_id="ss_a2", device_fingerprint="fp_alice", user_id="u_alice", click_id="a2"),
        _conversion("cv_bob", "2026-03-10T08:00:00+01:00", CGNAT_IP, ANDROID_CHROME, cookie_id="ck_bob_phone",
                    device_fingerprint="fp_bob_phone", email=" BOB@example.com"),
        _conversion("cv_carol", "2026-03-10T10:00:00Z", "73.30.0.3", IPHONE_SAFARI, cookie_id="ck_carol",
                    device_fingerprint="fp_carol"),
        _conversion("cv_dave", "2026-03-10T12:00:00Z", "73.41.0.4", WIN_CHROME, cookie_id="ck_dave"),
        _conversion("cv_erin", "2026-03-11T21:00:00Z", "73.50.0.5", IPHONE_SAFARI, cookie_id="ck_erin_main",
                    device_fingerprint="fp_erin"),
        _conversion("cv_frank", "2026-03-11T00:30:00Z", "73.61.0.6", IPHONE_SAFARI, cookie_id="zz_frank_main",
                    user_id="u_frank", click_id="f1"),
        _conversion("cv_grace", "2026-03-11T09:00:00Z", "73.71.0.7", IPHONE_SAFARI, cookie_id="ck_grace_2"),
    ]  # fmt: skip
    return {"links": LINKS, "clicks": clicks, "conversions": conversions}


# The identities an upstream Python asset would resolve: one per cookie, except Grace's two cookies.
IDENTITY_OF_COOKIE = {"ck_grace_1": "idn_grace", "ck_grace_2": "idn_grace"}

# Expected candidate pairs with the signals they share (the remaining sig_* flags are false).
EXPECTED_SIGNALS = {
    ("cv_alice", "a1"): {"cookie", "fingerprint", "ip_ua", "ip", "identity"},
    ("cv_alice", "a2"): {"direct_click", "session", "cookie", "fingerprint", "ip_ua", "ip", "identity"},
    ("cv_bob", "b1"): {"email"},
    ("cv_erin", "e1"): {"fingerprint", "ip"},
    ("cv_frank", "f1"): {"direct_click"},
    ("cv_grace", "g1"): {"identity"},
}
# The k most recent crowd clicks before Bob's conversion (candidate_recent_clicks_per_value, default 5), newest
# first: the guards skip the crowded NAT IP, but never its most recent clicks.
RECENT_PER_VALUE = 5
CROWD_RECENT = [("cv_bob", f"crowd{i:02d}") for i in range(CROWD - 1, CROWD - 1 - RECENT_PER_VALUE, -1)]
SIGNALS = ("direct_click", "user_id", "session", "cookie", "fingerprint", "email", "ip_ua", "ip", "identity")


def write_raw_world(folder: Path) -> Path:
    """The raw world as CSV files the loader accepts (links.csv, clicks.csv, conversions.csv)."""
    folder.mkdir(parents=True, exist_ok=True)
    world = raw_world()
    for table, rows in world.items():
        with (folder / f"{table}.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=RAW_COLUMNS[table])
            writer.writeheader()
            for row in rows:
                writer.writerow({column: row.get(column, "") for column in RAW_COLUMNS[table]})
    return folder


def event_identities_frame() -> pd.DataFrame:
    """What the identity step would write to intermediate.int_event_identities (identity = cookie)."""
    world = raw_world()
    rows = [("click", r["click_id"], r.get("cookie_id")) for r in world["clicks"]]
    rows += [("conversion", r["conversion_id"], r.get("cookie_id")) for r in world["conversions"]]
    frame = pd.DataFrame(rows, columns=["event_kind", "event_id", "cookie_id"])
    frame["identity_id"] = frame["cookie_id"].map(lambda c: IDENTITY_OF_COOKIE.get(c, f"idn_{c}"))
    return frame[["event_kind", "event_id", "identity_id"]]


def candidates_frame(wh: Warehouse) -> pd.DataFrame:
    frame = wh.query_df("select * from intermediate.int_match_candidates")
    for column in ("converted_at", "clicked_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    frame["conversion_date"] = pd.to_datetime(frame["conversion_date"]).dt.date
    return frame.sort_values(["conversion_id", "click_id"]).reset_index(drop=True)


def build_world(target: Target, tmp_path: Path) -> Warehouse:
    """Load the hand-made world, write the identities a Python asset would, build staging + intermediate."""
    wh = Warehouse(target)
    load_folder(wh, write_raw_world(tmp_path / "raw"))
    wh.replace_table(event_identities_frame(), "intermediate", "int_event_identities")
    # The identity naming models run after the Python identity graph (tests/test_identity_asset.py covers them).
    # The reports' shared numbers (tag after_attribution) read the credits fact, built by tests/test_marts_dbt.py.
    run_dbt(target, "build", "--select", "staging", "intermediate",
            "--exclude", "tag:after_identity_graph", "tag:after_attribution",
            target_path=tmp_path / "dbt_target")  # fmt: skip
    return wh


def check_int_clicks(wh: Warehouse) -> None:
    clicks = wh.query_df("select * from intermediate.int_clicks")
    staged = wh.scalar("select count(*) from staging.stg_raw__clicks")
    assert len(clicks) == staged == len(raw_world()["clicks"])
    assert clicks["click_id"].is_unique
    a1 = clicks.set_index("click_id").loc["a1"]
    assert (a1["channel"], bool(a1["is_known_link"])) == ("instagram", True)


def check_behavioural_bots(wh: Warehouse) -> None:
    clicks = wh.query_df("select click_id, is_bot, bot_reason from intermediate.int_clicks").set_index("click_id")
    bursts = clicks.loc[clicks.index.str.startswith("burst")]
    assert bursts["is_bot"].all() and (bursts["bot_reason"] == "burst").all()
    slow = clicks.loc[clicks.index.str.startswith("slow")]
    assert not slow["is_bot"].any()
    assert bool(clicks.loc["p1", "is_bot"]) and clicks.loc["p1", "bot_reason"] == "preview_after_post"
    humans = clicks.drop(index=[*bursts.index, "p1"])
    assert not humans["is_bot"].any(), humans.loc[humans["is_bot"].astype(bool)]


def check_identifiers_and_edges(wh: Warehouse) -> None:
    identifiers = wh.query_df("select * from intermediate.int_identifiers")
    assert not identifiers["event_id"].str.startswith("burst").any(), "bot clicks carry no identifiers"
    assert not identifiers.duplicated(["event_kind", "event_id", "identifier_type"]).any()
    edges = wh.query_df("select * from intermediate.int_identity_edges")
    assert not edges.duplicated(["left_type", "left_value", "right_type", "right_value"]).any()
    canonical = (edges["left_type"] < edges["right_type"]) | (
        (edges["left_type"] == edges["right_type"]) & (edges["left_value"] < edges["right_value"])
    )
    assert canonical.all()
    direct = edges.loc[edges["edge_type"] == "direct_click-cookie"]
    assert direct[["left_value", "right_value"]].values.tolist() == [["aa_frank_tt", "zz_frank_main"]]
    alice = edges.loc[(edges["left_value"] == "ck_alice") & (edges["right_type"] == "session")]
    assert sorted(alice["right_value"]) == ["ss_a1", "ss_a2"]
    assert set(alice["edge_type"]) == {"cookie-session"}


def check_candidate_pairs_and_signals(wh: Warehouse) -> None:
    candidates = candidates_frame(wh)
    pairs = set(zip(candidates["conversion_id"], candidates["click_id"], strict=True))
    # Not candidates: Carol's click (outside the lookback), Dave's (after the conversion), the NAT crowd's beyond
    # the RECENT_PER_VALUE most recent clicks on Bob's IP (his user agent too).
    assert pairs == set(EXPECTED_SIGNALS) | set(CROWD_RECENT)
    recent = candidates.loc[candidates["click_id"].isin([c for _, c in CROWD_RECENT])].set_index("click_id")
    assert recent["ip_recency_rank"].to_dict() == {c: rank for rank, (_, c) in enumerate(CROWD_RECENT, start=1)}
    assert recent["ip_ua_recency_rank"].to_dict() == {c: rank for rank, (_, c) in enumerate(CROWD_RECENT, start=1)}
    for row in candidates.itertuples():
        shared = {s for s in SIGNALS if getattr(row, f"sig_{s}")}
        expected = EXPECTED_SIGNALS.get((row.conversion_id, row.click_id), {"ip", "ip_ua"})
        assert shared == expected, (row.conversion_id, row.click_id)
    flags = candidates[[f"sig_{s}" for s in SIGNALS] + ["ua_family_match", "inapp_to_main_switch"]]
    assert flags.notna().all().all()
    erin = candidates.set_index("conversion_id").loc["cv_erin"]
    assert bool(erin["inapp_to_main_switch"]) and erin["click_in_app_browser"] == "instagram"
    assert erin["conversion_identity_id"] == "idn_ck_erin_main" and erin["click_identity_id"] == "idn_ck_erin_inapp"
    alice = candidates.set_index("click_id").loc["a2"]
    assert alice["gap_seconds"] == pytest.approx(1200.0)
    assert bool(alice["conversion_has_direct_click"]) and bool(alice["ua_family_match"])
    assert (candidates["fingerprint_popularity"] >= 1).all() and (candidates["ip_popularity"] >= 1).all()


def check_candidates_unique_in_lookback_without_cross_join(wh: Warehouse) -> None:
    candidates = candidates_frame(wh)
    assert not candidates.duplicated(["conversion_id", "click_id"]).any()
    assert (candidates["clicked_at"] <= candidates["converted_at"]).all()
    assert (candidates["clicked_at"] >= candidates["converted_at"] - pd.Timedelta(days=30)).all()
    gap = (candidates["converted_at"] - candidates["clicked_at"]).dt.total_seconds()
    assert (gap - candidates["gap_seconds"]).abs().max() < 1e-6
    n_conversions = wh.scalar("select count(*) from staging.stg_raw__conversions")
    n_clicks = wh.scalar("select count(*) from intermediate.int_clicks where not is_bot")
    assert len(candidates) * 20 < n_conversions * n_clicks
    # Bob converts behind the NAT IP with the crowd's user agent: his own email click and, of the crowd, only the
    # most recent few.
    assert set(candidates.loc[candidates["conversion_id"] == "cv_bob", "click_id"]) == {"b1"} | {
        c for _, c in CROWD_RECENT
    }


def check_partitioned_rerun(wh: Warehouse, tmp_path: Path) -> None:
    """A run for one day replaces exactly that day's rows with what the full build produced for it."""
    full = candidates_frame(wh)
    day, other = pd.Timestamp("2026-03-10").date(), pd.Timestamp("2026-03-11").date()
    assert (full["conversion_date"] == day).any() and (full["conversion_date"] == other).any()
    # Damage both days: a stale pair on the partition's day, a changed value on another day.
    wh.execute(
        "insert into intermediate.int_match_candidates (conversion_id, click_id, conversion_date, converted_at) "
        f"values ('cv_carol', 'c1', cast('{day.isoformat()}' as date), "
        "cast('2026-03-10T10:00:00Z' as timestamp with time zone))"
    )
    wh.execute(
        "update intermediate.int_match_candidates set gap_seconds = -1 "
        f"where conversion_date = cast('{other.isoformat()}' as date)"
    )
    window = {"partition_start": "2026-03-10T00:00:00+00:00", "partition_end": "2026-03-11T00:00:00+00:00"}
    # `run`, not `build`: the model's tests already ran in the full build; this keeps the file fast.
    run_dbt(
        wh.target,
        "run",
        "--select",
        "int_match_candidates",
        "--vars",
        json.dumps(window),
        target_path=tmp_path / "dbt_target",
    )
    rerun = candidates_frame(wh)
    on_day = rerun.loc[rerun["conversion_date"] == day].reset_index(drop=True)
    expected = full.loc[full["conversion_date"] == day].reset_index(drop=True)
    pd.testing.assert_frame_equal(on_day, expected, check_dtype=False)
    untouched = rerun.loc[rerun["conversion_date"] != day]
    assert len(untouched) == (full["conversion_date"] != day).sum()
    assert (untouched.loc[untouched["conversion_date"] == other, "gap_seconds"] == -1).all()


def test_intermediate_layer_on_hand_made_world(target: Target, tmp_path: Path) -> None:
    wh = build_world(target, tmp_path)
    check_int_clicks(wh)
    check_behavioural_bots(wh)
    check_identifiers_and_edges(wh)
    check_candidate_pairs_and_signals(wh)
    check_candidates_unique_in_lookback_without_cross_join(wh)
    check_partitioned_rerun(wh, tmp_path)
