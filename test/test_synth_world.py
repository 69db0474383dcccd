"""The synthetic world: determinism, geometry shared by both views, VIGOR tiling, and that it stays a
cross-view task (a colour-histogram matcher does not solve it)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from unifygeo_ros import geo
from unifygeo_ros.data import render as R
from unifygeo_ros.data import synth as S
from unifygeo_ros.data import world as W

NOON_SOUTH = R.AerialLighting(sun_azimuth_deg=180.0, sun_elevation_deg=45.0, haze=0.0, grain=0.0)
FLAT_GROUND = R.GroundLighting(sun_azimuth_deg=200.0, sun_elevation_deg=40.0, clouds=0.0, fog_m=1e6)


@pytest.fixture(scope="module")
def small_city():
    return W.generate_city(11, 160, "mixed")


def _pano_column(width: int, azimuth_deg: float, heading_deg: float = 0.0) -> int:
    """Column whose centre looks at ``azimuth_deg`` (geo.py's convention)."""
    return int(round(((azimuth_deg - heading_deg) / 360.0 + 0.5) * width - 0.5)) % width


def _pano_row(height: int, elevation_deg: float) -> int:
    return int(round((90.0 - elevation_deg) / 180.0 * height - 0.5))


def _free_position(city, near=None):
    free = city.free_space()
    rr, cc = np.nonzero(free)
    e, n = (cc + 0.5) * city.cell_m, (rr + 0.5) * city.cell_m
    c = np.array(city.size_m) / 2 if near is None else np.asarray(near)
    k = int(np.argmin(np.hypot(e - c[0], n - c[1])))
    return float(e[k]), float(n[k])


# ---------------------------------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_city_and_identical_renders(small_city):
    again = W.generate_city(11, 160, "mixed")
    for name in ("height", "surface", "top_rgb", "object_id", "facade_rgb", "cars", "trees"):
        assert np.array_equal(getattr(small_city, name), getattr(again, name)), name
    pos = _free_position(small_city)
    assert np.array_equal(R.render_aerial(small_city, (80, 80), 70, 96), R.render_aerial(again, (80, 80), 70, 96))
    assert np.array_equal(R.render_panorama(small_city, pos, 30.0, 128, 64),
                          R.render_panorama(again, pos, 30.0, 128, 64))


def test_different_seeds_give_different_cities(small_city):
    other = W.generate_city(12, 160, "mixed")
    assert (small_city.surface != other.surface).mean() > 0.3
    assert not np.array_equal(small_city.facade_rgb[:5], other.facade_rgb[:5])


def test_city_is_fully_determined_by_seed_not_global_rng():
    np.random.seed(1)
    a = W.generate_city(5, 100, "suburb")
    np.random.seed(2)
    b = W.generate_city(5, 100, "suburb")
    assert np.array_equal(a.top_rgb, b.top_rgb)


# ---------------------------------------------------------------------------------------------- contents
def test_styles_differ_centre_is_tall_and_dense_suburb_is_low_and_green():
    stats = {}
    for style in ("centre", "suburb"):
        heights, builtup, green = [], [], []
        for seed in (1, 2):
            c = W.generate_city(seed, 220, style)
            b = c.surface == W.SURFACE_BUILDING
            heights.append(np.median(c.height[b]))
            builtup.append(b.mean())
            green.append(np.isin(c.surface, (W.SURFACE_TREE, W.SURFACE_GRASS, W.SURFACE_GARDEN)).mean())
        stats[style] = (np.mean(heights), np.mean(builtup), np.mean(green))
    assert stats["centre"][0] > 2.0 * stats["suburb"][0]
    assert stats["centre"][1] > 1.5 * stats["suburb"][1]
    assert stats["suburb"][2] > 1.5 * stats["centre"][2]


def test_city_has_streets_markings_buildings_trees_and_three_car_sets():
    c = W.generate_city(3, 300, "mixed")
    present = set(np.unique(c.surface).tolist())
    for s in (W.SURFACE_ROAD, W.SURFACE_SIDEWALK, W.SURFACE_MARKING, W.SURFACE_BUILDING, W.SURFACE_TREE):
        assert s in present, W.SURFACE_NAMES[s]
    assert c.n_buildings > 20 and len(c.trees) > 20
    sets = np.bincount(c.cars["set"], minlength=3)
    assert sets[W.CARS_BOTH] > 10 and sets[W.CARS_AERIAL_ONLY] > 3 and sets[W.CARS_GROUND_ONLY] > 3
    # roof detail (HVAC boxes) or pitched roofs with ridges: roofs are not flat slabs of one height
    ids = c.object_id[c.object_id > 0]
    spread = [np.ptp(c.height[c.object_id == i]) for i in np.unique(ids)[:30]]
    assert np.median(spread) > 0.5


def test_roof_and_facade_colours_are_not_correlated():
    c = W.generate_city(4, 400, "mixed")
    ids = c.object_id.ravel()
    sel = ids > 0
    counts = np.bincount(ids[sel], minlength=c.n_buildings + 1)
    roof = np.stack([np.bincount(ids[sel], weights=c.top_rgb.reshape(-1, 3)[sel, ch], minlength=len(counts))
                     for ch in range(3)], -1)
    ok = counts > 20
    roof = roof[ok] / counts[ok, None]
    facade = c.facade_rgb[ok].astype(float)
    assert ok.sum() > 50
    for ch in range(3):
        r = np.corrcoef(roof[:, ch], facade[:, ch])[0, 1]
        assert abs(r) < 0.35, (ch, r)
    assert np.abs(roof - facade).mean() > 25


def test_moved_cars_appear_in_exactly_one_view(small_city):
    def car_seen(view, car):
        r, c = small_city.cell_of(car["east"], car["north"])
        under_tree = small_city.surface[r, c] == W.SURFACE_TREE  # hidden from above, seen below the canopy
        lay = small_city.under_canopy_layers(view) if under_tree else small_city.layers(view)
        return lay.surface[r, c] == W.SURFACE_CAR

    cars = small_city.cars
    assert len(cars) > 20
    for car in cars:
        a_car, g_car = car_seen("aerial", car), car_seen("ground", car)
        if car["set"] == W.CARS_BOTH:
            assert a_car and g_car
        elif car["set"] == W.CARS_AERIAL_ONLY:
            assert a_car and (not g_car or _other_car_here(cars, car, W.CARS_GROUND_ONLY))
        else:
            assert g_car and (not a_car or _other_car_here(cars, car, W.CARS_AERIAL_ONLY))
    under = small_city.surface == W.SURFACE_TREE
    assert not (small_city.layers("aerial").surface[under] == W.SURFACE_CAR).any()  # canopies hide cars


def _other_car_here(cars, car, cset):
    d = np.hypot(cars["east"] - car["east"], cars["north"] - car["north"])
    return bool(((d < 5.0) & (cars["set"] != car["set"])).any())


def test_camera_positions_are_on_roads_clear_of_buildings_cars_and_trees(small_city):
    grid = S.tile_grid(small_city.size_m, 70.0)
    pos = S.sample_camera_positions(small_city, grid, 200, np.random.default_rng(0))
    lay = small_city.layers("all")
    r, c = small_city.cell_of(pos[:, 0], pos[:, 1])
    assert np.all(lay.height[r, c] == 0.0)
    assert np.all(np.isin(small_city.surface[r, c], (W.SURFACE_ROAD, W.SURFACE_MARKING)))
    e0, e1, n0, n1 = grid.camera_bounds()
    assert np.all((pos[:, 0] >= e0) & (pos[:, 0] <= e1) & (pos[:, 1] >= n0) & (pos[:, 1] <= n1))


# ---------------------------------------------------------------------------------------------- geometry
def _red_tower_world():
    """Flat grey world; camera at (100, 100); a 30 m red tower 30-40 m east of it, 40 m wide (north 80-120)."""
    city = W.City.blank(200, 0.25)
    city.add_box(130, 80, 140, 120, 30.0, roof_rgb=(30, 30, 220), facade_rgb=(220, 30, 30),
                 window_style=W.WINDOW_NONE)
    return city


def _is_red(px):
    px = np.asarray(px, int)
    return px[..., 0] > 100 and px[..., 0] > 2 * px[..., 1] and px[..., 0] > 2 * px[..., 2]


def test_tall_building_east_of_camera_appears_in_east_columns_at_the_right_elevation():
    city = _red_tower_world()
    w, h = 512, 256
    pano = R.render_panorama(city, (100.0, 100.0), 0.0, w, h, 2.0, FLAT_GROUND)
    east, west = _pano_column(w, 90.0), _pano_column(w, 270.0)
    assert _is_red(pano[_pano_row(h, 20.0), east])
    assert not _is_red(pano[_pano_row(h, 20.0), west])
    # azimuthal extent: the wall spans azimuths 90 -+ atan(20/30) = 56.3 .. 123.7 deg
    assert _is_red(pano[_pano_row(h, 5.0), _pano_column(w, 60.0)])
    assert _is_red(pano[_pano_row(h, 5.0), _pano_column(w, 120.0)])
    assert not _is_red(pano[_pano_row(h, 5.0), _pano_column(w, 45.0)])
    assert not _is_red(pano[_pano_row(h, 5.0), _pano_column(w, 135.0)])
    # the top of the wall is at elevation atan((30 - 2) / 30) = 43.03 deg in the east column
    red_rows = [r for r in range(h) if _is_red(pano[r, east])]
    top_el = 90.0 - (min(red_rows) + 0.5) * 180.0 / h
    assert abs(top_el - math.degrees(math.atan2(28.0, 30.0))) <= 180.0 / h * 1.01
    # the bottom of the wall is at elevation -atan(2 / 30) = -3.8 deg
    bottom_el = 90.0 - (max(red_rows) + 0.5) * 180.0 / h
    assert abs(bottom_el - math.degrees(math.atan2(-2.0, 30.0))) <= 180.0 / h * 1.01


def test_nearer_building_occludes_farther_one():
    city = _red_tower_world()
    city.add_box(110, 95, 112, 105, 8.0, roof_rgb=(30, 200, 30), facade_rgb=(30, 200, 30),
                 window_style=W.WINDOW_NONE)
    w, h = 256, 128
    pano = R.render_panorama(city, (100.0, 100.0), 0.0, w, h, 2.0, FLAT_GROUND)
    px = pano[_pano_row(h, 5.0), _pano_column(w, 90.0)].astype(int)
    assert px[1] > 2 * px[0]  # green box in front of the red tower
    assert _is_red(pano[_pano_row(h, 35.0), _pano_column(w, 90.0)])  # tower rises above it


@pytest.mark.parametrize("k", [37, 128])
def test_rendering_at_heading_equals_rolling_the_north_aligned_panorama(small_city, k):
    w, h = 256, 128
    pos = _free_position(small_city)
    north = R.render_panorama(small_city, pos, 0.0, w, h)
    turned = R.render_panorama(small_city, pos, k * 360.0 / w, w, h)
    rolled = np.roll(north, -k, axis=1)  # geo.py: rolling right by k columns is heading -k*360/W
    same = np.all(turned == rolled, axis=-1).mean()
    assert same > 0.995
    assert np.abs(turned.astype(int) - rolled.astype(int)).mean() < 0.5


def test_aerial_tiles_are_north_up():
    city = W.City.blank(200, 0.25)
    city.add_box(97, 112, 103, 118, 3.0, roof_rgb=(220, 20, 20))  # north of the centre (100, 100)
    city.add_box(112, 97, 118, 103, 3.0, roof_rgb=(20, 220, 20))  # east of it
    px = 128
    tile = R.render_aerial(city, (100.0, 100.0), 70.0, px, NOON_SOUTH).astype(int)
    red = (tile[..., 0] > 150) & (tile[..., 1] < 80)
    green = (tile[..., 1] > 150) & (tile[..., 0] < 80)
    rr, rc = np.nonzero(red)
    gr, gc = np.nonzero(green)
    assert rr.mean() < px / 2 - 10 and abs(rc.mean() - px / 2) < 4
    assert gc.mean() > px / 2 + 10 and abs(gr.mean() - px / 2) < 4


def test_vigor_offset_of_a_point_lands_on_its_pixel_in_the_tile():
    city = W.City.blank(200, 0.25)
    point = (113.0, 91.0)
    city.add_box(point[0] - 1, point[1] - 1, point[0] + 1, point[1] + 1, 0.5, roof_rgb=(250, 250, 0))
    centre, tile_m, px = (105.0, 100.0), 70.0, 140
    tile = R.render_aerial(city, centre, tile_m, px, NOON_SOUTH).astype(int)
    d_row, d_col = geo.en_to_vigor_offset(point[0] - centre[0], point[1] - centre[1], tile_m / px)
    row, col = px / 2 + d_row, px / 2 - d_col  # geo.py: camera at row = H/2 + d_row, col = W/2 - d_col
    yellow = (tile[..., 0] > 180) & (tile[..., 1] > 180) & (tile[..., 2] < 90)
    yr, yc = np.nonzero(yellow)
    assert abs((yr.mean() + 0.5) - row) < 1.0 and abs((yc.mean() + 0.5) - col) < 1.0


@pytest.mark.parametrize("sun_az, away", [(180.0, (0.0, 1.0)), (90.0, (-1.0, 0.0))])
def test_cast_shadows_fall_on_the_side_away_from_the_sun(sun_az, away):
    city = W.City.blank(200, 0.25, ground_rgb=(180, 180, 180))
    city.add_box(95, 95, 105, 105, 20.0, roof_rgb=(180, 180, 180))
    lt = R.AerialLighting(sun_azimuth_deg=sun_az, sun_elevation_deg=45.0, haze=0.0, grain=0.0)
    px = 140  # 0.5 m/px
    tile = R.render_aerial(city, (100.0, 100.0), 70.0, px, lt).astype(float).mean(-1)

    def ground_at(de, dn):  # mean brightness of a 4 m patch at (de, dn) m from the centre
        c, r = int(px / 2 + de / 0.5), int(px / 2 - dn / 0.5)
        return tile[r - 4:r + 4, c - 4:c + 4].mean()

    ax, ay = away
    shadow_side = ground_at(ax * 12, ay * 12)
    sun_side = ground_at(-ax * 12, -ay * 12)
    assert shadow_side < 0.75 * sun_side


# ---------------------------------------------------------------------------------------------- tiling
def test_positive_holds_camera_in_central_quarter_and_semi_positives_contain_it():
    grid = S.tile_grid(500, 70.0)
    rng = np.random.default_rng(0)
    e0, e1, n0, n1 = grid.camera_bounds()
    pts = np.stack([rng.uniform(e0, e1, 2000), rng.uniform(n0, n1, 2000)], -1)
    pts[:4] = [[e0, n0], [e1, n1], [e0, n1], [e1, n0]]  # corners of the camera region
    for e, n in pts:
        cells = S.positive_and_semi(grid, e, n)
        assert len(set(cells)) == 4
        for k, (i, j) in enumerate(cells):
            assert 1 <= i <= grid.n_east - 1 and 1 <= j <= grid.n_north - 1
            dx, dy = e - i * grid.stride_m, n - j * grid.stride_m
            limit = grid.tile_m / 4 if k == 0 else grid.tile_m / 2
            assert abs(dx) <= limit + 1e-9 and abs(dy) <= limit + 1e-9


def test_tile_grid_keeps_tiles_inside_the_city():
    grid = S.tile_grid((280, 350), 70.0)
    c = grid.centres()
    assert len(c) == 7 * 9
    assert c[:, 0].min() - 35 >= 0 and c[:, 0].max() + 35 <= 280
    assert c[:, 1].min() - 35 >= 0 and c[:, 1].max() + 35 <= 350


# ---------------------------------------------------------------------------------------------- cross-view
def _colour_hist(img: np.ndarray, bins: int = 6) -> np.ndarray:
    q = (img.reshape(-1, 3).astype(int) * bins) // 256
    h = np.bincount(q[:, 0] * bins * bins + q[:, 1] * bins + q[:, 2], minlength=bins ** 3).astype(float)
    return h / h.sum()


def test_colour_histograms_do_not_identify_the_positive_tile():
    """A nearest-neighbour matcher on colour statistics (histogram of the panorama's ground half, or its mean
    colour) against all tiles of the city must stay far from solving retrieval."""
    city = W.generate_city(21, 245, "mixed")
    grid = S.tile_grid(245, 70.0)
    centres = grid.centres()
    tiles = [R.render_aerial(city, tuple(c), 70.0, 96) for c in centres]
    th = np.stack([_colour_hist(t) for t in tiles])
    tm = np.stack([t.reshape(-1, 3).mean(0) for t in tiles])
    pos = S.sample_camera_positions(city, grid, 72, np.random.default_rng(3))
    hits_hist = hits_mean = 0
    for e, n in pos:
        pano = R.render_panorama(city, (e, n), 0.0, 128, 64)
        i, j = S.positive_and_semi(grid, e, n)[0]
        truth = grid.index(i, j)
        ground = pano[32:]  # below the horizon: what a matcher would compare with the tile
        d_hist = np.abs(th - _colour_hist(ground)[None]).sum(1)
        d_mean = np.linalg.norm(tm - ground.reshape(-1, 3).mean(0)[None], axis=1)
        hits_hist += int(np.argmin(d_hist) == truth)
        hits_mean += int(np.argmin(d_mean) == truth)
    r1_hist, r1_mean = hits_hist / len(pos), hits_mean / len(pos)
    assert r1_hist < 0.30 and r1_mean < 0.30, (r1_hist, r1_mean)


# ---------------------------------------------------------------------------------------------- stream
def _stream(**kw):
    from unifygeo_ros.data.stream import CityStream

    args = dict(base_seed=40, samples_per_city=4, city_size_m=140.0, tile_m=70.0, aerial_px=64, pano_size=(128, 64),
                style="mixed", num_cities=2)
    args.update(kw)
    return CityStream(**args)


def test_stream_yields_vigor_positive_pairs_consistent_with_the_renderers():
    ds = _stream()
    items = list(ds)
    assert len(items) == len(ds) == 8
    assert [it["city_seed"] for it in items] == [40] * 4 + [41] * 4
    city = W.generate_city(40, 140.0, "mixed", ds.cell_m)
    for it in items[:4]:
        assert it["ground"].shape == (64, 128, 3) and it["ground"].dtype == np.uint8
        assert it["aerial"].shape == (64, 64, 3) and it["aerial"].dtype == np.uint8
        assert it["offset_en_m"].dtype == np.float32 and np.all(np.abs(it["offset_en_m"]) <= 70.0 / 4 + 1e-4)
        assert 0.0 <= float(it["heading_deg"]) < 360.0 and float(it["tile_m"]) == 70.0
        centre = it["tile_center_en_m"]
        assert np.allclose(centre / 35.0, np.round(centre / 35.0))  # on the half-tile stride grid
        assert np.array_equal(it["aerial"], R.render_aerial(city, tuple(centre), 70.0, 64))
        pos = tuple(centre + it["offset_en_m"].astype(np.float64))
        again = R.render_panorama(city, pos, float(it["heading_deg"]), 128, 64,
                                  lighting=_any_ground_lighting(city, it, pos))
        assert np.all(again == it["ground"], axis=-1).mean() > 0.97
        # the camera stands on a road
        r, c = city.cell_of(*pos)
        assert city.layers("all").height[r, c] == 0.0


def _any_ground_lighting(city, item, pos):
    """The stream draws one of a city's ground lightings per sample: find the one that reproduces it."""
    best, score = None, -1.0
    for v in range(2):
        lt = R.GroundLighting.for_city(city, v)
        p = R.render_panorama(city, pos, float(item["heading_deg"]), 128, 64, lighting=lt)
        s = np.all(p == item["ground"], axis=-1).mean()
        if s > score:
            best, score = lt, s
    return best


def test_stream_semi_fraction_pairs_cameras_with_off_centre_neighbours():
    base = [dict(it) for it in _stream(random_heading=False)]
    same = [dict(it) for it in _stream(random_heading=False, semi_fraction=0.0)]
    assert all(it["positive"] for it in base)  # the default stream: positives only, draw for draw unchanged
    assert all(np.array_equal(a["offset_en_m"], b["offset_en_m"]) and np.array_equal(a["aerial"], b["aerial"])
               for a, b in zip(base, same))
    semi = list(_stream(random_heading=False, semi_fraction=1.0, samples_per_city=6))
    city = W.generate_city(40, 140.0, "mixed", _stream().cell_m)
    for it in semi:
        off = it["offset_en_m"].astype(np.float64)
        assert not it["positive"]
        # inside the tile, outside its central quarter (a VIGOR semi-positive)
        assert np.abs(off).max() <= 35.0 + 1e-4 and np.abs(off).max() >= 70.0 / 4 - 1e-4, off
        if it["city_seed"] == 40:
            assert np.array_equal(it["aerial"], R.render_aerial(city, tuple(it["tile_center_en_m"]), 70.0, 64))
    with pytest.raises(ValueError, match="semi_fraction"):
        _stream(semi_fraction=1.5)


def test_stream_heading_is_random_or_north_aligned():
    rnd = [float(it["heading_deg"]) for it in _stream(samples_per_city=12, num_cities=1)]
    assert len(set(rnd)) == 12 and np.ptp(rnd) > 90.0
    fixed = [float(it["heading_deg"]) for it in _stream(num_cities=1, random_heading=False)]
    assert fixed == [0.0] * 4


def test_dataloader_workers_render_distinct_new_cities():
    from torch.utils.data import DataLoader

    ds = _stream(samples_per_city=3, num_cities=4, aerial_px=32, pano_size=(64, 32))
    seeds = []
    for batch in DataLoader(ds, batch_size=3, num_workers=2):
        assert batch["ground"].shape == (3, 32, 64, 3)
        seeds += [int(s) for s in batch["city_seed"]]
    assert sorted(seeds) == sorted([40, 41, 42, 43] * 3)


def test_old_module_paths_still_name_the_moved_objects():
    """world, render and synth were split into smaller modules; the names other code imports from them stay
    the same objects."""
    from unifygeo_ros.data import aerial, city, city_schema, lighting, panorama, streets, tiling

    assert W.City is city.City and W.Street is streets.Street and W.true_runs is streets.true_runs
    assert W.SURFACE_TREE == city_schema.SURFACE_TREE and W.STYLES == city_schema.STYLES
    assert R.render_panorama is panorama.render_panorama and R.render_aerial is aerial.render_aerial
    assert R.AerialLighting is lighting.AerialLighting and R.cast_shadows is lighting.cast_shadows
    assert S.tile_grid is tiling.tile_grid and S.positive_and_semi is tiling.positive_and_semi
    for name in ("write_city", "sample_camera_positions", "satellite_name", "parse_panorama_name", "SPLIT_FILES"):
        assert hasattr(S, name), name
