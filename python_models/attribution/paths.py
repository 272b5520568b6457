"""Journeys as paths of grain values: converting paths from touches, non-converting paths from the engine."""

from __future__ import annotations

import pandas as pd

from python_models.attribution.config import PATH_COLUMNS, PATH_SEPARATOR
from python_models.attribution.rules import grain_values
from python_models.attribution.touches import unattributed_share
from python_models.baseline import require_columns

# --------------------------------------------------------------------------------------------------------
# Paths for the data-driven models
# --------------------------------------------------------------------------------------------------------


def _aggregate_paths(keys: pd.Series, conversions: pd.Series, nulls: pd.Series) -> pd.DataFrame:
    """Group by the separator-joined path key and turn the unique keys back into lists."""
    summed = (
        pd.DataFrame({"key": keys, "conversions": conversions, "nulls": nulls})
        .groupby("key", sort=True)[["conversions", "nulls"]]
        .sum()
    )
    # One split per distinct path, not per conversion or click.
    paths = [key.split(PATH_SEPARATOR)[:-1] for key in summed.index]
    return pd.DataFrame(
        {
            "path": pd.Series(paths, dtype=object),
            "conversions": summed["conversions"].to_numpy(dtype="float64"),
            "nulls": summed["nulls"].to_numpy(dtype="float64"),
        }
    )


def _path_keys(frame: pd.DataFrame, group: str, grain: str) -> pd.Series:
    """Separator-joined grain values per group, in the frame's order (vectorised string concatenation)."""
    return (grain_values(frame, grain) + PATH_SEPARATOR).groupby(frame[group], sort=True).sum()


def conversion_paths(touches: pd.DataFrame, grain: str = "channel") -> pd.DataFrame:
    """Converting paths (path, conversions, nulls) from :func:`select_touches` output.

    Each conversion with touches counts 1 - U conversions (its probability that a touch is the converter's),
    so conversions whose touches are unlikely to be the converter's move the fitted weights less.
    """
    if len(touches) == 0:
        return empty_paths()
    ordered = touches.sort_values(["conversion_id", "touch_position"], kind="mergesort")
    keys = _path_keys(ordered, "conversion_id", grain)
    counts = 1.0 - unattributed_share(ordered).reindex(keys.index)
    return _aggregate_paths(keys, counts, pd.Series(0.0, index=keys.index))


def null_paths(
    clicks: pd.DataFrame,
    grain: str = "channel",
    identity_column: str = "identity_id",
    lookback_days: float = 30.0,
) -> pd.DataFrame:
    """Non-converting paths (path, conversions=0, nulls) from clicks of identities that did not convert.

    One path per identity: its clicks within ``lookback_days`` of its last click, in time order. The caller
    chooses the clicks (e.g. identities without a conversion in the fitting window, bots excluded).
    """
    require_columns(clicks, [identity_column, "clicked_at", grain], "clicks")
    if len(clicks) == 0:
        return empty_paths()
    last_click = clicks.groupby(identity_column)["clicked_at"].transform("max")
    recent = clicks.loc[clicks["clicked_at"] >= last_click - pd.Timedelta(days=lookback_days)]
    order = [identity_column, "clicked_at", *(["click_id"] if "click_id" in recent.columns else [])]
    ordered = recent.sort_values(order, kind="mergesort")
    keys = _path_keys(ordered, identity_column, grain)
    return _aggregate_paths(keys, pd.Series(0.0, index=keys.index), pd.Series(1.0, index=keys.index))


def null_paths_from_keys(keys: pd.Series, identities: pd.Series) -> pd.DataFrame:
    """Non-converting paths from path keys (each step followed by ``PATH_SEPARATOR``) and the number of
    identities with each: :func:`null_paths` for a warehouse that ordered and grouped the clicks itself."""
    if len(keys) == 0:
        return empty_paths()
    counts = pd.Series(identities.to_numpy(dtype="float64"), index=keys.index)
    return _aggregate_paths(keys.astype("str"), pd.Series(0.0, index=keys.index), counts)


def empty_paths() -> pd.DataFrame:
    """A paths frame with no rows."""
    return pd.DataFrame(
        {
            "path": pd.Series([], dtype=object),
            "conversions": pd.Series([], dtype="float64"),
            "nulls": pd.Series([], dtype="float64"),
        }
    )


def combine_paths(*paths: pd.DataFrame) -> pd.DataFrame:
    """Union of paths frames with identical paths added up."""
    frames = [frame for frame in paths if len(frame)]
    if not frames:
        return empty_paths()
    for frame in frames:
        require_columns(frame, PATH_COLUMNS, "paths")
    stacked = pd.concat([frame[list(PATH_COLUMNS)] for frame in frames], ignore_index=True)
    keys = stacked["path"].map(lambda path: "".join(f"{step}{PATH_SEPARATOR}" for step in path))
    return _aggregate_paths(keys, stacked["conversions"].astype("float64"), stacked["nulls"].astype("float64"))


def _valid_paths(paths: pd.DataFrame) -> pd.DataFrame:
    require_columns(paths, PATH_COLUMNS, "paths")
    lengths = paths["path"].map(len)
    counts = paths["conversions"].astype("float64") + paths["nulls"].astype("float64")
    return paths.loc[(lengths > 0) & (counts > 0)].reset_index(drop=True)
