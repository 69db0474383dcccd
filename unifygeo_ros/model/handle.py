"""The model as the index and the localizer use it: loaded once, on a device, in a precision.

:class:`ModelHandle` bundles the network with its identity hash (what an index records and checks), its
configuration, the device (``auto``: CUDA when available), the precision (float16 on CUDA, float32 on CPU) and the
backend that runs the encoders (torch, or onnxruntime on an ONNX export: :mod:`unifygeo_ros.model.backends`).
It turns RGB ``uint8`` images into network inputs through :mod:`unifygeo_ros.image.preprocess` - the one path every
image takes - and aerial features to and from the arrays an index stores.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unifygeo_ros.errors import CheckpointError
from unifygeo_ros.image.preprocess import aerial_tensor, to_tensor
from unifygeo_ros.model.checkpoint import load_checkpoint
from unifygeo_ros.model.unifygeo import AerialFeatures


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without CUDA is an error the user can act on."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CheckpointError("--device cuda requested but CUDA is not available (use --device cpu or auto)")
    return dev


def model_identity(model: torch.nn.Module, config: dict | None = None) -> str:
    """sha256 over the configuration (canonical JSON) and every tensor of the state dict (name, shape, bytes)."""
    h = hashlib.sha256()
    h.update(json.dumps(config or {}, sort_keys=True, default=str).encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


#: candidates re-ranked when a configuration does not say (``loss.rerank_k``)
DEFAULT_RERANK_K = 5


def rerank_k_of(config: dict) -> int:
    """The number of candidates a model re-ranks at run time: its ``loss.rerank_k`` (what it was trained on)."""
    return int((config.get("loss") or {}).get("rerank_k", DEFAULT_RERANK_K))


@dataclass
class ModelHandle:
    """A network ready for inference: eval mode, on ``device``, in ``dtype``."""

    model: torch.nn.Module
    identity: str
    config: dict  # the full resolved configuration ({"model": {...}, ...}) or just the model's
    checkpoint: str | None
    device: torch.device
    dtype: torch.dtype
    backend: str = "torch"  # who runs the encoders, one line (:mod:`unifygeo_ros.model.backends`)

    # ---- facts from the configuration -------------------------------------------------------------------------
    @property
    def model_cfg(self):
        return self.model.cfg  # type: ignore[attr-defined]

    @property
    def aerial_px(self) -> int:
        return int(self.model_cfg.aerial_px)

    @property
    def aerial_channels(self) -> int:
        """3 (RGB) or 4 (RGB + surface height, ``model.aerial_height``)."""
        return 4 if getattr(self.model_cfg, "aerial_height", False) else 3

    @property
    def ground_hw(self) -> tuple[int, int]:
        h, w = self.model_cfg.ground_hw
        return int(h), int(w)

    @property
    def descriptor_dim(self) -> int:
        return int(self.model_cfg.descriptor_dim)

    @property
    def rerank_k(self) -> int:
        return rerank_k_of(self.config)

    @property
    def known_orientation(self) -> bool:
        """True when the model was trained on north-aligned panoramas (data.orientation: known): it then needs
        the camera heading as an input instead of estimating it."""
        return (self.config.get("data") or {}).get("orientation", "unknown") == "known"

    @property
    def train_tile_m(self) -> float | None:
        """The aerial tile size the model was trained on (data.tile_m), when the configuration records it."""
        value = (self.config.get("data") or {}).get("tile_m")
        return float(value) if value is not None else None

    # ---- inputs -----------------------------------------------------------------------------------------------
    def aerial_batch(self, tiles: list[np.ndarray]) -> torch.Tensor:
        x = torch.stack([aerial_tensor(t, self.aerial_px, self.aerial_channels) for t in tiles])
        return x.to(self.device, self.dtype, non_blocking=True)

    def ground_batch(self, panoramas: list[np.ndarray]) -> torch.Tensor:
        """Panoramas already checked (the Localizer validates them once, with its ``aspect_tolerance``) ->
        the ground-branch input batch."""
        x = torch.stack([to_tensor(p, self.ground_hw) for p in panoramas])
        return x.to(self.device, self.dtype, non_blocking=True)

    # ---- network ----------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode_aerial(self, tiles: list[np.ndarray]):
        return self.model.encode_aerial(self.aerial_batch(tiles))

    @torch.inference_mode()
    def encode_ground_tensor(self, x: torch.Tensor):
        return self.model.encode_ground(x)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def aerial_to_arrays(features) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """AerialFeatures -> (descriptors float32 (B, D), {"cells<l>": float16 (B, C, h_l, w_l)})."""
    desc = features.descriptor.detach().float().cpu().numpy()
    cells = {f"cells{l}": c.detach().to(torch.float16).cpu().numpy() for l, c in enumerate(features.cells)}
    return desc, cells


def arrays_to_aerial(descriptors: np.ndarray, arrays: dict[str, np.ndarray], device, dtype):
    """Inverse of :func:`aerial_to_arrays`: stored rows -> AerialFeatures on ``device`` in ``dtype``."""
    names = sorted((k for k in arrays if k.startswith("cells")), key=lambda k: int(k[5:]))
    cells = [torch.from_numpy(np.ascontiguousarray(arrays[k])).to(device, dtype) for k in names]
    desc = torch.from_numpy(np.ascontiguousarray(descriptors, dtype=np.float32)).to(device, dtype)
    return AerialFeatures(desc, cells)


def from_model(model: torch.nn.Module, config: dict | None = None, device: str = "auto",
               identity: str | None = None, checkpoint: str | None = None) -> ModelHandle:
    """A handle around an in-memory model (tests, training loops). Identity: :func:`model_identity`."""
    dev = resolve_device(device)
    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    if config is None:
        config = {"model": dataclasses.asdict(model.cfg)} if hasattr(model, "cfg") else {}
    ident = identity or model_identity(model, config)
    model = model.to(dev, dtype).eval()
    return ModelHandle(model, ident, config, checkpoint, dev, dtype)


def load_model(checkpoint: str | Path, device: str = "auto", backend=None) -> ModelHandle:
    """Load a checkpoint folder (:mod:`unifygeo_ros.model.checkpoint`) into a :class:`ModelHandle`.

    The identity is the checkpoint's ``model_hash`` (what an index built with it records; always a verified
    SHA-256). ``backend``: a :class:`~unifygeo_ros.model.backends.BackendSettings` (None: torch, threads
    untouched). Every problem with the checkpoint or its export is one :class:`UnifyGeoError` line; nothing is
    downloaded.
    """
    dev = resolve_device(device)  # fail on an impossible device before reading weights
    model, cfg, meta = load_checkpoint(checkpoint, map_location="cpu")
    handle = from_model(model, cfg.to_dict(), device=str(dev), identity=meta.model_hash,
                        checkpoint=str(Path(checkpoint).resolve()))
    if backend is None:
        return handle
    from unifygeo_ros.model.backends import handle_with_backend

    return handle_with_backend(handle, backend)
