"""Where a backbone's pretrained (ImageNet) weights come from when training starts: always a local file.

Nothing is downloaded, ever: a robot or a training box may have no network, and a download that times out
stalls for a minute before failing. ``model.pretrained: true`` takes ``model.pretrained_file`` when it is set,
otherwise the weights timm (or ``torch.hub``) already cached on this machine; without either, training refuses
to start with one line that says what to do. Loading a checkpoint never comes here: its weights are in the
checkpoint (:func:`unifygeo_ros.model.checkpoint.load_checkpoint` builds the network without pretrained weights).
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from unifygeo_ros.config import ConfigError, ModelConfig

#: file names of timm weights on the Hugging Face Hub, in the order timm tries them
_HF_FILENAMES = ("model.safetensors", "pytorch_model.bin")


def wants_pretrained(cfg: ModelConfig) -> bool:
    """True when the configuration asks for pretrained backbone weights (``pretrained`` or a ``pretrained_file``)."""
    return bool(cfg.pretrained or cfg.pretrained_file)


def local_pretrained_file(cfg: ModelConfig) -> str:
    """The local weights file of ``cfg.backbone`` for ``model.pretrained: true``; one ConfigError when there is none.

    ``model.pretrained_file`` must exist (and needs ``pretrained: true``: a file that would silently be ignored is
    an error); without it, the weights cached by an earlier timm or ``torch.hub`` download are used. Never
    touches the network.
    """
    if cfg.pretrained_file:
        path = Path(cfg.pretrained_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"model.pretrained_file {cfg.pretrained_file!r} not found: give the path of a local "
                              "weights file (.safetensors or .pth), or set model.pretrained: false")
        if not cfg.pretrained:
            raise ConfigError("model.pretrained_file is set but model.pretrained is false: set model.pretrained: "
                              "true to start from that file, or clear model.pretrained_file")
        return str(path)
    cached = cached_weights(cfg.backbone)
    if cached is None:
        raise ConfigError(f"model.pretrained: true but no weights of {cfg.backbone!r} are cached on this machine "
                          "and nothing is downloaded (no network); give model.pretrained_file (a local "
                          ".safetensors or .pth) or set model.pretrained: false")
    return cached


def cached_weights(backbone: str) -> str | None:
    """The file of ``backbone``'s default pretrained weights in the local Hugging Face or torch.hub cache, if any.

    Reads the caches only (``huggingface_hub.try_to_load_from_cache``, ``$TORCH_HOME/hub/checkpoints``).
    """
    import timm.models

    try:
        pcfg = timm.models.get_pretrained_cfg(backbone)
    except (RuntimeError, ValueError, KeyError):
        return None
    if pcfg is None:
        return None
    hub_id = getattr(pcfg, "hf_hub_id", None)
    if hub_id:
        found = _hf_cached(hub_id, getattr(pcfg, "hf_hub_filename", None))
        if found:
            return found
    url = getattr(pcfg, "url", None)
    if url:
        import torch.hub

        path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(url).path))
        if os.path.isfile(path):
            return path
    return None


def _hf_cached(hub_id: str, filename: str | None) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for name in ((filename,) if filename else _HF_FILENAMES):
        found = try_to_load_from_cache(hub_id, name)
        if isinstance(found, str) and os.path.isfile(found):
            return found
    return None
