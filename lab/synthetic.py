"""Synthetic link-attribution world with ground truth.

`generate_world(WorldConfig(...))` simulates persons who own 1-3 devices, click tracking links over several days
and sometimes convert, and returns the raw files the warehouse ingests (`links`, `clicks`, `conversions`, every
value a string, '' for missing) together with the ground truth the evaluator scores against (`truth_clicks`,
`truth_conversions`, typed).

The world is built so that attribution is hard in the ways production data is hard: in-app browsers keep their
own cookie jars, Safari expires cookies, carrier-grade NAT puts hundreds of persons behind one IP, popular phones
share a handful of fingerprints, people convert on another device, bots and link-preview fetchers click, and the
raw values are dirty. Every phenomenon has a parameter in `WorldConfig` with its default documented there.

Timeline: clicks happen in `[start - history_days, start + days)` (the history gives early conversions a full
lookback and lets some conversions fall more than the lookback after their click); conversions happen in
`[start, start + days)`. With the defaults a world has about 10 clicks per person (9 human clicks, ~12% bots on
top, ~2% duplicate rows), so `persons=1_000_000` gives about 10 million click rows.

Everything is vectorised numpy/pyarrow; randomness comes from one generator per phenomenon derived from the
seed, so the same seed gives identical frames and changing one dirt rate leaves the rest of the world unchanged.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from orchestration.settings import dbt_var

DAY = 86_400
HOUR = 3_600

CHANNELS: tuple[str, ...] = (
    "instagram",
    "tiktok",
    "youtube",
    "facebook",
    "twitter",
    "email",
    "search",
    "direct",
    "affiliate_site",
)
# Browser jars of a device: the main browser and the webviews of four apps, each with its own cookie storage.
JARS: tuple[str, ...] = ("main", "instagram", "tiktok", "youtube", "facebook")
N_JARS = len(JARS)
# Jar a click from each channel opens in when it happens inside the app on a phone (0 = main browser).
CHANNEL_APP_JAR = np.array([1, 2, 3, 4, 0, 0, 0, 0, 0], dtype=np.int64)
DEVICE_KINDS: tuple[str, ...] = ("phone", "desktop", "tablet")
PHONE, DESKTOP, TABLET = 0, 1, 2
# Relative chance that a click from a channel happens on a phone / desktop / tablet the person owns.
CHANNEL_DEVICE_AFFINITY = np.array(
    [
        [8.0, 1.0, 1.5],  # instagram
        [12.0, 0.3, 1.0],  # tiktok
        [4.0, 2.0, 2.0],  # youtube
        [5.0, 2.0, 1.5],  # facebook
        [4.0, 2.0, 1.0],  # twitter
        [2.0, 2.5, 1.0],  # email
        [1.5, 2.5, 1.0],  # search
        [1.0, 1.5, 1.0],  # direct
        [1.5, 2.0, 1.0],  # affiliate_site
    ]
)
NETWORKS: tuple[str, ...] = ("home", "office", "carrier", "datacenter")
BOT_KINDS: tuple[str, ...] = ("preview_fetcher", "crawler", "headless", "script", "datacenter_burst")
ORIGINS: tuple[str, ...] = ("click", "late_click", "organic")
EVENT_TYPES: tuple[str, ...] = ("purchase", "signup", "add_to_cart")
CURRENCIES: tuple[str, ...] = ("USD", "EUR", "GBP")
# Rough value of one unit in USD (the base currency of raw.fx_rates) around which the daily rates wander.
FX_CENTRES: dict[str, float] = {"USD": 1.0, "EUR": 1.08, "GBP": 1.27}
# Values that broken trackers write into identifier fields instead of leaving them empty.
JUNK_VALUES: tuple[str, ...] = ("null", "undefined", "none", "0", "-1", "00000000-0000-0000-0000-000000000000")
# Non-UTC offsets (minutes) used to render a share of the timestamps; the instant is unchanged.
NON_UTC_OFFSETS_MIN = np.array([60, 120, -300, -240, -420, -480, 330, 540, -180, 600], dtype=np.int64)
EMAIL_VARIANTS: tuple[str, ...] = ("upper", "capitalize", "whitespace", "plus_tag", "gmail_dots")


@dataclass(frozen=True)
class WorldConfig:
    """Parameters of a synthetic world. Rates are probabilities in [0, 1] unless the name says otherwise."""

    # --- scale and calendar -------------------------------------------------------------------------------
    persons: int = 2000  # number of simulated people (~10 click rows per person with the defaults)
    seed: int = 42  # same seed -> identical world
    start: str = "2026-10-01"  # UTC date on which the conversion period starts
    days: int = 30  # length of the conversion period; clicks also happen in it
    # Attribution window of the ground truth (clicked_at >= converted_at - this): the pipeline's own dbt var.
    lookback_days: int = field(default_factory=lambda: int(dbt_var("lookback_days")))
    history_days: int = 30  # clicks also happen this many days before `start` (links may be older still)

    # --- journeys ------------------------------------------------------------------------------------------
    clicks_per_person: float = 9.0  # mean human clicks per person over history + period
    click_activity_shape: float = 0.8  # gamma shape of per-person activity (lower = more skewed, more idle people)
    repeat_click_rate: float = 0.25  # share of clicks that revisit a link the person clicked shortly before
    links_per_person: float = 0.05  # links in the world per person (at least 20)
    link_popularity_sigma: float = 1.5  # lognormal sigma of link popularity (a few links get most clicks)
    link_decay_days: float = 4.0  # median e-folding time of a link's clicks after it is posted
    channel_weights: tuple[tuple[str, float], ...] = (
        ("instagram", 0.22),
        ("tiktok", 0.16),
        ("youtube", 0.10),
        ("facebook", 0.08),
        ("twitter", 0.05),
        ("email", 0.14),
        ("search", 0.10),
        ("direct", 0.05),
        ("affiliate_site", 0.10),
    )  # share of links posted on each channel

    # --- devices and browsers ------------------------------------------------------------------------------
    device_count_probs: tuple[float, float, float] = (0.45, 0.40, 0.15)  # P(1, 2, 3 devices)
    ios_share: float = 0.55  # share of phones and tablets that are Apple (Safari/WebKit, cookie ITP applies)
    in_app_click_rate: float = 0.85  # phone clicks from instagram/tiktok/youtube/facebook opening in the webview
    # per-channel overrides of in_app_click_rate, e.g. (("tiktok", 0.98),); channels without an app jar ignore it
    in_app_click_rate_by_channel: tuple[tuple[str, float], ...] = ()
    in_app_handoff_rate: float = 0.75  # after an in-app click, same-device conversion happens in the main browser
    cross_device_conversion_rate: float = 0.15  # conversion on another device (persons with 2+ devices)
    phone_fingerprint_variants: int = 3  # distinct fingerprints per phone/tablet model x OS x browser version
    # the same for Apple phones/tablets (Safari-like: few distinct values per model); 0 = phone_fingerprint_variants
    ios_fingerprint_variants: int = 0
    desktop_fingerprint_collision_rate: float = 0.03  # desktops whose fingerprint is a shared corporate image
    desktop_fingerprint_pool: int = 25  # number of shared corporate-image fingerprints

    # --- cookies and sessions ------------------------------------------------------------------------------
    itp_cookie_ttl_days: float = 7.0  # WebKit jars lose the cookie after this many days without a visit
    cookie_clear_rate_per_day: float = 0.01  # hazard of a person clearing a jar's cookies
    session_idle_minutes: float = 30.0  # a new session_id starts after this idle time (or a new cookie)
    click_id_survival_rate: float = 0.8  # chance a stored click id survives to the conversion in the same jar

    # --- networks ------------------------------------------------------------------------------------------
    household_size_probs: tuple[float, ...] = (0.30, 0.33, 0.16, 0.14, 0.07)  # P(household of 1..5 persons)
    home_ip_lease_days: float = 14.0  # the ISP reassigns a household's public IP about this often
    ipv6_home_share: float = 0.15  # households on IPv6 (per-device addresses inside a shared /64)
    phone_wifi_share: float = 0.5  # share of 4-hour phone blocks on wifi (else on the carrier network)
    office_worker_rate: float = 0.3  # persons whose desktop (and phone on wifi) use an office IP in work hours
    office_size_mean: float = 40.0  # mean persons per office IP
    cgnat_persons_per_ip: int = 150  # persons per carrier-grade-NAT IP: carrier pools = ceil(persons / this)

    # --- identity --------------------------------------------------------------------------------------------
    account_holder_rate: float = 0.4  # persons with an account (user_id)
    conversion_login_rate: float = 0.75  # account holders logged in at a conversion (signups always carry it)
    click_login_rate: float = 0.05  # account holders' main-browser clicks that carry the user_id
    purchase_email_rate: float = 0.85  # purchases with an email (signups always, add_to_cart 10%)
    email_click_email_rate: float = 0.6  # clicks from email campaigns carrying the recipient's email
    email_click_user_id_rate: float = 0.25  # email-campaign clicks of account holders carrying the user_id

    # --- conversions -----------------------------------------------------------------------------------------
    click_conversions_per_person: float = 0.12  # click-led conversions in the period per person (not a rate)
    conversion_propensity_shape: float = 0.5  # gamma shape of who converts (lower = more repeat converters)
    # click-led conversions 20 s - 25 min after the click (in-app clicks always: webview sessions are ephemeral)
    same_session_conversion_share: float = 0.5
    conversion_lag_mean_days: float = 1.0  # mean lag of the other click-led conversions (30 min to lookback)
    late_conversion_share: float = 0.05  # conversions placed more than lookback_days after their click
    organic_conversion_share: float = 0.2  # conversions by persons without any click in the lookback
    event_type_probs: tuple[tuple[str, float], ...] = (("purchase", 0.6), ("signup", 0.25), ("add_to_cart", 0.15))
    currency_probs: tuple[tuple[str, float], ...] = (("USD", 0.92), ("EUR", 0.05), ("GBP", 0.03))
    # --- spend (raw.spend; its own random stream, so clicks and conversions do not depend on it) -------------
    # Each creator is paid in one currency: a fixed fee per post (creator level, on the link's creation day) plus a
    # cost per click on each of their links (link level, per day, bot clicks included: they are billed too).
    spend_currency_probs: tuple[tuple[str, float], ...] = (("USD", 0.7), ("EUR", 0.2), ("GBP", 0.1))
    spend_fee_per_post: float = 40.0  # median fee, lognormal per link
    spend_cost_per_click: float = 0.15  # median cost per click, lognormal per link

    # --- bots --------------------------------------------------------------------------------------------------
    bot_click_share: float = 0.12  # share of (distinct) clicks made by bots and preview fetchers
    bot_kind_probs: tuple[tuple[str, float], ...] = (
        ("preview_fetcher", 0.35),
        ("crawler", 0.20),
        ("headless", 0.15),
        ("script", 0.15),
        ("datacenter_burst", 0.15),
    )
    preview_immediate_share: float = 0.7  # preview fetches arriving 1-60 s after the link is created

    # --- dirt ----------------------------------------------------------------------------------------------------
    duplicate_rate: float = 0.02  # click and conversion rows delivered twice (exact repeats)
    email_dirt_rate: float = 0.2  # emails rendered as a variant (case, whitespace, +tag, gmail dots)
    mapped_ipv6_rate: float = 0.03  # IPv4 values rendered as IPv4-mapped IPv6 ('::ffff:1.2.3.4')
    junk_identifier_rate: float = 0.01  # identifier cells replaced by a junk token ('null', 'undefined', ...)
    empty_identifier_rate: float = 0.01  # identifier cells blanked ('')
    non_utc_offset_rate: float = 0.15  # timestamps rendered with a non-UTC offset (same instant)
    unknown_link_rate: float = 0.01  # clicks whose link_id is not in links

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            if f.name.endswith(("_rate", "_share")) and not 0.0 <= value <= 1.0:
                raise ValueError(f"WorldConfig.{f.name} must be in [0, 1], got {value!r}")
            if value < 0:
                raise ValueError(f"WorldConfig.{f.name} must not be negative, got {value!r}")
        positive = ("persons", "days", "lookback_days", "phone_fingerprint_variants", "cgnat_persons_per_ip")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"WorldConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.history_days < 0:
            raise ValueError(f"WorldConfig.history_days must be >= 0, got {self.history_days!r}")
        if self.persons >= 2**31:
            raise ValueError(f"WorldConfig.persons must be < 2**31, got {self.persons!r}")
        for name in ("organic_conversion_share", "late_conversion_share", "bot_click_share"):
            if getattr(self, name) >= 1.0:
                raise ValueError(f"WorldConfig.{name} must be < 1, got {getattr(self, name)!r}")
        _named_probs(self.channel_weights, CHANNELS, "channel_weights")
        for name, rate in self.in_app_click_rate_by_channel:
            if name not in CHANNELS or not 0.0 <= rate <= 1.0:
                raise ValueError(
                    f"WorldConfig.in_app_click_rate_by_channel: {name!r} must be one of {CHANNELS} with a rate in "
                    f"[0, 1], got {rate!r}"
                )
        _named_probs(self.event_type_probs, EVENT_TYPES, "event_type_probs")
        _named_probs(self.bot_kind_probs, BOT_KINDS, "bot_kind_probs")
        _named_probs(self.currency_probs, CURRENCIES, "currency_probs")
        _named_probs(self.spend_currency_probs, CURRENCIES, "spend_currency_probs")
        if not self.household_size_probs or min(self.household_size_probs) < 0 or sum(self.household_size_probs) <= 0:
            raise ValueError(f"WorldConfig.household_size_probs must be probabilities, got {self.household_size_probs}")
        positive_floats = ("click_activity_shape", "conversion_propensity_shape", "link_decay_days", "office_size_mean")
        for name in positive_floats:
            if getattr(self, name) <= 0:
                raise ValueError(f"WorldConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if len(self.device_count_probs) != 3 or min(self.device_count_probs) < 0:
            raise ValueError(f"WorldConfig.device_count_probs must be 3 probabilities, got {self.device_count_probs}")
        try:
            pd.Timestamp(self.start)
        except ValueError as exc:
            raise ValueError(f"WorldConfig.start is not a date: {self.start!r}") from exc


def _named_probs(pairs: tuple[tuple[str, float], ...], names: tuple[str, ...], field: str) -> np.ndarray:
    """Probabilities in the order of `names` from (name, weight) pairs; unknown names are an error."""
    weights = dict(pairs)
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ValueError(f"WorldConfig.{field} has unknown names {unknown}; allowed: {list(names)}")
    p = np.array([float(weights.get(n, 0.0)) for n in names])
    if (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"WorldConfig.{field} needs non-negative weights with a positive sum, got {pairs}")
    return p / p.sum()


# ------------------------------------------------------------------------------------------------------------
# Hashing, sampling and string helpers
# ------------------------------------------------------------------------------------------------------------

_U64 = np.uint64


def _mix_inplace(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, in place on a uint64 array: a bijection, so distinct inputs stay distinct."""
    with np.errstate(over="ignore"):
        z += _U64(0x9E3779B97F4A7C15)
        z ^= z >> _U64(30)
        z *= _U64(0xBF58476D1CE4E5B9)
        z ^= z >> _U64(27)
        z *= _U64(0x94D049BB133111EB)
        z ^= z >> _U64(31)
    return z


def _mix(x: Any) -> np.ndarray:
    """splitmix64 finaliser of a copy of x (see `_mix_inplace`)."""
    return _mix_inplace(np.array(x, dtype=_U64) if np.asarray(x).dtype == _U64 else _as_u64(x))


def _as_u64(k: Any) -> np.ndarray:
    """Integers as uint64 bit patterns (a new array; negative values wrap)."""
    k = np.asarray(k)
    if k.dtype == _U64:
        return k.copy()
    return np.asarray(k, dtype=np.int64).astype(_U64)


def _hash(salt: int, *keys: Any) -> np.ndarray:
    """Deterministic 64-bit hash of the salt and integer keys (arrays broadcast)."""
    z = _mix(np.asarray([salt], dtype=_U64))
    for k in keys:
        z = _mix_inplace(_as_u64(k) ^ z)
    return z


def _unit(h: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) floats from 64-bit hashes."""
    return (h >> _U64(11)).astype(np.float64) * (1.0 / 2**53)


def _pick(rng: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    """n indices drawn with probability proportional to weights."""
    cum = np.cumsum(weights, dtype=np.float64)
    idx = np.searchsorted(cum, rng.random(n) * cum[-1], side="right")
    return np.minimum(idx, len(weights) - 1).astype(np.int64)


def _pick_rows(u: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Row-wise categorical choice: weights (n, k), u (n,) uniforms -> column index per row."""
    cum = np.cumsum(weights, axis=1)
    target = u * cum[:, -1]
    return np.minimum((target[:, None] >= cum).sum(axis=1), weights.shape[1] - 1)


_HEX = np.array([f"{i:02x}".encode() for i in range(256)], dtype="S2")
_DEC3 = np.array([str(i).encode() for i in range(256)], dtype="S3")


def _hex(x: np.ndarray, nbytes: int = 8) -> np.ndarray:
    """Lower-case hex of the last `nbytes` bytes of uint64 values, as a fixed-width bytes array."""
    b = np.asarray(x, dtype=_U64).astype(">u8").view(np.uint8).reshape(-1, 8)[:, 8 - nbytes :]
    return np.ascontiguousarray(_HEX[b]).view(f"S{2 * nbytes}").ravel()


def _cat(*parts: Any) -> np.ndarray:
    """Element-wise concatenation of bytes arrays / scalars."""
    out = np.asarray(parts[0])
    for p in parts[1:]:
        out = np.strings.add(out, np.asarray(p))
    return out


def _digits(out: np.ndarray, col: int, value: np.ndarray, width: int) -> None:
    """Write `value` zero-padded as `width` ASCII digits into columns col.. of a uint8 matrix."""
    for k in range(width):
        out[:, col + width - 1 - k] = 48 + (value // 10**k) % 10


def _decimal(x: np.ndarray) -> np.ndarray:
    """Non-negative integers as decimal bytes strings (no padding)."""
    x = np.asarray(x, dtype=np.int64)
    width = max(1, len(str(int(x.max())))) if x.size else 1
    mat = np.zeros((x.size, width), dtype=np.uint8)
    nd = np.ones(x.size, dtype=np.int64)
    for k in range(1, width):
        nd += x >= 10**k
    for k in range(width):
        # digit k counted from the left of each number, left-aligned so trailing NULs are stripped
        power = np.maximum(nd - 1 - k, 0)
        d = (x // (10**power)) % 10
        mat[:, k] = np.where(k < nd, 48 + d, 0)
    return mat.view(f"S{width}").ravel()


def _uuid(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Version-4-looking UUID text from two uint64 arrays."""
    ha = _hex(a).view(np.uint8).reshape(-1, 16)
    hb = _hex(b).view(np.uint8).reshape(-1, 16)
    out = np.empty((ha.shape[0], 36), dtype=np.uint8)
    out[:, 0:8] = ha[:, 0:8]
    out[:, 9:13] = ha[:, 8:12]
    out[:, 14:18] = ha[:, 12:16]
    out[:, 19:23] = hb[:, 0:4]
    out[:, 24:36] = hb[:, 4:16]
    out[:, [8, 13, 18, 23]] = ord("-")
    out[:, 14] = ord("4")
    out[:, 19] = np.frombuffer(b"89ab", dtype=np.uint8)[hb[:, 0] % 4]
    return out.view("S36").ravel()


def _ipv4(ip: np.ndarray) -> np.ndarray:
    """Dotted-quad text of uint32 addresses."""
    ip = np.asarray(ip, dtype=np.int64)
    return _cat(
        _DEC3[(ip >> 24) & 255], b".", _DEC3[(ip >> 16) & 255], b".", _DEC3[(ip >> 8) & 255], b".", _DEC3[ip & 255]
    )


def _ipv6(prefix: np.ndarray, iid: np.ndarray) -> np.ndarray:
    """Full-form IPv6 text (8 groups of 4 hex digits) from the /64 prefix and the interface id."""
    h = np.concatenate([_hex(prefix).view(np.uint8).reshape(-1, 16), _hex(iid).view(np.uint8).reshape(-1, 16)], axis=1)
    out = np.full((h.shape[0], 39), ord(":"), dtype=np.uint8)
    for g in range(8):
        out[:, g * 5 : g * 5 + 4] = h[:, g * 4 : g * 4 + 4]
    return out.view("S39").ravel()


def _civil(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Proleptic Gregorian (year, month, day) of days since 1970-01-01 (H. Hinnant's algorithm)."""
    z = days + 719_468
    era = np.floor_divide(z, 146_097)
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = np.where(mp < 10, mp + 3, mp - 9)
    y = yoe + era * 400 + (m <= 2)
    return y, m, d


_CHUNK = 1_000_000


def _iso(t: np.ndarray, offset_min: np.ndarray, z_style: np.ndarray) -> pa.ChunkedArray:
    """ISO 8601 text of epoch seconds, rendered in the local time of `offset_min` with an explicit offset.

    UTC values are written with 'Z' where z_style is true and '+00:00' otherwise.
    """
    chunks = []
    for lo in range(0, max(len(t), 1), _CHUNK):
        ts = np.asarray(t[lo : lo + _CHUNK], dtype=np.int64)
        off = np.asarray(offset_min[lo : lo + _CHUNK], dtype=np.int64)
        zs = np.asarray(z_style[lo : lo + _CHUNK], dtype=bool)
        days, sod = np.divmod(ts + off * 60, DAY)
        y, m, d = _civil(days)
        b = np.zeros((ts.size, 25), dtype=np.uint8)
        _digits(b, 0, y, 4)
        _digits(b, 5, m, 2)
        _digits(b, 8, d, 2)
        _digits(b, 11, sod // HOUR, 2)
        _digits(b, 14, (sod // 60) % 60, 2)
        _digits(b, 17, sod % 60, 2)
        b[:, [4, 7]] = ord("-")
        b[:, 10] = ord("T")
        b[:, [13, 16]] = ord(":")
        zulu = (off == 0) & zs
        b[:, 19] = np.where(zulu, ord("Z"), np.where(off < 0, ord("-"), ord("+")))
        a = np.abs(off)
        _digits(b, 20, a // 60, 2)
        _digits(b, 23, a % 60, 2)
        b[:, 22] = ord(":")
        b[zulu, 20:] = 0
        chunks.append(_text(b.view("S25").ravel()))
    return _join(chunks)


def _text(x: np.ndarray) -> pa.ChunkedArray:
    """A pyarrow string column from a numpy bytes array (trailing NULs stripped), without extra copies."""
    arr = pa.array(x, type=pa.binary())
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]  # pyarrow may split large inputs
    return pa.chunked_array([c.cast(pa.string()) for c in chunks], type=pa.string())


def _join(parts: list[pa.ChunkedArray]) -> pa.ChunkedArray:
    """Concatenate string columns without copying."""
    return pa.chunked_array([c for p in parts for c in p.chunks], type=pa.string())


def _fill(n: int, parts: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """An n-row bytes array from (row positions, values) parts; the other rows are empty."""
    width = max([values.dtype.itemsize for pos, values in parts if len(pos)] + [1])
    out = np.zeros(n, dtype=f"S{width}")
    for pos, values in parts:
        out[pos] = values
    return out


# ------------------------------------------------------------------------------------------------------------
# Catalogues: user agents, fingerprints, names, networks
# ------------------------------------------------------------------------------------------------------------

IOS_MODELS = (
    ("iPhone17,1", 3.0),
    ("iPhone17,3", 4.0),
    ("iPhone16,2", 5.0),
    ("iPhone16,1", 3.0),
    ("iPhone15,4", 4.0),
    ("iPhone15,2", 3.0),
    ("iPhone14,7", 3.0),
    ("iPhone14,5", 4.0),
    ("iPhone14,6", 1.0),
)
IOS_VERSIONS = (("17_6_1", "17.6", 2.0), ("18_5", "18.5", 3.0), ("18_6", "26.0", 5.0))
ANDROID_MODELS = (
    ("samsung", "SM-S921B", "e1s", 4.0),
    ("samsung", "SM-S911B", "dm1q", 3.0),
    ("samsung", "SM-A546B", "a54x", 4.0),
    ("Google", "Pixel 8", "shiba", 2.0),
    ("Google", "Pixel 9", "tokay", 2.0),
    ("Xiaomi", "2311DRK48G", "duchamp", 2.0),
    ("OnePlus", "CPH2581", "aston", 1.0),
    ("motorola", "moto g 5G - 2024", "fogos", 2.0),
)
ANDROID_VERSIONS = (("13", 33, 2.0), ("14", 34, 4.0), ("15", 35, 4.0))
CHROME_VERSIONS = (("130.0.6723.102", 2.0), ("131.0.6778.81", 3.0), ("132.0.6834.79", 4.0))
FIREFOX_VERSIONS = (("131.0", 2.0), ("132.0", 3.0), ("133.0", 4.0))
MAC_SAFARI_VERSIONS = (("17.6", 2.0), ("18.1", 3.0), ("18.2", 4.0))


def _ios_ua(jar: int, model: str, os_: str, safari: str) -> str:
    webkit = f"Mozilla/5.0 (iPhone; CPU iPhone OS {os_} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    dotted = os_.replace("_", ".")
    return [
        f"{webkit} Version/{safari} Mobile/15E148 Safari/604.1",
        f"{webkit} Mobile/15E148 Instagram 312.0.0.32.112 ({model}; iOS {os_}; en_US; en; scale=3.00; "
        f"1179x2556; 548339486)",
        f"{webkit} Mobile/15E148 musical_ly_34.1.0 JsSdk/2.0 NetType/WIFI Channel/App Store ByteLocale/en Region/US",
        f"{webkit} Mobile/15E148 YouTube/19.45.4 com.google.ios.youtube/19.45.4 (iPhone; iOS {dotted})",
        f"{webkit} Mobile/15E148 [FBAN/FBIOS;FBAV/450.0.0.38.108;FBBV/612345678;FBDV/{model};FBMD/iPhone;"
        f"FBSN/iOS;FBSV/{dotted};FBSS/3;FBCR/;FBID/phone;FBLC/en_US;FBOP/5]",
    ][jar]


def _android_ua(jar: int, brand: str, model: str, code: str, av: str, api: int, chrome: str) -> str:
    if jar == 0:
        return (
            f"Mozilla/5.0 (Linux; Android {av}; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{chrome} "
            f"Mobile Safari/537.36"
        )
    wv = (
        f"Mozilla/5.0 (Linux; Android {av}; {model} Build/AP2A.240905.003; wv) AppleWebKit/537.36 "
        f"(KHTML, like Gecko) Version/4.0 Chrome/{chrome} Mobile Safari/537.36"
    )
    return [
        "",
        f"{wv} Instagram 312.0.0.34.111 Android ({api}/{av}; 420dpi; 1080x2340; {brand}; {model}; {code}; qcom; "
        f"en_US; 548323749)",
        f"{wv} musical_ly_2023401010 JsSdk/1.0 NetType/4G Channel/googleplay AppName/musical_ly "
        f"app_version/34.1.1 ByteLocale/en Region/US",
        f"{wv} YouTube/19.45.38",
        f"{wv} [FB_IAB/FB4A;FBAV/450.0.0.42.109;]",
    ][jar]


def _desktop_ua(family: str, version: str) -> str:
    win = "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"
    mac = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)"
    chrome = f"AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{version} Safari/537.36"
    return {
        "win_chrome": f"{win} {chrome}",
        "win_edge": f"{win} {chrome} Edg/{version.rsplit('.', 2)[0]}.0.0",
        "mac_safari": f"{mac} AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{version} Safari/605.1.15",
        "mac_chrome": f"{mac} {chrome}",
        "win_firefox": f"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{version}) Gecko/20100101 Firefox/{version}",
        "linux_chrome": f"Mozilla/5.0 (X11; Linux x86_64) {chrome}",
    }[family]


# (family, weight, cookie ITP applies, versions)
DESKTOP_FAMILIES = (
    ("win_chrome", 0.42, False, CHROME_VERSIONS),
    ("win_edge", 0.14, False, CHROME_VERSIONS),
    ("mac_safari", 0.16, True, MAC_SAFARI_VERSIONS),
    ("mac_chrome", 0.15, False, CHROME_VERSIONS),
    ("win_firefox", 0.09, False, FIREFOX_VERSIONS),
    ("linux_chrome", 0.04, False, CHROME_VERSIONS),
)

# (kind, user agent, weight within kind, index into DATACENTER_PREFIXES groups)
BOT_AGENTS: tuple[tuple[str, str, float, int], ...] = (
    ("preview_fetcher", "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", 4.0, 1),
    ("preview_fetcher", "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", 2.0, 0),
    ("preview_fetcher", "Twitterbot/1.0", 2.0, 2),
    ("preview_fetcher", "WhatsApp/2.24.6.77 A", 2.0, 1),
    ("preview_fetcher", "TelegramBot (like TwitterBot)", 1.0, 0),
    ("preview_fetcher", "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)", 1.0, 0),
    (
        "preview_fetcher",
        "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
        1.0,
        0,
    ),
    ("crawler", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", 4.0, 3),
    ("crawler", "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", 2.0, 0),
    ("crawler", "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", 1.0, 0),
    ("crawler", "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)", 1.0, 0),
    ("crawler", "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)", 0.5, 0),
    (
        "headless",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
        3.0,
        0,
    ),
    (
        "headless",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/"
        "130.0.0.0 Safari/537.36",
        1.0,
        0,
    ),
    ("script", "python-requests/2.32.3", 3.0, 0),
    ("script", "curl/8.7.1", 2.0, 0),
    ("script", "Go-http-client/1.1", 1.0, 0),
    ("script", "Wget/1.21.4", 0.5, 0),
    ("script", "axios/1.7.7", 1.0, 0),
    ("script", "okhttp/4.12.0", 1.0, 0),
)
# Datacenter /16 prefixes by operator group: 0 cloud (AWS, GCP, Azure, DigitalOcean, Hetzner), 1 Meta,
# 2 X/Twitter, 3 Google crawlers.
DATACENTER_PREFIXES: tuple[tuple[int, ...], ...] = (
    (0x0312, 0x12CE, 0x2240, 0x2353, 0x3444, 0x36EC, 0x1440, 0x2866, 0x8AC5, 0x9F59, 0xA1A3, 0x58C6),
    (0x1F0D, 0x45AB, 0xADFC),
    (0xC710, 0xC73B),
    (0x42F9,),
)
RESIDENTIAL_OCTETS = (24, 47, 67, 68, 69, 71, 73, 75, 76, 96, 97, 98, 99, 108, 184, 50)  # 16 /8s (home ISPs)
OFFICE_OCTETS = (12, 38, 63, 64, 65, 199, 204, 208)
# Carrier-grade NAT public /16s per carrier (T-Mobile-, Verizon-, AT&T-like) and carrier market shares.
CARRIER_PREFIXES = ((0xAC38, 0xAC3A, 0xAC3B), (0xAEC0, 0xAECD, 0xAED7), (0xA6C7, 0x6B4D, 0x6B73))
CARRIER_SHARES = (0.45, 0.35, 0.20)
IPV6_ISP_PREFIXES = (0x2600_1700, 0x2601_0C80, 0x2603_6000, 0x2607_FB90)

_FIRST_NAMES_TEXT = (
    "james mary john patricia robert jennifer michael linda william elizabeth david barbara richard "
    "susan joseph jessica thomas sarah charles karen chris nancy daniel lisa matthew betty anthony "
    "margaret mark sandra donald ashley steven kim paul emily andrew donna joshua michelle kenneth carol "
    "kevin amanda brian melissa george deborah tim stephanie ronald rebecca jason sharon jeff laura ryan "
    "cynthia jacob amy gary kathleen nick angela eric shirley jon anna larry brenda justin pamela scott "
    "emma brandon nicole ben helen sam olivia noah ava liam mia lucas chloe "
)
FIRST_NAMES = tuple(_FIRST_NAMES_TEXT.split())
_LAST_NAMES_TEXT = (
    "smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez lopez gonzalez "
    "wilson anderson thomas taylor moore jackson martin lee perez thompson white harris sanchez clark "
    "ramirez lewis robinson walker young allen king wright scott torres nguyen hill flores green adams "
    "nelson baker hall rivera campbell mitchell carter roberts gomez phillips evans turner diaz parker "
    "cruz edwards collins reyes stewart morris morales murphy cook rogers gutierrez ortiz morgan cooper "
    "peterson bailey reed kelly howard ramos kim cox ward richardson watson brooks chavez wood james "
    "bennett gray mendoza ruiz hughes price alvarez castillo "
)
LAST_NAMES = tuple(_LAST_NAMES_TEXT.split())
EMAIL_DOMAINS = (
    ("gmail.com", 0.38),
    ("yahoo.com", 0.09),
    ("outlook.com", 0.09),
    ("hotmail.com", 0.06),
    ("icloud.com", 0.12),
    ("aol.com", 0.02),
    ("proton.me", 0.03),
    ("comcast.net", 0.04),
    ("acme-corp.com", 0.05),
    ("northwind.io", 0.04),
    ("globex.net", 0.04),
    ("initech.com", 0.04),
)
PLUS_TAGS = (b"promo", b"shop", b"news", b"deals", b"2026", b"sale")
REFERRERS: dict[str, tuple[tuple[str, float], ...]] = {
    "instagram": (("https://l.instagram.com/", 0.5), ("", 0.5)),
    "tiktok": (("", 0.8), ("https://www.tiktok.com/", 0.2)),
    "youtube": (("https://www.youtube.com/", 0.7), ("", 0.3)),
    "facebook": (("https://l.facebook.com/", 0.5), ("https://lm.facebook.com/", 0.3), ("", 0.2)),
    "twitter": (("https://t.co/", 0.85), ("", 0.15)),
    "email": (("", 0.7), ("https://mail.google.com/", 0.2), ("https://outlook.live.com/", 0.1)),
    "search": (("https://www.google.com/", 0.75), ("https://www.bing.com/", 0.15), ("https://duckduckgo.com/", 0.1)),
    "direct": (("", 1.0),),
    "affiliate_site": (
        ("https://www.dealsblog.example/", 0.4),
        ("https://reviews.example.org/best-picks", 0.35),
        ("", 0.25),
    ),
}


@dataclass
class _Catalog:
    """Device variants (platform x model x OS x browser version) and the user-agent dictionary."""

    kind: np.ndarray  # device kind per variant
    weight: np.ndarray  # sampling weight within the kind
    itp: np.ndarray  # WebKit cookie policy applies
    ua: np.ndarray  # (variants, N_JARS) user-agent codes
    user_agents: list[str]
    bot_kind: np.ndarray  # per bot agent: kind index
    bot_weight: np.ndarray
    bot_ua: np.ndarray  # per bot agent: user-agent code
    bot_dc_group: np.ndarray


def _catalog(cfg: WorldConfig) -> _Catalog:
    codes: dict[str, int] = {"": 0}

    def code(s: str) -> int:
        return codes.setdefault(s, len(codes))

    kind, weight, itp, ua = [], [], [], []

    def add(k: int, w: float, is_itp: bool, agents: list[str]) -> None:
        kind.append(k)
        weight.append(w)
        itp.append(is_itp)
        ua.append([code(a) for a in agents])

    ios_w = sum(w for _, w in IOS_MODELS) * sum(w for *_, w in IOS_VERSIONS)
    for model, mw in IOS_MODELS:
        for os_, safari, ow in IOS_VERSIONS:
            add(PHONE, cfg.ios_share * mw * ow / ios_w, True, [_ios_ua(j, model, os_, safari) for j in range(N_JARS)])
    and_w = sum(m[3] for m in ANDROID_MODELS) * sum(v[2] for v in ANDROID_VERSIONS) * sum(c[1] for c in CHROME_VERSIONS)
    for brand, model, code_name, mw in ANDROID_MODELS:
        for av, api, aw in ANDROID_VERSIONS:
            for chrome, cw in CHROME_VERSIONS:
                agents = [_android_ua(j, brand, model, code_name, av, api, chrome) for j in range(N_JARS)]
                add(PHONE, (1 - cfg.ios_share) * mw * aw * cw / and_w, False, agents)
    for family, fw, is_itp, versions in DESKTOP_FAMILIES:
        vw = sum(w for _, w in versions)
        for version, w in versions:
            add(DESKTOP, fw * w / vw, is_itp, [_desktop_ua(family, version)] * N_JARS)
    for os_, safari, ow in IOS_VERSIONS:
        agent = (
            f"Mozilla/5.0 (iPad; CPU OS {os_} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            f"Version/{safari} Mobile/15E148 Safari/604.1"
        )
        add(TABLET, cfg.ios_share * ow / 10.0, True, [agent] * N_JARS)
    for av, _, aw in ANDROID_VERSIONS:
        for chrome, cw in CHROME_VERSIONS:
            agent = (
                f"Mozilla/5.0 (Linux; Android {av}; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{chrome} "
                f"Safari/537.36"
            )
            add(TABLET, (1 - cfg.ios_share) * aw * cw / 90.0, False, [agent] * N_JARS)
    bot_kind = np.array([BOT_KINDS.index(k) for k, *_ in BOT_AGENTS])
    bot_weight = np.array([w for *_, w, _ in BOT_AGENTS])
    bot_ua = np.array([code(a) for _, a, *_ in BOT_AGENTS])
    bot_dc = np.array([g for *_, g in BOT_AGENTS])
    return _Catalog(
        kind=np.array(kind),
        weight=np.array(weight),
        itp=np.array(itp),
        ua=np.array(ua, dtype=np.int32),
        user_agents=list(codes),
        bot_kind=bot_kind,
        bot_weight=bot_weight,
        bot_ua=bot_ua,
        bot_dc_group=bot_dc,
    )


# ------------------------------------------------------------------------------------------------------------
# The simulation
# ------------------------------------------------------------------------------------------------------------


class _Sim:
    """Holds the configuration, the clock and one random stream per phenomenon."""

    def __init__(self, cfg: WorldConfig) -> None:
        self.cfg = cfg
        start = pd.Timestamp(cfg.start)
        start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
        self.start = int(start.value // 10**9)
        self.t0 = self.start - cfg.history_days * DAY  # first possible click
        self.t1 = self.start + cfg.days * DAY  # end (exclusive) of clicks and conversions
        self.lookback = cfg.lookback_days * DAY
        # hashes (ids, per-row choices) depend on the seed and the world's shape, not on the rates, so worlds of
        # different sizes never share ids and a world with other dirt rates keeps its ids
        shape = f"{cfg.persons}/{cfg.start}/{cfg.days}/{cfg.history_days}".encode()
        self.salt = int(self.rng("salt").integers(1, 2**62)) ^ zlib.crc32(shape)

    def rng(self, stream: str) -> np.random.Generator:
        return np.random.default_rng([self.cfg.seed & 0xFFFFFFFF, self.cfg.seed >> 32, zlib.crc32(stream.encode())])

    def h(self, stream: str, *keys: Any) -> np.ndarray:
        return _hash(self.salt ^ zlib.crc32(stream.encode()), *keys)


def _persons(sim: _Sim) -> dict[str, np.ndarray]:
    cfg, rng = sim.cfg, sim.rng("persons")
    n = cfg.persons
    sizes = 1 + _pick(rng, np.asarray(cfg.household_size_probs, dtype=float), n)
    household = np.repeat(np.arange(n), sizes)[:n]
    n_households = int(household[-1]) + 1
    office_worker = rng.random(n) < cfg.office_worker_rate
    n_offices = max(1, round(n * cfg.office_worker_rate / cfg.office_size_mean))
    domain = _pick(rng, np.array([w for _, w in EMAIL_DOMAINS]), n)
    gmail = domain == 0
    return {
        "household": household,
        "household_v6": rng.random(n_households) < cfg.ipv6_home_share,
        "household_phase": rng.integers(0, max(1, int(cfg.home_ip_lease_days * DAY)), n_households),
        "household_isp": rng.integers(0, len(IPV6_ISP_PREFIXES), n_households),
        "office_worker": office_worker,
        "office": rng.integers(0, n_offices, n),
        "carrier": _pick(rng, np.array(CARRIER_SHARES), n).astype(np.int8),
        "activity": rng.gamma(cfg.click_activity_shape, 1.0 / cfg.click_activity_shape, n),
        "account": rng.random(n) < cfg.account_holder_rate,
        "first": rng.integers(0, len(FIRST_NAMES), n).astype(np.int16),
        "last": rng.integers(0, len(LAST_NAMES), n).astype(np.int16),
        # separator between first and last name: '.', '' or '_' ('_' only outside gmail, where dots matter)
        "sep": np.where(gmail, rng.integers(0, 2, n), rng.integers(0, 3, n)).astype(np.int8),
        # a per-person number makes every normalised address unique
        "number": rng.permutation(n) + 1,
        "domain": domain.astype(np.int8),
    }


def _devices(sim: _Sim, persons: dict[str, np.ndarray], cat: _Catalog) -> dict[str, np.ndarray]:
    cfg, rng = sim.cfg, sim.rng("devices")
    n = cfg.persons
    n_dev = 1 + _pick(rng, np.asarray(cfg.device_count_probs, dtype=float), n)
    # slot 0 is usually the phone, slot 1 usually a computer, slot 2 a tablet or a second computer
    slot_kind_probs = np.array([[0.9, 0.1, 0.0], [0.1, 0.7, 0.2], [0.1, 0.4, 0.5]])
    owner = np.repeat(np.arange(n), n_dev)
    first = np.cumsum(n_dev) - n_dev
    slot = np.arange(owner.size) - np.repeat(first, n_dev)
    kind = _pick_rows(rng.random(owner.size), slot_kind_probs[slot]).astype(np.int8)
    variant = np.empty(owner.size, dtype=np.int64)
    for k in (PHONE, DESKTOP, TABLET):
        rows = np.flatnonzero(kind == k)
        choices = np.flatnonzero(cat.kind == k)
        variant[rows] = choices[_pick(rng, cat.weight[choices], rows.size)]
    # Phones and tablets: a fingerprint is a few values per model/OS/browser; desktops: unique unless imaged.
    fp = sim.h("fp-model", variant, rng.integers(0, cfg.phone_fingerprint_variants, owner.size))
    if cfg.ios_fingerprint_variants:
        # Drawn from a generator of its own, so the default world (0) keeps every other draw unchanged.
        ios_draw = sim.rng("devices-ios").integers(0, cfg.ios_fingerprint_variants, owner.size)
        fp = np.where(cat.itp[variant], sim.h("fp-model", variant, ios_draw), fp)
    desktop = kind == DESKTOP
    imaged = desktop & (rng.random(owner.size) < cfg.desktop_fingerprint_collision_rate)
    fp = np.where(desktop, sim.h("fp-desktop", np.arange(owner.size)), fp)
    fp = np.where(imaged, sim.h("fp-image", rng.integers(0, cfg.desktop_fingerprint_pool, owner.size)), fp)
    person_devices = np.full((n, 3), -1, dtype=np.int64)
    person_devices[owner, slot] = np.arange(owner.size)
    return {
        "owner": owner,
        "slot": slot,
        "kind": kind,
        "variant": variant,
        "itp": cat.itp[variant],
        "fingerprint": fp,
        "imaged": imaged,
        "n_devices": n_dev,
        "person_devices": person_devices,
    }


def _links(sim: _Sim) -> dict[str, np.ndarray]:
    cfg, rng = sim.cfg, sim.rng("links")
    n = max(20, round(cfg.persons * cfg.links_per_person))
    channel = _pick(rng, _named_probs(cfg.channel_weights, CHANNELS, "channel_weights"), n)
    created = rng.integers(sim.t0 - 20 * DAY, sim.t1 - 12 * HOUR, n)
    base = np.maximum(created + 60, sim.t0)
    decay = cfg.link_decay_days * DAY * rng.lognormal(0.0, 1.0, n)
    popularity = rng.lognormal(0.0, cfg.link_popularity_sigma, n)
    # clicks are drawn as a truncated exponential after `base`: links with little time left get fewer
    window = -np.expm1(-(sim.t1 - base) / decay)
    n_campaigns = max(3, n // 12)
    n_creators = max(5, n // 3)
    return {
        "channel": channel,
        "created": created,
        "base": base,
        "decay": decay,
        "weight": popularity * window,
        "campaign": _pick(rng, rng.lognormal(0, 1, n_campaigns), n),
        "creator": _pick(rng, rng.lognormal(0, 1, n_creators), n),
        "product": rng.integers(1000, 99_999, n),
    }


def _human_clicks(
    sim: _Sim, persons: dict[str, np.ndarray], devices: dict[str, np.ndarray], links: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    cfg, rng = sim.cfg, sim.rng("human-clicks")
    mean = cfg.clicks_per_person / (1 + cfg.repeat_click_rate)
    person = np.repeat(np.arange(cfg.persons, dtype=np.int64), rng.poisson(mean * persons["activity"]))
    n = person.size
    link = _pick(rng, links["weight"], n)
    base, decay = links["base"][link], links["decay"][link]
    u = rng.random(n)
    t = base + (-decay * np.log1p(-u * -np.expm1(-(sim.t1 - base) / decay))).astype(np.int64)
    t = np.minimum(t, sim.t1 - 1)
    # journeys: revisits of a link the person clicked before, hours later
    src = np.flatnonzero(rng.random(n) < cfg.repeat_click_rate)
    rt = t[src] + 60 + rng.exponential(0.5 * DAY, src.size).astype(np.int64)
    src, rt = src[rt < sim.t1], rt[rt < sim.t1]
    person = np.concatenate([person, person[src]])
    link = np.concatenate([link, link[src]])
    t = np.concatenate([t, rt])
    n = person.size
    channel = links["channel"][link]
    slot_kind = np.where(devices["person_devices"][person] >= 0, devices["kind"][devices["person_devices"][person]], -1)
    affinity = np.where(slot_kind >= 0, CHANNEL_DEVICE_AFFINITY[channel[:, None], np.maximum(slot_kind, 0)], 0.0)
    slot = _pick_rows(rng.random(n), affinity)
    device = devices["person_devices"][person, slot]
    app = CHANNEL_APP_JAR[channel]
    in_app_rate = np.full(len(CHANNELS), cfg.in_app_click_rate)
    for name, rate in cfg.in_app_click_rate_by_channel:
        in_app_rate[CHANNELS.index(name)] = rate
    in_app = (devices["kind"][device] == PHONE) & (app > 0) & (rng.random(n) < in_app_rate[channel])
    jar = np.where(in_app, app, 0)
    is_email = channel == CHANNELS.index("email")
    account = persons["account"][person]
    user_id = account & (
        (is_email & (rng.random(n) < cfg.email_click_user_id_rate))
        | ((jar == 0) & (rng.random(n) < cfg.click_login_rate))
    )
    email = is_email & (rng.random(n) < cfg.email_click_email_rate)
    return {
        "person": person,
        "link": link,
        "t": t,
        "slot": slot,
        "device": device,
        "jar": jar,
        "has_user_id": user_id,
        "has_email": email,
    }


def _person_click_keys(sim: _Sim, hc: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Human clicks ordered by (person, time): the sort order and the sorted int64 keys."""
    key = (hc["person"] << 32) | (hc["t"] - sim.t0)
    order = np.argsort(key, kind="stable")
    return order.astype(np.int32), key[order]


def _conversions(
    sim: _Sim,
    persons: dict[str, np.ndarray],
    devices: dict[str, np.ndarray],
    hc: dict[str, np.ndarray],
    key_order: np.ndarray,
    keys: np.ndarray,
) -> dict[str, np.ndarray]:
    cfg, rng = sim.cfg, sim.rng("conversions")
    lb = sim.lookback
    # conversions led by a click within the lookback: persons are drawn by a heavy-tailed propensity that is
    # independent of how much they click (some convert several times), then one of their clicks placed so that
    # the conversion falls inside the period
    n_target = round(cfg.persons * cfg.click_conversions_per_person)
    clickers = np.bincount(hc["person"], minlength=cfg.persons) > 0
    weight = rng.gamma(cfg.conversion_propensity_shape, 1.0, cfg.persons) * clickers
    lo_lag, hi_lag = 30 * 60, max(lb - HOUR, 31 * 60)
    mean = cfg.conversion_lag_mean_days * DAY
    src_parts, tc_parts = [], []
    got = 0
    for _ in range(60 if weight.sum() > 0 else 0):
        if got >= n_target:
            break
        m = 2 * (n_target - got) + 16
        p = _pick(rng, weight, m)
        u = rng.random(m)
        trunc = lo_lag - mean * np.log1p(-u * -np.expm1(-(hi_lag - lo_lag) / mean))
        same_session = rng.random(m) < cfg.same_session_conversion_share
        lag = np.where(same_session, rng.integers(20, 25 * 60, m), trunc.astype(np.int64))
        first = np.searchsorted(keys, (p << 32) | np.maximum(sim.start - lag - sim.t0, 0), side="left")
        end = np.searchsorted(keys, (p << 32) | (sim.t1 - lag - sim.t0), side="left")
        ok = np.flatnonzero(end > first)
        pick = key_order[first[ok] + (rng.random(ok.size) * (end[ok] - first[ok])).astype(np.int64)].astype(np.int64)
        # in-app browsing is ephemeral: a conversion led by an in-app click follows it within the session
        lag = np.where(hc["jar"][pick] > 0, rng.integers(20, 25 * 60, ok.size), lag[ok])
        tc = hc["t"][pick] + lag
        inside = np.flatnonzero((tc >= sim.start) & (tc < sim.t1))[: n_target - got]
        src_parts.append(pick[inside])
        tc_parts.append(tc[inside])
        got += inside.size
    src = np.concatenate(src_parts) if src_parts else np.zeros(0, dtype=np.int64)
    tc = np.concatenate(tc_parts) if tc_parts else np.zeros(0, dtype=np.int64)
    # late conversions: more than the lookback after the click that led to them
    n_late = round(src.size * cfg.late_conversion_share / (1 - cfg.late_conversion_share))
    cand = np.flatnonzero(hc["t"] + lb + HOUR < sim.t1)
    if cand.size == 0:
        n_late = 0
    late_src = cand[rng.integers(0, max(cand.size, 1), n_late)]
    floor_t = np.maximum(hc["t"][late_src] + lb + HOUR, sim.start)
    late_t = floor_t + (rng.random(n_late) * np.minimum(sim.t1 - floor_t, 10 * DAY)).astype(np.int64)
    # organic conversions: persons with no human click in the lookback (rejection sampling, a few rounds)
    n_org = round((src.size + n_late) * cfg.organic_conversion_share / (1 - cfg.organic_conversion_share))
    org_p, org_t = [], []
    got = 0
    for _ in range(60):
        if got >= n_org:
            break
        m = 4 * (n_org - got) + 16
        p = rng.integers(0, cfg.persons, m)
        t = rng.integers(sim.start, sim.t1, m)
        pos = np.searchsorted(keys, (p << 32) | (t - sim.t0), side="right") - 1
        last_p = np.where(pos >= 0, keys[np.maximum(pos, 0)] >> 32, -1)
        last_t = (keys[np.maximum(pos, 0)] & 0xFFFFFFFF) + sim.t0
        ok = (last_p != p) | (last_t < t - lb)
        org_p.append(p[ok][: n_org - got])
        org_t.append(t[ok][: n_org - got])
        got += org_p[-1].size
    org_p = np.concatenate(org_p) if org_p else np.zeros(0, dtype=np.int64)
    org_t = np.concatenate(org_t) if org_t else np.zeros(0, dtype=np.int64)

    origin_click = np.concatenate([src, late_src, np.full(org_p.size, -1)])
    origin = np.repeat([0, 1, 2], [src.size, n_late, org_p.size])
    clicked = origin_click >= 0
    person = np.concatenate([hc["person"][src], hc["person"][late_src], org_p])
    t = np.concatenate([tc, late_t, org_t])
    n = t.size
    # where the conversion happens: another device, the main browser after an in-app click, or the same jar
    n_dev = devices["n_devices"][person]
    click_slot = np.where(clicked, hc["slot"][np.maximum(origin_click, 0)], (rng.random(n) * n_dev).astype(np.int64))
    click_jar = np.where(clicked, hc["jar"][np.maximum(origin_click, 0)], 0)
    cross = clicked & (n_dev > 1) & (rng.random(n) < cfg.cross_device_conversion_rate)
    other = (click_slot + 1 + (rng.random(n) * np.maximum(n_dev - 1, 1)).astype(np.int64)) % n_dev
    slot = np.where(cross, other, click_slot)
    handoff = (click_jar > 0) & (rng.random(n) < cfg.in_app_handoff_rate)
    # late conversions come back weeks later through the main browser
    jar = np.where(cross | handoff | (origin == 1), 0, click_jar)
    device = devices["person_devices"][person, slot]
    etype = _pick(rng, _named_probs(cfg.event_type_probs, EVENT_TYPES, "event_type_probs"), n)
    signup, purchase = etype == EVENT_TYPES.index("signup"), etype == EVENT_TYPES.index("purchase")
    account = persons["account"][person]
    has_user_id = signup | (account & (rng.random(n) < cfg.conversion_login_rate))
    email_rate = np.where(purchase, cfg.purchase_email_rate, np.where(signup, 1.0, 0.1))
    has_email = rng.random(n) < email_rate
    revenue_cents = np.round(rng.lognormal(np.log(4500), 0.8, n)).astype(np.int64) + 99
    # revenue text: purchases always, carts sometimes, signups '' or '0'
    revenue_kind = np.where(
        purchase, 0, np.where(signup, np.where(rng.random(n) < 0.5, 1, 2), np.where(rng.random(n) < 0.5, 0, 1))
    )
    currency = _pick(rng, _named_probs(cfg.currency_probs, CURRENCIES, "currency_probs"), n)
    # order conversions by time so ids and rows follow the event stream
    order = np.argsort(t, kind="stable")
    return {
        k: v[order]
        for k, v in {
            "person": person,
            "t": t,
            "origin": origin,
            "origin_click": origin_click,
            "device": device,
            "jar": jar,
            "event_type": etype,
            "has_user_id": has_user_id,
            "has_email": has_email,
            "revenue_cents": revenue_cents,
            "revenue_kind": revenue_kind,
            "currency": currency,
        }.items()
    }


def _jar_state(
    sim: _Sim, devices: dict[str, np.ndarray], hc: dict[str, np.ndarray], conv: dict[str, np.ndarray]
) -> None:
    """Cookies, sessions and stored click ids per browser jar, from the merged click + conversion stream."""
    cfg, rng = sim.cfg, sim.rng("jars")
    n_clicks = hc["t"].size
    jar_id = np.concatenate([hc["device"] * N_JARS + hc["jar"], conv["device"] * N_JARS + conv["jar"]])
    t = np.concatenate([hc["t"], conv["t"]])
    order = np.argsort((jar_id << 32) | (t - sim.t0), kind="stable")  # clicks before conversions on ties
    sj, st = jar_id[order], t[order]
    del jar_id, t
    first = np.ones(order.size, dtype=bool)
    first[1:] = sj[1:] != sj[:-1]
    gap = np.zeros(order.size, dtype=np.int64)
    gap[1:] = np.diff(st)
    cleared = rng.random(order.size) < -np.expm1(-cfg.cookie_clear_rate_per_day * gap / DAY)
    expired = devices["itp"][sj // N_JARS] & (gap > cfg.itp_cookie_ttl_days * DAY)
    new_cookie = first | cleared | expired
    new_session = new_cookie | (gap > cfg.session_idle_minutes * 60)
    cookie = np.cumsum(new_cookie) - 1
    session = np.cumsum(new_session) - 1
    is_click = order < n_clicks
    last_click = np.maximum.accumulate(np.where(is_click, np.arange(order.size), -1))
    conv_pos = np.flatnonzero(~is_click)
    lc = last_click[conv_pos]
    carried = (
        (lc >= 0)
        & (cookie[np.maximum(lc, 0)] == cookie[conv_pos])
        & (rng.random(conv_pos.size) < cfg.click_id_survival_rate)
    )
    cookie_ev = np.empty_like(cookie)
    cookie_ev[order] = cookie
    session_ev = np.empty_like(session)
    session_ev[order] = session
    hc["cookie"], conv["cookie"] = cookie_ev[:n_clicks], cookie_ev[n_clicks:]
    hc["session"], conv["session"] = session_ev[:n_clicks], session_ev[n_clicks:]
    direct = np.full(conv["t"].size, -1, dtype=np.int64)
    direct[order[conv_pos] - n_clicks] = np.where(carried, order[np.maximum(lc, 0)], -1)
    conv["direct_click"] = direct


def _human_network(
    sim: _Sim,
    persons: dict[str, np.ndarray],
    devices: dict[str, np.ndarray],
    person: np.ndarray,
    device: np.ndarray,
    t: np.ndarray,
) -> dict[str, np.ndarray]:
    """Public IP of a person's device at time t: home (household, leased), office, or carrier NAT pool.

    Returns the network code per row, the IPv4 address (int) of IPv4 rows, the IPv6 mask and the IPv6 text of
    the IPv6 rows (in row order).
    """
    cfg = sim.cfg
    n = t.size
    kind = devices["kind"][device]
    rel = t - sim.t0
    wifi = kind != PHONE
    phone = np.flatnonzero(~wifi)
    # network state changes in blocks of a few hours, offset per device so that devices do not switch together
    phase = (sim.h("net-phase", device) % _U64(4 * HOUR)).astype(np.int64)
    block = (rel + phase) // (4 * HOUR)
    wifi[phone] = _unit(sim.h("wifi", device[phone], block[phone])) < cfg.phone_wifi_share
    hour = (t // HOUR) % 24
    weekday = ((t // DAY) + 3) % 7 < 5  # 1970-01-01 was a Thursday
    # office hours 9:00-18:00 US Eastern
    maybe_office = np.flatnonzero(
        persons["office_worker"][person] & weekday & (hour >= 13) & (hour < 22) & (kind != TABLET) & wifi
    )
    del hour, weekday
    network = np.zeros(n, dtype=np.int8)
    network[~wifi] = 2
    at_office = _unit(sim.h("office-day", person[maybe_office], t[maybe_office] // DAY)) < 0.85
    network[maybe_office[at_office]] = 1
    ip4 = np.zeros(n, dtype=np.int64)

    home = np.flatnonzero(network == 0)
    hh = persons["household"][person[home]]
    lease = max(1, int(cfg.home_ip_lease_days * DAY))
    epoch = (rel[home] + persons["household_phase"][hh]) // lease
    n_epochs = (sim.t1 - sim.t0) // lease + 2
    # an odd-multiplier affine map is a bijection mod 2**28: every (household, lease) gets its own address
    code = ((hh * n_epochs + epoch) * 0x9E3779B + 0x5DEECE6) & ((1 << 28) - 1)
    ip4[home] = (np.array(RESIDENTIAL_OCTETS, dtype=np.int64)[code >> 24] << 24) | (code & 0xFFFFFF)
    on_v6 = persons["household_v6"][hh]
    v6_rows = home[on_v6]
    hh6, ep6 = hh[on_v6], epoch[on_v6]
    del hh, epoch, code, on_v6

    office = np.flatnonzero(network == 1)
    code = (persons["office"][person[office]].astype(np.int64) * 0x2545F49 + 0x1234567) & ((1 << 27) - 1)
    ip4[office] = (np.array(OFFICE_OCTETS, dtype=np.int64)[code >> 24] << 24) | (code & 0xFFFFFF)

    cell = np.flatnonzero(network == 2)
    car = persons["carrier"][person[cell]]
    pool_total = -(-cfg.persons // cfg.cgnat_persons_per_ip)
    pool = np.maximum(1, np.round(np.array(CARRIER_SHARES) * pool_total)).astype(np.int64)
    # the NAT mapping holds while the phone stays on the carrier network (a block), then changes
    slot = (sim.h("cgnat", device[cell], block[cell]) % pool[car].astype(_U64)).astype(np.int64)
    pref = np.array(CARRIER_PREFIXES, dtype=np.int64)[car, slot % 3]
    ip4[cell] = (pref << 16) | ((slot // 3 * 0x9E37 + 0x2F1) & 0xFFFF)

    v6 = np.zeros(n, dtype=bool)
    v6[v6_rows] = True
    isp = np.array(IPV6_ISP_PREFIXES, dtype=np.int64)[persons["household_isp"][hh6]]
    prefix = (isp.astype(_U64) << _U64(32)) | (sim.h("v6-prefix", hh6, ep6) & _U64(0xFFFFFFFF))
    iid = sim.h("v6-iid", device[v6_rows], t[v6_rows] // DAY)  # privacy addresses rotate daily per device
    return {"network": network, "ip4": ip4, "v6": v6, "v6_text": _ipv6(prefix, iid)}


def _ip_text(sim: _Sim, stream: str, ids: np.ndarray, ip4: np.ndarray, v6: np.ndarray, v6_text: np.ndarray):
    """IP text: IPv4 (a share rendered IPv4-mapped, decided per distinct row id) or the given IPv6 text."""
    r_v4, r_v6 = np.flatnonzero(~v6), np.flatnonzero(v6)
    mapped = _unit(sim.h(stream, ids[r_v4])) < sim.cfg.mapped_ipv6_rate
    v4_text = _cat(np.where(mapped, b"::ffff:", b""), _ipv4(ip4[r_v4]))
    return _fill(ids.size, [(r_v4, v4_text), (r_v6, v6_text)])


def _bot_clicks(sim: _Sim, links: dict[str, np.ndarray], cat: _Catalog, n_human: int) -> dict[str, np.ndarray]:
    cfg, rng = sim.cfg, sim.rng("bots")
    n = round(n_human * cfg.bot_click_share / (1 - cfg.bot_click_share))
    kind = _pick(rng, _named_probs(cfg.bot_kind_probs, BOT_KINDS, "bot_kind_probs"), n)
    link = _pick(rng, links["weight"], n)
    base = links["base"][link]
    t = base + (rng.random(n) * (sim.t1 - base)).astype(np.int64)
    # preview fetchers: mostly 1-60 s after the link is posted, on any link (every post is previewed)
    preview = kind == BOT_KINDS.index("preview_fetcher")
    fresh_links = np.flatnonzero(links["created"] >= sim.t0)
    immediate = preview & (rng.random(n) < cfg.preview_immediate_share) & (fresh_links.size > 0)
    imm = np.flatnonzero(immediate)
    link[imm] = fresh_links[rng.integers(0, max(fresh_links.size, 1), imm.size)]
    delay = np.minimum(1 + rng.lognormal(np.log(4.0), 0.8, imm.size), 60).astype(np.int64)
    t[imm] = np.minimum(links["created"][link[imm]] + delay, sim.t1 - 1)
    # user agents by kind; bursts use ordinary desktop browsers
    agent = np.zeros(n, dtype=np.int64)
    for k in range(len(BOT_KINDS)):
        rows = np.flatnonzero(kind == k)
        choices = np.flatnonzero(cat.bot_kind == k)
        if choices.size:
            agent[rows] = choices[_pick(rng, cat.bot_weight[choices], rows.size)]
    ua = cat.bot_ua[agent]
    dc_group = cat.bot_dc_group[agent]
    fp = np.zeros(n, dtype=_U64)
    has_fp = np.zeros(n, dtype=bool)
    dc_key = rng.integers(0, 2**31, n)
    burst = np.flatnonzero(kind == BOT_KINDS.index("datacenter_burst"))
    if burst.size:
        n_bursts = max(1, burst.size // 25)
        b = rng.integers(0, n_bursts, burst.size)
        b_link = _pick(rng, links["weight"], n_bursts)
        b_base = links["base"][b_link]
        b_start = b_base + (rng.random(n_bursts) * np.maximum(sim.t1 - b_base - 120, 1)).astype(np.int64)
        desktops = np.flatnonzero(cat.kind == DESKTOP)
        b_ua = cat.ua[desktops[rng.integers(0, desktops.size, n_bursts)], 0]
        link[burst] = b_link[b]
        t[burst] = np.minimum(b_start[b] + rng.integers(0, 90, burst.size), sim.t1 - 1)
        ua[burst] = b_ua[b]
        dc_key[burst] = b
        fp[burst] = sim.h("burst-fp", b)
        has_fp[burst] = True
    headless = np.flatnonzero(kind == BOT_KINDS.index("headless"))
    fp[headless] = sim.h("headless-fp", rng.integers(0, 10, headless.size))
    has_fp[headless] = True
    groups = [np.array(g, dtype=np.int64) for g in DATACENTER_PREFIXES]
    g_size = np.array([g.size for g in groups])
    g_off = np.concatenate([[0], np.cumsum(g_size)[:-1]])
    flat = np.concatenate(groups)
    hv = sim.h("dc-ip", kind, dc_key)
    pref = flat[g_off[dc_group] + (hv % g_size[dc_group].astype(_U64)).astype(np.int64)]
    ip4 = (pref << 16) | ((hv >> _U64(20)) & _U64(0xFFFF)).astype(np.int64)
    # headless browsers and bursts get a fresh cookie and session on every request; the others none
    fresh_cookie = np.isin(kind, [BOT_KINDS.index("headless"), BOT_KINDS.index("datacenter_burst")])
    return {"kind": kind, "link": link, "t": t, "ua": ua, "fp": fp, "has_fp": has_fp, "ip4": ip4, "fresh": fresh_cookie}


def _emails(
    sim: _Sim, persons: dict[str, np.ndarray], person: np.ndarray, dirty: np.ndarray, ids: np.ndarray
) -> np.ndarray:
    """Email text of `person`, dirty rows rendered as a variant that normalises to the same address.

    The variant and its details are hashes of the row ids, so a duplicated row repeats its email exactly.
    """
    h = sim.h("email-variant", ids)

    def choice(shift: int, k: int) -> np.ndarray:
        return ((h >> _U64(shift)) % _U64(k)).astype(np.int64)

    first = np.array([s.encode() for s in FIRST_NAMES], dtype="S12")[persons["first"][person]]
    last = np.array([s.encode() for s in LAST_NAMES], dtype="S12")[persons["last"][person]]
    sep_code = persons["sep"][person]
    domain_code = persons["domain"][person]
    domain = np.array([d.encode() for d, _ in EMAIL_DOMAINS], dtype="S16")[domain_code]
    number = _decimal(persons["number"][person])
    variant = np.where(dirty, choice(0, len(EMAIL_VARIANTS)), -1)
    gmail = domain_code == 0
    variant = np.where((variant == EMAIL_VARIANTS.index("gmail_dots")) & ~gmail, 3, variant)
    # gmail ignores dots in the local part: toggle the separator dot
    sep_code = np.where(variant == EMAIL_VARIANTS.index("gmail_dots"), 1 - sep_code, sep_code)
    sep = np.array([b".", b"", b"_"], dtype="S1")[sep_code]
    local = _cat(first, sep, last, number)
    tag = np.array(PLUS_TAGS, dtype="S5")[choice(16, len(PLUS_TAGS))]
    local = np.where(variant == EMAIL_VARIANTS.index("plus_tag"), _cat(local, b"+", tag), local)
    email = _cat(local, b"@", domain)
    email = np.where(variant == EMAIL_VARIANTS.index("upper"), np.strings.upper(email), email)
    email = np.where(variant == EMAIL_VARIANTS.index("capitalize"), np.strings.capitalize(email), email)
    pad = np.array([b" ", b"  ", b"\t"], dtype="S2")[choice(32, 3)]
    ws = choice(48, 3)  # leading, trailing or both
    spaced = _cat(np.where(ws != 1, pad, b""), email, np.where(ws != 0, b" ", b""))
    return np.where(variant == EMAIL_VARIANTS.index("whitespace"), spaced, email)


def _offsets(sim: _Sim, stream: str, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row rendering offset (minutes, 0 = UTC) and whether UTC is written 'Z' (else '+00:00')."""
    h = sim.h(stream, ids)
    non_utc = _unit(h) < sim.cfg.non_utc_offset_rate
    choice = ((h & _U64(0xFFFF)) % _U64(NON_UTC_OFFSETS_MIN.size)).astype(np.int64)
    off = np.where(non_utc, NON_UTC_OFFSETS_MIN[choice], 0)
    z_style = ((h >> _U64(16)) & _U64(0xFFFF)) < _U64(int(0.7 * 65536))
    return off, z_style


def _dirt_mask(sim: _Sim, stream: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which unique rows get a junk token / an empty cell in one identifier column (hash-based, per row id)."""
    cfg = sim.cfg
    u = _unit(sim.h("dirt-" + stream, rows))
    junk = u < cfg.junk_identifier_rate
    empty = ~junk & (u < cfg.junk_identifier_rate + cfg.empty_identifier_rate)
    return junk, empty


_JUNK_BYTES = np.array([v.encode() for v in JUNK_VALUES])


def _dirty(sim: _Sim, stream: str, values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Replace some identifier cells with junk tokens or ''; decided per distinct row id (duplicates agree)."""
    junk, empty = _dirt_mask(sim, stream, ids)
    if not (junk.any() or empty.any()):
        return values
    token = _JUNK_BYTES[(sim.h("junk-token-" + stream, ids[junk]) % _U64(len(JUNK_VALUES))).astype(np.int64)]
    width = max(values.dtype.itemsize, token.dtype.itemsize if token.size else 1)
    out = values.astype(f"S{width}")
    out[junk] = token
    out[empty] = b""
    return out


def _duplicated_order(rng: np.random.Generator, t: np.ndarray, rate: float) -> np.ndarray:
    """Row order of a delivered file: every row once, some twice (redelivered up to a day later), by time."""
    dup = np.flatnonzero(rng.random(t.size) < rate)
    rows = np.concatenate([np.arange(t.size), dup])
    when = np.concatenate([t, t[dup] + rng.integers(1, DAY, dup.size)])
    return rows[np.argsort(when, kind="stable")]


def generate_world(cfg: WorldConfig | None = None) -> dict[str, pd.DataFrame]:
    """Simulate a world and return its raw tables and ground truth.

    Returns a dict with
    - `fx_rates`: one rate to USD per day and currency (EUR, GBP) over the clicks' and conversions' days;
    - `spend`: per creator and day of a post, the fixed fees (creator level), and per link and day with clicks,
      the cost of its clicks (link level), in the creator's currency;
    - `links`, `clicks`, `conversions`: the raw contract (every value a string, '' for missing), columns in the
      contract order; the low-cardinality `link_id`, `user_agent` and `referrer` of clicks (and `user_agent` of
      conversions) are Categorical with string categories, which keeps a 10-million-click world under 4 GB;
    - `truth_clicks`: one row per distinct click_id: person_id (<NA> for bots), is_bot, bot_kind, and the hidden
      device_id, device_kind, browser (jar) and network the click came from;
    - `truth_conversions`: one row per distinct conversion_id with the true last / first touch inside
      `lookback_days`, plus origin ('click', 'late_click', 'organic'), origin_click_id (the click that led to
      it), device_id and browser.
    """
    cfg = cfg or WorldConfig()
    sim = _Sim(cfg)
    cat = _catalog(cfg)
    persons = _persons(sim)
    devices = _devices(sim, persons, cat)
    links = _links(sim)
    hc = _human_clicks(sim, persons, devices, links)
    key_order, keys = _person_click_keys(sim, hc)
    conv = _conversions(sim, persons, devices, hc, key_order, keys)
    _jar_state(sim, devices, hc, conv)
    bots = _bot_clicks(sim, links, cat, hc["t"].size)
    spend = _render_spend(sim, links, hc, bots)  # before the clicks are rendered (that empties hc and bots)
    world_links = _render_links(sim, links)
    clicks, truth_clicks, info = _render_clicks(sim, cat, persons, devices, links, hc, bots)
    conversions, truth_conversions = _render_conversions(sim, cat, persons, devices, conv, key_order, keys, info)
    return {
        "links": world_links,
        "clicks": clicks,
        "conversions": conversions,
        "fx_rates": _render_fx_rates(sim),
        "spend": spend,
        "truth_clicks": truth_clicks,
        "truth_conversions": truth_conversions,
    }


# ------------------------------------------------------------------------------------------------------------
# Rendering to the raw contract
# ------------------------------------------------------------------------------------------------------------

LINK_COLUMNS = ("link_id", "short_code", "campaign_id", "creator_id", "channel", "destination_url", "created_at")
CLICK_COLUMNS = (
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
)
CONVERSION_COLUMNS = (
    "conversion_id",
    "converted_at",
    "event_type",
    "revenue",
    "currency",
    "user_id",
    "email",
    "cookie_id",
    "session_id",
    "device_fingerprint",
    "ip",
    "user_agent",
    "click_id",
)
_B62 = np.frombuffer(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)


def _link_ids(sim: _Sim, idx: np.ndarray) -> np.ndarray:
    return _cat(b"lnk_", _hex(sim.h("link-id", idx), 6))


def _render_fx_rates(sim: _Sim) -> pd.DataFrame:
    """One rate per non-base currency and day of the world (clicks' history included), a small random walk."""
    rng = sim.rng("fx-rates")
    days = pd.date_range(pd.Timestamp(sim.t0, unit="s"), pd.Timestamp(sim.t1 - 1, unit="s"), freq="D").normalize()
    frames = []
    for currency in CURRENCIES:
        if FX_CENTRES[currency] == 1.0:
            continue  # the base currency is worth 1 without a row
        walk = np.exp(np.cumsum(rng.normal(0.0, 0.004, days.size)))
        frames.append(
            pd.DataFrame(
                {
                    "rate_date": days.strftime("%Y-%m-%d"),
                    "currency": currency,
                    "rate": [f"{r:.6f}" for r in FX_CENTRES[currency] * walk],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


SPEND_COLUMNS = ("spend_date", "link_id", "campaign_id", "creator_id", "channel", "amount", "currency")


def _render_spend(
    sim: _Sim, links: dict[str, np.ndarray], hc: dict[str, np.ndarray], bots: dict[str, np.ndarray]
) -> pd.DataFrame:
    """What the platform paid: per link a fee for the post (given for its creator, on the creation day, when that
    day lies in the world) and a cost per click (given for the link, per day of clicks), both lognormal around
    the config's medians, in the creator's currency. One row per entity, day and currency, amounts to the cent."""
    cfg, rng = sim.cfg, sim.rng("spend")
    n_links = links["creator"].size
    n_creators = int(links["creator"].max()) + 1
    probs = _named_probs(cfg.spend_currency_probs, CURRENCIES, "spend_currency_probs")
    currency = np.array(CURRENCIES)[_pick(rng, probs, n_creators)]
    fee = cfg.spend_fee_per_post * rng.lognormal(0.0, 0.5, n_links)
    cpc = cfg.spend_cost_per_click * rng.lognormal(0.0, 0.5, n_links)
    link_ids = _link_ids(sim, np.arange(n_links)).astype(str)
    creator_ids = _cat(b"crt_", _decimal(10_000 + links["creator"])).astype(str)

    def day(t: np.ndarray) -> np.ndarray:
        return pd.to_datetime(t, unit="s").strftime("%Y-%m-%d").to_numpy()

    posted = np.flatnonzero((links["created"] >= sim.t0) & (links["created"] < sim.t1))
    fees = (
        pd.DataFrame(
            {
                "spend_date": day(links["created"][posted]),
                "creator_id": creator_ids[posted],
                "currency": currency[links["creator"][posted]],
                "amount": fee[posted],
            }
        )
        .groupby(["spend_date", "creator_id", "currency"], as_index=False)["amount"]
        .sum()
    )
    clicked = np.concatenate([hc["link"], bots["link"]]).astype(np.int64)
    clicks = pd.DataFrame({"link": clicked, "spend_date": day(np.concatenate([hc["t"], bots["t"]]))})
    per_day = clicks.groupby(["link", "spend_date"], as_index=False).size()
    link = per_day["link"].to_numpy()
    costs = pd.DataFrame(
        {
            "spend_date": per_day["spend_date"],
            "link_id": link_ids[link],
            "currency": currency[links["creator"][link]],
            "amount": per_day["size"].to_numpy() * cpc[link],
        }
    )
    out = pd.concat([fees, costs], ignore_index=True)
    out["amount"] = out["amount"].map(lambda a: f"{a:.2f}")
    return out.reindex(columns=list(SPEND_COLUMNS)).fillna("")


def _render_links(sim: _Sim, links: dict[str, np.ndarray]) -> pd.DataFrame:
    n = links["channel"].size
    idx = np.arange(n)
    h = sim.h("short-code", idx)
    code = np.empty((n, 8), dtype=np.uint8)
    for k in range(8):
        code[:, k] = _B62[(h // _U64(62**k) % _U64(62)).astype(np.int64)]
    channel = np.array([c.encode() for c in CHANNELS], dtype="S16")[links["channel"]]
    campaign = _cat(b"cmp_", _decimal(1000 + links["campaign"]))
    creator = _cat(b"crt_", _decimal(10_000 + links["creator"]))
    url = _cat(
        b"https://shop.example.com/p/",
        _decimal(links["product"]),
        b"?utm_source=",
        channel,
        b"&utm_medium=link&utm_campaign=",
        campaign,
    )
    off, z = _offsets(sim, "link-offset", idx)
    table = pa.table(
        {
            "link_id": _text(_link_ids(sim, idx)),
            "short_code": _text(code.view("S8").ravel()),
            "campaign_id": _text(campaign),
            "creator_id": _text(creator),
            "channel": _text(channel),
            "destination_url": _text(url),
            "created_at": _iso(links["created"], off, z),
        }
    )
    return table.to_pandas()


def _render_clicks(
    sim: _Sim,
    cat: _Catalog,
    persons: dict[str, np.ndarray],
    devices: dict[str, np.ndarray],
    links: dict[str, np.ndarray],
    hc: dict[str, np.ndarray],
    bots: dict[str, np.ndarray],
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """Raw clicks, truth_clicks, and per click number what the conversions need (link, device).

    Clicks are numbered in time order; every per-click random choice made here is a hash of the click number,
    so a redelivered duplicate row is an exact repeat. Empties `hc` and `bots` to free memory early.
    """
    cfg = sim.cfg
    n_h = hc["t"].size
    t = np.concatenate([hc["t"], bots["t"]])
    src = np.argsort(t, kind="stable")  # click number -> source (human index, or n_h + bot index)
    t = t[src]
    n = t.size
    human_pos = np.empty(n, dtype=np.int32)
    human_pos[src] = np.arange(n, dtype=np.int32)
    human_pos = human_pos[:n_h].copy()  # human click index -> click number
    is_bot = src >= n_h
    hv, bv = np.flatnonzero(~is_bot), np.flatnonzero(is_bot)
    hsrc, bsrc = src[hv], src[bv] - n_h
    del src

    split = (hv, hsrc, bv, bsrc)

    person = _merge(n, split, hc["person"], -1, np.int32)
    device = _merge(n, split, hc["device"], -1, np.int32)
    jar = _merge(n, split, hc["jar"], -1, np.int8)
    link = _merge(n, split, hc["link"], bots["link"], np.int32)
    bot_kind = _merge(n, split, np.full(n_h, -1, dtype=np.int8), bots["kind"], np.int8)
    channel = links["channel"][link]
    n_links = links["channel"].size
    n_unknown = max(5, n_links // 50)
    unknown = np.flatnonzero(_unit(sim.h("unknown-link", np.arange(n))) < cfg.unknown_link_rate)
    link[unknown] = n_links + (sim.h("unknown-link-id", unknown) % _U64(n_unknown)).astype(np.int64)
    ua = _merge(n, split, cat.ua[devices["variant"][hc["device"]], hc["jar"]], bots["ua"], np.int32)
    has_user_id = _merge(n, split, hc["has_user_id"], False, bool)
    has_email = _merge(n, split, hc["has_email"], False, bool)
    cookie_no = _merge(n, split, hc["cookie"], -1, np.int64)
    session_no = _merge(n, split, hc["session"], -1, np.int64)
    fresh = _merge(n, split, np.zeros(n_h, dtype=bool), bots["fresh"], bool)
    has_fp = _merge(n, split, np.ones(n_h, dtype=bool), bots["has_fp"], bool)
    bot_fp = bots["fp"][bsrc]
    bot_ip = bots["ip4"][bsrc]
    hc.clear()
    bots.clear()

    # referrer, by channel (bots send none)
    ref_names: dict[str, int] = {"": 0}
    width = max(len(v) for v in REFERRERS.values())
    ref_cum = np.full((len(CHANNELS), width), 2.0)
    ref_code = np.zeros((len(CHANNELS), width), dtype=np.int32)
    for c, name in enumerate(CHANNELS):
        w = np.array([x for _, x in REFERRERS[name]])
        ref_cum[c, : w.size] = np.cumsum(w) / w.sum()
        ref_code[c, : w.size] = [ref_names.setdefault(r, len(ref_names)) for r, _ in REFERRERS[name]]
    u = _unit(sim.h("referrer", hv))
    ch = channel[hv]
    ref = np.zeros(n, dtype=np.int32)
    ref[hv] = ref_code[ch, np.minimum((u[:, None] >= ref_cum[ch]).sum(axis=1), width - 1)]
    del u, ch, channel

    # raw rows: distinct clicks plus redelivered duplicates, in delivery order; rendered in chunks
    rows = _duplicated_order(sim.rng("clicks-duplicates"), t, cfg.duplicate_rate)
    link_text = _link_ids(sim, np.arange(n_links + n_unknown))
    network = np.full(n, 3, dtype=np.int8)
    bot_index = np.full(n, -1, dtype=np.int64)
    bot_index[bv] = np.arange(bv.size)
    del hv, bv, hsrc, bsrc, split
    parts: dict[str, list[pa.Array]] = {c: [] for c in CLICK_COLUMNS}
    for lo in range(0, rows.size, _CHUNK):
        r = rows[lo : lo + _CHUNK]
        k = r.size
        bot = is_bot[r]
        r_h, r_b = np.flatnonzero(~bot), np.flatnonzero(bot)
        parts["click_id"].append(_text(_click_ids(sim, r)))
        parts["clicked_at"].append(_iso(t[r], *_offsets(sim, "click-offset", r)))
        # network: humans from where they are, bots from datacenters
        net = _human_network(sim, persons, devices, person[r[r_h]], device[r[r_h]], t[r[r_h]])
        network[r[r_h]] = net["network"]
        ip4 = np.zeros(k, dtype=np.int64)
        ip4[r_h] = net["ip4"]
        ip4[r_b] = bot_ip[bot_index[r[r_b]]]
        v6 = np.zeros(k, dtype=bool)
        v6[r_h] = net["v6"]
        ip = _ip_text(sim, "click-mapped", r, ip4, v6, net["v6_text"])
        parts["ip"].append(_text(_dirty(sim, "click-ip", ip, r)))
        del net, ip4, v6, ip
        # browser identifiers: human jars' cookies and sessions, fresh ones for headless bots, none otherwise
        r_ck = np.flatnonzero(~bot | fresh[r])
        ck = r[r_ck]
        is_fresh = fresh[ck]
        key = np.where(is_fresh, sim.h("bot-cookie", ck), sim.h("cookie", cookie_no[ck]))
        cookie = _fill(k, [(r_ck, _cookie_ids(key))])
        parts["cookie_id"].append(_text(_dirty(sim, "click-cookie", cookie, r)))
        key = np.where(is_fresh, sim.h("bot-session", ck), sim.h("session", session_no[ck]))
        session = _fill(k, [(r_ck, _hex(key))])
        parts["session_id"].append(_text(_dirty(sim, "click-session", session, r)))
        del key, cookie, session, ck, is_fresh
        r_fp = np.flatnonzero(has_fp[r])
        fp = np.where(
            is_bot[r[r_fp]],
            bot_fp[np.maximum(bot_index[r[r_fp]], 0)],
            devices["fingerprint"][np.maximum(device[r[r_fp]], 0)],
        )
        parts["device_fingerprint"].append(_text(_dirty(sim, "click-fp", _fill(k, [(r_fp, _hex(fp))]), r)))
        r_uid = np.flatnonzero(has_user_id[r])
        uid = _fill(k, [(r_uid, _user_ids(sim, person[r[r_uid]]))])
        parts["user_id"].append(_text(_dirty(sim, "click-user", uid, r)))
        r_em = np.flatnonzero(has_email[r])
        dirty = _unit(sim.h("email-dirt-click", r[r_em])) < cfg.email_dirt_rate
        emails = _fill(k, [(r_em, _emails(sim, persons, person[r[r_em]], dirty, r[r_em]))])
        parts["email"].append(_text(_dirty(sim, "click-email", emails, r)))
    columns: dict[str, pa.ChunkedArray | pa.Array] = {c: _join(parts.pop(c)) for c in list(parts) if parts[c]}
    columns["link_id"] = pa.DictionaryArray.from_arrays(pa.array(link[rows]), _text(link_text).combine_chunks())
    columns["user_agent"] = pa.DictionaryArray.from_arrays(pa.array(ua[rows]), pa.array(cat.user_agents))
    columns["referrer"] = pa.DictionaryArray.from_arrays(pa.array(ref[rows]), pa.array(list(ref_names)))
    del ua, ref, rows, bot_index, cookie_no, session_no, t
    clicks = pa.table({c: columns.pop(c) for c in CLICK_COLUMNS}).to_pandas()
    pa.default_memory_pool().release_unused()  # hand the chunk temporaries back to the OS

    truth = pd.DataFrame(
        {
            "click_id": _join(
                [_text(_click_ids(sim, np.arange(lo, min(lo + _CHUNK, n)))) for lo in range(0, n, _CHUNK)]
            ).to_pandas(),
            "person_id": pd.arrays.IntegerArray(np.maximum(person, 0).astype(np.int64), is_bot),
            "is_bot": is_bot,
            "bot_kind": pd.Categorical.from_codes(bot_kind, categories=list(BOT_KINDS)),
            "device_id": pd.arrays.IntegerArray(np.maximum(device, 0).astype(np.int64), is_bot),
            "device_kind": pd.Categorical.from_codes(
                np.where(is_bot, -1, devices["kind"][np.maximum(device, 0)]), categories=list(DEVICE_KINDS)
            ),
            "browser": pd.Categorical.from_codes(jar, categories=list(JARS)),
            "network": pd.Categorical.from_codes(network, categories=list(NETWORKS)),
        },
        copy=False,
    )
    info = {"pos": human_pos, "link": link, "device": device, "link_text": link_text}
    return clicks, truth, info


def _merge(
    n: int,
    split: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    human: np.ndarray,
    bot: np.ndarray | int | bool,
    dtype: Any,
) -> np.ndarray:
    """Per click number values from a human-click array and a bot-click array (or constant)."""
    hv, hsrc, bv, bsrc = split
    out = np.empty(n, dtype=dtype)
    out[hv] = human[hsrc]
    out[bv] = bot[bsrc] if isinstance(bot, np.ndarray) else bot
    return out


def _click_ids(sim: _Sim, number: np.ndarray) -> np.ndarray:
    return _cat(b"ck_", _hex(sim.h("click-id", number)))


def _cookie_ids(key: np.ndarray) -> np.ndarray:
    return _uuid(key, _mix(key))


def _user_ids(sim: _Sim, person: np.ndarray) -> np.ndarray:
    return _cat(b"usr_", _hex(sim.h("user-id", person), 6))


def _render_conversions(
    sim: _Sim,
    cat: _Catalog,
    persons: dict[str, np.ndarray],
    devices: dict[str, np.ndarray],
    conv: dict[str, np.ndarray],
    key_order: np.ndarray,
    keys: np.ndarray,
    info: dict[str, np.ndarray],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw conversions and truth_conversions (true touches within the lookback, from the person's clicks)."""
    cfg = sim.cfg
    n = conv["t"].size
    ids = np.arange(n)
    person, t, device, jar = conv["person"], conv["t"], conv["device"], conv["jar"]

    # ground truth: the person's human clicks with converted_at - lookback <= clicked_at <= converted_at
    hi = np.searchsorted(keys, (person << 32) | (t - sim.t0), side="right") - 1
    lo = np.searchsorted(keys, (person << 32) | np.maximum(t - sim.lookback - sim.t0, 0), side="left")
    has = (hi >= 0) & (hi >= lo)
    count = np.where(has, hi - lo + 1, 0)
    starts = np.cumsum(count) - count
    flat = np.repeat(lo, count) + np.arange(count.sum()) - np.repeat(starts, count)
    touch_no = info["pos"][key_order[flat]]  # click numbers, in time order per conversion
    offsets = pa.array(np.concatenate([starts, [count.sum()]]).astype(np.int32))
    last_no = np.where(has, info["pos"][key_order[np.clip(hi, 0, None)]], 0)
    first_no = np.where(has, info["pos"][key_order[np.clip(lo, 0, max(keys.size - 1, 0))]], 0)
    origin_no = np.where(conv["origin_click"] >= 0, info["pos"][np.maximum(conv["origin_click"], 0)], 0)
    carried = conv["direct_click"] >= 0
    carried_no = info["pos"][np.maximum(conv["direct_click"], 0)]
    junk, empty = _dirt_mask(sim, "conversion-click", ids)

    def link_ids(number: np.ndarray) -> np.ndarray:
        return info["link_text"][info["link"][number]]

    def joined(values: np.ndarray) -> pd.Series:
        return pc.binary_join(pa.ListArray.from_arrays(offsets, _text(values).combine_chunks()), " ").to_pandas()

    def optional(values: np.ndarray, present: np.ndarray) -> pd.Series:
        return pc.if_else(pa.array(present), _text(values), pa.scalar(None, pa.string())).to_pandas()

    truth = pd.DataFrame(
        {
            "conversion_id": _text(_conversion_ids(sim, ids)).to_pandas(),
            "person_id": person.astype(np.int64),
            "is_organic": ~has,
            "true_last_click_id": optional(_click_ids(sim, last_no), has),
            "true_last_link_id": optional(link_ids(last_no), has),
            "first_touch_link_id": optional(link_ids(first_no), has),
            "touch_link_ids": joined(link_ids(touch_no)),
            "touch_click_ids": joined(_click_ids(sim, touch_no)),
            "conversion_device_same_as_last_click": has & (info["device"][last_no] == device),
            "has_direct_click_id": carried & ~junk & ~empty,
            "origin": pd.Categorical.from_codes(conv["origin"], categories=list(ORIGINS)),
            "origin_click_id": optional(_click_ids(sim, origin_no), conv["origin_click"] >= 0),
            "device_id": device.astype(np.int64),
            "browser": pd.Categorical.from_codes(jar, categories=list(JARS)),
        }
    )

    # raw rows: distinct conversions plus redelivered duplicates, in delivery order
    rows = _duplicated_order(sim.rng("conversions-duplicates"), t, cfg.duplicate_rate)
    m = rows.size
    col: dict[str, np.ndarray | pa.Array | pa.ChunkedArray] = {}
    col["conversion_id"] = _conversion_ids(sim, rows)
    col["converted_at"] = _iso(t[rows], *_offsets(sim, "conversion-offset", rows))
    col["event_type"] = np.array([e.encode() for e in EVENT_TYPES])[conv["event_type"][rows]]
    cents = conv["revenue_cents"][rows]
    kind = conv["revenue_kind"][rows]
    amount = _cat(_decimal(cents // 100), b".", np.array([f"{i:02d}".encode() for i in range(100)])[cents % 100])
    col["revenue"] = np.where(kind == 0, amount, np.where(kind == 1, b"0", b""))
    col["currency"] = np.where(kind == 2, b"", np.array([c.encode() for c in CURRENCIES])[conv["currency"][rows]])
    r_uid = np.flatnonzero(conv["has_user_id"][rows])
    col["user_id"] = _dirty(sim, "conversion-user", _fill(m, [(r_uid, _user_ids(sim, person[rows[r_uid]]))]), rows)
    r_em = np.flatnonzero(conv["has_email"][rows])
    dirty = _unit(sim.h("email-dirt-conversion", rows[r_em])) < cfg.email_dirt_rate
    emails = _fill(m, [(r_em, _emails(sim, persons, person[rows[r_em]], dirty, rows[r_em] + (1 << 40)))])
    col["email"] = _dirty(sim, "conversion-email", emails, rows)
    col["cookie_id"] = _dirty(sim, "conversion-cookie", _cookie_ids(sim.h("cookie", conv["cookie"][rows])), rows)
    col["session_id"] = _dirty(sim, "conversion-session", _hex(sim.h("session", conv["session"][rows])), rows)
    col["device_fingerprint"] = _dirty(sim, "conversion-fp", _hex(devices["fingerprint"][device[rows]]), rows)
    net = _human_network(sim, persons, devices, person[rows], device[rows], t[rows])
    ip = _ip_text(sim, "conversion-mapped", rows, net["ip4"], net["v6"], net["v6_text"])
    col["ip"] = _dirty(sim, "conversion-ip", ip, rows)
    col["user_agent"] = pa.DictionaryArray.from_arrays(
        pa.array(cat.ua[devices["variant"][device[rows]], jar[rows]]), pa.array(cat.user_agents)
    )
    r_ck = np.flatnonzero(carried[rows])
    click = _fill(m, [(r_ck, _click_ids(sim, carried_no[rows[r_ck]]))])
    col["click_id"] = _dirty(sim, "conversion-click", click, rows)
    table = pa.table(
        {c: col[c] if isinstance(col[c], pa.Array | pa.ChunkedArray) else _text(col[c]) for c in CONVERSION_COLUMNS}
    )
    return table.to_pandas(), truth


def _conversion_ids(sim: _Sim, number: np.ndarray) -> np.ndarray:
    return _cat(b"cv_", _hex(sim.h("conversion-id", number)))
