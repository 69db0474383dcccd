"""`unifygeo bag synth --stop S:DURATION`: the vehicle brakes to a standstill at S, stands still for DURATION
seconds (positions constant, the wheel odometry exactly 0) and drives on along the same path; bad stops are one-line
errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from unifygeo_ros import cli
from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.rosbag import io as bags
from unifygeo_ros.rosbag import synth_topics as topics
from unifygeo_ros.rosbag.drive import LONG_ACC_MPS2
from unifygeo_ros.rosbag.drive_stops import Stop, StoppedDrive, check_stops, parse_stop

META = {"format": "unifygeo-city", "version": 1, "city": "City", "seed": 2026, "style": "mixed",
        "origin": {"lat_deg": 47.6, "lon_deg": -122.3}, "size_m": [300.0, 300.0], "tile_m": 70.0,
        "stride_m": 35.0, "tile_px": 320, "mpp": 0.21875, "pano_px": [512, 256], "camera_height_m": 2.0}


@pytest.fixture(scope="module")
def base():
    from unifygeo_ros.data import world
    from unifygeo_ros.rosbag.synth import make_drive, plan_route, street_graph

    city = world.generate_city(META["seed"], tuple(META["size_m"]), META["style"])
    route = plan_route(street_graph(city.streets, tuple(city.size_m)), "random", 800.0, np.random.default_rng(5))
    return make_drive(route, 8.0)


@pytest.fixture(scope="module")
def city_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("stops_city") / "City"
    d.mkdir()
    (d / "geo.json").write_text(json.dumps(META))
    return d


def _speed_from_positions(drive, t: np.ndarray) -> np.ndarray:
    en = drive.at(t)[0]
    return np.hypot(*np.diff(en, axis=0).T) / np.diff(t)


def test_a_stop_stands_still_then_drives_on_along_the_same_path(base):
    d = StoppedDrive(base, [Stop(20.0, 15.0)])
    t = np.arange(0.0, 60.0, 0.05)
    en, _hd, v, w = d.at(t)
    still = (t >= 20.0) & (t <= 35.0)
    assert np.all(en[still] == en[still][0]) and np.all(v[still] == 0) and np.all(w[still] == 0)
    ramp = max(float(base.at([20.0])[2][0]) / LONG_ACC_MPS2, 1.0)
    early = t < 20.0 - ramp - 1.0
    np.testing.assert_allclose(en[early], base.at(t[early])[0])  # untouched before the braking starts
    # braking and pulling away: the reported speed is the positions' (the re-timing scales both alike), and the
    # speed factor ramps linearly at the drive's acceleration limit from the speed at the stop
    ramps = (t > 20.0 - ramp) & (t < 20.0) | (t > 35.0) & (t < 35.0 + ramp)
    v_pos = _speed_from_positions(d, t)
    v_mid = 0.5 * (v[1:] + v[:-1])
    assert np.max(np.abs(v_pos - v_mid)[ramps[1:]]) < 0.3
    f = d.factor(t)
    assert np.all(np.abs(np.diff(f[ramps])) <= 0.05 * LONG_ACC_MPS2 / float(base.at([20.0])[2][0]) + 1e-9)
    # then the same path, late by the stop and the two half ramps
    lost = d.end_s - base.end_s
    assert 15.0 + ramp - 0.6 < lost < 15.0 + ramp + 0.6
    late = t > 35.0 + ramp + 1.0
    np.testing.assert_allclose(en[late], base.at(t[late] - lost)[0], atol=1e-6)
    assert d.distance_m(34.0) == pytest.approx(d.distance_m(21.0)) and d.distance_m(50.0) > d.distance_m(34.0)


def test_a_stop_at_zero_stands_from_the_start(base):
    d = StoppedDrive(base, [Stop(0.0, 30.0)])
    en, _hd, v, _w = d.at(np.array([0.0, 10.0, 29.9, 40.0]))
    assert np.all(en[:3] == en[0]) and np.all(v[:3] == 0) and v[3] > 1.0
    np.testing.assert_allclose(en[0], base.at([0.0])[0][0])


@pytest.mark.parametrize("text", ["20", "a:b", "-1:5", "3:0", "3:inf", "1:2:3"])
def test_bad_stops_are_one_line_errors(text):
    with pytest.raises(UnifyGeoError, match="--stop"):
        parse_stop(text)


def test_stops_that_overlap_or_cannot_brake_in_time_are_refused(base):
    with pytest.raises(UnifyGeoError, match="while the vehicle stands"):
        check_stops([Stop(10.0, 10.0), Stop(15.0, 2.0)], 60.0)
    with pytest.raises(UnifyGeoError, match="after the recording"):
        check_stops([Stop(70.0, 1.0)], 60.0)
    with pytest.raises(UnifyGeoError, match="to brake"):
        StoppedDrive(base, [Stop(2.0, 5.0)])  # 8 m/s needs ~5 s
    with pytest.raises(UnifyGeoError, match="to brake"):
        StoppedDrive(base, [Stop(10.0, 5.0), Stop(17.0, 5.0)])  # still pulling away from the first


def test_bag_synth_stop_records_a_standing_vehicle_and_zero_wheel_odometry(city_dir, tmp_path, capsys):
    out = tmp_path / "bag"
    rc = cli.main(["bag", "synth", "--data", str(city_dir), "--out", str(out), "--duration", "30", "--rate", "1",
                   "--image-width", "32", "--storage", "mcap", "--stop", "14:5", "--stop", "0:2"])
    assert rc == 0
    assert "stands 2 s from 0 s; stands 5 s from 14 s" in capsys.readouterr().out
    t0 = 1_704_067_200.0
    msgs: dict[str, list] = {}
    with bags.open_bag(out) as r:
        for conn, t_ns, msg in bags.iter_messages(r, r.connections):
            msgs.setdefault(conn.topic, []).append((t_ns / 1e9 - t0, msg))
    odom = [(t, m.twist.twist.linear.x, m.twist.twist.angular.z) for t, m in msgs[topics.WHEEL_ODOM_TOPIC]]
    standing = [(v, w) for t, v, w in odom if 14.05 <= t <= 19.0 or t <= 2.0]
    moving = [v for t, v, _w in odom if 9.0 <= t <= 10.0 or 26.0 <= t <= 28.0]
    assert len(standing) > 100 and all(v == 0.0 and w == 0.0 for v, w in standing)
    assert min(moving) > 0.5
    gt = [(t, m.pose.position.latitude, m.pose.position.longitude) for t, m in msgs[topics.GEOPOSE_TOPIC]]
    at_stop = {(lat, lon) for t, lat, lon in gt if 14.0 <= t <= 19.0}
    assert len(at_stop) == 1
    custom = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["custom_data"]
    assert json.loads(custom[topics.METADATA_KEY])["stops"] == [[0.0, 2.0], [14.0, 5.0]]


def test_a_stop_across_the_kidnap_is_refused(city_dir, tmp_path, capsys):
    rc = cli.main(["bag", "synth", "--data", str(city_dir), "--out", str(tmp_path / "bag"), "--duration", "30",
                   "--image-width", "32", "--kidnap-at", "15", "--stop", "12:10"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "kidnap" in err and len(err.splitlines()) == 1
