"""The numbers of the output messages: covariance layouts, yaw convention, unmeasured variables, map anchoring."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from unifygeo_ros.ros import messages as fm
from unifygeo_ros import geo

COV_EN = np.array([[4.0, 1.5], [1.5, 9.0]])  # east var 4, north var 9, correlated


def _fix(lat=47.0, lon=8.0, heading=30.0, cov=COV_EN, heading_std=10.0):
    return SimpleNamespace(latitude_deg=lat, longitude_deg=lon, heading_deg=heading,
                           yaw_deg=float(geo.heading_to_yaw_deg(heading)), covariance_en_m2=np.asarray(cov, float),
                           heading_std_deg=heading_std)


def test_navsat_covariance_is_row_major_enu_with_the_configured_vertical():
    c = np.array(fm.navsat_position_covariance(COV_EN, 25.0)).reshape(3, 3)
    assert c[0, 0] == pytest.approx(4.0) and c[1, 1] == pytest.approx(9.0)  # east, north
    assert c[0, 1] == c[1, 0] == pytest.approx(1.5)
    assert c[2, 2] == 25.0 and c[0, 2] == c[1, 2] == 0.0


def test_pose_covariance_layout_and_unmeasured_variables_are_never_zero():
    c = np.array(fm.pose_covariance(COV_EN, heading_std_deg=10.0, vertical_variance_m2=25.0)).reshape(6, 6)
    assert np.allclose(c[:2, :2], COV_EN)
    assert c[2, 2] == 25.0
    assert c[3, 3] == c[4, 4] == fm.DEFAULT_UNMEASURED_VARIANCE  # roll, pitch: "unknown", not zero
    assert c[5, 5] == pytest.approx(math.radians(10.0) ** 2)
    assert np.allclose(c, c.T) and np.all(np.linalg.eigvalsh(c) > 0)
    off = c.copy()
    off[:2, :2] = 0
    np.fill_diagonal(off, 0)
    assert np.all(off == 0)  # no invented cross-covariances


def test_geopose_covariance_is_ordered_lat_lon_alt():
    c = np.array(fm.geopose_covariance(COV_EN, 10.0, 25.0)).reshape(6, 6)
    assert c[0, 0] == pytest.approx(9.0)  # Lat = north
    assert c[1, 1] == pytest.approx(4.0)  # Lon = east
    assert c[0, 1] == pytest.approx(1.5) and c[2, 2] == 25.0
    assert c[5, 5] == pytest.approx(math.radians(10.0) ** 2)


def test_degenerate_and_asymmetric_covariances_become_psd_and_floored():
    c = np.array(fm.navsat_position_covariance([[0.0, 0.2], [0.0, 0.0]], 0.0)).reshape(3, 3)
    assert np.allclose(c, c.T) and np.all(np.linalg.eigvalsh(c) >= fm.MIN_VARIANCE * 0.999)
    # symmetrised to [[0, 0.1], [0.1, 0]]: eigenvalues +0.1 along (1, 1), -0.1 along (1, -1) lifted to the floor;
    # the vertical variance 0 floored too
    f = fm.MIN_VARIANCE
    want = [[0.05 + f / 2, 0.05 - f / 2, 0.0], [0.05 - f / 2, 0.05 + f / 2, 0.0], [0.0, 0.0, f]]
    np.testing.assert_allclose(c, want, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="non-finite"):
        fm.navsat_position_covariance([[np.nan, 0], [0, 1]], 1.0)


def test_yaw_variance_is_floored_and_capped():
    assert fm.yaw_variance_rad2(0.0) == fm.MIN_VARIANCE
    assert fm.yaw_variance_rad2(400.0) == fm.MAX_YAW_VARIANCE_RAD2
    assert fm.yaw_variance_rad2(float("inf")) == fm.MAX_YAW_VARIANCE_RAD2


@pytest.mark.parametrize("heading,yaw", [(0.0, 90.0), (90.0, 0.0), (180.0, -90.0), (270.0, -180.0), (-45.0, 135.0)])
def test_quaternion_is_rep103_yaw_from_compass_heading(heading, yaw):
    """REP-103: facing north (compass 0) is yaw +90 deg; facing east (compass 90) is yaw 0."""
    o = fm.fix_outputs(_fix(heading=heading), geo.LocalENU(47.0, 8.0))
    assert o.yaw_deg == pytest.approx(geo.wrap_deg(yaw))
    qx, qy, qz, qw = o.quaternion_xyzw
    assert qx == qy == 0.0 and qz * qz + qw * qw == pytest.approx(1.0)
    assert geo.quaternion_xyzw_to_yaw_deg(qx, qy, qz, qw) == pytest.approx(o.yaw_deg, abs=1e-9)
    # rotating the body x axis (forward) by the quaternion points at the compass heading
    fwd_e, fwd_n = math.cos(math.radians(o.yaw_deg)), math.sin(math.radians(o.yaw_deg))
    assert math.degrees(math.atan2(fwd_e, fwd_n)) % 360 == pytest.approx(heading % 360, abs=1e-9)


def test_pose_is_in_the_map_frame_wherever_it_is_anchored():
    origin = geo.LocalENU(47.0, 8.0, 400.0)
    lat, lon = origin.from_en(120.0, -35.0)
    fix = _fix(lat=float(lat), lon=float(lon))
    o = fm.fix_outputs(fix, origin, altitude_m=400.0)
    assert (o.east_m, o.north_m) == pytest.approx((120.0, -35.0), abs=1e-3)
    assert o.up_m == pytest.approx(0.0) and o.altitude_m == 400.0
    other = geo.LocalENU(float(lat), float(lon))  # anchored at the fix itself
    o2 = fm.fix_outputs(fix, other)
    assert (o2.east_m, o2.north_m) == pytest.approx((0.0, 0.0), abs=1e-6)
    assert (o2.latitude_deg, o2.longitude_deg) == (o.latitude_deg, o.longitude_deg)
    assert o.navsat_covariance_type == fm.COVARIANCE_TYPE_APPROXIMATED


def test_non_finite_fixes_are_refused():
    with pytest.raises(ValueError, match="non-finite position or yaw"):
        fm.fix_outputs(_fix(lat=float("nan")), geo.LocalENU(47.0, 8.0))
    no_yaw = _fix()
    no_yaw.yaw_deg = float("nan")
    with pytest.raises(ValueError, match="non-finite position or yaw"):
        fm.fix_outputs(no_yaw, geo.LocalENU(47.0, 8.0))
    with pytest.raises(ValueError, match="non-finite entries"):
        fm.fix_outputs(_fix(cov=[[np.inf, 0.0], [0.0, 1.0]]), geo.LocalENU(47.0, 8.0))


def test_non_finite_map_position_or_altitude_is_refused():
    """A NaN altitude (or a map frame anchored at NaN) made every pose (nan, nan, nan) and NavSatFix.altitude NaN;
    the message numbers are refused like a non-finite latitude, so nothing non-finite is published."""
    for frame, altitude in [(geo.LocalENU(47.0, 8.0), math.nan), (geo.LocalENU(47.0, 8.0, math.nan), 0.0),
                            (geo.LocalENU(47.0, 8.0), math.inf), (geo.LocalENU(47.0, math.nan), 0.0)]:
        with pytest.raises(ValueError, match="non-finite map position or altitude"):
            fm.fix_outputs(_fix(), frame, altitude_m=altitude)


def test_imu_orientation_must_be_a_unit_quaternion():
    """A non-unit quaternion is not a rotation: (0, 0, 0.1, 0.1) read as one gave a yaw of 1.2 deg instead of 90; the
    node refuses it and says why in the frames that need a heading."""
    assert fm.unit_quaternion_problem(0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4)) == ""
    assert "norm 0.141" in fm.unit_quaternion_problem(0.0, 0.0, 0.1, 0.1)
    assert "not finite" in fm.unit_quaternion_problem(0.0, math.nan, 0.0, 1.0)
    assert fm.unit_quaternion_problem(0.0, 0.0, 0.0, 1.0 + 0.5 * fm.UNIT_QUATERNION_TOLERANCE) == ""
