"""The robot's sensors measured against the belief's track (tracking_sensors.py): the similarity's rotation, the IMU's
heading offset found over a long stretch and taken off its readings by the filter, and an IMU within the deadband
used exactly as it is. (The odometry's scale: test_tracking.py.)"""
from __future__ import annotations

import math

import numpy as np
import pytest

from test_tracking import Scene, ScriptedLocalizer, compass, drive, error, run
from unifygeo_ros import geo
from unifygeo_ros.localization.tracking import OdometryDelta, SequentialLocalizer, TrackingInputError, TrackingSettings
from unifygeo_ros.localization.tracking_sensors import SensorFit, similarity


def rotation(deg: float) -> np.ndarray:
    r = math.radians(deg)
    return np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])


def test_similarity_reads_scale_and_rotation_of_a_curved_track():
    t = np.linspace(0.0, 2.0, 50)
    src = np.stack([60.0 * np.sin(t), 60.0 * (1 - np.cos(t))], axis=1)
    dst = 1.04 * src @ rotation(-7.0).T + np.array([300.0, -20.0])
    scale, rot_rad = similarity(src, dst)
    assert scale == pytest.approx(1.04, abs=1e-9) and math.degrees(rot_rad) == pytest.approx(-7.0, abs=1e-9)


def imu_drive(fit: SensorFit, steps: int, offset_deg: float, imu_from: int = 0, origin=(100.0, -40.0)):
    """A robot on a circle (5 m per step): the odometry exact, the IMU's compass heading ``offset_deg`` off from step
    ``imu_from`` on, the belief on the truth (the odometry's track turned by 30 deg and shifted: its own frame)."""
    step = OdometryDelta.from_twist(5.0, math.radians(10.0), 1.0)
    true_yaw_deg = 30.0
    for k in range(steps):
        if k >= imu_from:
            fit.imu(float(geo.yaw_to_heading_deg(true_yaw_deg)) + offset_deg)
        fit.move(step)
        true_yaw_deg += math.degrees(step.yaw_rad)
        fit.observe(np.asarray(origin) + rotation(30.0) @ fit._pose[:2], True, 3.0)


@pytest.mark.parametrize("offset_deg", [8.0, -5.0])
def test_the_imu_heading_offset_fitted_over_a_long_stretch(offset_deg):
    """The odometry's distances laid along the IMU's headings are the robot's track turned by the IMU's offset: the
    fit reads it (compass sense: the IMU reads clockwise of the truth = positive), beyond the deadband it becomes the
    correction; the scale is read on the odometry's own track as before."""
    fit = SensorFit(100.0, 0.03)
    imu_drive(fit, 30, offset_deg)
    assert fit.imu_offset_deg == pytest.approx(offset_deg, abs=0.05)
    assert fit.scale_estimate == pytest.approx(1.0, abs=1e-6)
    assert fit.imu_off and fit.imu_found is False  # only watch() acts on it (what the filter does): observe() measures
    assert fit.imu_correction_deg == 0.0
    fit.imu_found = True
    assert fit.imu_correction_deg == fit.imu_offset_deg


def test_an_imu_within_the_deadband_or_before_a_whole_stretch_is_not_corrected():
    small = SensorFit(100.0, 0.03)
    imu_drive(small, 30, 1.5)
    assert small.imu_offset_deg == pytest.approx(1.5, abs=0.05) and not small.imu_off
    none = SensorFit(100.0, 0.03)  # no IMU: the scale alone
    imu_drive(none, 30, 8.0, imu_from=30)
    assert math.isnan(none.imu_offset_deg) and none.scale_estimate == pytest.approx(1.0, abs=1e-6)
    late = SensorFit(100.0, 0.03)  # the IMU from step 10 on: fitted once the window holds no frame before it
    imu_drive(late, 28, 8.0, imu_from=10)
    assert math.isnan(late.imu_offset_deg)
    imu_drive(late, 4, 8.0)
    assert late.imu_offset_deg == pytest.approx(8.0, abs=0.05)
    off = SensorFit(0.0, 0.03)
    imu_drive(off, 30, 8.0)
    assert math.isnan(off.imu_offset_deg)


@pytest.mark.parametrize("kwargs", [dict(imu_heading_deadband_deg=-1.0), dict(imu_heading_deadband_deg=200.0),
                                    dict(sensor_fit_max_protection_level_m=0.0), dict(sensor_fit_estimates=0)])
def test_sensor_fit_settings_are_validated(kwargs):
    with pytest.raises(TrackingInputError):
        TrackingSettings(**kwargs)


def replay(offset_deg: float, **settings):
    """A loop of 41 m radius driven twice (750 m), an exact odometry, an IMU ``offset_deg`` off, maps that peak at the
    truth and no global fix after the first; the fits over 100 m."""
    pos, yaw, deltas = drive(300, start=(140.0, 60.0), speed=5.0, yaw_rate=math.radians(7.0))
    t = SequentialLocalizer(ScriptedLocalizer(), TrackingSettings(particles=500, odometry_scale_window_m=100.0,
                                                                  **settings))
    out = run(t, pos, yaw, deltas, scene=lambda k, p: Scene(tuple(p), fix=tuple(p) if k == 0 else None),
              heading_offset_deg=offset_deg)
    heading_err = np.array([abs(geo.angle_diff_deg(e.heading_deg, compass(y))) for e, y in zip(out, yaw)])
    pos_err = np.array([error(e, p) for e, p in zip(out, pos)])
    return out, heading_err, pos_err, t


def test_the_filter_takes_an_imu_found_8_deg_off_off_its_readings():
    """IMU 8 deg off: the belief's heading follows it and the belief settles metres beside the truth, outside its
    protection level; with the fit the offset is found (half of it at first: the belief followed the IMU part of the
    way) and taken off the readings, and as the belief comes back the refits read the rest; the published offset is
    what was measured (on this circle the belief's lag along the track reads as a degree or two more)."""
    _, h0, p0, _ = replay(8.0, imu_heading_deadband_deg=180.0)  # never corrected: as before the fit
    est, h1, p1, t = replay(8.0)
    assert h0[150:].mean() > 7.0 and p0[150:].mean() > 4.0
    assert h1[150:].mean() < 3.0 and p1[150:].mean() < 0.5 * p0[150:].mean()
    assert t.sensor_fit.imu_found and est[-1].imu_heading_offset_deg == pytest.approx(8.0, abs=3.0)
    assert t.sensor_fit.imu_correction_deg == est[-1].imu_heading_offset_deg
    first = next(k for k, e in enumerate(est) if not math.isnan(e.imu_heading_offset_deg))
    assert 30 < first < 60  # a 100 m stretch (40 frames) converged with a protection level <= 5 m first
    t.reset()  # the robot's IMU did not change with a new belief: the correction stays
    assert t.sensor_fit.imu_correction_deg == est[-1].imu_heading_offset_deg


def test_an_imu_within_the_deadband_moves_the_belief_exactly_as_without_the_fit():
    a, _, _, _ = replay(1.0, imu_heading_deadband_deg=180.0)
    b, _, _, t = replay(1.0)
    assert [(e.east_m, e.north_m, e.heading_deg) for e in a] == [(e.east_m, e.north_m, e.heading_deg) for e in b]
    assert not t.sensor_fit.imu_found and 0.0 < b[-1].imu_heading_offset_deg < 3.0


def test_taking_the_found_offset_off_the_readings_is_no_turn_and_no_kidnap():
    """The correction moves the IMU's heading by the offset found at once; with a reset threshold that small jump
    passes (1 sigma here), the belief takes the corrected heading - and is not declared lost, as a heading jump the
    odometry did not see would declare it (heading_reset_lost)."""
    est, h, _, t = replay(8.0, heading_reset_sigmas=1.0)
    assert t.sensor_fit.imu_found and not any(e.lost for e in est)
    assert h[150:].mean() < 3.0


def test_an_imu_with_its_offset_taken_off_still_tells_a_kidnap():
    """Once corrected, the IMU's offset is refitted every frame (a change of hundredths of a degree): a turn the
    odometry did not see is still a turn - the belief is lost on that reading."""
    est, _, _, t = replay(8.0)
    assert t.sensor_fit.imu_found and est[-1].converged and not t.lost
    before = t.sensor_fit.imu_correction_deg
    t.sensor_fit.imu_offset_deg = before + 0.02  # the next refit's change, as on every frame of the replays
    assert t.sensor_fit.imu_correction_deg != before
    t.heading(compass(drive(300, start=(140.0, 60.0), speed=5.0, yaw_rate=math.radians(7.0))[1][-1]) + 8.0 + 90.0,
              1.0)
    assert t.lost
