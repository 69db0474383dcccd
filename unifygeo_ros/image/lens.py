"""Lens distortion of a pinhole camera, as ``sensor_msgs/CameraInfo`` states it. ROS-free.

ROS names three models (``sensor_msgs/distortion_models.hpp``); each maps a ray's normalised coordinates
``(x, y) = (X / Z, Y / Z)`` in the optical frame (x right, y down, z forward) to the distorted ones, which ``K``
turns into pixels (``u = fx x' + s y' + cx``, ``v = fy y' + cy``):

* ``plumb_bob`` (OpenCV's, ``D = k1 k2 p1 p2 k3``; 4 coefficients mean ``k3 = 0``) and ``rational_polynomial``
  (``D = k1 k2 p1 p2 k3 k4 k5 k6``): with ``r^2 = x^2 + y^2``, radial ``(1 + k1 r^2 + k2 r^4 + k3 r^6) /
  (1 + k4 r^2 + k5 r^4 + k6 r^6)``, ``x' = x radial + 2 p1 x y + p2 (r^2 + 2 x^2)``, ``y' = y radial + p1 (r^2 +
  2 y^2) + 2 p2 x y``.
* ``equidistant`` (OpenCV's fisheye, Kannala-Brandt, ``D = k1 k2 k3 k4``): ``theta = atan(r)``, ``theta_d = theta
  (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8)``, ``(x', y') = (theta_d / r) (x, y)``.

A polynomial fitted to a lens folds back beyond the lens's field of view (the distorted radius decreases again),
where a ray far outside the image would land inside it: rays beyond the first radius at which the distorted radius
stops growing are not projected (:func:`project`). For the two polynomial models an all-zero ``D`` (or an empty
one, whatever the model's name) is no distortion; ``equidistant`` with zeros is still a fisheye (``theta_d = theta``,
not the pinhole's ``tan(theta)``). An unknown model with a non-zero ``D`` is refused, as is a non-finite
coefficient.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from unifygeo_ros.errors import ImageError

#: model name -> (fewest, most) coefficients accepted (missing trailing ones are zero)
MODELS = {"plumb_bob": (4, 5), "rational_polynomial": (5, 8), "equidistant": (4, 4)}
_RADIUS_CAP = 20.0  #: largest normalised radius considered (87 deg off the axis)


def check_distortion(name: str, model: str, d) -> tuple[str, tuple]:
    """``(model, D)`` as a camera keeps them: ``("", ())`` without distortion (an empty ``D``; all zeros but for
    ``equidistant``), else the model and its full coefficient tuple (zero-padded); :class:`ImageError` (one line) for
    what cannot be used."""
    coeffs = tuple(float(x) for x in (d if d is not None else ()))
    if not all(math.isfinite(c) for c in coeffs):
        raise ImageError(f"camera {name!r}: non-finite distortion coefficients D={list(coeffs)}")
    model = str(model or "")
    if not any(coeffs) and not (model == "equidistant" and coeffs):
        return "", ()
    if model not in MODELS:
        raise ImageError(f"camera {name!r}: distortion model {model!r} with D={list(coeffs)} is not supported "
                         f"({', '.join(MODELS)}); feed rectified images (image_rect) with cameras.rectified true")
    lo, hi = MODELS[model]
    if len(coeffs) > hi and not any(coeffs[hi:]):  # zero-padded (some drivers send 8 for plumb_bob)
        coeffs = coeffs[:hi]
    if not lo <= len(coeffs) <= hi:
        raise ImageError(f"camera {name!r}: {model} needs {lo}" + (f"-{hi}" if hi > lo else "")
                         + f" coefficients, CameraInfo D has {len(coeffs)}")
    return model, coeffs + (0.0,) * (hi - len(coeffs))


def parse_distortion(text: str | None, what: str = "--distortion") -> tuple[str, tuple]:
    """``MODEL:c1,c2,...`` (a CameraInfo distortion model and its D: ``plumb_bob:-0.3,0.1,0,0,0``,
    ``equidistant:0.05,-0.01,0,0``) -> (model, D) as a camera keeps them (:func:`check_distortion`); None or "" ->
    no distortion. ``bag synth --distortion``, ``localize --distortion``."""
    if not text:
        return "", ()
    model, sep, coeffs = str(text).partition(":")
    try:
        d = tuple(float(c) for c in coeffs.split(",")) if sep and coeffs.strip() else ()
    except ValueError:
        d = ()
    if not sep or not d:
        raise ImageError(f"{what} must be MODEL:c1,c2,... (e.g. plumb_bob:-0.3,0.1,0,0,0), got {text!r}")
    return check_distortion(what, model.strip(), d)


def _radial_scale(model: str, d: tuple, r2: np.ndarray) -> np.ndarray:
    """The distorted over the undistorted radius at the squared normalised radius ``r2`` (the radial terms of the
    module docstring; 1 on the axis)."""
    if model == "equidistant":
        r = np.sqrt(r2)
        th = np.arctan(r)
        t2 = th * th
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(r > 1e-12, th * (1 + t2 * (d[0] + t2 * (d[1] + t2 * (d[2] + t2 * d[3]))))
                            / np.maximum(r, 1e-12), 1.0)
    k1, k2, _, _, k3, k4, k5, k6 = d + (0.0,) * (8 - len(d))
    return (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))


def max_radius(model: str, d: tuple) -> float:
    """The normalised radius up to which the model's distorted radius grows (where the polynomial stays the lens's),
    at most :data:`_RADIUS_CAP`; infinite without distortion."""
    if not model:
        return math.inf
    r = np.linspace(0.0, _RADIUS_CAP, 8001)
    with np.errstate(divide="ignore", invalid="ignore"):
        rd = r * _radial_scale(model, d, r * r)
    bad = np.flatnonzero(~(np.diff(rd) > 0) | ~np.isfinite(rd[1:]))
    return float(r[bad[0]]) if bad.size else _RADIUS_CAP


def distort(model: str, d: tuple, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distorted normalised coordinates of the undistorted ``(x, y)`` (module docstring)."""
    if not model:
        return x, y
    r2 = x * x + y * y
    radial = _radial_scale(model, d, r2)
    if model == "equidistant":
        return x * radial, y * radial
    p1, p2 = d[2], d[3]
    return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)


def project(k: np.ndarray, model: str, d: tuple, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel ``(u, v)`` of optical-frame rays ``xyz`` (..., 3) and whether each is one the lens images (in front
    of the camera, within :func:`max_radius`); ``u``, ``v`` are meaningless where it is not."""
    z = xyz[..., 2]
    front = z > 1e-6
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(front, xyz[..., 0] / np.where(front, z, 1.0), 0.0)
        y = np.where(front, xyz[..., 1] / np.where(front, z, 1.0), 0.0)
    ok = front & (np.hypot(x, y) <= max_radius(model, d))
    xd, yd = distort(model, d, x, y)
    return k[0, 0] * xd + k[0, 1] * yd + k[0, 2], k[1, 1] * yd + k[1, 2], ok


def optical_rays(k: np.ndarray, model: str, d: tuple, width: int, height: int) -> np.ndarray:
    """(H, W, 3) optical-frame direction ``(x, y, 1)`` (not normalised) of every pixel centre: ``K^-1 (u, v, 1)``,
    undistorted (OpenCV's iterative inverse of the model) when the camera has distortion."""
    uu, vv = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    rays = np.stack([uu, vv, np.ones_like(uu)], -1) @ np.linalg.inv(k).T
    if not model:
        return rays
    pts = np.stack([uu, vv], -1).reshape(-1, 1, 2)
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    if model == "equidistant":
        und = cv2.fisheye.undistortPoints(pts, k, np.asarray(d, np.float64), criteria=crit)
    else:
        iterate = getattr(cv2, "undistortPointsIter", None)  # OpenCV 4; OpenCV 5's undistortPoints takes criteria
        und = (iterate(pts, k, np.asarray(d, np.float64), None, None, crit) if iterate is not None else
               cv2.undistortPoints(pts, k, np.asarray(d, np.float64), None, None, None, crit))
    x, y = _refine(model, d, und[:, 0, 0].copy(), und[:, 0, 1].copy(), *np.linalg.solve(
        k, np.stack([uu.reshape(-1), vv.reshape(-1), np.ones(uu.size)]))[:2])
    rays[..., 0], rays[..., 1] = x.reshape(height, width), y.reshape(height, width)
    return rays


def _refine(model: str, d: tuple, x: np.ndarray, y: np.ndarray, xd: np.ndarray, yd: np.ndarray,
            steps: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Newton steps on ``distort(x, y) = (xd, yd)`` from OpenCV's estimate (its fixed-point iteration stops a few
    hundredths of a pixel short near the edge of a strong lens), so that :func:`project` inverts these rays."""
    h = 1e-7
    for _ in range(steps):
        fx, fy = distort(model, d, x, y)
        ax, ay = distort(model, d, x + h, y)
        bx, by = distort(model, d, x, y + h)
        j11, j21, j12, j22 = (ax - fx) / h, (ay - fy) / h, (bx - fx) / h, (by - fy) / h
        det = j11 * j22 - j12 * j21
        rx, ry = xd - fx, yd - fy
        ok = np.abs(det) > 1e-12
        x = np.where(ok, x + (j22 * rx - j12 * ry) / np.where(ok, det, 1.0), x)
        y = np.where(ok, y + (j11 * ry - j21 * rx) / np.where(ok, det, 1.0), y)
    return x, y
