"""One implementation per decision: the entry points agree on the same input.

* ``unifygeo eval --per-query`` and ``unifygeo localize --json`` give the same fix for every panorama of a city
  (the evaluation scores the Localizer's own fix choice: consensus and tile assignment included) to under 1 cm.
(``unifygeo replay`` drives the node's own pipeline object: test_replay.py compares it with ``--live``; the node
and replay decode every encoding alike: test_decode_agreement.py.)
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import MICRO_MODEL, random_checkpoint
from unifygeo_ros import cli, geo
from unifygeo_ros.config import Config
from vigor_fixture import write_vigor_world

CITY = "Seattle"


@pytest.fixture(scope="module")
def city_model_index(tmp_path_factory):
    """A 4 x 4-tile city, a tiny known-orientation model with the consensus on (K = 6), and its index of tiles."""
    root = tmp_path_factory.mktemp("one")
    write_vigor_world(root / "w", (CITY,), grid=4, tile_px=32, pano_hw=(64, 128), panos_per_city=12,
                      geo_json=True, seed=5)
    cfg = Config.from_dict({"model": {**MICRO_MODEL, "consensus_radius_m": 5.0, "consensus_temperature": 2.0},
                            "data": {"orientation": "known"}, "loss": {"rerank_k": 6}})
    random_checkpoint(root / "ckpt", cfg, seed=7)
    rc = cli.main(["index", "build", "--checkpoint", str(root / "ckpt"), "--out", str(root / "ix"), "--vigor",
                   str(root / "w" / CITY), "--aerial", "tiles", "--device", "cpu", "--no-progress"])
    assert rc == 0
    return root


def _centrality_m(tile_name: str, lat: float, lon: float) -> float:
    """Chebyshev distance (m) of a point from a tile centre named ``satellite_<lat>_<lon>[.png]``."""
    t_lat, t_lon = (float(v) for v in tile_name.removesuffix(".png").split("_")[1:3])
    return float(np.max(np.abs(geo.LocalENU(t_lat, t_lon).to_en(lat, lon))))


def test_eval_per_query_fixes_are_the_localizers(city_model_index, capsys):
    root = city_model_index
    per_query = root / "per_query.csv"
    rc = cli.main(["eval", "--data", str(root / "w"), "--checkpoint", str(root / "ckpt"), "--split", "cross",
                   "--cities", CITY, "--json", str(root / "eval.json"), "--per-query", str(per_query),
                   "--device", "cpu", "--workers", "0", "--no-progress"])
    assert rc == 0
    with per_query.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["panorama", "latitude", "longitude", "error_m", "score", "tile", "positive_tile",
                             "top1_is_positive"]
    report = json.loads((root / "eval.json").read_text())
    assert report["data"]["top_k"] == 6  # the checkpoint's loss.rerank_k, what the Localizer re-ranks
    assert len(rows) == report["queries"] == 12
    panos = sorted((root / "w" / CITY / "panorama").iterdir())
    by_name = {r["panorama"]: r for r in rows}
    assert sorted(by_name) == [p.name for p in panos]
    capsys.readouterr()
    rc = cli.main(["localize", *map(str, panos), "--index", str(root / "ix"), "--device", "cpu", "--json"])
    assert rc == 0
    fixes = json.loads(capsys.readouterr().out)
    for p, fix in zip(panos, fixes):
        row = by_name[p.name]
        east, north = geo.LocalENU(fix["latitude"], fix["longitude"]).to_en(float(row["latitude"]),
                                                                            float(row["longitude"]))
        assert np.hypot(east, north) < 0.01, (p.name, fix, row)
        if row["tile"] != fix["tile"] + ".png":  # only a tie of the tile assignment may go either way
            dist = [_centrality_m(t, fix["latitude"], fix["longitude"]) for t in (row["tile"], fix["tile"])]
            assert dist[0] == pytest.approx(dist[1], abs=0.01), (row, fix, dist)
        assert float(row["score"]) == pytest.approx(fix["score"], abs=1e-4)
    # the per-query errors are the report's
    errs = np.array([float(r["error_m"]) for r in rows])
    assert np.median(errs) == pytest.approx(report["hierarchical"]["rerank"]["median_m"], abs=1e-3)
