"""geo.py against pyproj and geographiclib; angle conventions; VIGOR scale and offsets."""
from __future__ import annotations

import math

import numpy as np
import pyproj  # the references: test requirements (setup.py extras "test"), not optional here
import pytest
from geographiclib.geodesic import Geodesic

from unifygeo_ros import geo

WGS84 = Geodesic.WGS84

ORIGINS = [(40.7128, -74.0060, 10.0), (47.6062, -122.3321, 50.0), (-33.8688, 151.2093, 0.0),
           (0.0, 0.0, 0.0), (78.2, 15.6, 100.0)]


def _points(lat0: float, lon0: float, n: int = 50, radius_m: float = 1000.0, seed: int = 0):
    """Random points within ~radius_m of the origin (lat/lon degrees)."""
    rng = np.random.default_rng(seed)
    dlat = rng.uniform(-1, 1, n) * radius_m / 111_000.0
    dlon = rng.uniform(-1, 1, n) * radius_m / (111_000.0 * math.cos(math.radians(lat0)))
    return lat0 + dlat, lon0 + dlon


# ----------------------------------------------------------------------------------------------- ENU
@pytest.mark.parametrize("lat0, lon0, h0", ORIGINS)
def test_enu_matches_pyproj_ecef_and_manual_rotation(lat0, lon0, h0):
    lat, lon = _points(lat0, lon0)
    h = np.linspace(-20.0, 40.0, lat.size) + h0
    to_ecef = pyproj.Transformer.from_crs("EPSG:4979", "EPSG:4978")  # lat, lon, h -> X, Y, Z
    x, y, z = to_ecef.transform(lat, lon, h)
    x0, y0, z0 = to_ecef.transform(lat0, lon0, h0)
    phi, lam = math.radians(lat0), math.radians(lon0)
    d = np.stack([x - x0, y - y0, z - z0])
    east = -math.sin(lam) * d[0] + math.cos(lam) * d[1]
    north = -math.sin(phi) * math.cos(lam) * d[0] - math.sin(phi) * math.sin(lam) * d[1] + math.cos(phi) * d[2]
    up = math.cos(phi) * math.cos(lam) * d[0] + math.cos(phi) * math.sin(lam) * d[1] + math.sin(phi) * d[2]
    e, n, u = geo.LocalENU(lat0, lon0, h0).to_enu(lat, lon, h)
    np.testing.assert_allclose(e, east, atol=1e-4)
    np.testing.assert_allclose(n, north, atol=1e-4)
    np.testing.assert_allclose(u, up, atol=1e-4)


@pytest.mark.parametrize("lat0, lon0, h0", ORIGINS)
def test_enu_matches_pyproj_topocentric(lat0, lon0, h0):
    lat, lon = _points(lat0, lon0, seed=1)
    topo = pyproj.Transformer.from_pipeline(
        "+proj=pipeline +step +proj=axisswap +order=2,1 +step +proj=unitconvert +xy_in=deg +xy_out=rad "
        f"+step +proj=cart +ellps=WGS84 +step +proj=topocentric +ellps=WGS84 +lat_0={lat0} +lon_0={lon0} "
        f"+h_0={h0}")
    e_ref, n_ref, u_ref = topo.transform(lat, lon, np.full(lat.shape, h0))
    e, n = geo.LocalENU(lat0, lon0, h0).to_en(lat, lon)
    np.testing.assert_allclose(e, e_ref, atol=1e-4)
    np.testing.assert_allclose(n, n_ref, atol=1e-4)
    assert np.all(np.asarray(u_ref) < 0)  # the surface falls away from the tangent plane


@pytest.mark.parametrize("lat0, lon0, h0", ORIGINS)
def test_enu_distances_and_bearings_match_geodesics(lat0, lon0, h0):
    lat, lon = _points(lat0, lon0, seed=2)
    e, n = geo.LocalENU(lat0, lon0, h0).to_en(lat, lon)
    for i in range(lat.size):
        g = WGS84.Inverse(lat0, lon0, float(lat[i]), float(lon[i]))
        # tangent-plane vs geodesic distance differ by ~d^3/R^2 (micrometres at 1 km); the height h0 scales
        # distances by (R + h0) / R
        assert math.hypot(e[i], n[i]) == pytest.approx(g["s12"] * (1 + h0 / 6.371e6), abs=2e-3)
        assert geo.angle_diff_deg(math.degrees(math.atan2(e[i], n[i])), g["azi1"]) < 1e-3


@pytest.mark.parametrize("lat0, lon0, h0", ORIGINS)
def test_round_trips_below_a_millimetre(lat0, lon0, h0):
    frame = geo.LocalENU(lat0, lon0, h0)
    lat, lon = _points(lat0, lon0, seed=3)
    e, n = frame.to_en(lat, lon)
    lat2, lon2 = frame.from_en(e, n)
    for i in range(lat.size):
        assert WGS84.Inverse(float(lat[i]), float(lon[i]), float(lat2[i]), float(lon2[i]))["s12"] < 1e-3
    rng = np.random.default_rng(4)
    en = rng.uniform(-1000, 1000, size=(2, 30))
    e2, n2 = frame.to_en(*frame.from_en(en[0], en[1]))
    np.testing.assert_allclose(e2, en[0], atol=1e-3)
    np.testing.assert_allclose(n2, en[1], atol=1e-3)
    up = rng.uniform(-50, 50, size=30)
    back = frame.to_enu(*frame.from_enu(en[0], en[1], up))
    np.testing.assert_allclose(np.stack(back), np.stack([en[0], en[1], up]), atol=1e-3)
    # from_en lands on the origin's height
    _, _, h = frame.from_enu(e, n, frame.to_enu(lat, lon)[2])
    np.testing.assert_allclose(h, h0, atol=1e-3)


@pytest.mark.parametrize("lat0", [0.0, 37.7, 47.6, 70.0])
def test_meters_per_degree_matches_geodesics(lat0):
    m_lon, m_lat = geo.LocalENU(lat0, 10.0).meters_per_degree()
    d = 1e-3
    assert m_lon * d == pytest.approx(WGS84.Inverse(lat0, 10.0, lat0, 10.0 + d)["s12"], rel=1e-6)
    assert m_lat * d == pytest.approx(WGS84.Inverse(lat0 - d / 2, 10.0, lat0 + d / 2, 10.0)["s12"], rel=1e-6)


# -------------------------------------------------------------------------------------------- angles
def test_heading_yaw_conventions():
    assert geo.heading_to_yaw_deg(0.0) == 90.0  # north
    assert geo.heading_to_yaw_deg(90.0) == 0.0  # east
    assert geo.heading_to_yaw_deg(180.0) == -90.0  # south
    assert geo.heading_to_yaw_deg(270.0) == -180.0  # west, wrapped into [-180, 180)
    assert geo.yaw_to_heading_deg(90.0) == 0.0
    assert geo.yaw_to_heading_deg(0.0) == 90.0
    assert geo.yaw_to_heading_deg(-90.0) == -180.0  # south = heading 180 wrapped
    rng = np.random.default_rng(0)
    h = rng.uniform(-720, 720, 100)
    back = geo.yaw_to_heading_deg(geo.heading_to_yaw_deg(h))
    assert np.all(geo.angle_diff_deg(back, h) < 1e-9)
    assert np.all((back >= -180) & (back < 180))
    assert isinstance(geo.heading_to_yaw_deg(10.0), float)


def test_wrap_and_angle_diff():
    assert geo.wrap_deg(180.0) == -180.0
    assert geo.wrap_deg(-180.0) == -180.0
    assert geo.wrap_deg(540.0) == -180.0
    assert geo.wrap_deg(359.0) == pytest.approx(-1.0)
    np.testing.assert_allclose(geo.wrap_deg(np.array([190.0, -190.0, 10.0])), [-170.0, 170.0, 10.0])
    assert geo.angle_diff_deg(350.0, 10.0) == pytest.approx(20.0)
    assert geo.angle_diff_deg(-170.0, 170.0) == pytest.approx(20.0)
    assert geo.angle_diff_deg(0.0, 180.0) == pytest.approx(180.0)
    assert geo.wrap_pi(math.pi) == -math.pi and isinstance(geo.wrap_pi(3 * math.pi), float)
    assert geo.wrap_pi(-0.5) == -0.5 and geo.wrap_pi(2 * math.pi + 0.25) == pytest.approx(0.25)
    np.testing.assert_allclose(geo.wrap_pi(np.array([3.5, -3.5, 0.1])), [3.5 - 2 * math.pi, 2 * math.pi - 3.5, 0.1])


def test_quaternion_yaw_round_trip():
    for yaw in np.linspace(-179.5, 179.5, 73):
        q = geo.yaw_to_quaternion_xyzw(float(yaw))
        assert math.isclose(sum(c * c for c in q), 1.0, rel_tol=1e-12)
        assert q[0] == 0.0 and q[1] == 0.0
        assert geo.quaternion_xyzw_to_yaw_deg(*q) == pytest.approx(yaw, abs=1e-9)
        # the same rotation with the opposite sign gives the same yaw
        assert geo.quaternion_xyzw_to_yaw_deg(*(-c for c in q)) == pytest.approx(yaw, abs=1e-9)
    q = geo.yaw_to_quaternion_xyzw(90.0)
    np.testing.assert_allclose(q, (0.0, 0.0, math.sqrt(0.5), math.sqrt(0.5)))
    # rotating the x axis (east) by yaw 90 gives north (+y)
    x, y, z, w = q
    rot_x = (1 - 2 * (y * y + z * z), 2 * (x * y + w * z))
    np.testing.assert_allclose(rot_x, (0.0, 1.0), atol=1e-12)


# ------------------------------------------------------------------------------------- VIGOR scale
#: latitude ranges of the four VIGOR city areas (city limits; San Francisco's box includes the northern
#: peninsula just south of the city line, 37.708 deg, where its published value points)
CITY_LAT_RANGE = {"NewYork": (40.49, 40.92), "Seattle": (47.49, 47.74), "SanFrancisco": (37.60, 37.84),
                  "Chicago": (41.64, 42.03)}
CITY_CENTRE_LAT = {"NewYork": 40.71, "Seattle": 47.61, "SanFrancisco": 37.77, "Chicago": 41.88}


def test_web_mercator_mpp_reproduces_vigor_city_values():
    assert geo.web_mercator_mpp(0.0, 0) == pytest.approx(156543.03392804097)
    assert geo.web_mercator_mpp(0.0, 20) == pytest.approx(0.14929107, rel=1e-7)
    assert geo.web_mercator_mpp(60.0, 20) == pytest.approx(0.14929107 / 2, rel=1e-7)
    assert set(geo.VIGOR_MPP_640) == set(CITY_LAT_RANGE)
    for city, mpp in geo.VIGOR_MPP_640.items():
        implied = math.degrees(math.acos(mpp / geo.web_mercator_mpp(0.0, 20)))
        lo, hi = CITY_LAT_RANGE[city]
        assert lo <= implied <= hi, f"{city}: {mpp} implies latitude {implied:.3f}"
        assert geo.web_mercator_mpp(implied, 20) == pytest.approx(mpp, rel=1e-9)
        # at the city centre the zoom-20 resolution is within 0.25 % of the published value (6 cm over a 35 m offset)
        assert geo.web_mercator_mpp(CITY_CENTRE_LAT[city], 20) == pytest.approx(mpp, rel=2.5e-3)
    assert geo.VIGOR_MPP_ORIGINAL == 0.114 and geo.VIGOR_TILE_PX == 640


def test_vigor_offsets_both_ways():
    mpp = geo.VIGOR_MPP_640["NewYork"]
    # 10 px south-west of the centre: d_row = +10 (south), d_col = +10 (west)
    e, n = geo.vigor_offset_to_en(10.0, 10.0, mpp)
    assert e < 0 and n < 0 and e == pytest.approx(-10 * mpp) and n == pytest.approx(-10 * mpp)
    d_row, d_col = geo.en_to_vigor_offset(-10 * mpp, -10 * mpp, mpp)
    assert d_row == pytest.approx(10.0) and d_col == pytest.approx(10.0)
    # north-east of the centre -> negative offsets; pixel position row = 320 + d_row, col = 320 - d_col
    d_row, d_col = geo.en_to_vigor_offset(5.0, 2.0, 0.1)
    assert (320 + d_row, 320 - d_col) == (pytest.approx(300.0), pytest.approx(370.0))
    rng = np.random.default_rng(0)
    dr, dc = rng.uniform(-320, 320, (2, 50))
    back = geo.en_to_vigor_offset(*geo.vigor_offset_to_en(dr, dc, mpp), mpp)
    np.testing.assert_allclose(back, (dr, dc), atol=1e-9)
