"""The node's number parameters: NaN, infinity and impossible angles or positions are refused at start-up with one
line naming the parameter (an ``altitude_m: .nan`` made every published pose (nan, nan, nan); a yaw offset of NaN or
1e308 deg made every frame bad input). Infinity is a value only where it means something (INFINITY_MEANS)."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.ros.params import INFINITY_MEANS, PARAMETERS, NodeSettings

REPO = Path(__file__).resolve().parents[1]
NUMBERS = [p for p in PARAMETERS if isinstance(p.default, (int, float)) and not isinstance(p.default, bool)]
NUMBER_LISTS = [p for p in PARAMETERS if isinstance(p.default, list) and p.default
                and all(isinstance(x, float) for x in p.default)]


def _refused(params: dict, text: str) -> str:
    with pytest.raises(UnifyGeoError, match=text) as info:
        NodeSettings.from_params(params)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("name", [p.name for p in NUMBERS])
def test_nan_is_refused_for_every_number_parameter(name):
    message = _refused({name: math.nan}, f"parameter {name}: must be a finite number")
    assert message.endswith("got nan")


@pytest.mark.parametrize("name", [p.name for p in NUMBERS if p.name not in INFINITY_MEANS])
@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_infinity_is_refused_where_it_means_nothing(name, value):
    _refused({name: value}, f"parameter {name}: must be a finite number, got {value}")


def test_infinity_is_a_value_where_documented():
    assert set(INFINITY_MEANS) == {"max_protection_level_m", "tracking.odometry_timeout_s"}
    s = NodeSettings.from_params({"max_protection_level_m": math.inf, "tracking.odometry_timeout_s": math.inf})
    assert s.max_protection_level_m == math.inf and s.tracking.odometry_timeout_s == math.inf
    _refused({"max_protection_level_m": math.nan}, r"max_protection_level_m: must be a finite number \(or .inf")
    _refused({"max_protection_level_m": -math.inf}, "max_protection_level_m: must be a positive number")


@pytest.mark.parametrize("name", [p.name for p in NUMBER_LISTS])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_elements_of_number_lists_are_refused(name, value):
    values = [0.0, 0.0, value, 0.0]
    _refused({name: values, "input_mode": "cameras"}, f"parameter {name}: must be a list of finite numbers")
    _refused({name: values}, f"parameter {name}: must be a list of finite numbers")  # also where unused


def test_a_value_that_is_no_number_is_refused_with_one_line():
    _refused({"altitude_m": "high"}, "parameter altitude_m: must be a finite number, got 'high'")
    _refused({"cameras.yaw_deg": [0.0, "left"]}, "parameter cameras.yaw_deg: must be a list of finite numbers")
    _refused({"cpu_threads": math.nan}, "parameter cpu_threads: must be a finite number")  # was int(nan): ValueError


def test_yaws_beyond_one_turn_and_pitches_beyond_vertical_are_refused():
    _refused({"imu.panorama_yaw_offset_deg": 1e308}, r"imu.panorama_yaw_offset_deg: angles must be within "
                                                      r"\[-360, 360\] deg, got 1e\+308")
    _refused({"imu.panorama_yaw_offset_deg": -361.0}, "imu.panorama_yaw_offset_deg")
    _refused({"cameras.yaw_deg": [0.0, 90.0, 180.0, 450.0]}, r"cameras.yaw_deg: angles must be within \[-360, 360\]")
    _refused({"cameras.pitch_deg": [0.0, 0.0, 0.0, 95.0]}, r"cameras.pitch_deg: angles must be within \[-90, 90\]")
    s = NodeSettings.from_params({"imu.panorama_yaw_offset_deg": -360.0, "cameras.yaw_deg": [0.0, 90.0, 270.0, -90.0],
                                  "cameras.pitch_deg": [-90.0, 0.0, 10.0, 90.0], "input_mode": "cameras"})
    assert s.imu_panorama_yaw_offset_deg == -360.0 and s.camera_yaw_deg == (0.0, 90.0, 270.0, -90.0)  # not wrapped


@pytest.mark.parametrize("lat, lon", [(91.0, 8.0), (90.0, 8.0), (-95.0, 8.0), (47.0, 181.0), (47.0, -200.0)])
@pytest.mark.parametrize("from_index", [True, False])
def test_a_map_origin_that_is_no_position_is_refused(lat, lon, from_index):
    _refused({"map_origin.from_index": from_index, "map_origin.lat_deg": lat, "map_origin.lon_deg": lon},
             r"map_origin.lat_deg/lon_deg: .* is not a position")


def test_infinite_map_origin_longitude_is_refused():
    _refused({"map_origin.from_index": False, "map_origin.lat_deg": 47.0, "map_origin.lon_deg": math.inf},
             "parameter map_origin.lon_deg: must be a finite number, got inf")


def test_the_defaults_and_ordinary_values_still_pass():
    s = NodeSettings.from_params({"altitude_m": -12.5, "map_origin.from_index": False, "map_origin.lat_deg": -33.9,
                                  "map_origin.lon_deg": 180.0, "imu.panorama_yaw_offset_deg": 90.0})
    assert (s.altitude_m, s.map_origin_lat_deg, s.map_origin_lon_deg) == (-12.5, -33.9, 180.0)
    assert NodeSettings.from_params({}) == NodeSettings.from_params({p.name: p.default for p in PARAMETERS})


def test_the_node_ends_with_one_line_for_a_nan_altitude():
    """The bar: an impossible parameter ends the process with one line (before any model or index is loaded)."""
    from ros_helpers import ros_skip_reason, ros_subprocess_env, unique_domain_id

    if ros_skip_reason():
        pytest.skip(ros_skip_reason())
    env = ros_subprocess_env(domain_id=unique_domain_id())
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])  # this tree's package
    p = subprocess.run([sys.executable, "-m", "unifygeo_ros.ros.node", "--ros-args", "-p", "altitude_m:=.nan"],
                       capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 1, p.stderr
    assert lines == ["[localizer_node] error: parameter altitude_m: must be a finite number, got nan"], p.stderr
