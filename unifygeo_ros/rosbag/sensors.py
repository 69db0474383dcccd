"""What a robot has besides the camera, for ``unifygeo bag synth``: wheel odometry and an IMU, simulated from the
drive's ground truth with noise models that are small dataclasses and pure functions (numpy ``Generator``s,
deterministic for a seed). The bag writer (:mod:`unifygeo_ros.rosbag.synth`) only serialises the arrays.

Conventions (REP-103, REP-105, REP-145): ENU yaw (0 = east, counter-clockwise), radians in the arrays; ``base_link``
is x forward, y left, z up.

**Wheel odometry** (:class:`WheelOdomNoise`, :func:`simulate_wheel_odometry`), sampled at ``rate_hz``:

* twist in ``base_link``: sample k reports the interval since sample k-1, as encoder ticks counted over a period
  do (:func:`interval_means`: true mean speed ``v`` = distance / dt, true mean yaw rate ``w`` = yaw change / dt;
  sample 0 the instantaneous values): forward speed ``v_meas = v (1 + b_s) + n_v`` with
  ``n_v ~ N(0, (f v)^2 + floor^2)`` (``f = speed_noise_frac``, ``floor = speed_noise_floor_mps``), yaw rate
  ``w_meas = w + b_w + n_w`` with ``n_w ~ N(0, yaw_rate_noise_dps^2)``. ``b_s ~ N(0, speed_scale_bias_frac^2)``
  (tyre radius, load, slip) and ``b_w ~ N(0, yaw_rate_bias_dps^2)`` are constants drawn once per drive. White
  noise is per sample: at a higher rate the integrated drift is smaller (it grows like ``sigma sqrt(dt T)``); the
  biases' drift grows like ``T`` and dominates over minutes, as it does on a real vehicle. Lateral speed is 0
  (the simulated vehicle never slides), reported with variance ``lateral_speed_std_mps^2``. Over an interval in
  which the vehicle stood still (``unifygeo bag synth --stop``) no wheel turned: speed and yaw rate read exactly 0.
* pose in ``odom``: the measured twist integrated from the start (``yaw_k = yaw_{k-1} + w_k dt``, the position
  advances ``v_k dt`` along ``yaw_{k-1} + w_k dt / 2``), so it starts at x = y = yaw = 0 - the odom frame is the
  vehicle's start pose: origin at the true start position, x along the true start heading - and drifts like
  real wheel odometry: heading error accumulates, position error grows with the distance driven. It is
  continuous (REP-105 ``odom``). Noise-free, it follows the truth to decimetres over kilometres.
* covariances: the twist's are the noise model's variances at the measured speed (the sensor knows only that)
  plus the biases' variances (the mean square error of a sample over drives); the pose's is propagated along the
  integration (first order, the two biases as constant extra states with their prior variances, the white noise
  per step), so it is 0 at the start and grows with the drift it describes: NEES ~ 3 over many seeds while the
  heading error stays within ~10 deg (a first-order covariance understates the error beyond that).

**IMU** (:class:`ImuNoise`, :func:`simulate_imu`), frame ``base_link``, sampled at ``rate_hz``:

* orientation: earth-referenced ENU yaw (like a magnetometer-aided AHRS) ``yaw + b(t) + n``, ``n`` white with
  ``yaw_noise_deg``, ``b`` a random walk: ``b(0) ~ N(0, yaw_bias_init_deg^2)``, increments
  ``N(0, yaw_bias_walk_deg_per_sqrt_s^2 dt)``; roll = pitch = 0 (a flat city, no noise) with the variance a real
  AHRS reports, ``tilt_std_deg^2``. Yaw variance (element [8]) = ``yaw_noise^2 + yaw_bias_init^2 +
  yaw_bias_walk^2 t``: the mean square error at time ``t`` since the start (over drives).
* angular velocity: (0, 0, yaw rate) + white noise ``gyro_noise_dps`` on each axis; the yaw rate is the
  interval mean (a rate sensor's decimation filter), so the noise-free gyro integrates to the true yaw.
* linear acceleration (specific force, REP-145: gravity included): (dv/dt, v w, +g) + white noise
  ``accel_noise_mps2`` on each axis; dv/dt the speed change over the interval, v w the centripetal acceleration
  (+y, to the left, in a left turn).

Defaults, and why (1-sigma values):

* wheel speed 2 % of speed + 0.05 m/s floor: wheel-speed odometry is usually quoted at 1-2 % of the distance
  travelled; counting ticks over 50 ms quantises at low speed (the floor).
* speed scale bias 1 %: a 0.3 m tyre 3 mm smaller (pressure, load, wear) is 1 %.
* wheel yaw rate 0.5 deg/s white + 0.05 deg/s bias: yaw rate from wheel-speed differences over a ~1.5 m track
  is noisy (0.01 m/s of difference is already 0.4 deg/s) - the reason a robot fuses a gyro and a heading
  sensor; the bias (a calibration residual) turns the odometry's heading by 3 deg a minute.
* IMU yaw 1 deg white + 1 deg initial bias + 0.05 deg/sqrt(s) bias walk: magnetometer-aided AHRS datasheets
  quote about 1-2 deg RMS heading in a clean magnetic field; the bias part stands for local magnetic disturbance
  and calibration that change slowly (0.4 deg more after a minute, 1.2 deg after ten).
* gyro 0.1 deg/s per sample, accelerometer 0.1 m/s^2: MEMS gyro noise densities are ~0.01 deg/s/sqrt(Hz)
  (~0.07 deg/s over a 50 Hz sample's bandwidth); a car's vibration dominates the accelerometer's own noise.
* tilt variance (0.5 deg)^2: the roll/pitch accuracy such AHRS quote.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from unifygeo_ros.errors import UnifyGeoError

#: variance given to axes a sensor does not measure (z, roll, pitch of a planar odometry; lateral, vertical
#: velocity and roll/pitch rates of its twist): "unknown", as diff_drive_controller-style odometry does
UNMEASURED_VARIANCE = 1e6
GRAVITY_MPS2 = 9.80665
#: child seeds of the sensor seed (np.random.SeedSequence.spawn): odometry, IMU
_ODOM_STREAM, _IMU_STREAM = 0, 1


def _validate_noise(settings, what: str) -> None:
    """A positive ``rate_hz`` and every other field of a noise dataclass finite and >= 0 (one clear error each)."""
    _check(math.isfinite(settings.rate_hz) and settings.rate_hz > 0,
           f"{what} rate must be positive, got {settings.rate_hz}")
    for f in fields(settings):
        v = getattr(settings, f.name)
        _check(math.isfinite(v) and v >= 0, f"{what} {f.name} must be finite and >= 0, got {v}")


@dataclass(frozen=True)
class WheelOdomNoise:
    """Wheel odometry: sample rate and noise (1-sigma values; biases are per-drive constants drawn from N(0, s^2))."""

    rate_hz: float = 20.0
    speed_noise_frac: float = 0.02
    speed_noise_floor_mps: float = 0.05
    yaw_rate_noise_dps: float = 0.5
    speed_scale_bias_frac: float = 0.01
    yaw_rate_bias_dps: float = 0.05
    #: standard deviation reported for twist.linear.y = 0 (not simulated: the vehicle never slides sideways)
    lateral_speed_std_mps: float = 0.05

    def validate(self) -> None:
        _validate_noise(self, "odometry")

    def speed_var(self, speed_mps: np.ndarray) -> np.ndarray:
        """Mean square error (m/s)^2 of a speed sample reading ``speed_mps``: white noise + scale bias."""
        v = np.abs(np.asarray(speed_mps, np.float64))
        return ((self.speed_noise_frac * v) ** 2 + self.speed_noise_floor_mps ** 2
                + (self.speed_scale_bias_frac * v) ** 2)

    @property
    def yaw_rate_var_rps2(self) -> float:
        """Mean square error (rad/s)^2 of a yaw-rate sample: white noise + bias."""
        return math.radians(self.yaw_rate_noise_dps) ** 2 + math.radians(self.yaw_rate_bias_dps) ** 2


@dataclass(frozen=True)
class ImuNoise:
    """IMU: sample rate and noise (1-sigma values)."""

    rate_hz: float = 50.0
    yaw_noise_deg: float = 1.0
    yaw_bias_init_deg: float = 1.0
    yaw_bias_walk_deg_per_sqrt_s: float = 0.05
    gyro_noise_dps: float = 0.1
    accel_noise_mps2: float = 0.1
    tilt_std_deg: float = 0.5

    def validate(self) -> None:
        _validate_noise(self, "IMU")

    def yaw_var_rad2(self, t_s: np.ndarray) -> np.ndarray:
        """Mean square yaw error (rad^2) at ``t_s`` seconds since the start: white + initial bias + walk."""
        return (math.radians(self.yaw_noise_deg) ** 2 + math.radians(self.yaw_bias_init_deg) ** 2
                + math.radians(self.yaw_bias_walk_deg_per_sqrt_s) ** 2 * np.asarray(t_s, np.float64))


@dataclass(frozen=True)
class SensorSettings:
    """Both sensors and the seed of their noise (odometry and IMU draw from separate child streams)."""

    odom: WheelOdomNoise = WheelOdomNoise()
    imu: ImuNoise = ImuNoise()
    seed: int = 0

    def validate(self) -> None:
        self.odom.validate()
        self.imu.validate()

    def rngs(self) -> tuple[np.random.Generator, np.random.Generator]:
        """(odometry, IMU) generators: independent, each a function of ``seed`` alone."""
        ss = np.random.SeedSequence(int(self.seed)).spawn(2)
        return np.random.default_rng(ss[_ODOM_STREAM]), np.random.default_rng(ss[_IMU_STREAM])


@dataclass
class OdomSamples:
    """Wheel odometry at ``t_s``: pose in ``odom`` (its origin = the start pose ``origin_en_m``,
    ``origin_yaw_rad`` in ENU), twist in ``base_link``, their covariances."""

    t_s: np.ndarray  # (N,) seconds since the start
    x_m: np.ndarray  # (N,) odom pose
    y_m: np.ndarray
    yaw_rad: np.ndarray  # (N,) odom yaw, continuous (not wrapped)
    speed_mps: np.ndarray  # (N,) measured forward speed (twist.linear.x)
    yaw_rate_rps: np.ndarray  # (N,) measured yaw rate (twist.angular.z)
    pose_cov: np.ndarray  # (N, 3, 3) over (x, y, yaw)
    speed_var: np.ndarray  # (N,) (m/s)^2
    yaw_rate_var: float  # (rad/s)^2
    lateral_speed_var: float  # (m/s)^2 reported for the lateral speed 0 (non-holonomic constraint)
    origin_en_m: np.ndarray  # (2,) ENU of the odom frame's origin (the true start position)
    origin_yaw_rad: float  # ENU yaw of the odom frame's x axis (the true start heading)
    speed_scale_bias: float  # the drive's drawn constants (truth, for tests and analysis)
    yaw_rate_bias_rps: float

    def __len__(self) -> int:
        return len(self.t_s)


@dataclass
class ImuSamples:
    """IMU at ``t_s`` in ``base_link``: ENU yaw, angular velocity, specific force, their variances."""

    t_s: np.ndarray  # (N,)
    yaw_rad: np.ndarray  # (N,) measured ENU yaw, wrapped to [-pi, pi)
    yaw_var: np.ndarray  # (N,) rad^2
    tilt_var: float  # roll / pitch variance, rad^2
    gyro_rps: np.ndarray  # (N, 3)
    gyro_var: float  # (rad/s)^2 per axis
    accel_mps2: np.ndarray  # (N, 3)
    accel_var: float  # (m/s^2)^2 per axis
    yaw_bias_rad: np.ndarray  # (N,) the drawn bias (truth, for tests and analysis)

    def __len__(self) -> int:
        return len(self.t_s)


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise UnifyGeoError(msg)


def sample_times(rate_hz: float, end_s: float) -> np.ndarray:
    """``k / rate_hz`` for k = 0, 1, ... up to and including ``end_s`` (1e-9 tolerance)."""
    n = int(math.floor(end_s * rate_hz + 1e-9)) + 1
    return np.arange(n, dtype=np.float64) / rate_hz


def enu_yaw_rad(heading_deg: np.ndarray) -> np.ndarray:
    """Compass heading samples (0 = north, clockwise) -> continuous (unwrapped) ENU yaw in radians (REP-103)."""
    return np.unwrap(np.radians(90.0 - np.asarray(heading_deg, np.float64)))


# --------------------------------------------------------------------------------------------- odometry
def interval_means(t_s: np.ndarray, en_m: np.ndarray, heading_deg: np.ndarray, speed_mps: np.ndarray,
                   yaw_rate_dps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The true (forward speed m/s, ENU yaw rate rad/s) a sample at ``t_s[k]`` reports: the means over the
    interval since the previous sample (distance between the two positions / dt, yaw change / dt), as encoder
    ticks counted over a period and a rate sensor's decimation filter give them; sample 0 (no interval yet)
    the instantaneous ``speed_mps[0]``, ``yaw_rate_dps[0]``. Integrating the means over the intervals
    reproduces the true yaw exactly and the positions up to the chord / heading mismatch of the path."""
    t = np.asarray(t_s, np.float64)
    en = np.asarray(en_m, np.float64).reshape(-1, 2)
    dt = np.diff(t)
    v = np.concatenate([np.asarray(speed_mps, np.float64)[:1], np.hypot(*np.diff(en, axis=0).T) / dt])
    w = np.concatenate([np.radians(np.asarray(yaw_rate_dps, np.float64))[:1],
                        np.diff(enu_yaw_rad(heading_deg)) / dt])
    return v, w


def simulate_wheel_odometry(t_s: np.ndarray, en_m: np.ndarray, heading_deg: np.ndarray, speed_mps: np.ndarray,
                            yaw_rate_dps: np.ndarray, noise: WheelOdomNoise,
                            rng: np.random.Generator) -> OdomSamples:
    """Noisy twist and the drifting pose integrated from it, for the true series at ``t_s`` as
    :meth:`Drive.at` gives them (ENU positions (N, 2), compass heading, speed, ENU yaw rate in deg/s).

    Sample k reports the interval means of :func:`interval_means` plus noise; the pose integrates them:
    ``yaw_k = yaw_{k-1} + w_k dt``, the position advances ``v_k dt`` along ``yaw_{k-1} + w_k dt / 2``."""
    noise.validate()
    t = np.asarray(t_s, np.float64)
    n = len(t)
    v_true, w_true = interval_means(t, en_m, heading_deg, speed_mps, yaw_rate_dps)
    z_bias = rng.standard_normal(2)  # drawn first and always: the white noise does not depend on the biases' sizes
    b_s = float(noise.speed_scale_bias_frac * z_bias[0])
    b_w = float(math.radians(noise.yaw_rate_bias_dps) * z_bias[1])
    sigma_v = np.sqrt((noise.speed_noise_frac * v_true) ** 2 + noise.speed_noise_floor_mps ** 2)
    v = v_true * (1.0 + b_s) + sigma_v * rng.standard_normal(n)
    w = w_true + b_w + math.radians(noise.yaw_rate_noise_dps) * rng.standard_normal(n)
    standing = (v_true == 0.0) & (w_true == 0.0)  # no wheel turned: no tick counted, no noise, no bias
    v[standing], w[standing] = 0.0, 0.0

    dt = np.diff(t)
    yaw = np.concatenate([[0.0], np.cumsum(w[1:] * dt)])
    yaw_mid = yaw[:-1] + 0.5 * w[1:] * dt
    x = np.concatenate([[0.0], np.cumsum(v[1:] * dt * np.cos(yaw_mid))])
    y = np.concatenate([[0.0], np.cumsum(v[1:] * dt * np.sin(yaw_mid))])

    white_speed_var = (noise.speed_noise_frac * v[1:]) ** 2 + noise.speed_noise_floor_mps ** 2
    pose_cov = _propagate_pose_cov(dt, v[1:], yaw_mid, white_speed_var, math.radians(noise.yaw_rate_noise_dps) ** 2,
                                   noise.speed_scale_bias_frac ** 2, math.radians(noise.yaw_rate_bias_dps) ** 2)
    yaw0 = float(enu_yaw_rad(np.asarray(heading_deg, np.float64)[:1])[0]) if n else 0.0
    origin = np.asarray(en_m, np.float64).reshape(-1, 2)[0].copy() if n else np.zeros(2)
    return OdomSamples(t, x, y, yaw, v, w, pose_cov, noise.speed_var(v), noise.yaw_rate_var_rps2,
                       noise.lateral_speed_std_mps ** 2, origin, yaw0, b_s, b_w)


def _propagate_pose_cov(dt: np.ndarray, v: np.ndarray, yaw_mid: np.ndarray, white_speed_var: np.ndarray,
                        white_yaw_rate_var: float, scale_bias_var: float, yaw_rate_bias_var: float) -> np.ndarray:
    """(N, 3, 3) covariance of the integrated (x, y, yaw), first order, with the speed scale and yaw-rate biases
    as constant extra states (their prior variances given); 0 at the start. ``v``, ``yaw_mid`` and
    ``white_speed_var`` are per interval (the measured speed, the mid-interval yaw, the white speed noise)."""
    n = len(dt) + 1
    out = np.zeros((n, 3, 3))
    P = np.zeros((5, 5))  # x, y, yaw, speed scale bias, yaw-rate bias
    P[3, 3], P[4, 4] = scale_bias_var, yaw_rate_bias_var
    F = np.eye(5)
    G = np.zeros((5, 2))
    for k in range(n - 1):
        c, s, d = math.cos(yaw_mid[k]), math.sin(yaw_mid[k]), dt[k]
        vd = v[k] * d
        # d(x, y) / d(yaw_{k-1}, scale bias, yaw-rate bias); the yaw rate turns the step by half its increment
        F[0, 2], F[1, 2], F[0, 3], F[1, 3] = -vd * s, vd * c, vd * c, vd * s
        F[0, 4], F[1, 4], F[2, 4] = -vd * s * d / 2, vd * c * d / 2, d
        G[0, 0], G[1, 0], G[0, 1], G[1, 1], G[2, 1] = d * c, d * s, -vd * s * d / 2, vd * c * d / 2, d
        P = F @ P @ F.T + (G * np.array([white_speed_var[k], white_yaw_rate_var])) @ G.T
        P = 0.5 * (P + P.T)  # exactly symmetric in the messages
        out[k + 1] = P[:3, :3]
    return out


def pose_cov_6x6(cov3: np.ndarray) -> np.ndarray:
    """A planar (x, y, yaw) covariance -> the row-major 36 values of a ROS pose covariance (x, y, z, rot x,
    rot y, rot z); z, roll, pitch unmeasured (:data:`UNMEASURED_VARIANCE`)."""
    c = np.diag([0.0, 0.0, UNMEASURED_VARIANCE, UNMEASURED_VARIANCE, UNMEASURED_VARIANCE, 0.0])
    idx = np.array([0, 1, 5])
    c[np.ix_(idx, idx)] = cov3
    return c.reshape(-1)


def twist_cov_6x6(speed_var: float, yaw_rate_var: float, lateral_var: float) -> np.ndarray:
    """Row-major 36 values of a ROS twist covariance in ``base_link`` (vx, vy, vz, wx, wy, wz): forward speed and
    yaw rate measured, the lateral speed 0 by the non-holonomic constraint (``lateral_var``), vz, wx, wy
    unmeasured."""
    return np.diag([speed_var, lateral_var, UNMEASURED_VARIANCE, UNMEASURED_VARIANCE, UNMEASURED_VARIANCE,
                    yaw_rate_var]).reshape(-1)


def true_pose_in_odom(en_m: np.ndarray, heading_deg: np.ndarray, origin_en_m: np.ndarray,
                      origin_yaw_rad: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The true (x, y, continuous yaw) in an odom frame whose origin is ``origin_en_m`` with x along
    ``origin_yaw_rad`` (ENU): what drift-free odometry would read."""
    d = np.asarray(en_m, np.float64) - np.asarray(origin_en_m, np.float64)
    c, s = math.cos(origin_yaw_rad), math.sin(origin_yaw_rad)
    yaw = enu_yaw_rad(heading_deg) - origin_yaw_rad
    yaw = yaw - 2 * math.pi * np.round(yaw[0] / (2 * math.pi)) if len(yaw) else yaw
    return c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], yaw


# -------------------------------------------------------------------------------------------------- IMU
def simulate_imu(t_s: np.ndarray, en_m: np.ndarray, heading_deg: np.ndarray, speed_mps: np.ndarray,
                 yaw_rate_dps: np.ndarray, noise: ImuNoise, rng: np.random.Generator,
                 earth_heading_deg: np.ndarray | None = None) -> ImuSamples:
    """Noisy ENU yaw, angular velocity and specific force for the true series at ``t_s`` as :meth:`Drive.at`
    gives them. Yaw is the instantaneous one; the rates are interval means (:func:`interval_means`; the
    acceleration the speed change over the interval), so the noise-free gyro integrates to the true yaw.
    ``earth_heading_deg``: the compass heading the orientation reports, where it is not ``heading_deg`` (after a
    kidnap the series is the motion the vehicle feels, the orientation the true heading)."""
    noise.validate()
    t = np.asarray(t_s, np.float64)
    n = len(t)
    v_inst = np.asarray(speed_mps, np.float64)
    _, w = interval_means(t, en_m, heading_deg, speed_mps, yaw_rate_dps)
    walk = math.radians(noise.yaw_bias_walk_deg_per_sqrt_s) * np.sqrt(np.diff(t)) * rng.standard_normal(max(n - 1, 0))
    bias = math.radians(noise.yaw_bias_init_deg) * rng.standard_normal() + np.concatenate([[0.0], np.cumsum(walk)])
    yaw_true = enu_yaw_rad(heading_deg if earth_heading_deg is None else earth_heading_deg)
    yaw = yaw_true + bias[:n] + math.radians(noise.yaw_noise_deg) * rng.standard_normal(n)
    yaw = (yaw + math.pi) % (2 * math.pi) - math.pi
    gyro = np.zeros((n, 3))
    gyro[:, 2] = w
    gyro += math.radians(noise.gyro_noise_dps) * rng.standard_normal((n, 3))
    accel = np.zeros((n, 3))
    if n > 1:
        dv = np.diff(v_inst) / np.diff(t)
        accel[:, 0] = np.concatenate([dv[:1], dv])  # sample 0: the first interval's
    accel[:, 1] = v_inst * w  # centripetal: to the left (+y) in a left (counter-clockwise) turn
    accel[:, 2] = GRAVITY_MPS2  # REP-145: gravity included, +z up at rest
    accel += noise.accel_noise_mps2 * rng.standard_normal((n, 3))
    return ImuSamples(t, yaw, noise.yaw_var_rad2(t), math.radians(noise.tilt_std_deg) ** 2, gyro,
                      math.radians(noise.gyro_noise_dps) ** 2, accel, noise.accel_noise_mps2 ** 2, bias[:n])


def imu_orientation_cov(yaw_var: float, tilt_var: float) -> np.ndarray:
    """Row-major 3x3 orientation covariance about fixed axes (roll, pitch, yaw): yaw variance in element [8]."""
    return np.diag([tilt_var, tilt_var, yaw_var]).reshape(-1)


# -------------------------------------------------------------------------------------------- the drive
@dataclass
class SensorSamples:
    odom: OdomSamples
    imu: ImuSamples


def simulate_sensors(drive, end_s: float, settings: SensorSettings) -> SensorSamples:
    """Both sensors over ``[0, end_s]`` of ``drive`` (a :class:`unifygeo_ros.rosbag.drive.Drive` or
    :class:`unifygeo_ros.rosbag.drive_plan.KidnappedDrive`), each at its rate, from ``settings.seed``: the
    odometry and the IMU's rates from the motion the vehicle feels (``drive.felt_at``), the IMU's orientation from
    the true heading (``drive.at``)."""
    settings.validate()
    rng_odom, rng_imu = settings.rngs()
    t_o = sample_times(settings.odom.rate_hz, end_s)
    odom = simulate_wheel_odometry(t_o, *drive.felt_at(t_o), settings.odom, rng_odom)
    t_i = sample_times(settings.imu.rate_hz, end_s)
    imu = simulate_imu(t_i, *drive.felt_at(t_i), settings.imu, rng_imu, earth_heading_deg=drive.at(t_i)[1])
    return SensorSamples(odom, imu)
