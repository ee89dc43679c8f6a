"""The bulk export: one Parquet file per model (``<slug>/features.parquet``), one row per
feature page, made from the same record as its ``feature.json`` (``FeatureWriter.record``).

A row holds what a survey of many units needs, without the heatmaps and histograms (those stay
in ``feature.json``): ids and module, the primary visualization's activation and fidelity, the
labels, the top-k example ids and scores, the similar units and the permalink. Columns that an
atlas lacks (no labels, no index, not related) are empty lists or nulls, never missing, so one
schema reads every export.

>>> import pyarrow.parquet as pq, tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "features.parquet"
>>> row = feature_row({"model": "m", "weights": "hub", "layer": 0, "unit": 3,
...                    "module": "blocks.0.mlp.act", "top": None, "labels": None,
...                    "similar": None})
>>> write_parquet([feature_table([row])], path)
1
>>> pq.read_table(path).column("unit").to_pylist()
[3]
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.site.assets import expand_similar
from pipeline.site.urls import SITE_FORMAT_VERSION
from pipeline.store import atomic_file

ROW_GROUP = 1024  # rows per row group at most: what the site stage holds of the export at once

_CONCEPT = pa.struct([("concept", pa.string()), ("score", pa.float64())])
_SIMILAR = pa.struct([("model", pa.string()), ("layer", pa.int32()), ("unit", pa.int32()),
                      ("score", pa.float64())])

SCHEMA = pa.schema([
    ("model", pa.string()),
    ("weights", pa.string()),
    ("layer", pa.int32()),
    ("unit", pa.int32()),
    ("module", pa.string()),
    ("recipe", pa.string()),  # the primary recipe's name
    ("activation", pa.float64()),  # the primary visualization's objective
    ("vs_best_example", pa.float64()),  # fidelity: activation / best dataset example's
    ("z", pa.float64()),
    ("z_rank", pa.int32()),
    ("trusted", pa.bool_()),
    ("afc", pa.float64()),  # recognisability: the 2-AFC (format 6)
    ("afc_best_example", pa.float64()),  # the same trials with the best dataset example
    ("transfer_hit", pa.bool_()),  # the judge's class of the image = the top examples' class
    ("mean", pa.float64()),  # over the dataset
    ("max", pa.float64()),
    ("label", pa.string()),  # the best concept, or null
    ("labels", pa.list_(_CONCEPT)),
    ("top_ids", pa.list_(pa.string())),  # dataset example ids, best first
    ("top_scores", pa.list_(pa.float64())),
    ("similar", pa.list_(_SIMILAR)),
    ("permalink", pa.string()),
], metadata={"format_version": str(SITE_FORMAT_VERSION)})


def feature_row(record: dict[str, Any]) -> dict[str, Any]:
    """The export's row of one ``feature.json`` record."""
    from pipeline.site import fidelity

    keys = ("model", "layer", "unit", "score")
    fid = record.get("fidelity") or {}
    rec = fid.get("recognisability") or {}
    recipe = record.get("recipes") or [{}]
    labels = [{"concept": c, "score": s} for c, s in _rows(record.get("labels"),
                                                           ("concept", "score"))]
    return {
        "model": record["model"], "weights": record["weights"], "layer": record["layer"],
        "unit": record["unit"], "module": record["module"],
        "recipe": recipe[0].get("name") if record.get("visualization") else None,
        "activation": record.get("activation"),
        "vs_best_example": fid.get("vs_best_example"), "z": fid.get("z"),
        "z_rank": fid.get("z_rank"),
        "trusted": fidelity.trusted(fid) if fid else None,
        "afc": rec.get("afc"),
        "afc_best_example": (rec.get("best_example") or {}).get("afc"),
        "transfer_hit": (rec.get("transfer") or {}).get("hit"),
        "mean": record.get("mean"), "max": record.get("max"),
        "label": labels[0]["concept"] if labels else None,
        "labels": labels,
        "top_ids": [str(i) for i in (record.get("top") or {}).get("id", [])],
        "top_scores": list((record.get("top") or {}).get("score", [])),
        "similar": [dict(zip(keys, row, strict=True)) for row in _rows(
            expand_similar(record["similar"], record["model"]) if record.get("similar")
            else None, keys)],
        "permalink": record.get("permalink"),
    }


def _rows(cols: dict[str, list] | None, keys: tuple[str, ...]) -> list[tuple]:
    """The rows of ``feature.json``'s columns ``cols`` (None: none), ``keys`` of each."""
    if not cols:
        return []
    return list(zip(*(cols[k] for k in keys), strict=True))


def feature_table(rows: list[dict[str, Any]]) -> pa.Table:
    """``rows`` (``feature_row``) as a table of ``SCHEMA``, sorted by layer and unit: one row
    group of the export (``write_parquet``)."""
    return pa.Table.from_pylist(sorted(rows, key=lambda r: (r["layer"], r["unit"])),
                                schema=SCHEMA)


def write_part(table: pa.Table, path: Path) -> None:
    """Write ``table`` (``feature_table``) to ``path`` as an Arrow IPC file, atomically: how
    the site stage's workers hand a row group to the process that writes the export, which
    then holds it as Arrow's compact columns, never as Python rows (``read_part``)."""
    with atomic_file(Path(path)) as f, pa.ipc.new_file(f, table.schema) as out:
        out.write_table(table)


def read_part(path: Path) -> pa.Table:
    """The table ``write_part`` wrote to ``path``."""
    with pa.OSFile(str(path)) as f:
        return pa.ipc.open_file(f).read_all()


def write_parquet(tables: Iterable[pa.Table], path: Path) -> int:
    """Write ``tables`` (``feature_table``; the site stage's are consecutive units of a
    layer, ``ROW_GROUP`` at most), one row group each, in the order given, to ``path``
    atomically (zstd-compressed); each table is let go once written, before the next is
    taken. Returns the number of rows."""
    n = 0
    with atomic_file(Path(path)) as f, pq.ParquetWriter(f, SCHEMA, compression="zstd") as out:
        for table in tables:
            if table.num_rows:
                n += table.num_rows
                out.write_table(table)
            del table  # let go before the next is read: one at a time
    return n
