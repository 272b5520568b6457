"""The loader: raw contract, formats, one transaction per load, clear errors."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pandas as pd
import pytest

from cli.main import main
from warehouse.client import Warehouse
from warehouse.loader import RAW_COLUMNS, LoadError, load_folder
from warehouse.target import Target

LINKS = [
    {"link_id": "L1", "short_code": "abc", "campaign_id": "C1", "creator_id": "K1", "channel": "instagram",
     "destination_url": "https://shop.example/p/1", "created_at": "2026-10-01T08:00:00Z"},
]  # fmt: skip
CLICKS = [
    {"click_id": "c1", "link_id": "L1", "clicked_at": "2026-10-01T10:00:00+02:00", "ip": "::ffff:10.0.0.1",
     "user_agent": "Mozilla/5.0 'quoted'; drop table x;--", "referrer": "", "cookie_id": "ck1",
     "session_id": "s1", "device_fingerprint": "fp1", "user_id": "", "email": " A.B+x@Gmail.com "},
    {"click_id": "c2", "link_id": "L9", "clicked_at": "2026-10-01T11:00:00Z", "ip": "10.0.0.2",
     "user_agent": "Ünïcødé, \"comma\"", "referrer": "https://t.co/x", "cookie_id": "ck2", "session_id": "",
     "device_fingerprint": "", "user_id": "u2", "email": ""},
]  # fmt: skip
CONVERSIONS = [
    {"conversion_id": "v1", "converted_at": "2026-10-02T09:00:00-05:00", "event_type": "purchase",
     "revenue": "19.99", "currency": "USD", "user_id": "", "email": "ab@gmail.com", "cookie_id": "ck1",
     "session_id": "", "device_fingerprint": "fp1", "ip": "10.0.0.1", "user_agent": "Mozilla/5.0",
     "click_id": "c1"},
]  # fmt: skip


def write_csv(path: Path, rows: list[dict[str, str]], drop: str | None = None, extra: bool = False) -> None:
    fields = [c for c in rows[0] if c != drop] + (["surprise"] if extra else [])
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", newline="", encoding="utf-8") as fh:  # type: ignore[operator]
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "surprise": "x"} if extra else row)


def write_folder(folder: Path, fmt: str = "csv", **kwargs: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("links", LINKS), ("clicks", CLICKS), ("conversions", CONVERSIONS)):
        path = folder / f"{name}.{fmt}"
        if fmt == "parquet":
            pd.DataFrame(rows).to_parquet(path, index=False)
        else:
            write_csv(path, rows, **(kwargs if name == "clicks" else {}))  # type: ignore[arg-type]
    return folder


def raw_counts(wh: Warehouse) -> dict[str, int]:
    with wh.connect() as conn:
        return {
            t: int(wh.scalar(f"select count(*) from raw.{t}", conn)) if wh.table_exists("raw", t, conn) else 0
            for t in RAW_COLUMNS
        }


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "parquet"])
def test_loads_every_format_as_text_with_metadata(target: Target, tmp_path: Path, fmt: str) -> None:
    wh = Warehouse(target)
    result = load_folder(wh, write_folder(tmp_path / "in", fmt))
    assert result.rows == {"links": 1, "clicks": 2, "conversions": 1}
    clicks = wh.query_df("select * from raw.clicks order by click_id")
    assert list(clicks.columns) == [*RAW_COLUMNS["clicks"], "_loaded_at", "_source_file"]
    assert clicks.loc[0, "user_agent"] == "Mozilla/5.0 'quoted'; drop table x;--"
    assert clicks.loc[1, "user_agent"] == 'Ünïcødé, "comma"'
    assert clicks.loc[0, "clicked_at"] == "2026-10-01T10:00:00+02:00"
    assert clicks["_loaded_at"].nunique() == 1
    assert clicks["_source_file"].str.endswith(f"clicks.{fmt}").all()


def test_missing_required_column_is_refused_and_raw_unchanged(target: Target, tmp_path: Path, capsys) -> None:
    wh = Warehouse(target)
    load_folder(wh, write_folder(tmp_path / "good"))
    before = raw_counts(wh)
    bad = write_folder(tmp_path / "bad", drop="clicked_at")
    with pytest.raises(LoadError, match="clicked_at"):
        load_folder(wh, bad)
    assert main(["load", str(bad), "--target", target.name]) != 0
    err = capsys.readouterr().err
    assert "clicked_at" in err and "clicks.csv" in err
    assert raw_counts(wh) == before


def test_a_failing_file_rolls_back_the_whole_load(target: Target, tmp_path: Path) -> None:
    wh = Warehouse(target)
    folder = write_folder(tmp_path / "in")
    # links and clicks are valid; conversions is not CSV at all, so the engine fails mid-load.
    (folder / "conversions.csv").write_bytes(
        b",".join(c.encode() for c in RAW_COLUMNS["conversions"]) + b'\n"unterminated,\x00\n'
    )
    with pytest.raises(LoadError, match="conversions.csv"):
        load_folder(wh, folder)
    assert raw_counts(wh) == {"links": 0, "clicks": 0, "conversions": 0, "fx_rates": 0, "spend": 0}


def test_extra_columns_warn_and_are_ignored(target: Target, tmp_path: Path) -> None:
    result = load_folder(Warehouse(target), write_folder(tmp_path / "in", extra=True))
    assert any("surprise" in w for w in result.warnings)
    assert result.rows["clicks"] == 2


def test_loading_twice_skips_unless_forced_and_forced_appends_with_later_stamp(target: Target, tmp_path: Path) -> None:
    wh = Warehouse(target)
    folder = write_folder(tmp_path / "in")
    first = load_folder(wh, folder)
    again = load_folder(wh, folder)  # the same content: skipped, with a notice per file
    assert again.files == [] and len(again.notices) == 3
    assert raw_counts(wh) == {"links": 1, "clicks": 2, "conversions": 1, "fx_rates": 0, "spend": 0}
    second = load_folder(wh, folder, force=True)
    assert second.loaded_at > first.loaded_at
    assert raw_counts(wh) == {"links": 2, "clicks": 4, "conversions": 2, "fx_rates": 0, "spend": 0}


def test_empty_folder_is_a_clear_error(target: Target, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(LoadError, match="no raw files"):
        load_folder(Warehouse(target), tmp_path / "empty")
