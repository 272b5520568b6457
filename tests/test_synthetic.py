"""The synthetic world: contract shape, determinism, each phenomenon at its configured rate, truth consistency.

Two small worlds share a seed: `world` with the default dirt, and `clean` with every dirt rate at zero. Dirt is
decided per distinct row from the seed, so both worlds have the same clicks, conversions and truth, and the
clean one gives the reference values the dirty one must normalise back to.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lab.synthetic import (
    CLICK_COLUMNS,
    CONVERSION_COLUMNS,
    JUNK_VALUES,
    LINK_COLUMNS,
    WorldConfig,
    generate_world,
)
from lab.world_files import write_world

CFG = WorldConfig(persons=3000, seed=7)
NO_DIRT = {
    "duplicate_rate": 0.0,
    "email_dirt_rate": 0.0,
    "mapped_ipv6_rate": 0.0,
    "junk_identifier_rate": 0.0,
    "empty_identifier_rate": 0.0,
    "non_utc_offset_rate": 0.0,
    "unknown_link_rate": 0.0,
}
CLICK_IDENTIFIERS = ("ip", "cookie_id", "session_id", "device_fingerprint", "user_id", "email")
TRUTH_CLICK_COLUMNS = ["click_id", "person_id", "is_bot", "bot_kind"]
TRUTH_CONVERSION_COLUMNS = [
    "conversion_id",
    "person_id",
    "is_organic",
    "true_last_click_id",
    "true_last_link_id",
    "first_touch_link_id",
    "touch_link_ids",
    "touch_click_ids",
    "conversion_device_same_as_last_click",
    "has_direct_click_id",
]
IN_APP_MARKERS = {
    "instagram": "Instagram 312.0.0",
    "tiktok": "musical_ly",
    "youtube": "YouTube",
    "facebook": "FB",
}


def binomial_tolerance(p: float, n: int, sigmas: float = 4.0) -> float:
    """Tolerance for an observed rate around p over n draws (4 sigma, at least half a percent point)."""
    return max(sigmas * math.sqrt(max(p * (1 - p), 1e-9) / max(n, 1)), 0.005)


def assert_rate(observed: float, expected: float, n: int, what: str) -> None:
    tol = binomial_tolerance(expected, n)
    assert abs(observed - expected) <= tol, f"{what}: observed {observed:.4f}, expected {expected} ± {tol:.4f} (n={n})"


@pytest.fixture(scope="module")
def world() -> dict[str, pd.DataFrame]:
    return generate_world(CFG)


@pytest.fixture(scope="module")
def clean() -> dict[str, pd.DataFrame]:
    return generate_world(dataclasses.replace(CFG, **NO_DIRT))


@pytest.fixture(scope="module")
def clicks(clean: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Clean clicks joined to their truth, with parsed times."""
    frame = clean["clicks"].merge(clean["truth_clicks"], on="click_id", validate="one_to_one")
    frame["ts"] = pd.to_datetime(frame["clicked_at"], format="ISO8601", utc=True)
    frame["user_agent"] = frame["user_agent"].astype(str)
    return frame


@pytest.fixture(scope="module")
def conversions(clean: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Clean conversions joined to their truth, with parsed times."""
    frame = clean["conversions"].merge(clean["truth_conversions"], on="conversion_id", validate="one_to_one")
    frame["ts"] = pd.to_datetime(frame["converted_at"], format="ISO8601", utc=True)
    return frame


def normalise_email(values: pd.Series) -> pd.Series:
    """Emails as staging matches them: trimmed, lower case, +tag dropped, and Gmail's dots (gmail.com and
    googlemail.com) removed."""
    email = values.str.strip().str.lower()
    local = email.str.split("@").str[0].str.split("+").str[0]
    domain = email.str.split("@").str[1]
    local = local.where(~domain.isin(["gmail.com", "googlemail.com"]), local.str.replace(".", "", regex=False))
    return local + "@" + domain


# --- shape of the raw contract and the truth ----------------------------------------------------------------


def test_raw_tables_have_the_contract_columns_in_order_and_only_strings(world: dict[str, pd.DataFrame]) -> None:
    expected = {"links": LINK_COLUMNS, "clicks": CLICK_COLUMNS, "conversions": CONVERSION_COLUMNS}
    assert list(CLICK_COLUMNS) == [
        "click_id",
        "link_id",
        "clicked_at",
        "ip",
        "user_agent",
        "referrer",
        "cookie_id",
        "session_id",
        "device_fingerprint",
        "user_id",
        "email",
    ]
    for name, columns in expected.items():
        frame = world[name]
        assert list(frame.columns) == list(columns), name
        assert len(frame) > 0, name
        for column in frame.columns:
            values = frame[column].astype(object)
            assert values.notna().all(), f"{name}.{column} has missing values instead of ''"
            assert values.map(type).eq(str).all(), f"{name}.{column} has non-string values"


def test_truth_tables_have_the_documented_columns_and_types(world: dict[str, pd.DataFrame]) -> None:
    tc, tv = world["truth_clicks"], world["truth_conversions"]
    assert list(tc.columns[:4]) == TRUTH_CLICK_COLUMNS
    assert list(tv.columns[: len(TRUTH_CONVERSION_COLUMNS)]) == TRUTH_CONVERSION_COLUMNS
    assert tc["click_id"].is_unique and tv["conversion_id"].is_unique
    assert tc["is_bot"].dtype == bool and tv["is_organic"].dtype == bool
    assert tv["has_direct_click_id"].dtype == bool and tv["conversion_device_same_as_last_click"].dtype == bool
    assert tc.loc[tc["is_bot"], "person_id"].isna().all() and tc.loc[~tc["is_bot"], "person_id"].notna().all()
    assert tc.loc[~tc["is_bot"], "bot_kind"].isna().all() and tc.loc[tc["is_bot"], "bot_kind"].notna().all()
    assert set(tc["click_id"]) == set(world["clicks"]["click_id"])
    assert set(tv["conversion_id"]) == set(world["conversions"]["conversion_id"])


def test_same_seed_gives_identical_frames_and_another_seed_a_different_world(
    world: dict[str, pd.DataFrame],
) -> None:
    again = generate_world(CFG)
    for name, frame in world.items():
        pd.testing.assert_frame_equal(frame, again[name], obj=name)
    other = generate_world(dataclasses.replace(CFG, seed=8))
    assert not set(other["clicks"]["click_id"]) & set(world["clicks"]["click_id"])
    assert not world["clicks"].head(1000).equals(other["clicks"].head(1000))


def test_worlds_of_another_size_never_reuse_ids(world: dict[str, pd.DataFrame]) -> None:
    smaller = generate_world(dataclasses.replace(CFG, persons=500))
    assert not set(smaller["clicks"]["click_id"]) & set(world["clicks"]["click_id"])
    assert not set(smaller["conversions"]["conversion_id"]) & set(world["conversions"]["conversion_id"])


def test_events_fall_in_the_simulated_period(clicks: pd.DataFrame, conversions: pd.DataFrame) -> None:
    start = pd.Timestamp(CFG.start, tz="UTC")
    end = start + pd.Timedelta(days=CFG.days)
    assert clicks["ts"].min() >= start - pd.Timedelta(days=CFG.history_days)
    assert clicks["ts"].max() < end
    assert conversions["ts"].min() >= start and conversions["ts"].max() < end


def test_config_is_validated_with_the_field_in_the_message() -> None:
    with pytest.raises(ValueError, match="persons"):
        WorldConfig(persons=0)
    with pytest.raises(ValueError, match="bot_click_share"):
        WorldConfig(bot_click_share=1.5)
    with pytest.raises(ValueError, match="channel_weights"):
        WorldConfig(channel_weights=(("myspace", 1.0),))


# --- journeys -----------------------------------------------------------------------------------------------


def test_journeys_are_multi_touch_with_skewed_link_popularity(world: dict[str, pd.DataFrame]) -> None:
    tc, tv = world["truth_clicks"], world["truth_conversions"]
    humans = tc[~tc["is_bot"]]
    assert len(humans) / CFG.persons == pytest.approx(CFG.clicks_per_person, rel=0.1)
    touches = tv.loc[~tv["is_organic"], "touch_click_ids"].str.split().str.len()
    assert touches.mean() > 2 and (touches >= 3).mean() > 0.3
    assert tv["person_id"].duplicated().any(), "some persons convert several times"
    per_link = world["clicks"].drop_duplicates("click_id")["link_id"].value_counts()
    top = per_link.head(max(1, len(per_link) // 10)).sum() / per_link.sum()
    assert top > 0.35, f"the top 10% of links get only {top:.0%} of clicks"


# --- rates of the dirt --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("table", "key"), [("clicks", "click_id"), ("conversions", "conversion_id")])
def test_duplicates_are_exact_repeats_at_the_configured_rate(
    world: dict[str, pd.DataFrame], table: str, key: str
) -> None:
    frame = world[table].astype(str)
    distinct = frame[key].nunique()
    assert len(frame.drop_duplicates()) == distinct, "a repeated key must repeat the whole row"
    assert_rate(len(frame) / distinct - 1, CFG.duplicate_rate, distinct, f"{table} duplicate rate")
    assert generate_world(dataclasses.replace(CFG, persons=300, duplicate_rate=0.0))[table][key].is_unique


def test_non_utc_offsets_at_the_configured_rate_denote_the_same_instant(
    world: dict[str, pd.DataFrame], clicks: pd.DataFrame
) -> None:
    raw = world["clicks"].drop_duplicates("click_id")
    stamps = raw["clicked_at"]
    assert stamps.str.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$").all()
    utc = stamps.str.endswith("Z") | stamps.str.endswith("+00:00")
    assert_rate(1 - utc.mean(), CFG.non_utc_offset_rate, len(raw), "non-UTC offset share")
    assert stamps.str.endswith("+00:00").any() and stamps.str.contains(r"[+-]0[1-9]:\d\d$").any()
    instants = pd.to_datetime(raw.set_index("click_id")["clicked_at"], format="ISO8601", utc=True)
    reference = clicks.set_index("click_id")["ts"]
    assert (instants.sort_index() == reference.sort_index()).all()


def test_unknown_link_ids_at_the_configured_rate(world: dict[str, pd.DataFrame]) -> None:
    raw = world["clicks"].drop_duplicates("click_id")
    unknown = ~raw["link_id"].isin(world["links"]["link_id"])
    assert_rate(unknown.mean(), CFG.unknown_link_rate, len(raw), "unknown link share")
    assert raw.loc[unknown, "link_id"].str.startswith("lnk_").all()


def test_email_variants_at_the_configured_rate_normalise_to_the_clean_address(
    world: dict[str, pd.DataFrame], clean: dict[str, pd.DataFrame]
) -> None:
    for table, key in (("clicks", "click_id"), ("conversions", "conversion_id")):
        dirty = world[table].drop_duplicates(key).set_index(key)["email"]
        reference = clean[table].set_index(key)["email"]
        both = reference[reference != ""].to_frame("clean").join(dirty.rename("dirty"))
        both = both[~both["dirty"].isin([*JUNK_VALUES, ""])]
        changed = both["dirty"] != both["clean"]
        assert_rate(changed.mean(), CFG.email_dirt_rate, len(both), f"{table} email dirt")
        assert (normalise_email(both["dirty"]) == normalise_email(both["clean"])).all()
    emails = pd.concat([world["clicks"]["email"], world["conversions"]["email"]])
    assert emails.str.contains(r"^\s|\s$").any(), "surrounding whitespace"
    assert emails.str.contains(r"[A-Z]").any(), "upper case"
    assert emails.str.contains(r"\+\w+@").any(), "plus tags"
    gmail = (
        clean["clicks"]["email"].str.endswith("@gmail.com").sum()
        + clean["conversions"]["email"].str.endswith("@gmail.com").sum()
    )
    assert gmail > 0


def test_ipv4_mapped_ipv6_at_the_configured_rate(world: dict[str, pd.DataFrame]) -> None:
    ips = world["clicks"].drop_duplicates("click_id")["ip"]
    ipv4 = ips[ips.str.match(r"^(::ffff:)?\d+\.\d+\.\d+\.\d+$")]
    mapped = ipv4.str.startswith("::ffff:")
    assert_rate(mapped.mean(), CFG.mapped_ipv6_rate, len(ipv4), "IPv4-mapped IPv6 share")
    assert ips.str.match(r"^[0-9a-f]{4}(:[0-9a-f]{4}){7}$").any(), "native IPv6 addresses"


def test_junk_and_empty_identifier_values_at_the_configured_rates(
    world: dict[str, pd.DataFrame], clean: dict[str, pd.DataFrame]
) -> None:
    dirty = world["clicks"].drop_duplicates("click_id").set_index("click_id").sort_index()
    reference = clean["clicks"].set_index("click_id").sort_index()
    junk = dirty[list(CLICK_IDENTIFIERS)].isin(JUNK_VALUES)
    assert_rate(junk.to_numpy().mean(), CFG.junk_identifier_rate, junk.size, "junk identifier share")
    assert set(np.unique(dirty[list(CLICK_IDENTIFIERS)].to_numpy()[junk.to_numpy()])) == set(JUNK_VALUES)
    present = (reference[list(CLICK_IDENTIFIERS)] != "").to_numpy()
    blanked = present & (dirty[list(CLICK_IDENTIFIERS)] == "").to_numpy()
    expected = CFG.empty_identifier_rate
    assert_rate(blanked.sum() / present.sum(), expected, int(present.sum()), "blanked identifier share")
    assert not reference[list(CLICK_IDENTIFIERS)].isin(JUNK_VALUES).to_numpy().any()


# --- bots -----------------------------------------------------------------------------------------------------


def test_bots_at_the_configured_share_and_kinds_and_they_never_convert(
    world: dict[str, pd.DataFrame], clicks: pd.DataFrame, clean: dict[str, pd.DataFrame]
) -> None:
    tc, tv = world["truth_clicks"], world["truth_conversions"]
    assert_rate(tc["is_bot"].mean(), CFG.bot_click_share, len(tc), "bot share")
    kinds = tc.loc[tc["is_bot"], "bot_kind"].astype(str).value_counts(normalize=True)
    for kind, share in CFG.bot_kind_probs:
        assert_rate(kinds.get(kind, 0.0), share, int(tc["is_bot"].sum()), f"bot kind {kind}")
    bot_ids = set(tc.loc[tc["is_bot"], "click_id"])
    used = set(tv["true_last_click_id"].dropna()) | set(tv["origin_click_id"].dropna())
    used |= set(" ".join(tv["touch_click_ids"]).split()) | set(world["conversions"]["click_id"])
    assert not bot_ids & used
    bots = clicks[clicks["is_bot"]]
    assert (bots["network"] == "datacenter").all()
    agents = bots["user_agent"]
    for marker in ("facebookexternalhit", "Slackbot", "Twitterbot", "Googlebot", "HeadlessChrome", "python-requests"):
        assert agents.str.contains(marker, regex=False).any(), marker
    burst = bots[bots["bot_kind"] == "datacenter_burst"]
    assert burst["user_agent"].str.contains("Windows|Macintosh|X11").all(), "bursts look like ordinary browsers"


def test_preview_fetchers_arrive_seconds_after_the_link_is_posted(
    clean: dict[str, pd.DataFrame], clicks: pd.DataFrame
) -> None:
    links = clean["links"].assign(created=lambda d: pd.to_datetime(d["created_at"], format="ISO8601", utc=True))
    previews = clicks[clicks["bot_kind"] == "preview_fetcher"].merge(links[["link_id", "created"]], on="link_id")
    delay = (previews["ts"] - previews["created"]).dt.total_seconds()
    assert (delay >= 0).all()
    assert_rate((delay <= 60).mean(), CFG.preview_immediate_share, len(previews), "immediate preview share")
    humans = clicks[~clicks["is_bot"]].merge(links[["link_id", "created"]], on="link_id")
    assert (humans["ts"] >= humans["created"]).all()


# --- browsers, cookies, sessions ---------------------------------------------------------------------------------


def test_in_app_browsers_keep_separate_cookie_jars_and_user_agents(clicks: pd.DataFrame) -> None:
    humans = clicks[~clicks["is_bot"]]
    jars_per_cookie = humans.groupby("cookie_id")[["device_id", "browser"]].nunique()
    assert (jars_per_cookie <= 1).all().all(), "a cookie never crosses browser jars"
    assert (humans.loc[humans["browser"] != "main", "device_kind"] == "phone").all(), "webviews are on phones"
    for app, marker in IN_APP_MARKERS.items():
        agents = humans.loc[humans["browser"] == app, "user_agent"]
        assert len(agents) > 0 and agents.str.contains(marker, regex=False).all(), app
    main = humans.loc[humans["browser"] == "main", "user_agent"]
    assert not main.str.contains("Instagram|musical_ly|FBAN|FB_IAB|YouTube").any()
    # the same phone: in-app and main browser share the fingerprint but never the cookie
    phone = humans[humans["device_kind"] == "phone"]
    per_device = phone.groupby("device_id").agg(
        jars=("browser", "nunique"), cookies=("cookie_id", "nunique"), fps=("device_fingerprint", "nunique")
    )
    multi = per_device[per_device["jars"] > 1]
    assert len(multi) > 50 and (multi["cookies"] >= multi["jars"]).all() and (multi["fps"] == 1).all()


def test_in_app_click_rate_on_phones(world: dict[str, pd.DataFrame], clicks: pd.DataFrame) -> None:
    channel = world["links"].set_index("link_id")["channel"]
    phone = clicks[(clicks["device_kind"] == "phone")].copy()
    phone["channel"] = phone["link_id"].map(channel)
    social = phone[phone["channel"].isin(list(IN_APP_MARKERS))]
    in_app = social["browser"] == social["channel"]
    assert_rate(in_app.mean(), CFG.in_app_click_rate, len(social), "in-app click share")
    assert (social.loc[~in_app, "browser"] == "main").all()


def jar_stream(clicks: pd.DataFrame, conversions: pd.DataFrame) -> pd.DataFrame:
    """Human clicks and conversions (both visit a browser jar) in time order per jar."""
    columns = ["device_id", "browser", "ts", "cookie_id", "session_id", "user_agent"]
    events = pd.concat(
        [
            clicks.loc[~clicks["is_bot"], columns].astype({"device_id": "int64", "browser": str}),
            conversions[columns].astype({"browser": str, "user_agent": str}),
        ],
        ignore_index=True,
    )
    return events.sort_values(["device_id", "browser", "ts"], kind="stable")


def test_cookies_expire_on_webkit_after_a_week_and_sessions_after_thirty_idle_minutes(
    clicks: pd.DataFrame, conversions: pd.DataFrame
) -> None:
    humans = jar_stream(clicks, conversions)
    same_jar = (humans["device_id"] == humans["device_id"].shift()) & (humans["browser"] == humans["browser"].shift())
    gap = (humans["ts"] - humans["ts"].shift()).dt.total_seconds()
    kept = humans["cookie_id"] == humans["cookie_id"].shift()
    webkit = humans["user_agent"].str.contains("iPhone|iPad|Version/1[78].* Safari/605")
    chromium = humans["user_agent"].str.contains("Chrome/") & ~webkit
    long_gap = same_jar & (gap > CFG.itp_cookie_ttl_days * 86400)
    assert long_gap[webkit].sum() > 20 and not kept[long_gap & webkit].any(), "ITP drops the cookie"
    assert kept[long_gap & chromium].mean() > 0.75, "other browsers keep it unless cleared"
    short = same_jar & (gap < CFG.session_idle_minutes * 60) & kept
    idle = same_jar & (gap > CFG.session_idle_minutes * 60)
    session_kept = humans["session_id"] == humans["session_id"].shift()
    assert short.sum() > 50 and session_kept[short].all()
    assert idle.sum() > 50 and not session_kept[idle].any()
    ids = humans.loc[~same_jar, "cookie_id"]
    assert ids.str.match(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$").all()


def test_cookie_clearing_on_non_webkit_browsers_follows_its_daily_rate() -> None:
    cfg = dataclasses.replace(CFG, **NO_DIRT, cookie_clear_rate_per_day=0.2, persons=1500)
    w = generate_world(cfg)
    c = w["clicks"].merge(w["truth_clicks"], on="click_id")
    c = c.assign(ts=pd.to_datetime(c["clicked_at"], format="ISO8601", utc=True), user_agent=c["user_agent"].astype(str))
    v = w["conversions"].merge(w["truth_conversions"], on="conversion_id")
    v = v.assign(ts=pd.to_datetime(v["converted_at"], format="ISO8601", utc=True))
    c = jar_stream(c, v)
    c = c[c["user_agent"].str.contains("Chrome/") & ~c["user_agent"].str.contains("iPhone|iPad")]
    same_jar = (c["device_id"] == c["device_id"].shift()) & (c["browser"] == c["browser"].shift())
    days = (c["ts"] - c["ts"].shift()).dt.total_seconds() / 86400
    window = same_jar & days.between(0.5, 3)
    kept = (c["cookie_id"] == c["cookie_id"].shift())[window]
    expected = float(np.exp(-cfg.cookie_clear_rate_per_day * days[window]).mean())
    assert_rate(kept.mean(), expected, int(window.sum()), "cookie survival")


# --- networks and fingerprints ------------------------------------------------------------------------------------


def test_carrier_nat_ips_are_shared_by_many_persons_and_home_ips_by_a_household(clicks: pd.DataFrame) -> None:
    humans = clicks[~clicks["is_bot"]]
    carrier = humans[humans["network"] == "carrier"]
    persons_per_ip = carrier.groupby("ip")["person_id"].nunique()
    assert persons_per_ip.index.nunique() <= math.ceil(CFG.persons / CFG.cgnat_persons_per_ip) + 3
    assert persons_per_ip.median() >= 30
    home = humans[(humans["network"] == "home") & ~humans["ip"].str.contains(":")]
    home_persons = home.groupby("ip")["person_id"].nunique()
    assert home_persons.max() <= len(CFG.household_size_probs)
    assert (home_persons > 1).mean() > 0.2, "households share their IP"
    office = humans[humans["network"] == "office"].groupby("ip")["person_id"].nunique()
    assert office.max() > 5
    active = humans.groupby("person_id").agg(clicks=("click_id", "size"), ips=("ip", "nunique"))
    assert (active.loc[active["clicks"] >= 5, "ips"] > 1).mean() > 0.8, "IPs change over time"


def test_fingerprints_collide_heavily_on_phones_and_rarely_on_desktops(clicks: pd.DataFrame) -> None:
    humans = clicks[~clicks["is_bot"]]
    devices = humans.drop_duplicates("device_id")[["device_id", "device_kind", "device_fingerprint", "person_id"]]
    phones = devices[devices["device_kind"] == "phone"]
    assert phones.groupby("device_fingerprint")["person_id"].nunique().max() >= 10
    assert phones["device_fingerprint"].nunique() < len(phones) / 5
    desktops = devices[devices["device_kind"] == "desktop"]
    shared = desktops["device_fingerprint"].map(devices["device_fingerprint"].value_counts()) > 1
    assert (
        0
        < shared.mean()
        <= CFG.desktop_fingerprint_collision_rate
        + binomial_tolerance(CFG.desktop_fingerprint_collision_rate, len(desktops))
    )


# --- conversions ----------------------------------------------------------------------------------------------------


def test_organic_and_late_conversions_at_their_configured_shares(world: dict[str, pd.DataFrame]) -> None:
    tv = world["truth_conversions"]
    origin = tv["origin"].astype(str)
    assert_rate((origin == "organic").mean(), CFG.organic_conversion_share, len(tv), "organic share")
    clicked = (origin != "organic").sum()
    assert_rate((origin == "late_click").sum() / clicked, CFG.late_conversion_share, clicked, "late share")
    organic = tv[origin == "organic"]
    assert organic["is_organic"].all() and organic["true_last_click_id"].isna().all()
    assert (organic["touch_link_ids"] == "").all() and organic["first_touch_link_id"].isna().all()
    assert tv["is_organic"].mean() >= (origin == "organic").mean()
    assert tv.loc[origin == "click", "true_last_click_id"].notna().all()


def test_late_conversions_come_more_than_the_lookback_after_their_click(
    conversions: pd.DataFrame, clicks: pd.DataFrame
) -> None:
    late = conversions[conversions["origin"].astype(str) == "late_click"]
    when = clicks.set_index("click_id")["ts"]
    lag = late["ts"] - late["origin_click_id"].map(when)
    assert len(late) > 10 and (lag > pd.Timedelta(days=CFG.lookback_days)).all()
    led = conversions[conversions["origin"].astype(str) == "click"]
    lag = led["ts"] - led["origin_click_id"].map(when)
    assert (lag > pd.Timedelta(0)).all() and (lag < pd.Timedelta(days=CFG.lookback_days)).all()


def test_cross_device_and_in_app_handoff_conversions(conversions: pd.DataFrame, clicks: pd.DataFrame) -> None:
    led = conversions[conversions["origin"].astype(str) != "organic"].merge(
        clicks[["click_id", "device_id", "browser"]].rename(
            columns={"click_id": "origin_click_id", "device_id": "click_device", "browser": "click_browser"}
        ),
        on="origin_click_id",
    )
    cross = led["device_id"] != led["click_device"]
    multi_device = 1 - CFG.device_count_probs[0]
    assert_rate(cross.mean(), CFG.cross_device_conversion_rate * multi_device, len(led), "cross-device share")
    assert (led.loc[cross, "browser"] == "main").all()
    in_app = led[~cross & (led["click_browser"] != "main") & (led["origin"].astype(str) == "click")]
    handoff = in_app["browser"] == "main"
    assert_rate(handoff.mean(), CFG.in_app_handoff_rate, len(in_app), "in-app to main browser handoff")
    assert (in_app.loc[~handoff, "browser"] == in_app.loc[~handoff, "click_browser"]).all()


def test_direct_click_ids_only_in_the_same_jar_while_the_cookie_survives(
    conversions: pd.DataFrame, clicks: pd.DataFrame, world: dict[str, pd.DataFrame]
) -> None:
    carried = conversions[conversions["click_id"] != ""].merge(
        clicks[["click_id", "device_id", "browser", "cookie_id", "ts"]], on="click_id", suffixes=("", "_click")
    )
    assert len(carried) == (conversions["click_id"] != "").sum() > 20
    assert (carried["device_id"] == carried["device_id_click"]).all()
    assert (carried["browser"] == carried["browser_click"]).all()
    assert (carried["cookie_id"] == carried["cookie_id_click"]).all()
    assert (carried["ts_click"] <= carried["ts"]).all()
    assert (conversions["has_direct_click_id"] == (conversions["click_id"] != "")).all()
    # every conversion whose jar still holds the cookie of an earlier click could carry it
    earlier = conversions.merge(clicks[["cookie_id", "ts"]], on="cookie_id", suffixes=("", "_click"))
    eligible = conversions["conversion_id"].isin(earlier.loc[earlier["ts_click"] <= earlier["ts"], "conversion_id"])
    rate = conversions.loc[eligible, "has_direct_click_id"].mean()
    assert_rate(rate, CFG.click_id_survival_rate, int(eligible.sum()), "click id survival")
    assert not conversions.loc[~eligible, "has_direct_click_id"].any()
    # with dirt, has_direct_click_id says whether the raw click_id is a real click id
    tv, raw = world["truth_conversions"], world["conversions"].drop_duplicates("conversion_id")
    real = raw.set_index("conversion_id")["click_id"].isin(world["truth_clicks"]["click_id"])
    assert (tv.set_index("conversion_id")["has_direct_click_id"] == real.reindex(tv["conversion_id"])).all()


def test_identifiers_and_amounts_on_conversions(conversions: pd.DataFrame) -> None:
    kind = conversions["event_type"]
    assert set(kind) == {"purchase", "signup", "add_to_cart"}
    signup, purchase = conversions[kind == "signup"], conversions[kind == "purchase"]
    assert (signup["email"] != "").all() and (signup["user_id"] != "").all()
    assert set(signup["revenue"]) <= {"", "0"}
    assert_rate((purchase["email"] != "").mean(), CFG.purchase_email_rate, len(purchase), "purchase email share")
    assert purchase["revenue"].str.match(r"^\d+\.\d\d$").all() and (purchase["revenue"].astype(float) > 0).all()
    priced = conversions[conversions["revenue"] != ""]
    assert (
        set(priced["currency"]) <= {"USD", "EUR", "GBP"}
        and (conversions.loc[conversions["revenue"] == "", "currency"] == "").all()
    )
    usd = dict(CFG.currency_probs)["USD"]
    assert_rate((priced["currency"] == "USD").mean(), usd, len(priced), "USD share")
    assert conversions["user_id"].str.match(r"^(usr_[0-9a-f]{12})?$").all()


def test_fx_rates_cover_every_event_day_of_every_foreign_currency(
    world: dict[str, pd.DataFrame], conversions: pd.DataFrame
) -> None:
    """One rate to USD (the base, which needs none) per UTC day and currency, over every conversion day."""
    rates = world["fx_rates"]
    assert list(rates.columns) == ["rate_date", "currency", "rate"]
    assert set(rates["currency"]) == {"EUR", "GBP"} and not rates.duplicated(["rate_date", "currency"]).any()
    assert (rates["rate"].astype(float) > 0).all()
    converted = pd.to_datetime(conversions["converted_at"], utc=True, errors="coerce", format="ISO8601").dropna()
    days = set(converted.dt.strftime("%Y-%m-%d"))
    for currency, group in rates.groupby("currency"):
        assert days <= set(group["rate_date"]), currency


def test_email_campaign_clicks_carry_the_email(world: dict[str, pd.DataFrame], clicks: pd.DataFrame) -> None:
    channel = clicks["link_id"].map(world["links"].set_index("link_id")["channel"])
    email_clicks = clicks[(channel == "email") & ~clicks["is_bot"]]
    rate = (email_clicks["email"] != "").mean()
    assert_rate(rate, CFG.email_click_email_rate, len(email_clicks), "email on email-campaign clicks")
    assert (clicks.loc[channel != "email", "email"] == "").all()
    assert (email_clicks["user_id"] != "").any()


# --- ground truth ----------------------------------------------------------------------------------------------------


def test_truth_last_and_first_touch_are_the_persons_clicks_within_the_lookback(
    conversions: pd.DataFrame, clicks: pd.DataFrame
) -> None:
    humans = clicks.loc[~clicks["is_bot"], ["click_id", "link_id", "person_id", "ts"]]
    pairs = conversions[["conversion_id", "person_id", "ts"]].merge(
        humans.astype({"person_id": "int64"}), on="person_id", suffixes=("", "_click")
    )
    lookback = pd.Timedelta(days=CFG.lookback_days)
    inside = pairs[(pairs["ts_click"] <= pairs["ts"]) & (pairs["ts_click"] >= pairs["ts"] - lookback)]
    inside = inside.sort_values(["conversion_id", "ts_click"], kind="stable")
    expected = inside.groupby("conversion_id").agg(
        last_click=("click_id", "last"),
        last_link=("link_id", "last"),
        first_link=("link_id", "first"),
        touches=("click_id", " ".join),
        links=("link_id", " ".join),
    )
    truth = conversions.set_index("conversion_id")
    assert set(expected.index) == set(truth.index[~truth["is_organic"]])
    got = truth.loc[expected.index]
    assert (got["true_last_click_id"] == expected["last_click"]).all()
    assert (got["true_last_link_id"] == expected["last_link"]).all()
    assert (got["first_touch_link_id"] == expected["first_link"]).all()
    assert (got["touch_click_ids"] == expected["touches"]).all()
    assert (got["touch_link_ids"] == expected["links"]).all()
    assert truth.loc[truth["is_organic"], "true_last_click_id"].isna().all()
    device = clicks.set_index("click_id")["device_id"]
    same = got["true_last_click_id"].map(device).astype("int64") == got["device_id"]
    assert (got["conversion_device_same_as_last_click"] == same).all()
    assert not truth.loc[truth["is_organic"], "conversion_device_same_as_last_click"].any()


# --- files ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "parquet"])
def test_write_world_writes_text_raw_files_and_typed_truth(tmp_path: Path, fmt: str) -> None:
    w = generate_world(dataclasses.replace(CFG, persons=300))
    paths = write_world(w, tmp_path, fmt=fmt)
    assert {p.name for p in paths.values()} == {
        f"links.{fmt}",
        f"clicks.{fmt}",
        f"conversions.{fmt}",
        f"fx_rates.{fmt}",
        f"spend.{fmt}",
        "truth_clicks.parquet",
        "truth_conversions.parquet",
    }
    for name in ("links", "clicks", "conversions", "fx_rates", "spend"):
        if fmt == "parquet":
            back = pd.read_parquet(paths[name])
        else:
            back = pd.read_csv(paths[name], dtype=str, keep_default_na=False)
        assert list(back.columns) == list(w[name].columns)
        assert (back.astype(str).to_numpy() == w[name].astype(str).to_numpy()).all(), name
    for name in ("truth_clicks", "truth_conversions"):
        back = pd.read_parquet(paths[name])
        pd.testing.assert_frame_equal(back, w[name], check_dtype=False, check_categorical=False)
        assert back["is_bot" if name == "truth_clicks" else "is_organic"].dtype == bool


def test_spend_has_its_own_random_stream_and_both_kinds_of_rows() -> None:
    """Spend settings change the spend only (clicks and conversions of a seed stay as they were); the spend holds
    creator fees and link costs, exactly one entity per row, in the world's currencies, amounts to the cent."""
    base = generate_world(dataclasses.replace(CFG, persons=300))
    pricier = generate_world(dataclasses.replace(CFG, persons=300, spend_cost_per_click=0.9, spend_fee_per_post=99.0))
    for name in ("links", "clicks", "conversions", "fx_rates"):
        pd.testing.assert_frame_equal(base[name], pricier[name])
    spend = base["spend"]
    assert not spend.equals(pricier["spend"])
    entities = (spend[["link_id", "campaign_id", "creator_id", "channel"]] != "").sum(axis=1)
    assert (entities == 1).all()
    assert (spend["creator_id"] != "").any() and (spend["link_id"] != "").any()
    assert set(spend["currency"]) <= {"USD", "EUR", "GBP"}
    assert spend["amount"].str.fullmatch(r"[0-9]+\.[0-9]{2}").all()
    assert not spend.duplicated(["spend_date", "link_id", "creator_id", "currency"]).any()


def test_write_world_refuses_an_unknown_format(tmp_path: Path, world: dict[str, pd.DataFrame]) -> None:
    with pytest.raises(ValueError, match="xlsx"):
        write_world(world, tmp_path, fmt="xlsx")


# --- families of worlds -------------------------------------------------------------------------------------


def test_per_channel_in_app_rates_and_apple_fingerprint_pools() -> None:
    """in_app_click_rate_by_channel overrides the rate of its channel only; ios_fingerprint_variants=1 gives every
    Apple phone model one fingerprint (a pool no larger than the models), other devices keep theirs."""
    base = dataclasses.replace(CFG, persons=800, **NO_DIRT)
    world = generate_world(dataclasses.replace(base, in_app_click_rate_by_channel=(("tiktok", 0.0),)))
    clicks = world["clicks"].merge(world["truth_clicks"], on="click_id")
    channel = clicks["link_id"].map(world["links"].set_index("link_id")["channel"])
    assert not (clicks["browser"].astype(str) == "tiktok").any()
    assert (clicks.loc[channel == "instagram", "browser"].astype(str) == "instagram").any()
    one = generate_world(dataclasses.replace(base, ios_fingerprint_variants=1))
    three = generate_world(base)
    for w in (one, three):
        assert len(w["clicks"]) == len(three["clicks"])  # the pools change fingerprints, nothing else
    fp_one = one["clicks"]["device_fingerprint"].nunique()
    assert fp_one < three["clicks"]["device_fingerprint"].nunique()
    with pytest.raises(ValueError, match="in_app_click_rate_by_channel"):
        WorldConfig(in_app_click_rate_by_channel=(("myspace", 0.5),))


def test_family_worlds_are_valid_and_the_worst_case_is_per_metric() -> None:
    from lab.family import FAMILIES, METRICS, family_worlds, summarise, world_config

    worlds = family_worlds("transfer")
    assert len(worlds) >= 8 and {w.split for w in worlds} == {"tune", "held_out"}
    for w in worlds:
        world_config(w, persons=100, seed=1)
    with pytest.raises(KeyError, match="transfer"):
        family_worlds("nope")
    labels = [m[0] for m in METRICS]
    rows = {
        "a": dict.fromkeys(labels, 0.5) | {"ECE": 0.02, "F1": 0.9},
        "b": dict.fromkeys(labels, 0.5) | {"ECE": 0.08, "F1": 0.7},
    }
    table = summarise(rows, {"a": "tune", "b": "held_out"})
    worst_all = dict(zip(table[0], table[4], strict=True))
    assert (worst_all["world"], worst_all["split"]) == ("worst", "all")
    assert worst_all["ECE"] == "0.080" and worst_all["F1"] == "0.700"  # lower ECE is better, higher F1
    assert set(FAMILIES) == {"transfer"}
