"""Small vectorised helpers: Arrow string encoding, timestamps, short hashes and lookups of small vocabularies."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from python_models.identity.rules import STRONG_TYPES, trust_by_edge_type

_MISSING_TIME = np.iinfo(np.int64).max // 8  # sorts after every real timestamp, leaves room for *4 keys
_HASH_CHARS = 16


def _require(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"{name} lacks column(s) {missing}; has {list(frame.columns)}")


def _as_large_string(values: pd.Series) -> pa.Array:
    """Arrow large_string view of a text column (zero-copy for Arrow-backed pandas strings)."""
    dtype = values.dtype
    if isinstance(dtype, pd.ArrowDtype) or (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"):
        arr = pa.array(values.array)
    else:
        if not pd.api.types.is_string_dtype(values):
            values = values.astype("str")
        arr = pa.array(values.to_numpy(dtype=object), type=pa.large_string(), from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr if arr.type == pa.large_string() else arr.cast(pa.large_string())


def _encode_strings(parts: list[pd.Series | pa.Array]) -> tuple[list[np.ndarray], pa.Array]:
    """Dictionary-encode several text columns jointly: integer codes per part and the shared dictionary."""
    arrays = [p if isinstance(p, pa.Array) else _as_large_string(p) for p in parts]
    encoded = pa.chunked_array(arrays, type=pa.large_string()).dictionary_encode()
    if encoded.num_chunks == 0 or len(encoded) == 0:
        return [np.zeros(0, dtype=np.int64) for _ in parts], pa.array([], type=pa.large_string())
    dictionary = encoded.chunks[-1].dictionary
    codes = np.concatenate([chunk.indices.to_numpy(zero_copy_only=False).astype(np.int64) for chunk in encoded.chunks])
    return np.split(codes, np.cumsum([len(a) for a in arrays])[:-1]), dictionary


def _micros(values: pd.Series, missing: int = _MISSING_TIME) -> np.ndarray:
    """UTC timestamps as int64 microseconds; missing values become ``missing``."""
    if isinstance(values.dtype, pd.ArrowDtype) and pa.types.is_timestamp(values.dtype.pyarrow_dtype):
        # Straight from the engine's Arrow batches: cast in Arrow (pandas would go through Python objects).
        arr = pa.array(values.array).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        return arr.fill_null(missing).to_numpy(zero_copy_only=False)
    ts = pd.to_datetime(values, utc=True).dt.as_unit("us")
    return np.where(ts.isna().to_numpy(), missing, ts.array.asi8)


def _short_hash(prefix: str, keys: Iterable[str]) -> list[str]:
    """``prefix + sha256(key)[:16]``; one call per identity / identifier-less event (not per click row)."""
    sha = hashlib.sha256
    return [prefix + sha(k.encode()).hexdigest()[:_HASH_CHARS] for k in keys]


def identity_id_for(identifier_type: str, identifier_value: str) -> str:
    """The identity id of a component whose earliest identifier is (``identifier_type``, ``identifier_value``)."""
    return _short_hash("idn_", [f"{identifier_type}:{identifier_value}"])[0]


def event_singleton_id(event_kind: str, event_id: str) -> str:
    """The identity id given to an event that carries no resolved strong identifier."""
    return _short_hash("evt_", [f"{event_kind}:{event_id}"])[0]


def _lookup_small(values: pd.Series | pa.Array, mapping: Mapping[str, int], default: int) -> np.ndarray:
    """Map a low-cardinality text column through ``mapping`` (missing or unknown -> ``default``), via Arrow."""
    arr = values if isinstance(values, pa.Array) else _as_large_string(values)
    encoded = arr.dictionary_encode()
    table = np.array([mapping.get(k, default) for k in encoded.dictionary.to_pylist()] + [default], np.int64)
    indices = encoded.indices.fill_null(len(table) - 1).to_numpy(zero_copy_only=False)
    return table[indices]


def _type_codes(types: pd.Series | pa.Array) -> np.ndarray:
    """Rank of each identifier type in ``STRONG_TYPES``; -1 for weak or unknown types."""
    return _lookup_small(types, {t: i for i, t in enumerate(STRONG_TYPES)}, -1)


def _blocked_mask(types: np.ndarray, values: pa.Array, blocked: frozenset[tuple[str, str]]) -> np.ndarray:
    """Rows whose (type, value) is blocked; ``types`` are ``_type_codes`` (weak types are never nodes)."""
    mask = np.zeros(len(types), dtype=bool)
    by_type: dict[str, list[str]] = {}
    for t, v in blocked:
        by_type.setdefault(t, []).append(v)
    for t, vals in by_type.items():
        if t not in STRONG_TYPES:
            continue
        hit = pc.is_in(values, value_set=pa.array(vals, type=pa.large_string())).to_numpy(zero_copy_only=False)
        mask |= (types == STRONG_TYPES.index(t)) & hit
    return mask


def _edge_trust(edge_types: pd.Series, trust: Mapping[str, int]) -> np.ndarray:
    """Trust rank per edge; unknown types rank 0."""
    return _lookup_small(edge_types, trust_by_edge_type(trust), 0)


def _int_column(frame: pd.DataFrame, column: str, missing: int) -> np.ndarray:
    values = frame[column]
    if isinstance(values.dtype, pd.ArrowDtype):
        arr = pa.array(values.array)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if arr.null_count:
            arr = arr.fill_null(missing)
        return arr.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return values.fillna(missing).to_numpy(dtype=np.int64)
