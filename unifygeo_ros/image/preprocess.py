"""Image loading and preprocessing: the one path every image takes (training, evaluation, localizer, ROS node).

ROS-free. Images are ``numpy.uint8`` arrays ``H x W x 3`` in **RGB** order; model inputs are ``torch.float32``
tensors ``3 x H x W``, resized with ``cv2.INTER_AREA`` and normalised with the ImageNet mean and std.

Panorama conventions (see :mod:`unifygeo_ros.geo`): equirectangular, W = 2 H, column ``u`` looks at the compass
azimuth ``heading + ((u + 0.5) / W - 0.5) * 360``; rolling right by ``k`` columns changes the heading by
``-k * 360 / W``.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np
import simplejpeg
import torch

from unifygeo_ros import geo
from unifygeo_ros.errors import ImageError
from unifygeo_ros.image import headers

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: An aerial tile may carry a 4th channel: the surface height above ground (nDSM), stored as uint8 in steps of
#: HEIGHT_UNIT_M (0 .. 127.5 m; taller is clipped) and fed to the network as metres / HEIGHT_NORM_M.
HEIGHT_UNIT_M: float = 0.5
HEIGHT_NORM_M: float = 10.0

_JPEG_SOI = headers.JPEG_SOI
_JPEG_EOI = b"\xff\xd9"
#: largest encoded image decoded (pixels): above any panorama camera's frame (8K x 4K = 33 MP); a header announcing
#: more is refused before decoding (decompression bombs)
MAX_DECODE_PIXELS = 50_000_000
#: smallest panorama localized: 4 rows (8 x 4 px; each row then spans 45 deg of elevation); a 2 x 1 image got a fix
MIN_PANORAMA_HEIGHT_PX = 4
_PNG_SIGNATURE = headers.PNG_SIGNATURE
_PNG_IEND = b"IEND"


# ----------------------------------------------------------------------------------------------- decoding
def _check_not_truncated(data: bytes, what: str) -> None:
    """Raise if a JPEG/PNG byte string visibly lacks its end marker (older libjpeg decodes truncated files
    silently, filling the missing part with grey)."""
    tail = data.rstrip(b"\x00 \t\r\n")
    if data.startswith(_JPEG_SOI) and not tail.endswith(_JPEG_EOI):
        raise ImageError(f"{what}: truncated JPEG (no end-of-image marker); the file is incomplete")
    if data.startswith(_PNG_SIGNATURE) and _PNG_IEND not in tail[-16:]:
        raise ImageError(f"{what}: truncated PNG (no IEND chunk); the file is incomplete")


def _check_header(data: bytes, what: str) -> None:
    """Accept only a JPEG or PNG (told by its signature, not by the file name or the message's ``format``) whose
    header announces at most :data:`MAX_DECODE_PIXELS` pixels, before anything is decoded: a 48 KB PNG can
    announce 28000 x 14000 pixels and cost gigabytes to decode (a decompression bomb), and so can the formats
    OpenCV decodes beyond these two (Radiance HDR, PFM, PAM, ...: also float pixels, NaN included). A JPEG/PNG
    whose size cannot be read is refused too, rather than left to the decoder."""
    kind = headers.encoded_format(data)
    if kind is None:
        raise ImageError(f"{what}: cannot decode image ({len(data)} bytes; {headers.describe_other_format(data)}): "
                         "only JPEG and PNG are accepted")
    size = headers.announced_size(data)
    if size is None:
        raise ImageError(f"{what}: cannot decode image ({len(data)} bytes; no readable {kind} header with the image "
                         "size: corrupt or not an image)")
    if size[0] * size[1] > MAX_DECODE_PIXELS:
        raise ImageError(f"{what}: the image announces {size[0]} x {size[1]} pixels, more than the "
                         f"{MAX_DECODE_PIXELS / 1e6:g} MP this decoder accepts (a camera frame this large, or a "
                         "decompression bomb); resize it at the source")


def _decode_jpeg_strict(data: bytes, what: str) -> np.ndarray | None:
    """A JPEG decoded by libjpeg-turbo (simplejpeg) with its warnings treated as errors: a file cut short and
    re-terminated with an end-of-image marker decodes "successfully" in OpenCV and Pillow (the missing part grey,
    libjpeg only warns "Corrupt JPEG data: premature end of data segment") and is refused here. ``None`` when
    libjpeg-turbo cannot decode the file at all (e.g. a CMYK JPEG): OpenCV then tries, with its own errors."""
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError as strict_exc:
        try:
            simplejpeg.decode_jpeg(data, colorspace="RGB", strict=False)
        except ValueError:
            return None  # a fatal error, not a warning: OpenCV decides
        reason = str(strict_exc).strip().rstrip(".") or "libjpeg warning"
        raise ImageError(f"{what}: corrupt JPEG ({reason}); the file is damaged - re-encode or re-record it") from None


def _decode(data: bytes, what: str) -> np.ndarray:
    if len(data) == 0:
        raise ImageError(f"{what}: empty image data (0 bytes)")
    _check_not_truncated(data, what)
    _check_header(data, what)
    if data.startswith(_JPEG_SOI):
        rgb = _decode_jpeg_strict(data, what)
        if rgb is not None:
            return rgb
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error as exc:  # pragma: no cover - depends on the codec build
        raise ImageError(f"{what}: cannot decode image ({exc})") from exc
    if bgr is None:
        raise ImageError(f"{what}: cannot decode image ({len(data)} bytes; corrupt, truncated or not an image)")
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.size == 0:
        raise ImageError(f"{what}: decoded to an unusable array of shape {bgr.shape}")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def decode_image_bytes(data: bytes | bytearray | memoryview, what: str = "image bytes") -> np.ndarray:
    """Decode a compressed image (JPEG or PNG) to ``uint8 H x W x 3`` RGB.

    Grey images are expanded to three channels and an alpha channel is dropped. Raises :class:`ImageError`
    for empty, truncated or undecodable data, another format, and an image of more than :data:`MAX_DECODE_PIXELS`
    pixels (refused from its header, before decoding); ``what`` names the source in the message.
    """
    return _decode(bytes(data), what)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file (JPEG or PNG) to ``uint8 H x W x 3`` RGB; :class:`ImageError` naming the file when it is
    missing, unreadable, empty, truncated, corrupt, in another format or too large (:func:`decode_image_bytes`)."""
    p = Path(path)
    if not p.exists():
        raise ImageError(f"image file not found: {p}")
    if not p.is_file():
        raise ImageError(f"not an image file: {p}")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read image file {p}: {exc}") from exc
    return _decode(data, f"image file {p}")


# --------------------------------------------------------------------------------------------- validation
def validate_image(img: np.ndarray, what: str = "image", channels: tuple[int, ...] = (3,)) -> np.ndarray:
    """Check ``img`` is a non-empty ``H x W x C`` array (C in ``channels``) with finite values; returns it."""
    if not isinstance(img, np.ndarray):
        raise ImageError(f"{what}: expected a numpy array, got {type(img).__name__}")
    if img.ndim != 3:
        raise ImageError(f"{what}: expected H x W x 3, got {img.ndim} dimension(s) {tuple(img.shape)}")
    if img.shape[2] not in channels:
        want = " or ".join(str(c) for c in channels)
        raise ImageError(f"{what}: expected {want} channels, got {img.shape[2]} (shape {tuple(img.shape)})")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ImageError(f"{what}: zero size {tuple(img.shape)}")
    if np.issubdtype(img.dtype, np.floating) and not np.all(np.isfinite(img)):
        raise ImageError(f"{what}: contains NaN or infinite values")
    if not (np.issubdtype(img.dtype, np.floating) or np.issubdtype(img.dtype, np.integer)):
        raise ImageError(f"{what}: unsupported dtype {img.dtype}")
    return img


def validate_panorama(img: np.ndarray, expected_aspect: float = 2.0, tol: float = 0.05) -> np.ndarray:
    """Check ``img`` is a usable equirectangular panorama: ``H x W x 3``, non-empty, finite, and
    ``|W / H - expected_aspect| <= tol * expected_aspect``. Returns ``img`` unchanged."""
    validate_image(img, "panorama")
    h, w = img.shape[:2]
    if h < MIN_PANORAMA_HEIGHT_PX:
        raise ImageError(f"panorama: {w} x {h} pixels is too small to localize (at least {MIN_PANORAMA_HEIGHT_PX} "
                         "rows)")
    aspect = w / h
    if abs(aspect - expected_aspect) > tol * expected_aspect:
        raise ImageError(
            f"panorama: width/height = {w}/{h} = {aspect:.3f}, expected an equirectangular "
            f"{expected_aspect:g}:1 image (tolerance {tol:.0%}); a limited field of view must be padded to "
            "a full panorama and masked (see mask_fov)"
        )
    return img


def validate_aerial(img: np.ndarray, tol: float = 0.05) -> np.ndarray:
    """Check ``img`` is a usable (square, north-up) aerial tile, RGB or RGB + packed height
    (:func:`with_height`); returns it unchanged."""
    validate_image(img, "aerial tile", (3, 4))
    h, w = img.shape[:2]
    if abs(w / h - 1.0) > tol:
        raise ImageError(f"aerial tile: expected a square tile, got width x height {w} x {h}")
    return img


# ------------------------------------------------------------------------------------------------ tensors
def resize_image(img: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize ``img`` to ``size_hw = (H, W)`` with ``cv2.INTER_AREA`` (no-op when already that size)."""
    h, w = int(size_hw[0]), int(size_hw[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"size_hw must be positive, got {size_hw}")
    if img.shape[0] == h and img.shape[1] == w:
        return img
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)


def pack_height(height_m: np.ndarray) -> np.ndarray:
    """Surface height above ground (metres, float) -> uint8 in steps of :data:`HEIGHT_UNIT_M` (clipped)."""
    h = np.asarray(height_m, dtype=np.float32)
    if not np.all(np.isfinite(h)):
        raise ImageError("height map: contains NaN or infinite values")
    return np.clip(np.rint(h / HEIGHT_UNIT_M), 0, 255).astype(np.uint8)


def with_height(rgb: np.ndarray, height_m: np.ndarray) -> np.ndarray:
    """An RGB tile plus its surface model -> the ``uint8 H x W x 4`` aerial input of a height-aware model."""
    validate_image(rgb, "aerial tile")
    h = np.asarray(height_m)
    if h.shape != rgb.shape[:2]:
        if h.ndim != 2:
            raise ImageError(f"height map: expected H x W, got {tuple(h.shape)}")
        h = cv2.resize(h.astype(np.float32), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_AREA)
    return np.concatenate([np.asarray(rgb, np.uint8), pack_height(h)[..., None]], axis=-1)


def normalize_to_tensor(img_uint8_rgb: np.ndarray) -> torch.Tensor:
    """``uint8 H x W x 3`` RGB -> ImageNet-normalised ``float32 3 x H x W`` (no resizing); a 4th (packed
    height) channel becomes metres / :data:`HEIGHT_NORM_M`."""
    validate_image(img_uint8_rgb, channels=(3, 4))
    if img_uint8_rgb.dtype != np.uint8:
        raise ImageError(f"image: expected uint8 RGB, got dtype {img_uint8_rgb.dtype}")
    px = np.ascontiguousarray(img_uint8_rgb)
    if not px.flags.writeable:  # e.g. a view of a message buffer; torch wants a writable array
        px = px.copy()
    if px.shape[2] == 3:  # the per-frame path: the same float32 operations as normalize_uint8_tensor, element for
        # element (bit-identical), in place on one H x W x 3 buffer, transposed once at the end (half the time)
        x = torch.from_numpy(px).to(torch.float32)
        x.div_(255.0).sub_(_MEAN_HWC).div_(_STD_HWC)
        return x.permute(2, 0, 1).contiguous()
    t = torch.from_numpy(px).permute(2, 0, 1).to(torch.float32)
    return normalize_uint8_tensor(t.unsqueeze(0))[0].contiguous()


_MEAN_HWC = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)
_STD_HWC = torch.tensor(IMAGENET_STD, dtype=torch.float32)


def normalize_uint8_tensor(x: torch.Tensor) -> torch.Tensor:
    """Float ``(B, C, H, W)`` with values 0..255 (C = 3 RGB, or 4 with packed height) -> network input."""
    c = x.shape[1]
    if c not in (3, 4):
        raise ImageError(f"image: expected 3 or 4 channels, got {c}")
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    rgb = (x[:, :3] / 255.0 - mean) / std
    if c == 3:
        return rgb
    return torch.cat([rgb, x[:, 3:] * (HEIGHT_UNIT_M / HEIGHT_NORM_M)], dim=1)


def to_tensor(img_uint8_rgb: np.ndarray, size_hw: tuple[int, int]) -> torch.Tensor:
    """``uint8 H x W x 3`` RGB -> ``float32 3 x size_hw``: resized (``cv2.INTER_AREA``), ImageNet-normalised."""
    validate_image(img_uint8_rgb, channels=(3, 4))
    if img_uint8_rgb.dtype != np.uint8:
        raise ImageError(f"image: expected uint8 RGB, got dtype {img_uint8_rgb.dtype}")
    return normalize_to_tensor(resize_image(img_uint8_rgb, size_hw))


def ground_tensor(img: np.ndarray, size_hw: tuple[int, int], expected_aspect: float = 2.0,
                  tol: float = 0.05) -> torch.Tensor:
    """Validate a panorama and turn it into the ground-branch input tensor ``3 x H x W``."""
    validate_panorama(img, expected_aspect, tol)
    return to_tensor(img, size_hw)


def aerial_tensor(img: np.ndarray, size_px: int, channels: int | None = None) -> torch.Tensor:
    """Validate an aerial tile and turn it into the aerial-branch input tensor ``C x size_px x size_px``.

    ``channels``: what the model takes (3 = RGB, 4 = RGB + surface height); a mismatch is an :class:`ImageError`
    that says what is missing."""
    validate_aerial(img)
    if channels is not None and img.shape[2] != channels:
        if channels == 4:
            raise ImageError("aerial tile: this model takes RGB + surface height (model.aerial_height); the tile "
                             "has no height channel - supply the surface model (satellite_height/ or --dsm)")
        raise ImageError(f"aerial tile: this model takes {channels} channels, the tile has {img.shape[2]}")
    return to_tensor(img, (int(size_px), int(size_px)))


def denormalize(t: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`normalize_to_tensor` for plotting: ``3 x H x W`` -> ``uint8 H x W x 3`` RGB,
    ``B x 3 x H x W`` -> ``uint8 B x H x W x 3``."""
    if t.ndim not in (3, 4) or t.shape[-3] != 3:
        raise ValueError(f"expected a 3 x H x W or B x 3 x H x W tensor, got shape {tuple(t.shape)}")
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
    x = (t.detach().to("cpu", torch.float32) * std + mean).clamp_(0.0, 1.0).mul_(255.0).round_()
    x = x.to(torch.uint8)
    x = x.permute(1, 2, 0) if x.ndim == 3 else x.permute(0, 2, 3, 1)
    return np.ascontiguousarray(x.numpy())


# ---------------------------------------------------------------------------------------------- panoramas
#: largest heading change scaled to columns as it is; beyond it the heading is wrapped into one turn first
_UNWRAPPED_HEADING_MAX_DEG = 360.0e6


def heading_change_to_roll(delta_heading_deg: float, width: int) -> int:
    """Number of columns to roll right (``np.roll(img, k, axis=1)``) to change the heading by about
    ``delta_heading_deg`` (the nearest whole column), wrapped into ``[-W/2, W/2)``. A heading of more than a
    million turns (finite, but ``1e308 * W`` is not) is first wrapped into one turn (``fmod`` is exact)."""
    delta = float(delta_heading_deg)
    if abs(delta) > _UNWRAPPED_HEADING_MAX_DEG:
        delta = math.fmod(delta, 360.0)
    k = int(round(-delta * width / 360.0))
    return (k + width // 2) % width - width // 2


def roll_to_heading_change(k: int, width: int) -> float:
    """Heading change (deg, wrapped into [-180, 180)) caused by rolling a panorama right by ``k`` columns."""
    return geo.wrap_deg(-float(k) * 360.0 / width)


def roll_panorama(img: np.ndarray, delta_heading_deg: float) -> tuple[np.ndarray, float]:
    """Rotate an equirectangular panorama about the vertical axis so its heading changes by
    ``delta_heading_deg`` (rounded to whole columns).

    Returns ``(rolled, applied)``: ``applied`` is the heading change actually applied (wrapped into
    [-180, 180)), so the rolled panorama's heading is ``heading + applied`` (``applied`` itself for a
    north-aligned input such as VIGOR). Per :mod:`unifygeo_ros.geo`, rolling right by ``k`` columns changes the
    heading by ``-k * 360 / W``. Works on ``H x W`` and ``H x W x C`` arrays.
    """
    if not isinstance(img, np.ndarray) or img.ndim not in (2, 3) or img.shape[1] == 0:
        raise ImageError(f"panorama: expected an H x W (x C) array, got {getattr(img, 'shape', type(img))}")
    if not np.isfinite(delta_heading_deg):
        raise ValueError(f"delta_heading_deg must be finite, got {delta_heading_deg}")
    width = img.shape[1]
    k = heading_change_to_roll(delta_heading_deg, width)
    return np.roll(img, k, axis=1), roll_to_heading_change(k, width)


def column_azimuths_deg(width: int) -> np.ndarray:
    """Azimuth of each panorama column relative to the panorama's heading, deg in [-180, 180)."""
    return geo.wrap_deg(((np.arange(width) + 0.5) / width - 0.5) * 360.0)


def fov_column_mask(width: int, center_deg: float, fov_deg: float) -> np.ndarray:
    """Boolean mask (length ``width``) of the columns whose azimuth (relative to the panorama heading) is
    within ``fov_deg / 2`` of ``center_deg``."""
    if not (np.isfinite(center_deg) and np.isfinite(fov_deg)) or fov_deg <= 0:
        raise ValueError(f"fov_deg must be a positive finite angle, got {fov_deg} (center {center_deg})")
    if fov_deg >= 360.0:
        return np.ones(width, dtype=bool)
    diff = np.asarray(geo.angle_diff_deg(column_azimuths_deg(width), center_deg))
    return diff <= fov_deg / 2.0


def mask_fov(img: np.ndarray, center_deg: float, fov_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Zero the panorama columns outside a limited field of view.

    ``center_deg`` is the azimuth of the view's centre relative to the panorama's heading (the compass
    azimuth for a north-aligned panorama), ``fov_deg`` its horizontal extent. Returns ``(masked, mask)`` with
    ``mask`` a boolean array of length W (True = column kept). The input is not modified.
    """
    if not isinstance(img, np.ndarray) or img.ndim not in (2, 3) or img.shape[1] == 0:
        raise ImageError(f"panorama: expected an H x W (x C) array, got {getattr(img, 'shape', type(img))}")
    mask = fov_column_mask(img.shape[1], center_deg, fov_deg)
    out = img.copy()
    out[:, ~mask] = 0
    return out, mask
