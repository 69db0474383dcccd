"""The map-frame EKF of ``unifygeo replay --fuse`` (:class:`PlanarFusion`): robot_localization's
``ekf_filter_node_map`` reduced to what the replay fuses, on filterpy.

**Filter** (filterpy's :class:`~filterpy.kalman.ExtendedKalmanFilter`; this module writes only the motion and
measurement models, their Jacobians and the angle residual). State ``(x, y, yaw)`` in the replay's ENU frame
(x east, y north, yaw REP-103: 0 = east), with the wheel odometry's twist ``(vx, vy, vyaw)`` in ``base_link`` as
the *control input* of the prediction. Why not robot_localization's velocity states: in the map filter nothing
but the odometry measures ``vx``/``vy`` (and the IMU only ``vyaw``), so velocity states would just copy the 20 Hz
twist back, through a velocity process noise that is a tuning value; as a control input the twist enters with its
own message covariance - the odometry's stated uncertainty, which is what the replay measures - and the
prediction needs nothing else.

* prediction over ``dt`` (unicycle, mid-point heading): ``x += (vx c - vy s) dt``, ``y += (vx s + vy c) dt``,
  ``yaw += vyaw dt`` with ``c, s = cos, sin(yaw + vyaw dt / 2)``; ``P = F P F' + G M G' + Q dt`` with ``F``, ``G``
  the Jacobians in state and twist, ``Q`` the yaml's process noise (per second: ``ekf.cpp`` ``predict()`` adds
  ``process_noise_covariance * dt``) and ``M`` the twist's message covariance as white noise of density
  ``M T`` (``T`` the message's interval: a twist sample's error holds over the interval it reports, so an interval
  split into steps by other measurements adds ``M T^2`` in all, as one sample does). Between odometry messages
  the latest twist is held (robot_localization holds its velocity state); an odometry message's own twist is
  used back to the previous event, since it reports the interval that ends at its stamp.
* fix (our published frame): ``z = (east, north)`` with the published 2 x 2 covariance, ``H = [I 0]``; gated like
  robot_localization's ``checkMahalanobisThreshold()``: rejected when ``d^2 = y' S^-1 y >= threshold^2`` with the
  ``S`` of filterpy's update (the update is undone). A rejected fix changes nothing.
* IMU yaw: ``z = yaw`` with ``orientation_covariance[8]``, innovation wrapped to ``[-pi, pi)``; gated only if the
  yaml sets ``imu0_pose_rejection_threshold`` (robot_localization's default: no gate). The IMU frame is taken as
  ``base_link`` (true of the synthetic bags); an IMU mounted rotated needs its yaw offset first.
* zero or negative variances are replaced by 1e-6, as robot_localization does; non-finite messages are skipped.

**Start.** The filter starts at the first accepted fix, exactly as robot_localization's map filter meets it:
state at the map origin with the yaml's initial covariance (x, y 1e8 m^2, yaw pi^2), the fix fused through the
gate, which leaves ``x, y`` at the fix with about its covariance (the latest IMU yaw, if not older than
``history_length``, is fused at once). Before the first fix there is nothing to anchor the odometry in ``map``:
those frames are reported as not fused. Ground truth is never used by the filter.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.geo import wrap_pi
from unifygeo_ros.rosbag.fusion_config import MIN_VARIANCE, EkfParams
from unifygeo_ros.rosbag.fusion_inputs import PositionFix, TwistSample, YawSample


# ----------------------------------------------------------------------------------- models (for filterpy)
def motion_model(x: np.ndarray, u: np.ndarray) -> np.ndarray:
    """State (3, 1) after ``dt`` of twist ``u = (vx, vy, vyaw, dt)`` (mid-point heading; yaw wrapped)."""
    vx, vy, w, dt = (float(v) for v in np.asarray(u).reshape(-1))
    h = float(x[2, 0]) + 0.5 * w * dt
    c, s = math.cos(h), math.sin(h)
    out = x + np.array([[(vx * c - vy * s) * dt], [(vx * s + vy * c) * dt], [w * dt]])
    out[2, 0] = wrap_pi(float(out[2, 0]))
    return out


def motion_jacobians(x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F, G): Jacobians of :func:`motion_model` in the state (3 x 3) and in the twist (vx, vy, vyaw) (3 x 3)."""
    vx, vy, w, dt = (float(v) for v in np.asarray(u).reshape(-1))
    h = float(x[2, 0]) + 0.5 * w * dt
    c, s = math.cos(h), math.sin(h)
    dx_dh, dy_dh = -(vx * s + vy * c) * dt, (vx * c - vy * s) * dt
    F = np.array([[1.0, 0.0, dx_dh], [0.0, 1.0, dy_dh], [0.0, 0.0, 1.0]])
    G = np.array([[c * dt, -s * dt, 0.5 * dt * dx_dh], [s * dt, c * dt, 0.5 * dt * dy_dh], [0.0, 0.0, dt]])
    return F, G


def position_hx(x: np.ndarray) -> np.ndarray:
    return x[:2]


def position_jacobian(x: np.ndarray) -> np.ndarray:
    return np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def yaw_hx(x: np.ndarray) -> np.ndarray:
    return x[2:3]


def yaw_jacobian(x: np.ndarray) -> np.ndarray:
    return np.array([[0.0, 0.0, 1.0]])


def yaw_residual(z: np.ndarray, hx: np.ndarray) -> np.ndarray:
    return np.array([[wrap_pi(float(np.asarray(z).reshape(-1)[0]) - float(hx.reshape(-1)[0]))]])


@functools.lru_cache(maxsize=1)
def _ekf_class():
    try:
        from filterpy.kalman import ExtendedKalmanFilter
    except ImportError as exc:
        raise UnifyGeoError("--fuse needs filterpy: pip install filterpy (or the package's [bags] extra)") from exc

    class PlanarEKF(ExtendedKalmanFilter):
        """filterpy's EKF with the unicycle motion model as its state prediction (``u`` = twist and dt)."""

        def predict_x(self, u=0):
            self.x = motion_model(self.x, u)

    return PlanarEKF


# ----------------------------------------------------------------------------------------------- the filter
class PlanarFusion:
    """The map-frame EKF of the module docstring, fed in stamp order by :func:`fuse`."""

    def __init__(self, params: EkfParams, imu_yaw: bool):
        self.params, self.use_imu_yaw = params, bool(imu_yaw)
        self.ekf = None  # filterpy EKF from the first accepted fix on
        self.t_ns: int | None = None  # the filter's time
        self.twist: TwistSample | None = None  # held between odometry messages
        self.twist_interval_s = 0.05
        self.last_yaw: YawSample | None = None
        self.fixes_fused = self.fixes_rejected = self.fixes_before_start = 0
        self.yaws_fused = self.yaws_rejected = 0
        self.jumps: list[tuple[int, float]] = []  # (stamp, displacement by one update), after the first fix

    @property
    def started(self) -> bool:
        return self.ekf is not None

    # -------------------------------------------------------------------------------------------- predict
    def _predict_to(self, t_ns: int, twist: TwistSample | None, interval_s: float) -> None:
        dt = (t_ns - self.t_ns) * 1e-9
        if dt <= 0:
            return
        if twist is None:
            v, var = np.zeros(3), np.zeros(3)
        else:
            on = np.array(self.params.odom_twist, float)
            v, var = twist.v * on, twist.var * on
        u = np.array([v[0], v[1], v[2], dt])
        F, G = motion_jacobians(self.ekf.x, u)
        M = np.diag(var * (max(interval_s, 1e-9) / dt))  # density M T over this step: see the module docstring
        self.ekf.F = F
        self.ekf.Q = G @ M @ G.T + np.diag(self.params.process_noise_per_s) * dt
        self.ekf.predict(u=u)
        self.t_ns = t_ns

    def predict_to(self, t_ns: int) -> None:
        """Predict to ``t_ns`` with the held twist (no-op before the first fix or for a past stamp)."""
        if self.started:
            self._predict_to(t_ns, self.twist, self.twist_interval_s)

    # --------------------------------------------------------------------------------------- measurements
    def odometry(self, s: TwistSample, interval_s: float) -> None:
        """A twist for the interval ending at ``s.t_ns``: predict to it with this twist, then hold it."""
        if self.started:
            self._predict_to(s.t_ns, s, interval_s)
        self.twist, self.twist_interval_s = s, interval_s

    def imu(self, s: YawSample) -> None:
        self.last_yaw = s
        if not (self.started and self.use_imu_yaw):
            return
        self._predict_to(s.t_ns, self.twist, self.twist_interval_s)
        self._update_yaw(s)

    def _update_yaw(self, s: YawSample) -> None:
        ok, _ = self._gated_update(np.array([[s.yaw_rad]]), yaw_jacobian, yaw_hx, np.array([[s.var_rad2]]),
                                   self.params.imu_yaw_rejection_threshold, yaw_residual, s.t_ns)
        if ok:
            self.yaws_fused += 1
        else:
            self.yaws_rejected += 1

    def fix(self, f: PositionFix) -> str:
        """Fuse one accepted fix: ``"started"`` (the first one), ``"fused"``, ``"rejected"`` (by the gate) or
        ``"before_start"`` (a would-be first fix rejected by the gate of the initial covariance)."""
        z = np.array([[f.east_m], [f.north_m]])
        R = 0.5 * (np.asarray(f.cov_m2, float) + np.asarray(f.cov_m2, float).T)
        R = R + np.diag([MIN_VARIANCE if R[i, i] <= 0 else 0.0 for i in range(2)])
        if not self.started:
            ekf = _ekf_class()(dim_x=3, dim_z=2)
            ekf.x = np.zeros((3, 1))  # robot_localization's map filter starts at the map origin ...
            ekf.P = np.diag(self.params.initial_covariance)  # ... with the yaml's initial covariance
            self.ekf, self.t_ns = ekf, f.t_ns
            ok, _ = self._gated_update(z, position_jacobian, position_hx, R, self.params.pose_rejection_threshold,
                                       np.subtract, f.t_ns, record_jump=False)
            if not ok:  # a fix beyond the gate of the initial covariance (~40 km from the origin): not started
                self.ekf, self.t_ns = None, None
                self.fixes_before_start += 1
                return "before_start"
            self.fixes_fused += 1
            y = self.last_yaw
            if self.use_imu_yaw and y is not None and (f.t_ns - y.t_ns) * 1e-9 <= max(self.params.history_length_s,
                                                                                     0.1):
                self._update_yaw(y)
            return "started"
        self._predict_to(f.t_ns, self.twist, self.twist_interval_s)
        ok, _ = self._gated_update(z, position_jacobian, position_hx, R, self.params.pose_rejection_threshold,
                                   np.subtract, f.t_ns)
        if ok:
            self.fixes_fused += 1
            return "fused"
        self.fixes_rejected += 1
        return "rejected"

    def _gated_update(self, z, H, hx, R, threshold: float, residual, t_ns: int,
                      record_jump: bool = True) -> tuple[bool, float]:
        """filterpy's update, undone when its innovation's Mahalanobis distance d has d^2 >= threshold^2
        (robot_localization's ``checkMahalanobisThreshold``). Returns (accepted, d)."""
        ekf = self.ekf
        x0, P0 = ekf.x.copy(), ekf.P.copy()
        ekf.update(z, HJacobian=H, Hx=hx, R=R, residual=residual)
        d = float(ekf.mahalanobis)
        if not (d < threshold):  # NaN rejected too
            ekf.x, ekf.P = x0, P0
            return False, d
        ekf.x[2, 0] = wrap_pi(float(ekf.x[2, 0]))
        ekf.P = 0.5 * (ekf.P + ekf.P.T)
        if record_jump:
            self.jumps.append((int(t_ns), float(np.hypot(*(ekf.x[:2, 0] - x0[:2, 0])))))
        return True, d

    def pose(self) -> tuple[float, float, float, np.ndarray] | None:
        """(east, north, yaw rad, 2 x 2 position covariance), or None before the first fix."""
        if not self.started:
            return None
        x = self.ekf.x[:, 0]
        return float(x[0]), float(x[1]), float(x[2]), self.ekf.P[:2, :2].copy()

