"""Multi-granularity feature encoder of one view: timm trunk -> (semantic extractor, fine-grained extractor).

``ViewEncoder(x, wrap)`` returns the semantic tokens' input map ``G`` (for the aggregator, i.e. retrieval) and
the fine-grained maps ``F0`` at the metric strides (for metric localization). ``wrap=True`` (the ground
panorama) makes every padded convolution wrap around along the width (azimuth), so the features of a rolled
panorama are the rolled features: the panorama has no left or right edge.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from unifygeo_ros.config import ConfigError, ModelConfig
from unifygeo_ros.model.pretrained import local_pretrained_file, wants_pretrained


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line (whitespace collapsed), at most ``limit`` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _WrapState:
    """Shared flag read by the padding hooks of a trunk: wrap along W (ground) or zero-pad (aerial)."""

    def __init__(self) -> None:
        self.wrap = False


def _install_azimuth_padding(module: nn.Module, state: _WrapState) -> int:
    """Move the width padding of every zero-padded Conv2d into a hook that wraps when ``state.wrap``.

    State-dict keys are unchanged (hooks, not wrapper modules), so timm pretrained weights still load.
    Returns the number of convolutions changed.
    """
    count = 0
    for conv in module.modules():
        if not isinstance(conv, nn.Conv2d) or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            continue
        ph, pw = conv.padding
        if pw == 0:
            continue
        conv.padding = (ph, 0)

        def hook(mod, args, pw=pw):
            x = args[0]
            x = F.pad(x, (pw, pw, 0, 0), mode="circular" if state.wrap else "constant")
            return (x,) + tuple(args[1:])

        conv.register_forward_pre_hook(hook)
        count += 1
    return count


class WrapConv2d(nn.Conv2d):
    """A 'same'-padded convolution whose width padding wraps around when called with ``wrap=True``."""

    def __init__(self, cin: int, cout: int, k: int = 3, groups: int = 1, bias: bool = True) -> None:
        super().__init__(cin, cout, k, padding=0, groups=groups, bias=bias)
        self.pad = k // 2

    def forward(self, x: torch.Tensor, wrap: bool = False) -> torch.Tensor:  # type: ignore[override]
        p = self.pad
        if p:
            x = F.pad(x, (p, p, 0, 0), mode="circular" if wrap else "constant")
            x = F.pad(x, (0, 0, p, p))
        return super().forward(x)


class ConvBlock(nn.Module):
    """3x3 conv -> GroupNorm -> GELU, wrap-aware."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = WrapConv2d(cin, cout, 3, bias=False)
        self.norm = nn.GroupNorm(min(8, cout), cout)

    def forward(self, x: torch.Tensor, wrap: bool = False) -> torch.Tensor:
        return F.gelu(self.norm(self.conv(x, wrap)))


class Trunk(nn.Module):
    """A timm ``features_only`` backbone; optionally with a second copy of its last stage for the semantic head.

    ``forward(x, wrap) -> (feats, semantic_last)``: ``feats`` are the stage outputs, fine to coarse (the last one
    from the fine-grained copy of the last stage), ``semantic_last`` the last stage's output from the semantic
    copy (the same tensor as ``feats[-1]`` when the last stage is not split).

    ``load_pretrained``: start from the configuration's pretrained weights (training; a local file, see
    :mod:`unifygeo_ros.model.pretrained`); False builds a freshly initialised trunk whatever the configuration says
    (a checkpoint's weights are loaded over it).
    """

    def __init__(self, cfg: ModelConfig, in_chans: int = 3, load_pretrained: bool = True) -> None:
        super().__init__()
        import timm

        kwargs = dict(features_only=True, pretrained=False, **cfg.backbone_kwargs)
        if in_chans != 3:
            kwargs["in_chans"] = in_chans  # timm adapts pretrained stems (the extra channel's weights are new)
        if load_pretrained and wants_pretrained(cfg):  # a local file only: timm never reaches for the network
            kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=local_pretrained_file(cfg)))
        try:
            self.body = timm.create_model(cfg.backbone, **kwargs)
        except Exception as exc:  # timm, safetensors and torch.load raise many types for bad names, kwargs, files
            source = f" from {kwargs['pretrained_cfg_overlay']['file']}" if kwargs["pretrained"] else ""
            raise ConfigError(f"cannot build backbone {cfg.backbone!r} with {cfg.backbone_kwargs}{source}: "
                              f"{one_line(exc)}") from None
        self.channels = list(self.body.feature_info.channels())
        self.reductions = list(self.body.feature_info.reduction())
        self._wrap = _WrapState()
        self.semantic_last: nn.Module | None = None
        if cfg.split_last_stage:
            names = list(getattr(self.body, "return_layers", {}))
            if not isinstance(self.body, nn.ModuleDict) or not names:
                raise ConfigError(f"model.split_last_stage needs a sequential timm feature net; "
                                  f"{cfg.backbone} builds {type(self.body).__name__}")
            self._last_name = names[-1]
            self.semantic_last = copy.deepcopy(self.body[self._last_name])
        if cfg.circular_ground:
            _install_azimuth_padding(self, self._wrap)

    def forward(self, x: torch.Tensor, wrap: bool = False) -> tuple[list[torch.Tensor], torch.Tensor]:
        self._wrap.wrap = wrap
        if self.semantic_last is None:
            feats = list(self.body(x))
            return feats, feats[-1]
        feats: list[torch.Tensor] = []
        semantic = x
        for name, module in self.body.items():
            if name == self._last_name:
                semantic = self.semantic_last(x)
            x = module(x)
            if name in self.body.return_layers:
                feats.append(x)
        return feats, semantic


def upsample(x: torch.Tensor, size, wrap: bool = False) -> torch.Tensor:
    """Bilinear resize to ``size``; with ``wrap`` the width wraps around (no clamped edge on a panorama)."""
    h, w = int(size[0]), int(size[1])
    if not wrap or w % x.shape[-1]:
        return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    f = w // x.shape[-1]
    x = F.pad(x, (1, 1, 0, 0), mode="circular")
    x = F.interpolate(x, size=(h, w + 2 * f), mode="bilinear", align_corners=False)
    return x[..., f:f + w]


class FineDecoder(nn.Module):
    """Fine-grained extractor: an FPN top-down decoder giving ``decoder_dim`` maps at each metric stride."""

    def __init__(self, channels: list[int], reductions: list[int], strides: list[int], dim: int) -> None:
        super().__init__()
        missing = [s for s in strides if s not in reductions]
        if missing:
            raise ConfigError(f"model.metric_strides {missing} are not backbone strides {reductions}")
        finest = min(strides)
        self.levels = [i for i, r in enumerate(reductions) if r >= finest]  # trunk levels used, fine to coarse
        self.out_levels = [reductions.index(s) for s in strides]          # coarse to fine
        self.lateral = nn.ModuleList(nn.Conv2d(channels[i], dim, 1) for i in self.levels)
        self.smooth = nn.ModuleList(ConvBlock(dim, dim) for _ in self.levels)

    def forward(self, feats: list[torch.Tensor], wrap: bool = False) -> list[torch.Tensor]:
        outs: dict[int, torch.Tensor] = {}
        top = None
        for j in reversed(range(len(self.levels))):
            i = self.levels[j]
            lat = self.lateral[j](feats[i])
            if top is not None:
                lat = lat + upsample(top, lat.shape[-2:], wrap)
            top = self.smooth[j](lat, wrap)
            outs[i] = top
        return [outs[i] for i in self.out_levels]


class SemanticExtractor(nn.Module):
    """Semantic extractor: the trunk's deepest map -> ``semantic_dim`` feature map (tokens for the aggregator)."""

    def __init__(self, cin: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cin, dim, 1)
        self.block = ConvBlock(dim, dim)

    def forward(self, x: torch.Tensor, wrap: bool = False) -> torch.Tensor:
        x = self.proj(x)
        return x + self.block(x, wrap)


class ViewEncoder(nn.Module):
    """One view's multi-granularity encoder: shared trunk, then the semantic and the fine-grained extractors."""

    def __init__(self, cfg: ModelConfig, in_chans: int = 3, load_pretrained: bool = True) -> None:
        super().__init__()
        self.trunk = Trunk(cfg, in_chans, load_pretrained)
        self.semantic = SemanticExtractor(self.trunk.channels[-1], cfg.semantic_dim)
        self.fine = FineDecoder(self.trunk.channels, self.trunk.reductions, list(cfg.metric_strides),
                                cfg.decoder_dim)

    def forward(self, x: torch.Tensor, wrap: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats, semantic_last = self.trunk(x, wrap)
        return self.semantic(semantic_last, wrap), self.fine(feats, wrap)
