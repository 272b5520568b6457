"""The pipeline's settings: read from the environment and dbt_project.yml once, then passed down.

A setting that dbt and Python both use (the lookback, the attribution grain, the identity rules) is a dbt var
in ``dbt_project.yml``, the one place that holds its default; Python reads that var through :func:`dbt_var`,
rendering the ``env_var('NAME', 'default')`` the file uses, exactly as dbt would. Settings that only Python reads
come from ``ATTRIBUTION_*`` variables here. :data:`SETTINGS` is built once at import; the Dagster assets receive it
as the ``settings`` resource, so a test can hand them another.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from python_models.attribution import GRAINS, AttributionConfig
from python_models.confidence import MatchModelConfig
from python_models.facts import DEFAULT_CONFIDENCE_THRESHOLD
from python_models.identity import IdentityLimits
from warehouse.target import DATA_DIR, PROJECT_ROOT

DBT_PROJECT_FILE = PROJECT_ROOT / "dbt_project.yml"
# The one Jinja form the project's vars use: "{{ env_var('NAME', 'default') }}", optionally piped through a filter.
_ENV_VAR = re.compile(r"^\{\{\s*env_var\('(?P<name>\w+)',\s*'(?P<default>[^']*)'\)\s*(\|\s*\w+\s*)?\}\}$")
WEAK_PAIR_MODELS = ("auto", "priors")
_IDENTITY_PREFIX = "ATTRIBUTION_IDENTITY_"


@cache
def _dbt_project_vars() -> Mapping[str, Any]:
    return yaml.safe_load(DBT_PROJECT_FILE.read_text()).get("vars", {})


def dbt_var(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """The value dbt gives var ``name`` without ``--vars``: the literal in dbt_project.yml, or its env_var()."""
    vars_ = _dbt_project_vars()
    if name not in vars_:
        raise KeyError(f"dbt var {name!r} is not defined in {DBT_PROJECT_FILE}")
    value = vars_[name]
    match = _ENV_VAR.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        return value
    env = os.environ if environ is None else environ
    return env.get(match["name"]) or match["default"]


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return float(value)
    except ValueError as exc:
        raise ValueError(f"environment variable {name}={value!r} is not a number") from exc


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = (env.get(name) or default).strip().lower()
    if value not in choices:
        raise ValueError(f"environment variable {name}={value!r} must be one of {choices}")
    return value


def _int_var(name: str, env: Mapping[str, str]) -> int:
    value = dbt_var(name, env)
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"dbt var {name}={value!r} is not a whole number") from exc


def _timestamp_var(name: str, env: Mapping[str, str]) -> str:
    """An ISO 8601 dbt var that SQL casts: refused here, with its name, rather than as a cast error mid-run."""
    value = str(dbt_var(name, env)).strip()
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"dbt var {name}={value!r} is not an ISO 8601 date or timestamp") from exc
    return value


def identity_limits_from_env(environ: Mapping[str, str] | None = None) -> IdentityLimits:
    """Per-identity limits from ``ATTRIBUTION_IDENTITY_MAX_USER_IDS`` / ``_MAX_EMAILS`` / ``_MAX_COOKIES`` /
    ``_MAX_SESSIONS``; the blocked identifiers and edge trust from the dbt vars the identity models use
    (``identity_blocked_defaults``, ``identity_blocked`` = ``ATTRIBUTION_IDENTITY_BLOCKED``,
    ``identity_edge_type_trust``), so SQL and Python never disagree."""
    env = os.environ if environ is None else environ
    kwargs: dict[str, object] = {}
    for name in ("max_user_ids", "max_emails", "max_cookies", "max_sessions"):
        raw = env.get(_IDENTITY_PREFIX + name.upper(), "").strip()
        if raw:
            try:
                kwargs[name] = int(raw)
            except ValueError as exc:
                raise ValueError(f"{_IDENTITY_PREFIX}{name.upper()} must be an integer, got {raw!r}") from exc
    blocked = {(t, v) for t, values in dbt_var("identity_blocked_defaults").items() for v in values}
    for item in str(dbt_var("identity_blocked", env)).split(","):
        if item.strip():
            type_, sep, value = item.strip().partition(":")
            if not sep:
                raise ValueError(f"{_IDENTITY_PREFIX}BLOCKED entries must be type:value, got {item.strip()!r}")
            blocked.add((type_, value))
    trust = {str(k): int(v) for k, v in dbt_var("identity_edge_type_trust").items()}
    return IdentityLimits(blocked_values=frozenset(blocked), edge_type_trust=trust, **kwargs)  # type: ignore[arg-type]


# The match model's fit reads at most this many candidate pairs (whole days, newest first), so its memory is bounded
# whatever the traffic: ~0.6 GB per million pairs (~330 bytes a pair read, ~250 more while fitting; README,
# Configuration). M has 158,134 pairs (10 per conversion), so even L (~1.6M) fits on all its days.
DEFAULT_FIT_MAX_PAIRS = 2_000_000


@dataclass(frozen=True)
class PipelineSettings:
    """Every knob of the pipeline that is not the warehouse connection (that is :class:`warehouse.target.Target`)."""

    lookback_days: int
    grain: str
    probability_floor: float
    half_life_days: float
    confidence_threshold: float
    fit_window_days: int
    fit_max_pairs: int
    max_label_ece: float
    weak_pair_model: str
    partitions_start: str
    landing_dir: Path
    sentry_dsn: str | None
    identity_limits: IdentityLimits
    event_time_floor: str
    raw_retention_days: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PipelineSettings:
        env = os.environ if environ is None else environ
        grain = str(dbt_var("attribution_grain", env))
        if grain not in GRAINS:
            raise ValueError(f"ATTRIBUTION_GRAIN={grain!r} must be one of {GRAINS}")
        landing = Path(env.get("ATTRIBUTION_LANDING_DIR") or DATA_DIR / "landing")
        return cls(
            lookback_days=_int_var("lookback_days", env),
            grain=grain,
            probability_floor=_number(env, "ATTRIBUTION_PROBABILITY_FLOOR", 0.05),
            half_life_days=_number(env, "ATTRIBUTION_HALF_LIFE_DAYS", 7.0),
            confidence_threshold=_number(env, "ATTRIBUTION_CONFIDENCE_THRESHOLD", DEFAULT_CONFIDENCE_THRESHOLD),
            fit_window_days=int(_number(env, "ATTRIBUTION_FIT_WINDOW_DAYS", 90)),
            fit_max_pairs=int(_number(env, "ATTRIBUTION_FIT_MAX_PAIRS", DEFAULT_FIT_MAX_PAIRS)),
            max_label_ece=_number(env, "ATTRIBUTION_MAX_LABEL_ECE", 0.10),
            # Priors by default: with the k most recent clicks per weak value as candidates, the EM fitted on 20,000+
            # weak-only pairs scores strangers' clicks as likely (demo world: pair ECE 0.307, last-touch precision
            # 0.60 with `auto`; 0.012 and 0.944 with the priors).
            weak_pair_model=_choice(env, "ATTRIBUTION_WEAK_PAIR_MODEL", WEAK_PAIR_MODELS, "priors"),
            partitions_start=env.get("ATTRIBUTION_PARTITIONS_START") or "2026-01-01",
            landing_dir=landing if landing.is_absolute() else PROJECT_ROOT / landing,
            sentry_dsn=env.get("SENTRY_DSN") or None,
            identity_limits=identity_limits_from_env(env),
            event_time_floor=_timestamp_var("event_time_floor", env),
            raw_retention_days=_int_var("raw_retention_days", env),
        )

    def attribution_config(self) -> AttributionConfig:
        return AttributionConfig(
            lookback_days=float(self.lookback_days),
            probability_floor=self.probability_floor,
            half_life_days=self.half_life_days,
            grain=self.grain,
        )

    def match_model_config(self) -> MatchModelConfig:
        return MatchModelConfig(weak_model=self.weak_pair_model == "auto")


SETTINGS = PipelineSettings.from_env()
