"""The aerial index: tile sources, search, on-disk format, shards, and the errors a user can act on."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from unifygeo_ros.errors import DataFormatError, IndexFormatError
from unifygeo_ros.index import build as index_build
from unifygeo_ros.index import portable, search, store, tiles

from conftest import micro_config, random_handle
from vigor_fixture import write_vigor_world

UTM32N = "EPSG:32632"


def tiny_handle(seed: int = 0, descriptor_dim: int = 16):
    """A randomly initialised, very small UnifyGeo on the CPU (no accuracy expected)."""
    return random_handle(micro_config(descriptor_dim=descriptor_dim, metric_strides=[16, 8, 4]), seed)


@pytest.fixture(scope="module")
def handle():
    return tiny_handle()


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    root = tmp_path_factory.mktemp("vigor")
    truth = write_vigor_world(root, ("Seattle",), grid=4, tile_px=32, geo_json=True, seed=1)["Seattle"]
    return root / "Seattle", truth


@pytest.fixture(scope="module")
def built(tmp_path_factory, handle, city):
    out = tmp_path_factory.mktemp("index") / "ix"
    index_build.build_index(handle, tiles.vigor_tiles(city[0]), out, batch_size=5, progress=False)
    return out


def _copy_index(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------------------- tile sources


def _utm_orthophoto(tmp_path, suffix=".png", width=1200, height=900, gsd=0.1, rotation_deg=0.0):
    """A UTM 32N orthophoto (PNG + world file + .prj) with red markers at known positions."""
    import pyproj

    x0, y0 = 691000.0, 5335000.0
    c, s = math.cos(math.radians(rotation_deg)), math.sin(math.radians(rotation_deg))
    transform = (gsd * c, gsd * s, x0, gsd * s, -gsd * c, y0)
    img = np.full((height, width, 3), 90, np.uint8)
    rng = np.random.default_rng(0)
    to_wgs = pyproj.Transformer.from_crs(UTM32N, "EPSG:4326", always_xy=True)
    markers = []
    for _ in range(12):
        col, row = int(rng.uniform(80, width - 80)), int(rng.uniform(80, height - 80))
        cv2.circle(img, (col, row), 3, (255, 0, 0), -1)
        a, b, cc, d, e, f = transform
        x, y = a * (col + 0.5) + b * (row + 0.5) + cc, d * (col + 0.5) + e * (row + 0.5) + f
        lon, lat = to_wgs.transform(x, y)
        markers.append((lat, lon))
    path = tmp_path / f"ortho{suffix}"
    cv2.imwrite(str(path), img[:, :, ::-1])
    tiles.write_world_file(path.with_suffix(".pgw" if suffix == ".png" else ".jgw"), transform)
    path.with_suffix(".prj").write_text(pyproj.CRS(UTM32N).to_wkt())
    return path, transform, markers


def _marker_errors_px(source, markers):
    """Distance (output pixels) between where each marker should appear in its tile and where it does."""
    centres = np.array([[t.east_m, t.north_m] for t in source.tiles])
    errors = []
    for lat, lon in markers:
        e, n = source.origin.to_en(lat, lon)
        i = int(np.argmin(np.abs(centres - [e, n]).max(axis=1)))
        img = source.read(i)
        want_col = source.tile_px / 2 + (e - centres[i, 0]) / source.gsd_m - 0.5
        want_row = source.tile_px / 2 - (n - centres[i, 1]) / source.gsd_m - 0.5
        red = (img[:, :, 0].astype(int) - img[:, :, 1]) > 60
        ys, xs = np.nonzero(red)
        near = (np.abs(xs - want_col) < 8) & (np.abs(ys - want_row) < 8)
        errors.append(math.hypot(xs[near].mean() - want_col, ys[near].mean() - want_row) if near.any() else 99.0)
    return np.array(errors)


@pytest.mark.parametrize("rotation_deg", [0.0, 20.0])
def test_orthophoto_world_file_tiles_have_the_right_centres(tmp_path, rotation_deg):
    path, _, markers = _utm_orthophoto(tmp_path, rotation_deg=rotation_deg)
    src = tiles.orthophoto_tiles(path, tile_m=30.0, stride_m=15.0, gsd_m=0.2)
    assert src.kind == "orthophoto" and src.tile_px == 150 and len(src) > 4
    # every tile centre: lat/lon and ENU describe the same point
    for t in src.tiles:
        lat, lon = src.origin.from_en(t.east_m, t.north_m)
        assert abs(lat - t.lat_deg) < 1e-9 and abs(lon - t.lon_deg) < 1e-9
    # the tile grid: from the south-west corner (the ENU origin), on the stride
    e = sorted({round(t.east_m, 6) for t in src.tiles})
    if rotation_deg == 0.0:  # UTM grid north is ~1.9 deg off true north here: a little slack, shared
        assert 15.0 <= e[0] < 15.0 + 15.0 / 8 and np.allclose(np.diff(e), 15.0)
    # content: each marker (a 7-px disc of the 10 cm raster) appears where its lat/lon says, to half a 20 cm pixel
    assert np.all(_marker_errors_px(src, markers) < 0.5)


def test_orthophoto_tile_centre_matches_the_world_file(tmp_path):
    """The centre of a tile is the raster pixel the world file maps to that lat/lon (checked via pyproj)."""
    import pyproj

    path, (a, b, c, d, e, f), _ = _utm_orthophoto(tmp_path)
    src = tiles.orthophoto_tiles(path, tile_m=20.0, stride_m=10.0)
    assert src.gsd_m == pytest.approx(0.1, rel=2e-3)  # native resolution by default
    to_utm = pyproj.Transformer.from_crs("EPSG:4326", UTM32N, always_xy=True)
    t = src.tiles[len(src.tiles) // 2]
    x, y = to_utm.transform(t.lon_deg, t.lat_deg)
    col, row = (x - c) / a, (y - f) / e
    img = src.read(len(src.tiles) // 2)
    raster = cv2.imread(str(path))[:, :, ::-1]
    # the tile's central pixel (continuous centre tile_px/2) shows the raster around (col, row)
    r0, c0 = int(row), int(col)
    assert np.abs(img[src.tile_px // 2, src.tile_px // 2].astype(int) - raster[r0, c0].astype(int)).max() <= 40


def test_geotiff_and_png_world_file_cut_the_same_tiles(tmp_path):

    path, (a, b, c, d, e, f), _ = _utm_orthophoto(tmp_path)
    img = cv2.imread(str(path))[:, :, ::-1]
    tif = tmp_path / "ortho_tif.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=img.shape[1], height=img.shape[0], count=3, dtype="uint8",
                       crs=UTM32N, transform=Affine(a, b, c, d, e, f)) as ds:
        ds.write(np.moveaxis(img, -1, 0))
    s_png = tiles.orthophoto_tiles(path, tile_m=30.0, stride_m=15.0, gsd_m=0.25)
    s_tif = tiles.orthophoto_tiles(tif, tile_m=30.0, stride_m=15.0, gsd_m=0.25)
    assert len(s_png) == len(s_tif)
    for tp, tt in zip(s_png.tiles, s_tif.tiles):
        assert tp.lat_deg == pytest.approx(tt.lat_deg, abs=1e-10) and tp.lon_deg == pytest.approx(tt.lon_deg, abs=1e-10)
    assert np.array_equal(s_png.read(3), s_tif.read(3))


def test_orthophoto_in_degrees_needs_no_prj(tmp_path):
    img = np.full((400, 600, 3), 90, np.uint8)  # all black would be black fill, no imagery
    path = tmp_path / "deg.jpg"
    cv2.imwrite(str(path), img)
    step = 1e-6  # ~0.11 m
    tiles.write_world_file(tmp_path / "deg.jgw", (step, 0.0, 7.0, 0.0, -step, 45.0))
    src = tiles.orthophoto_tiles(path, tile_m=20.0, stride_m=10.0)
    lat, lon = zip(*[(t.lat_deg, t.lon_deg) for t in src.tiles])
    assert 45.0 - 400 * step < min(lat) and max(lat) < 45.0 and 7.0 < min(lon) < max(lon) < 7.0 + 600 * step


def test_orthophoto_bad_inputs_are_data_errors(tmp_path):
    img = np.zeros((100, 100, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    with pytest.raises(DataFormatError, match="world file"):
        tiles.orthophoto_tiles(tmp_path / "a.png")
    tiles.write_world_file(tmp_path / "a.pgw", (0.5, 0.0, 500000.0, 0.0, -0.5, 5000000.0))
    with pytest.raises(DataFormatError, match="--crs"):
        tiles.orthophoto_tiles(tmp_path / "a.png")
    (tmp_path / "a.pgw").write_text("1\n0\n0\n")
    with pytest.raises(DataFormatError, match="6 numbers"):
        tiles.orthophoto_tiles(tmp_path / "a.png", crs=UTM32N)
    with pytest.raises(DataFormatError, match="not found"):
        tiles.orthophoto_tiles(tmp_path / "missing.tif")


def test_vigor_folder_source(city):
    city_dir, truth = city
    src = tiles.vigor_tiles(city_dir)
    assert len(src) == len(truth.tile_names) and src.tile_px == 32
    assert src.tile_m == pytest.approx(truth.tile_m)
    by_name = {n[:-4]: i for i, n in enumerate(truth.tile_names)}
    for i, t in enumerate(src.tiles):
        k = by_name[t.tile_id]
        assert (t.lat_deg, t.lon_deg) == pytest.approx(tuple(truth.tile_latlon[k]), abs=1e-9)
        assert (t.east_m, t.north_m) == pytest.approx(tuple(truth.tile_en[k]), abs=1e-3)  # geo.json origin
        assert np.all(src.read(i)[5, 5] == truth.tile_colors[k])
    assert tiles.vigor_tiles(city_dir, gsd_m=src.tile_m / 16).read(0).shape == (16, 16, 3)
    with pytest.raises(DataFormatError, match="satellite"):
        tiles.vigor_tiles(city_dir / "panorama")


# ------------------------------------------------------------------------------------------------ search


def _clustered(n=4000, d=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((64, d))
    x = centres[rng.integers(0, 64, n)] + 0.5 * rng.standard_normal((n, d))
    return search.normalize(x)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_exact_and_approximate_search_agree_on_easy_data(kind):
    x = _clustered()
    q = search.normalize(x[::40] + 0.01 * np.random.default_rng(1).standard_normal(x[::40].shape))
    exact, info_e = search.build_faiss_index(x, "exact")
    approx, info_a = search.build_faiss_index(x, kind, target_recall=0.95)
    s_e, i_e = search.Searcher(x, exact).search(q, 10)
    s_a, i_a = search.Searcher(x, approx).search(q, 10)
    assert info_e.kind == "exact" and info_a.kind == kind
    assert info_a.recall_at_10_vs_exact >= 0.95
    assert np.array_equal(i_a[:, 0], i_e[:, 0]) and np.array_equal(i_e[:, 0], np.arange(0, len(x), 40))
    assert search.recall_at_k(i_a, i_e, 10) >= 0.9
    s_n, i_n = search.Searcher(x, None).search(q, 10)  # numpy fallback
    assert np.array_equal(i_n, i_e) and np.allclose(s_n, s_e, atol=1e-5)


def test_subset_search_only_returns_subset_tiles():
    x = _clustered(500)
    subset = np.arange(100, 140)
    s, i = search.Searcher(x, search.build_faiss_index(x, "exact")[0]).search(x[5:7], 5, subset=subset)
    assert i.shape == (2, 5) and np.all((i >= 100) & (i < 140))
    expected = 100 + np.argsort(-(x[5] @ x[100:140].T), kind="stable")[:5]
    assert np.array_equal(i[0], expected)


# ------------------------------------------------------------------------------------------ format, shards


def test_built_index_metadata(built, handle, city):
    meta = json.loads((built / "index.json").read_text())
    assert meta["format"] == "unifygeo-index" and meta["version"] == store.FORMAT_VERSION
    assert meta["count"] == 16 and meta["descriptor_dim"] == 16
    assert meta["model"]["identity"] == handle.identity
    assert meta["tile_m"] == pytest.approx(city[1].tile_m) and meta["search"]["kind"] == "exact"
    assert set(meta["tiles"]) >= {"ids", "lat_deg", "lon_deg", "east_m", "north_m"}
    for name, rec in meta["arrays"].items():
        assert rec["bytes"] == (built / name).stat().st_size and len(rec["sha256"]) == 64
    ix = store.load_index(built, verify="sha256")
    assert np.allclose(np.linalg.norm(ix.descriptors, axis=1), 1.0, atol=1e-5)
    assert not list(built.glob("*.pkl")) and ix.aerial_mode == "features"
    info = index_build.info(built, verify=True)
    assert info["tiles"] == 16 and info["disk_bytes"] > 0


def test_shards_and_merge_equal_a_single_build(tmp_path, handle, city, built):
    src = tiles.vigor_tiles(city[0])
    shards = []
    for i in range(3):
        shards.append(tmp_path / f"s{i}")
        index_build.build_index(handle, src, shards[-1], batch_size=4, shard=(i, 3), progress=False)
    assert sum(store.read_meta(s)["count"] for s in shards) == 16
    merged = index_build.merge(shards[::-1], tmp_path / "merged")
    a, b = store.load_index(built), store.load_index(tmp_path / "merged")
    assert a.tile_ids == b.tile_ids and np.array_equal(a.ordinal, b.ordinal)
    assert np.allclose(a.descriptors, b.descriptors, atol=1e-6)
    for k in a.aerial:
        assert np.allclose(np.asarray(a.aerial[k], np.float32), np.asarray(b.aerial[k], np.float32), atol=1e-3)
    for key in ("model", "tile_m", "origin", "descriptor_dim", "count", "tiles"):
        assert a.meta[key] == merged[key], key
    assert portable.tiling_identity(a.meta["source"]) == portable.tiling_identity(merged["source"])
    assert store.recorded_source(tmp_path / "merged") == city[0].resolve()  # its hint, re-based to the merge
    q = a.descriptors[:3]
    assert np.array_equal(a.searcher.search(q, 5)[1], b.searcher.search(q, 5)[1])

    with pytest.raises(IndexFormatError, match="missing \\[1\\]"):
        index_build.merge([shards[0], shards[2]], tmp_path / "bad")
    other = tmp_path / "other"
    index_build.build_index(tiny_handle(seed=1), src, other, shard=(1, 3), progress=False)
    with pytest.raises(IndexFormatError, match="different models"):
        index_build.merge([shards[0], other, shards[2]], tmp_path / "bad2")


def test_shard_spec_parsing():
    assert store.parse_shard("2/5") == (2, 5) and store.parse_shard(None) is None
    assert store.shard_rows(10, (1, 4)).tolist() == [1, 5, 9]
    for bad in ("5/5", "a/b", "1", "-1/3"):
        with pytest.raises(ValueError):
            store.parse_shard(bad)


def test_truncated_descriptor_file_is_an_index_error(tmp_path, built):
    ix = _copy_index(built, tmp_path / "ix")
    data = (ix / "descriptors.npy").read_bytes()
    (ix / "descriptors.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexFormatError, match="descriptors.npy is truncated"):
        store.load_index(ix)


def test_missing_or_damaged_files_are_index_errors(tmp_path, built):
    ix = _copy_index(built, tmp_path / "ix")
    (ix / "search.faiss").unlink()
    with pytest.raises(IndexFormatError, match="search.faiss is missing"):
        store.load_index(ix)
    ix2 = _copy_index(built, tmp_path / "ix2")
    arr = np.load(ix2 / "descriptors.npy")
    arr[0, 0] += 1.0
    np.save(ix2 / "descriptors.npy", arr)  # same size, other content
    store.load_index(ix2)  # the fast check (sizes) passes ...
    with pytest.raises(IndexFormatError, match="sha256"):
        store.load_index(ix2, verify="sha256")  # ... the full one does not
    ix3 = _copy_index(built, tmp_path / "ix3")
    (ix3 / "index.json").write_text((ix3 / "index.json").read_text()[:100])
    with pytest.raises(IndexFormatError, match="truncated"):
        store.load_index(ix3)
    (ix3 / "index.json").unlink()
    with pytest.raises(IndexFormatError, match="index.json is missing"):
        store.load_index(ix3)
    with pytest.raises(IndexFormatError, match="not found"):
        store.load_index(tmp_path / "nowhere")


def test_wrong_format_version_is_an_index_error(tmp_path, built):
    ix = _copy_index(built, tmp_path / "ix")
    meta = json.loads((ix / "index.json").read_text())
    meta["version"] = store.FORMAT_VERSION + 1
    (ix / "index.json").write_text(json.dumps(meta))
    with pytest.raises(IndexFormatError, match="format version 2.*rebuild"):
        store.load_index(ix)


def test_model_index_mismatch_is_an_index_error(built, handle):
    ix = store.load_index(built)
    ix.check_model(handle.identity, handle.descriptor_dim)
    with pytest.raises(IndexFormatError, match="built with model"):
        ix.check_model(tiny_handle(seed=7).identity, 16)
    with pytest.raises(IndexFormatError, match="16-d descriptors but the model makes 24-d"):
        ix.check_model(handle.identity, 24)


def test_tiles_mode_stores_model_inputs(tmp_path, handle, city):
    meta = index_build.build_index(handle, tiles.vigor_tiles(city[0]), tmp_path / "ix", aerial_mode="tiles",
                                   progress=False)
    ix = store.load_index(tmp_path / "ix")
    assert meta["aerial"]["mode"] == "tiles" and ix.aerial["tiles"].shape == (16, 64, 64, 3)
    assert ix.aerial["tiles"].dtype == np.uint8
    (tmp_path / "ix" / "notes.txt").write_text("mine")
    index_build.build_index(handle, tiles.vigor_tiles(city[0]), tmp_path / "ix", aerial_mode="features",
                            progress=False)  # rebuilt in place: the tiles file of the old index goes
    assert not (tmp_path / "ix" / "aerial_tiles.npy").exists() and (tmp_path / "ix" / "notes.txt").exists()
    assert store.load_index(tmp_path / "ix", verify="sha256").aerial_mode == "features"


def test_spatial_filter_on_tile_centres(built):
    ix = store.load_index(built)
    e0, n0 = ix.en_m[5]
    rows = ix.tiles_within(e0, n0, 1.0)
    assert rows.tolist() == [5]
    d = np.hypot(ix.en_m[:, 0] - e0, ix.en_m[:, 1] - n0)
    assert ix.tiles_within(e0, n0, 40.0).tolist() == np.flatnonzero(d <= 40.0).tolist()


def test_cli_builds_an_index_from_an_orthophoto(tmp_path, handle, capsys):
    from unifygeo_ros import cli
    from unifygeo_ros.config import Config
    from unifygeo_ros.model.checkpoint import save_checkpoint

    path, _, _ = _utm_orthophoto(tmp_path, width=600, height=450)
    save_checkpoint(tmp_path / "ckpt", handle.model, Config.from_dict(handle.config))
    out = tmp_path / "ix"
    assert cli.main(["index", "build", "--checkpoint", str(tmp_path / "ckpt"), "--out", str(out), "--orthophoto",
                     str(path), "--tile-m", "30", "--stride-m", "15", "--device", "cpu", "--no-progress"]) == 0
    capsys.readouterr()
    assert cli.main(["index", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["source"]["kind"] == "orthophoto" and info["tiles"] == 6  # 60 x 45 m: 3 x 2 tiles
    assert info["tile_px"] == handle.aerial_px and info["gsd_m"] == pytest.approx(30.0 / handle.aerial_px)
    # a bad shard spec and a missing orthophoto are one-line errors, not tracebacks
    assert cli.main(["index", "build", "--checkpoint", str(tmp_path / "ckpt"), "--out", str(out), "--orthophoto",
                     str(path), "--shard", "3/3"]) == 1
    assert cli.main(["index", "build", "--checkpoint", str(tmp_path / "ckpt"), "--out", str(out), "--orthophoto",
                     str(tmp_path / "none.tif")]) == 1
    assert cli.main(["index", "build", "--checkpoint", str(tmp_path / "ckpt"), "--out", str(out), "--orthophoto",
                     str(path), "--threads", "-1"]) == 1
    err = capsys.readouterr().err
    assert "--shard I/N" in err and "orthophoto not found" in err and "--threads must be >= 0, got -1" in err
    import torch

    threads = torch.get_num_threads()
    try:  # --threads N sets torch's intra-op threads for the build (0, the default: torch's own)
        assert cli.main(["index", "build", "--checkpoint", str(tmp_path / "ckpt"), "--out", str(tmp_path / "ix2"),
                         "--orthophoto", str(path), "--tile-m", "30", "--stride-m", "15", "--device", "cpu",
                         "--no-progress", "--threads", "2"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------- portability


def _strings(value):
    """Every string in a JSON value (keys excluded)."""
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def _saved(handle, folder, **train):
    """``handle``'s model saved as a checkpoint in ``folder`` (``train``: config overrides), loaded back."""
    from unifygeo_ros.config import Config
    from unifygeo_ros.model.checkpoint import save_checkpoint
    from unifygeo_ros.model.handle import load_model

    cfg = Config.from_dict(handle.config)
    for k, v in train.items():
        setattr(cfg.train, k, v)
    save_checkpoint(folder, handle.model, cfg)
    return load_model(folder, device="cpu")


def test_travels_with_index():
    for rel in (".", "..", "../..", "../ckpt", "../runs/a/ckpt", "sub/ckpt"):
        assert portable.travels_with_index(rel), rel
    for rel in ("/abs/ckpt", "../../runs/ckpt", "../a/../../b", "C:/x", "..\\ckpt"):
        assert not portable.travels_with_index(rel), rel


def test_fresh_index_json_holds_no_absolute_path(tmp_path, handle, city):
    """Checkpoint, tile source, a path in the model's config and the shard list: none recorded absolute."""
    loaded = _saved(handle, tmp_path / "model", init_from=str(tmp_path / "some" / "init"))
    ix = tmp_path / "model" / "index"
    index_build.build_index(loaded, tiles.vigor_tiles(city[0]), ix, progress=False)
    shards = [tmp_path / "model" / "shards" / str(i) for i in range(2)]
    for i, s in enumerate(shards):
        index_build.build_index(loaded, tiles.vigor_tiles(city[0]), s, shard=(i, 2), progress=False)
    index_build.merge(shards, tmp_path / "model" / "merged")
    for folder in (ix, shards[0], tmp_path / "model" / "merged"):
        meta = json.loads((folder / "index.json").read_text())
        for text in _strings(meta):
            assert not text.startswith("/") and str(tmp_path) not in text, (folder.name, text)
            assert str(city[0]) not in text
        assert meta["source"]["name"] == "Seattle" and "path" not in meta["source"]
        assert meta["model"]["config"]["train"]["init_from"] == "init"
    assert json.loads((ix / "index.json").read_text())["model"]["checkpoint_relpath"] == ".."
    merged = json.loads((tmp_path / "model" / "merged" / "index.json").read_text())
    assert merged["model"]["checkpoint_relpath"] == ".."  # re-based from the shard's "../.."
    assert merged["merged_from"] == ["../shards/0", "../shards/1"]
    assert json.loads((shards[0] / "index.json").read_text())["model"]["checkpoint_relpath"] == "../.."


@pytest.mark.parametrize("layout", ["inside", "beside"])
def test_index_copied_with_its_checkpoint_loads_without_checkpoint(tmp_path, handle, city, layout):
    """models/demo + models/demo/index (".."), or run/ckpt + run/index ("../ckpt"): copy the tree anywhere."""
    import shutil

    from unifygeo_ros.model.handle import load_model

    ckpt_rel, ix_rel = ("model", "model/index") if layout == "inside" else ("run/ckpt", "run/index")
    src_root = tmp_path / "a"
    loaded = _saved(handle, src_root / ckpt_rel)
    index_build.build_index(loaded, tiles.vigor_tiles(city[0]), src_root / ix_rel, progress=False)
    dst_root = tmp_path / "b" / "clone"
    shutil.copytree(src_root, dst_root)
    shutil.rmtree(src_root)  # nothing may point back at the original
    found = store.recorded_checkpoint(dst_root / ix_rel)
    assert found == (dst_root / ckpt_rel).resolve()
    again = load_model(found, device="cpu")
    ix = store.load_index(dst_root / ix_rel, verify="sha256")
    ix.check_model(again.identity, again.descriptor_dim)
    assert ix.model_identity == loaded.identity
    assert store.recorded_source(dst_root / ix_rel) is None  # the city did not travel: a hint, nothing more


def _one_line_error(index_dir, match):
    with pytest.raises(IndexFormatError, match=match) as exc:
        store.recorded_checkpoint(index_dir)
    message = str(exc.value)
    assert "\n" not in message and message.rstrip().endswith(("--checkpoint (the model the index was built with)",
                                                               "rebuild the index"))
    assert "pass --checkpoint" in message
    return message


def test_recorded_checkpoint_of_another_identity_is_a_one_line_error(tmp_path, handle, city):
    loaded = _saved(handle, tmp_path / "model")
    ix = tmp_path / "model" / "index"
    index_build.build_index(loaded, tiles.vigor_tiles(city[0]), ix, progress=False)
    _saved(tiny_handle(seed=3), tmp_path / "model")  # another model written over the checkpoint
    message = _one_line_error(ix, "holds model")
    assert loaded.identity[:16] in message
    for name in ("meta.json", "config.json", "model.safetensors"):
        (tmp_path / "model" / name).unlink()
    _one_line_error(ix, "no checkpoint")


def test_index_without_a_travelling_checkpoint_needs_checkpoint(tmp_path, handle, city, built):
    _one_line_error(built, "records no checkpoint")  # built from a model in memory
    loaded = _saved(handle, tmp_path / "ckpts" / "m")
    far = tmp_path / "indexes" / "deep" / "ix"  # ../../../ckpts/m: not within the index's folder tree
    index_build.build_index(loaded, tiles.vigor_tiles(city[0]), far, progress=False)
    assert json.loads((far / "index.json").read_text())["model"]["checkpoint_relpath"] is None
    _one_line_error(far, "records no checkpoint")
    meta = json.loads((far / "index.json").read_text())
    meta["model"]["checkpoint_relpath"] = "../../../ckpts/m"  # written by hand: still refused
    (far / "index.json").write_text(json.dumps(meta))
    _one_line_error(far, "not a path within the index's folder tree")


def test_old_index_with_an_absolute_checkpoint_path(tmp_path, handle, city):
    """Written before portable metadata: loads with the checkpoint given, a one-line error without."""
    loaded = _saved(handle, tmp_path / "model")
    ix = tmp_path / "model" / "index"
    index_build.build_index(loaded, tiles.vigor_tiles(city[0]), ix, progress=False)
    meta = json.loads((ix / "index.json").read_text())
    del meta["model"]["checkpoint_relpath"]
    meta["model"]["checkpoint"] = str((tmp_path / "model").resolve())
    meta["source"]["path"] = str(city[0].resolve())
    (ix / "index.json").write_text(json.dumps(meta))
    _one_line_error(ix, "absolute path from an older build")
    old = store.load_index(ix)
    old.check_model(loaded.identity, loaded.descriptor_dim)  # the given checkpoint (--checkpoint) is accepted
    with pytest.raises(IndexFormatError, match="built with model"):
        old.check_model(tiny_handle(seed=4).identity, 16)


@pytest.mark.parametrize("kind, flag", [("rgb", "--crs"), ("height", "--dsm-crs")])
def test_a_raster_without_crs_names_the_option_that_supplies_it(tmp_path, kind, flag):
    """A world-file raster in metres without .prj: the error names the option for that raster (the DSM's is
    --dsm-crs; it used to say --crs for both)."""
    from unifygeo_ros.index.rasters import open_raster, write_world_file

    path = tmp_path / "map.png"
    cv2.imwrite(str(path), np.zeros((8, 8), np.uint16) if kind == "height" else np.zeros((8, 8, 3), np.uint8))
    write_world_file(tmp_path / "map.pgw", (0.5, 0.0, 691000.0, 0.0, -0.5, 5335000.0))
    with pytest.raises(DataFormatError, match=f"pass {flag} "):
        open_raster(path, kind=kind)
