"""HeadingFeed: the IMU's heading *at the image's stamp*, not the newest orientation received. The node reads it when
an image arrives, and a large image arrives late: with only the newest orientation kept, an image stamped 0.4 s
before it while the robot yawed at 30 deg/s got a heading 12 deg off (audit finding 2), and orientations up to
``imu.max_age_s`` after the image were used as they came. Also ``imu.mount_yaw_deg`` (an IMU mounted with a yaw
relative to base_link, allowed in tracking mode: audit finding 6)."""
from __future__ import annotations

import math
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from unifygeo_ros import geo
from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.localization import sensor_feed
from unifygeo_ros.localization.sensor_feed import HeadingFeed, ImuSettings
from unifygeo_ros.ros.params import NodeSettings


def _imu(yaw_deg: float, var: float = 0.0) -> SimpleNamespace:
    """A ``sensor_msgs/Imu`` with ENU yaw ``yaw_deg`` (stamped through ``HeadingFeed.add``'s ``stamp``)."""
    x, y, z, w = geo.yaw_to_quaternion_xyzw(yaw_deg)
    cov = np.zeros(9)
    cov[8] = var
    return SimpleNamespace(header=None, orientation=SimpleNamespace(x=x, y=y, z=z, w=w), orientation_covariance=cov)


def _compass(yaw_deg: float) -> float:
    return float(geo.yaw_to_heading_deg(yaw_deg))


def _turning(feed: HeadingFeed, t0: float, t1: float, rate_hz: float = 100.0, dps: float = 30.0) -> None:
    """Orientations from ``t0`` to ``t1`` (inclusive) of a robot yawing at ``dps`` from ENU yaw 0 at ``t0``."""
    for k in range(int(round((t1 - t0) * rate_hz)) + 1):
        t = t0 + k / rate_hz
        feed.add(_imu(dps * (t - t0)), t)


def test_a_late_image_gets_the_heading_at_its_stamp_not_the_newest():
    """The audit's experiment (e3_imu.py): 100 Hz IMU, 30 deg/s, the image stamped 0.4 s before the newest sample."""
    feed = HeadingFeed()
    _turning(feed, 10.0, 10.4)
    h, std, why = feed.at(10.0)
    assert why == "" and h == pytest.approx(90.0, abs=1e-9) and std == 5.0  # was 78: 12 deg off
    assert feed.at(10.123)[0] == pytest.approx(_compass(30.0 * 0.123), abs=1e-9)  # between two samples


def test_a_stamp_between_two_samples_is_interpolated_with_the_larger_std():
    feed = HeadingFeed(ImuSettings(default_yaw_std_deg=4.0))
    feed.add(_imu(10.0, var=math.radians(1.0) ** 2), 1.0)
    feed.add(_imu(20.0, var=math.radians(3.0) ** 2), 1.2)
    h, std, why = feed.at(1.05)
    assert why == "" and h == pytest.approx(_compass(12.5)) and std == pytest.approx(3.0)
    assert feed.at(1.0) == pytest.approx((_compass(10.0), 1.0, ""))  # exactly a sample: that one
    assert feed.at(1.2) == pytest.approx((_compass(20.0), 3.0, ""))


def test_a_reading_after_the_image_is_not_taken_as_it_is():
    """The newest orientation, 0.45 s after the image, was used as the image's heading; now the yaw at the stamp."""
    feed = HeadingFeed()
    feed.add(_imu(0.0), 9.9)
    feed.add(_imu(45.0), 10.35)
    assert feed.at(10.0)[0] == pytest.approx(_compass(10.0))  # was _compass(45): 35 deg off
    only_after = HeadingFeed()  # nothing before the stamp within max_age_s: the nearest one within it
    only_after.add(_imu(0.0), 9.0)
    only_after.add(_imu(45.0), 10.3)
    assert only_after.at(10.0)[0] == pytest.approx(_compass(45.0))
    assert only_after.at(9.6)[0] is None and "0.60 s from the image stamp" in only_after.at(9.6)[2]


def test_images_after_the_newest_or_before_the_oldest_sample_take_it_within_max_age():
    """After the newest: the newest, exactly (what every image of the synthetic bags gets: their IMU samples are
    stamped at or before each image, and replay reads in bag order)."""
    feed = HeadingFeed()
    feed.add(_imu(0.0), 5.0)
    feed.add(_imu(33.3, var=0.01), 5.02)
    newest = (_compass(33.3), math.degrees(0.1))
    assert feed.at(5.033)[:2] == newest and feed.at(5.52)[:2] == newest  # the same numbers: no arithmetic
    h, _, why = feed.at(5.53)
    assert h is None and "0.51 s from the image stamp (> imu.max_age_s 0.5)" in why
    assert feed.at(4.6)[0] == _compass(0.0)  # before the oldest: the oldest, within max_age_s
    assert feed.at(4.4)[0] is None and "0.60 s from the image stamp" in feed.at(4.4)[2]


@pytest.mark.parametrize("h0, h1, expect", [(170.0, -170.0, 175.0), (-170.0, 170.0, -175.0), (179.0, -179.0, 179.5),
                                             (10.0, -10.0, 5.0)])
def test_the_yaw_is_interpolated_on_the_shortest_arc_across_plus_minus_180(h0, h1, expect):
    feed = HeadingFeed()
    feed.add(_imu(float(geo.heading_to_yaw_deg(h0))), 0.0)
    feed.add(_imu(float(geo.heading_to_yaw_deg(h1))), 0.4)
    h, _, _ = feed.at(0.1)
    assert float(geo.angle_diff_deg(h, expect)) == pytest.approx(0.0, abs=1e-9)  # not through 0 (was h1 as it is)
    assert -180.0 <= h < 180.0


def test_the_history_is_bounded_whatever_the_rate():
    feed = HeadingFeed()
    _turning(feed, 0.0, 10.0, rate_hz=1000.0)  # 1 kHz for 10 s: the last 2 s are kept
    assert len(feed) <= sensor_feed.HEADING_BUFFER_SAMPLES
    assert feed.at(8.0005)[0] == pytest.approx(_compass(30.0 * 8.0005), abs=1e-6)
    assert feed.at(7.4)[0] is None and "0.60 s from the image stamp" in feed.at(7.4)[2]  # older than the oldest kept
    fast = HeadingFeed()
    _turning(fast, 0.0, 1.0, rate_hz=10000.0)
    assert len(fast) == sensor_feed.HEADING_BUFFER_SAMPLES
    assert fast.at(1.0)[0] == pytest.approx(_compass(30.0), abs=1e-9)


def test_time_going_backwards_starts_the_history_again():
    """A bag played again (``--loop``) or a sim clock reset: the new orientations are used, not the old ones."""
    feed = HeadingFeed()
    _turning(feed, 100.0, 101.0)
    feed.add(_imu(-90.0), 5.0)
    assert feed.resets == 1 and len(feed) == 1 and feed.at(5.1)[0] == _compass(-90.0)
    feed.add(_imu(-80.0), 5.1)
    feed.add(_imu(-85.0), 5.05)  # slightly out of order: kept in stamp order
    assert feed.at(5.075)[0] == pytest.approx(_compass(-82.5))


def test_problem_and_not_received_messages_are_kept():
    feed = HeadingFeed()
    assert feed.at(1.0, "/r/imu") == (None, pytest.approx(math.nan, nan_ok=True),
                                      "no IMU orientation received yet on /r/imu")
    feed.add(_imu_bad(), 1.0)
    assert "not a unit quaternion" in feed.at(1.0)[2] and not feed.received
    feed.add(_imu(0.0), 1.0)
    assert feed.received and feed.at(1.0)[2] == ""


def _imu_bad() -> SimpleNamespace:
    m = _imu(0.0)
    m.orientation = SimpleNamespace(x=0.0, y=0.0, z=0.1, w=0.1)
    return m


def test_adding_and_reading_from_two_threads():
    """The node adds from its executor while an image's heading is read: no torn history (lists under a lock)."""
    feed = HeadingFeed()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            _turning(feed, 0.0, 20.0, rate_hz=1000.0)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    th = threading.Thread(target=writer)
    th.start()
    while th.is_alive():
        h, _, why = feed.at(feed._stamps[-1] - 0.05 if feed.received else 0.0)
        assert h is not None or why
    th.join()
    assert not errors and len(feed) <= sensor_feed.HEADING_BUFFER_SAMPLES


# ------------------------------------------------------------------------------------------ IMU mount yaw
def test_the_imu_mount_yaw_is_taken_off_before_the_panorama_offset():
    """An IMU whose x axis points left of base_link (base_link -> imu yaw +90) reads 90 deg more than the robot."""
    feed = HeadingFeed(ImuSettings(mount_yaw_deg=90.0))
    feed.add(_imu(90.0), 1.0)  # the IMU's x looks north: the robot looks east
    assert feed.at(1.0)[0] == pytest.approx(_compass(0.0))
    both = HeadingFeed(ImuSettings(panorama_yaw_offset_deg=30.0, mount_yaw_deg=-45.0))
    both.add(_imu(0.0), 1.0)
    assert both.at(1.0)[0] == pytest.approx(_compass(75.0))


def test_the_mount_yaw_parameter_is_allowed_in_tracking_and_checked():
    s = NodeSettings.from_params({"mode": "tracking", "imu.mount_yaw_deg": -90.0})
    assert s.imu_settings().mount_yaw_deg == -90.0 and s.imu_settings().panorama_yaw_offset_deg == 0.0
    with pytest.raises(UnifyGeoError, match="imu.mount_yaw_deg: angles must be within"):
        NodeSettings.from_params({"imu.mount_yaw_deg": 400.0})
    with pytest.raises(UnifyGeoError, match="an IMU mounted with a yaw is imu.mount_yaw_deg"):
        NodeSettings.from_params({"mode": "tracking", "imu.panorama_yaw_offset_deg": -90.0})
