"""The optional surface-height channel of the aerial view (model.aerial_height): rendering, files, tensors,
data sets, tile sources, the index and the model."""
from __future__ import annotations

import math
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from unifygeo_ros.image import preprocess as P
from unifygeo_ros.config import Config, ConfigError
from unifygeo_ros.data import height as H
from unifygeo_ros.data import render as R
from unifygeo_ros.data import world as W
from unifygeo_ros.errors import DataFormatError, ImageError
from unifygeo_ros.index import build as index_build
from unifygeo_ros.index import store, tiles

from conftest import random_handle, tiny_config


@pytest.fixture(scope="module")
def height_handle():
    """A tiny height model (4-channel aerial input), random weights. Read-only."""
    return random_handle(tiny_config(aerial_height=True), seed=0)


def _write_heights(city_dir, truth, value_of=lambda k: 3.0 * (k + 1)):
    """A flat height map per fixture tile (tile k at ``value_of(k)`` metres)."""
    d = city_dir / H.HEIGHT_DIR
    d.mkdir(exist_ok=True)
    for k, name in enumerate(truth.tile_names):
        H.write_height_png(d / name, np.full((truth.tile_px, truth.tile_px), value_of(k), np.float32))


# ------------------------------------------------------------------------------------------------- rendering


def test_rendered_height_shows_the_building_where_the_tile_shows_its_roof():
    city = W.City.blank(200, 0.25)
    city.add_box(105, 110, 115, 120, 24.0, roof_rgb=(220, 20, 20))  # north-east of the tile centre (100, 100)
    rgb = R.render_aerial(city, (100.0, 100.0), 60.0, 120)
    h = R.render_aerial_height(city, (100.0, 100.0), 60.0, 120)
    assert h.shape == (120, 120) and h.dtype == np.float32
    roof = (rgb[..., 0].astype(int) - rgb[..., 1]) > 100
    # the box spans east 105..115 (cols 70..90 at 0.5 m/px) and north 110..120 (rows 20..40), row 0 = north
    assert h[30, 80] == pytest.approx(24.0, abs=0.01)
    assert h[100, 20] == 0.0 and h[30, 50] == 0.0
    tall = h > 12.0
    assert abs(int(tall.sum()) - 400) <= 45  # 20 x 20 px, edges may blend
    # the roof seen from above (the orthophoto leans tall buildings a little) overlaps the height footprint
    assert (roof & tall).sum() > 0.6 * tall.sum()


def test_height_pyramid_level_keeps_the_mean_height():
    city = W.City.blank(200, 0.25)
    city.add_box(80, 80, 120, 120, 10.0)
    fine = R.render_aerial_height(city, (100.0, 100.0), 80.0, 320)   # 0.25 m/px
    coarse = R.render_aerial_height(city, (100.0, 100.0), 80.0, 40)  # 2 m/px, from the pyramid
    assert fine.mean() == pytest.approx(coarse.mean(), rel=0.03)
    assert coarse[20, 20] == pytest.approx(10.0, abs=0.01)


# ------------------------------------------------------------------------------------- packing and tensors


def test_pack_height_steps_and_clipping():
    h = np.array([[0.0, 0.24, 0.26, 10.0], [127.5, 300.0, -3.0, 1.0]], np.float32)
    np.testing.assert_array_equal(P.pack_height(h), [[0, 0, 1, 20], [255, 255, 0, 2]])
    with pytest.raises(ImageError, match="NaN"):
        P.pack_height(np.array([[np.nan]]))


def test_with_height_makes_a_four_channel_tile_and_the_tensor_carries_metres():
    rgb = np.full((8, 8, 3), 100, np.uint8)
    h = np.zeros((8, 8), np.float32)
    h[2:4, 2:4] = 20.0
    t4 = P.with_height(rgb, h)
    assert t4.shape == (8, 8, 4) and t4.dtype == np.uint8
    x = P.aerial_tensor(t4, 8, channels=4)
    assert x.shape == (4, 8, 8)
    assert float(x[3, 2, 2]) == pytest.approx(20.0 / P.HEIGHT_NORM_M)
    assert float(x[3, 0, 0]) == 0.0
    np.testing.assert_allclose(x[:3].numpy(), P.aerial_tensor(rgb, 8).numpy())  # RGB normalised as before
    # a height map of another size is resampled onto the tile
    assert P.with_height(rgb, np.zeros((16, 16))).shape == (8, 8, 4)


def test_channel_mismatch_is_a_clear_error():
    rgb = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ImageError, match="surface height"):
        P.aerial_tensor(rgb, 8, channels=4)
    with pytest.raises(ImageError, match="3 channels"):
        P.aerial_tensor(P.with_height(rgb, np.zeros((8, 8))), 8, channels=3)
    with pytest.raises(ImageError, match="3 channels"):  # panoramas never take a 4th channel
        P.ground_tensor(np.zeros((8, 16, 4), np.uint8), (8, 16))


# --------------------------------------------------------------------------------------------------- files


def test_height_png_round_trip_in_centimetres(tmp_path):
    h = np.random.default_rng(0).uniform(0, 80, (10, 12)).astype(np.float32)
    H.write_height_png(tmp_path / "h.png", h)
    raw = cv2.imread(str(tmp_path / "h.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16
    np.testing.assert_allclose(H.load_height(tmp_path / "h.png"), h, atol=0.005 + 1e-6)
    np.save(tmp_path / "h.npy", h)
    np.testing.assert_array_equal(H.load_height(tmp_path / "h.npy"), h)


def test_bad_height_files_are_data_errors(tmp_path):
    cv2.imwrite(str(tmp_path / "eight.png"), np.zeros((4, 4), np.uint8))
    with pytest.raises(DataFormatError, match="16-bit"):
        H.load_height(tmp_path / "eight.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "eight.png").read_bytes()[:20])
    with pytest.raises(DataFormatError, match="decode"):
        H.load_height(tmp_path / "cut.png")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataFormatError, match="cannot read"):  # never unpickled
        H.load_height(tmp_path / "obj.npy")
    np.save(tmp_path / "nan.npy", np.full((3, 3), np.nan, np.float32))
    with pytest.raises(DataFormatError, match="NaN"):
        H.load_height(tmp_path / "nan.npy")


def test_load_aerial_finds_the_height_next_to_the_tile_or_says_where_it_looked(small_city):
    city_dir, truth = small_city
    tile = city_dir / "satellite" / truth.tile_names[0]
    assert H.load_aerial(tile).shape == (32, 32, 3)
    with pytest.raises(DataFormatError, match="satellite_height"):
        H.load_aerial(tile, height=True)
    _write_heights(city_dir, truth)
    a = H.load_aerial(tile, height=True)
    assert a.shape == (32, 32, 4)
    assert np.all(a[..., 3] == P.pack_height(np.float32(3.0)))
    np.testing.assert_array_equal(a[..., :3], H.load_aerial(tile))


# ------------------------------------------------------------------------------------ stream and data sets


def test_city_stream_tiles_carry_the_rendered_height():
    from unifygeo_ros.data.stream import CityStream

    s = CityStream(base_seed=3, samples_per_city=2, city_size_m=200.0, tile_m=60.0, aerial_px=48,
                   pano_size=(64, 32), random_heading=False, aerial_height=True)
    item = next(iter(s))
    assert item["aerial"].shape == (48, 48, 4)
    city = W.generate_city(3, 200.0, item_style(s, 3), s.cell_m)
    h = R.render_aerial_height(city, tuple(item["tile_center_en_m"]), 60.0, 48)
    np.testing.assert_array_equal(item["aerial"][..., 3], P.pack_height(h))
    assert item["aerial"][..., 3].max() > 4  # a city has buildings or trees above 2 m in every tile


def item_style(stream, seed: int) -> str:
    rng = np.random.default_rng([seed & 0xFFFFFFFF, 0x57EA])
    return W.STYLES[int(rng.integers(len(W.STYLES)))]


def test_vigor_dataset_and_gallery_return_four_channels_with_aerial_height(tmp_path, small_city):
    from unifygeo_ros.data.vigor import VigorDataset

    city_dir, truth = small_city  # under tmp_path
    ds = VigorDataset(tmp_path, ["Seattle"], split="same", train=False, ground_size_hw=(16, 32), aerial_px=16,
                      aerial_height=True)
    with pytest.raises(DataFormatError, match="satellite_height"):
        ds[0]
    _write_heights(city_dir, truth)
    item = ds[0]
    assert item["aerial"].shape == (4, 16, 16)
    k = item["tile_index"]
    want = P.pack_height(np.float32(3.0 * (truth.tile_names.index(ds.tiles.tile_paths[k].name) + 1)))
    assert float(item["aerial"][3, 8, 8]) == pytest.approx(float(want) * P.HEIGHT_UNIT_M / P.HEIGHT_NORM_M)
    gal = ds.gallery()
    assert gal[0]["aerial"].shape == (4, 16, 16)
    plain = VigorDataset(tmp_path, ["Seattle"], split="same", train=False, ground_size_hw=(16, 32), aerial_px=16)
    assert plain[0]["aerial"].shape == (3, 16, 16) and plain.gallery()[0]["aerial"].shape == (3, 16, 16)


def test_synth_writes_one_height_file_per_tile(tmp_path):
    from unifygeo_ros import geo
    from unifygeo_ros.data.synth import origin_for_seed, write_city

    res = write_city(str(tmp_path), "Tiny", seed=4, size_m=160.0, n_panos=4, tile_m=60.0, tile_px=48,
                     pano_width=64, progress=False)
    sats = sorted(p.name for p in (tmp_path / "Tiny" / "satellite").iterdir())
    heights = sorted(p.name for p in (tmp_path / "Tiny" / H.HEIGHT_DIR).iterdir())
    assert sats == heights and len(sats) == res.n_tiles == 16  # 160 m at a 30 m stride: 4 x 4 centres
    # each file is the rendered surface height of its tile (centre from the file name: a multiple of the stride)
    city = W.generate_city(4, 160.0)
    frame = geo.LocalENU(*origin_for_seed(4))
    for name in (sats[0], sats[-1]):
        lat, lon = (float(v) for v in name.removesuffix(".png").split("_")[1:3])
        centre = tuple(30.0 * round(float(v) / 30.0) for v in frame.to_en(lat, lon))
        h = H.load_height(tmp_path / "Tiny" / H.HEIGHT_DIR / name)
        assert h.shape == (48, 48) and h.max() > 2.0
        want = R.render_aerial_height(city, centre, 60.0, 48)
        np.testing.assert_allclose(h, want, atol=0.05)  # centimetre steps; a few building edges blend differently
        assert np.abs(h - want).mean() < 0.005


# ----------------------------------------------------------------------------------------- model and index


def test_height_model_takes_four_channels_and_refuses_shared_views():
    from unifygeo_ros.model import build_model

    with pytest.raises(ConfigError, match="share_views"):
        tiny_config(aerial_height=True, share_views=True)
    cfg = tiny_config(aerial_height=True)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    assert model.aerial_channels == 4
    with torch.no_grad():
        a = model.encode_aerial(torch.randn(2, 4, 64, 64))
        a2 = model.encode_aerial(torch.cat([torch.randn(2, 3, 64, 64), torch.zeros(2, 1, 64, 64)], 1))
        x4 = torch.randn(2, 4, 64, 64)
        flat = model.encode_aerial(torch.cat([x4[:, :3], torch.zeros(2, 1, 64, 64)], 1))
        with_h = model.encode_aerial(x4)
    d = cfg.model.descriptor_dim
    assert a.descriptor.shape == (2, d) and a2.descriptor.shape == (2, d)
    # the fourth channel reaches the network: the same RGB with another height gives another descriptor
    assert not torch.allclose(with_h.descriptor, flat.descriptor, atol=1e-4)
    with pytest.raises(RuntimeError):
        model.encode_aerial(torch.randn(1, 3, 64, 64))


def test_index_of_a_height_model_stores_four_channel_tiles_and_needs_heights(tmp_path, small_city, height_handle):
    city_dir, truth = small_city
    handle = height_handle
    args = SimpleNamespace(vigor=str(city_dir), orthophoto=None, gsd=None, dsm=None)
    with pytest.raises(DataFormatError, match="satellite_height"):
        index_build.tile_source_from_args(args, handle)
    _write_heights(city_dir, truth)
    src = index_build.tile_source_from_args(args, handle)
    assert src.channels == 4 and src.read(0).shape == (32, 32, 4)
    out = tmp_path / "ix"
    index_build.build_index(handle, src, out, aerial_mode="tiles", progress=False, batch_size=4)
    ix = store.load_index(out)
    stored = ix.aerial_rows(np.arange(len(ix)))["tiles"]
    assert stored.shape == (len(truth.tile_names), 64, 64, 4)
    # re-encoding the stored tiles gives the stored descriptors
    feats = handle.encode_aerial(list(stored))
    np.testing.assert_allclose(feats.descriptor.numpy(), ix.descriptors, atol=2e-3)
    # an RGB model refuses 4-channel tiles and vice versa
    with pytest.raises(ImageError, match="surface height"):
        handle.aerial_batch([np.zeros((32, 32, 3), np.uint8)])


def _utm_pair(tmp_path, gsd=0.1, width=800, height=600):
    """A UTM orthophoto (PNG + world file) and its nDSM (16-bit PNG, cm) on another grid (0.5 m, shifted)."""
    import pyproj

    x0, y0 = 691000.0, 5335000.0
    ortho = np.full((height, width, 3), 90, np.uint8)
    # a 20 x 10 m block at x0+30..50, y0-20..-30 (red roof)
    ortho[200:300, 300:500] = (230, 20, 20)
    o_path = tmp_path / "ortho.png"
    cv2.imwrite(str(o_path), ortho[:, :, ::-1])
    tiles.write_world_file(o_path.with_suffix(".pgw"), (gsd, 0.0, x0, 0.0, -gsd, y0))
    o_path.with_suffix(".prj").write_text(pyproj.CRS("EPSG:32632").to_wkt())
    dg, dx0, dy0 = 0.5, x0 - 5.0, y0 + 5.0  # coarser, and its corner 5 m further west and north
    dsm = np.zeros((int(height * gsd / dg) + 20, int(width * gsd / dg) + 20), np.uint16)
    c0, r0 = int((x0 + 30 - dx0) / dg), int((dy0 - (y0 - 20)) / dg)
    dsm[r0:r0 + 20, c0:c0 + 40] = 1500  # 15 m
    d_path = tmp_path / "ndsm.png"
    cv2.imwrite(str(d_path), dsm)
    tiles.write_world_file(d_path.with_suffix(".pgw"), (dg, 0.0, dx0, 0.0, -dg, dy0))
    d_path.with_suffix(".prj").write_text(pyproj.CRS("EPSG:32632").to_wkt())
    return o_path, d_path


def test_orthophoto_dsm_is_cut_onto_the_same_tile_pixels(tmp_path, height_handle):
    o_path, d_path = _utm_pair(tmp_path)
    src = tiles.orthophoto_tiles(o_path, tile_m=40.0, stride_m=20.0, gsd_m=0.5, dsm=d_path)
    assert src.channels == 4 and src.describe()["dsm"].endswith("ndsm.png")
    overlap = []
    for i in range(len(src)):
        t = src.read(i)
        assert t.shape == (80, 80, 4)
        red = (t[..., 0].astype(int) - t[..., 1]) > 150
        tall = t[..., 3] >= P.pack_height(np.float32(14.0))
        if red.sum() > 50:
            overlap.append((red & tall).sum() / max(1, (red | tall).sum()))
        else:
            assert tall.sum() <= 0.05 * red.size
    assert overlap and min(overlap) > 0.85
    with pytest.raises(DataFormatError, match="surface model"):
        tiles.orthophoto_tiles(o_path, tile_m=40.0, dsm=tmp_path / "missing.png")
    handle = height_handle
    args = SimpleNamespace(vigor=None, orthophoto=str(o_path), gsd=None, dsm=None, tile_m=40.0, stride_m=20.0,
                           crs=None, min_coverage=0.75)
    with pytest.raises(DataFormatError, match="--dsm"):
        index_build.tile_source_from_args(args, handle)


def test_toy_training_with_a_height_model_runs(tmp_path):
    from unifygeo_ros.model.checkpoint import load_checkpoint
    from unifygeo_ros.offline.train import train

    cfg = Config.from_dict({
        "model": tiny_config(aerial_height=True).to_dict()["model"],
        "data": {"source": "toy", "toy_samples": 4, "batch_size": 4, "num_workers": 0},
        "train": {"steps": 2, "log_every": 1, "ckpt_every": 2, "tensorboard": False, "threads": 1}})
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.step == 2 and [h["step"] for h in result.history] == [1, 2]
    assert all(math.isfinite(h["total"]) for h in result.history)
    model, loaded, meta = load_checkpoint(tmp_path / "run" / "ckpt")
    assert loaded.model.aerial_height and model.aerial_channels == 4 and meta.step == 2
    # the checkpoint holds the trained weights (at its save precision), 4-channel aerial stem included
    trained = result.model.state_dict()
    for name, t in model.state_dict().items():
        torch.testing.assert_close(t.float(), trained[name].float().cpu(), atol=2e-3, rtol=2e-3, msg=name)
    stem = next(m for m in model.aerial_encoder.modules() if isinstance(m, torch.nn.Conv2d))
    assert stem.in_channels == 4
