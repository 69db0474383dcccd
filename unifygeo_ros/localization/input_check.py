"""Is this a camera image at all? The out-of-distribution check of the integrity gate.

A network always answers, and on an image unlike anything it was trained on its answer can look confident (a
uniform-noise image scored 0.94 before this check). Two tests, both cheap:

* **image statistics** (:func:`camera_image_problem`), on a 256 x 128 grey/colour thumbnail: a blank or nearly
  uniform image (grey-level standard deviation below :data:`MIN_STD`), noise (correlation of horizontally adjacent
  pixels below :data:`MIN_NEIGHBOUR_CORRELATION`: natural images are smooth at that scale, noise is not), an image
  without colour (mean channel difference below :data:`MIN_CHROMA`: the models are trained on colour, and a
  grayscale copy moved a fix 96 m at score 0.93);
* **the model's own view** (:func:`descriptor_problem`): the query's best global-descriptor cosine against the index
  below the calibration's ``min_descriptor_cosine`` (fitted by ``unifygeo calibrate`` as a low quantile over real
  panoramas): an image the map has nothing like (e.g. half of it corrupted).

Thresholds measured 2026-11-30 on 500 panoramas of 10 benchmark cities and DemoCity (bench_trust.py's cities): real
panoramas have std >= 35, neighbour correlation >= 0.91, chroma >= 4.9; uniform noise -0.01 correlation, a grey copy
chroma 0, a blank image std 0. The thresholds sit far below every real panorama (a real camera's dark or overcast
frame included), so the image check only refuses what is plainly not a scene.
"""
from __future__ import annotations

import cv2
import numpy as np

MIN_STD = 8.0  #: grey levels (0-255) of the thumbnail's standard deviation
MIN_NEIGHBOUR_CORRELATION = 0.5  #: correlation of horizontally adjacent thumbnail pixels
MIN_CHROMA = 1.5  #: mean |R - G| + |G - B| of the image, grey levels
THUMBNAIL_WH = (256, 128)
#: least share of the thumbnail that must be seen (not exactly black): a 60 deg camera alone covers about 8 %
MIN_SEEN_FRACTION = 0.02


def camera_image_problem(rgb: np.ndarray) -> str:
    """"" for an image that looks like a camera's, else a one-line reason (uint8 H x W x 3 RGB, validated).

    Only the **seen** part counts: a pinhole rig stitched onto the panorama (``input_mode: cameras``) leaves the
    columns and rows no camera sees exactly black (0, 0, 0), and statistics over the whole image would count them -
    a single 90 deg camera's colour was diluted four-fold below :data:`MIN_CHROMA`. Thumbnail pixels whose source
    pixels are all seen (grey level above 0: black and the darkest near-black count as unseen) are used; an image
    with none is blank. Cost: OpenCV only (a numpy test of every pixel took 28 ms on a 2048 x 1024 frame)."""
    small = cv2.resize(rgb, THUMBNAIL_WH, interpolation=cv2.INTER_AREA)
    lit = cv2.threshold(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 0, 255, cv2.THRESH_BINARY)[1]  # grey level > 0
    seen = cv2.resize(lit, THUMBNAIL_WH, interpolation=cv2.INTER_AREA) == 255  # every source pixel lit
    if seen.sum() < MIN_SEEN_FRACTION * seen.size:
        return f"the image is blank (under {MIN_SEEN_FRACTION:.0%} of it is other than black)"
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float64)
    std = float(grey[seen].std())
    if std < MIN_STD:
        return f"the image is blank or nearly uniform (grey-level std {std:.1f} < {MIN_STD:g})"
    pair = seen[:, :-1] & seen[:, 1:]
    a, b = grey[:, :-1][pair], grey[:, 1:][pair]
    corr = float(np.corrcoef(a, b)[0, 1]) if a.size > 1 else float("nan")
    if not corr >= MIN_NEIGHBOUR_CORRELATION:
        return (f"the image looks like noise (adjacent-pixel correlation {corr:.2f} < "
                f"{MIN_NEIGHBOUR_CORRELATION:g})")
    x = small[seen].astype(np.int16)
    chroma = float(np.mean(np.abs(x[:, 0] - x[:, 1]) + np.abs(x[:, 1] - x[:, 2])))
    if chroma < MIN_CHROMA:
        return f"the image has no colour (mean channel difference {chroma:.2f} < {MIN_CHROMA:g}); colour is needed"
    return ""


def descriptor_problem(cosine: float, floor: float) -> str:
    """"" when the query's best descriptor cosine reaches the calibrated floor, else a one-line reason."""
    if cosine >= floor:
        return ""
    return f"nothing in the map looks like this image (descriptor cosine {cosine:.3f} < {floor:.3f})"
