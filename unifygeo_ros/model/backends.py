"""Inference backends: who runs the encoders - torch (default) or onnxruntime - and on how many CPU threads.

:class:`BackendSettings` is the one place of the defaults; the ``unifygeo localize`` / ``replay`` / ``eval``
options (:func:`add_backend_arguments`) and the node's ``backend`` / ``onnx_export`` / ``cpu_threads`` parameters
fill it. :func:`attach_backend` turns a torch model into the model the Localizer and the evaluation call:

* ``torch``: the model itself.
* ``onnxruntime``: :class:`OnnxRuntimeModel` - ``encode_ground`` / ``encode_aerial`` run the exported graphs
  (:mod:`unifygeo_ros.model.export`), the metric head and the re-ranker stay the torch model's (the same
  decision code). The export must carry the checkpoint's identity (refused otherwise). Execution providers:
  on a CUDA device TensorRT, then CUDA, when this onnxruntime build has them, else the CPU. Every session is
  checked at load against the export's stored torch outputs (``parity.npz``): float32 to
  :data:`~unifygeo_ros.model.export.PARITY_ATOL`, or else refused. ``precision``: ``auto`` asks TensorRT for
  float16 and keeps it only when the check holds to :data:`FP16_ATOL` (else float32); ``fp16`` requires it;
  ``fp32`` never asks. The CUDA provider runs float32 (no float16 graph is made: a float16-converted graph crashed
  onnxruntime's CPU provider at session creation, so it is not offered). The GPU paths are written but were not
  run on a GPU (docs/DEPLOYMENT.md).

``threads``: intra-op threads of torch (``torch.set_num_threads``, process-wide) and of each onnxruntime session;
0 keeps the libraries' defaults (all cores). Default 1, measured: one thread holds the worst frame on a shared
2-core machine (docs/DEPLOYMENT.md, BENCHMARKS.md 5b).
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.model.onnx_sessions import require_onnxruntime, session_options

BACKENDS = ("torch", "onnxruntime")
PRECISIONS = ("auto", "fp32", "fp16")
DEFAULT_BACKEND = "torch"
DEFAULT_THREADS = 1
#: max |TensorRT fp16 - torch| accepted on the stored parity inputs before float16 is used (outputs |v| <= 1)
FP16_ATOL = 2e-2
#: TensorRT optimisation profile: largest batch per graph
TRT_MAX_BATCH = {"ground": 32, "aerial": 64}


@dataclass(frozen=True)
class BackendSettings:
    """How the encoders run. ``export_dir``: an ONNX export folder (None: the automatic cache,
    :func:`~unifygeo_ros.model.export.ensure_export`)."""

    backend: str = DEFAULT_BACKEND
    threads: int = DEFAULT_THREADS
    export_dir: str | None = None
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise UnifyGeoError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise UnifyGeoError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not isinstance(self.threads, int) or self.threads < 0:
            raise UnifyGeoError(f"threads must be a non-negative integer (0: the libraries' default), "
                                f"got {self.threads!r}")
        if self.export_dir and self.backend != "onnxruntime":
            raise UnifyGeoError("an ONNX export folder needs backend onnxruntime")


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backend``, ``--export``, ``--threads``, ``--precision`` (docs/DEPLOYMENT.md)."""
    g = parser.add_argument_group("inference backend (docs/DEPLOYMENT.md)")
    g.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                   help="who runs the encoders: torch (default) or onnxruntime (an ONNX export of the checkpoint)")
    g.add_argument("--export", metavar="DIR", default=None, dest="onnx_export",
                   help="onnxruntime: the export folder (unifygeo export); default: exported once into "
                        "~/.cache/unifygeo/onnx/<model hash>")
    g.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                   help=f"intra-op CPU threads of torch and onnxruntime (default {DEFAULT_THREADS}; "
                        "0: the libraries' default, all cores)")
    g.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="onnxruntime on a GPU: auto (float16 with TensorRT where it matches torch), fp32 or fp16")


def backend_from_args(args: argparse.Namespace) -> BackendSettings:
    return BackendSettings(args.backend, int(args.threads), args.onnx_export, args.precision)


def apply_threads(threads: int) -> None:
    """torch's intra-op threads (process-wide); 0 leaves torch's default."""
    if threads > 0:
        torch.set_num_threads(int(threads))


def _providers(name: str, spec, device: torch.device, fp16: bool, cache_dir: Path | None) -> list:
    """Execution providers for one graph on ``device``, best first, among those this onnxruntime build has."""
    ort = require_onnxruntime()
    have = set(ort.get_available_providers())
    out: list = []
    if device.type == "cuda":
        dev_id = device.index or 0
        if "TensorrtExecutionProvider" in have:
            shape = "x".join(str(v) for v in spec.input_shape)
            opts = {"device_id": dev_id, "trt_fp16_enable": bool(fp16),
                    "trt_profile_min_shapes": f"{spec.input}:1x{shape}",
                    "trt_profile_opt_shapes": f"{spec.input}:1x{shape}",
                    "trt_profile_max_shapes": f"{spec.input}:{TRT_MAX_BATCH[name]}x{shape}"}
            if cache_dir is not None:
                opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache_dir))
            out.append(("TensorrtExecutionProvider", opts))
        if "CUDAExecutionProvider" in have:
            out.append(("CUDAExecutionProvider", {"device_id": dev_id}))
    out.append("CPUExecutionProvider")
    return out


class OnnxEncoders:
    """The two exported graphs in onnxruntime sessions, checked against torch's stored outputs."""

    def __init__(self, folder: str | Path, manifest, device: torch.device, threads: int = DEFAULT_THREADS,
                 precision: str = "auto") -> None:
        from unifygeo_ros.model.export import read_parity_set

        self.folder, self.manifest, self.device = Path(folder), manifest, device
        self.parity = read_parity_set(folder)
        self.sessions, self.precision, self.max_abs = {}, {}, {}
        for name, spec in manifest.graphs.items():
            self.sessions[name], self.precision[name], self.max_abs[name] = self._session(name, spec, threads,
                                                                                         precision)

    def _session(self, name: str, spec, threads: int, precision: str):
        ort = require_onnxruntime()
        from unifygeo_ros.model.export import PARITY_ATOL

        trt = self.device.type == "cuda" and "TensorrtExecutionProvider" in ort.get_available_providers()
        cache = self.folder / "trt_cache"
        try:
            cache.mkdir(exist_ok=True)
        except OSError:
            cache = None
        if precision == "fp16" and not trt:
            raise UnifyGeoError("precision fp16 needs onnxruntime's TensorRT execution provider on a CUDA device "
                                f"(this build has {', '.join(ort.get_available_providers())})")
        sess, err = None, float("inf")
        for fp16 in ([True, False] if trt and precision != "fp32" else [False]):
            sess = ort.InferenceSession(str(self.folder / spec.file), session_options(threads),
                                        providers=_providers(name, spec, self.device, fp16, cache))
            err = self._check(sess, name, spec)
            if err <= (FP16_ATOL if fp16 else PARITY_ATOL):
                return sess, "fp16" if fp16 else "fp32", err
            if precision == "fp16":
                break
        raise UnifyGeoError(f"{self.folder}: the {name} graph on {sess.get_providers()[0]} differs from torch by "
                            f"{err:.3g} on the stored parity inputs (precision {precision})")

    def _check(self, sess, name: str, spec) -> float:
        x = self.parity[f"{name}/{spec.input}"]
        got = sess.run(list(spec.outputs), {spec.input: x})
        return max(float(np.abs(g - self.parity[f"{name}/{o}"]).max()) for g, o in zip(got, spec.outputs))

    @property
    def providers(self) -> str:
        return self.sessions["ground"].get_providers()[0]

    def run(self, name: str, x: torch.Tensor) -> list[torch.Tensor]:
        """One graph on a batch; outputs on the input's device, in its dtype."""
        spec = self.manifest.graphs[name]
        if tuple(x.shape[1:]) != spec.input_shape:
            raise UnifyGeoError(f"{name} input of shape {tuple(x.shape)}, the export takes (B, "
                                f"{', '.join(map(str, spec.input_shape))})")
        arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
        outs = self.sessions[name].run(list(spec.outputs), {spec.input: arr})
        return [torch.from_numpy(o).to(x.device, x.dtype) for o in outs]


class OnnxRuntimeModel(nn.Module):
    """The network with its encoders run by onnxruntime; the metric head, the re-ranker and every other
    attribute the run-time code reads come from the torch model (``torch_model``)."""

    def __init__(self, model: nn.Module, encoders: OnnxEncoders) -> None:
        super().__init__()
        self.torch_model = model
        self.encoders = encoders

    @property
    def cfg(self):
        return self.torch_model.cfg

    @property
    def aerial_channels(self) -> int:
        return self.torch_model.aerial_channels

    def encode_ground(self, x: torch.Tensor):
        from unifygeo_ros.model.unifygeo import GroundFeatures

        desc, *sectors = self.encoders.run("ground", x)
        return GroundFeatures(desc, sectors)

    def encode_aerial(self, x: torch.Tensor):
        from unifygeo_ros.model.unifygeo import AerialFeatures

        desc, *cells = self.encoders.run("aerial", x)
        return AerialFeatures(desc, cells)

    def similarity(self, ground, aerial) -> torch.Tensor:
        return self.torch_model.similarity(ground, aerial)

    def localize(self, ground, aerial):
        return self.torch_model.localize(ground, aerial)

    def rerank_scores(self, ground, aerial, metric=None) -> torch.Tensor:
        return self.torch_model.rerank_scores(ground, aerial, metric)

    def rerank_from(self, global_cosine: torch.Tensor, metric) -> torch.Tensor:
        return self.torch_model.rerank_from(global_cosine, metric)

    def forward(self, ground: torch.Tensor, aerial: torch.Tensor):
        return self.encode_ground(ground), self.encode_aerial(aerial)


def attach_backend(model: nn.Module, identity: str, settings: BackendSettings, checkpoint_name: str = "",
                   log=print) -> tuple[nn.Module, str]:
    """(the model to run, a one-line description of the backend) for ``settings``; applies the thread count.
    ``model``: the torch model, on its run-time device; ``identity``: the checkpoint's ``model_hash``."""
    apply_threads(settings.threads)
    threads = f"{settings.threads} thread{'s' if settings.threads != 1 else ''}" if settings.threads \
        else "default threads"
    if settings.backend == "torch":
        return model, f"torch {torch.__version__}, {threads}"
    from unifygeo_ros.model.export import ensure_export

    ort = require_onnxruntime()
    device = next(model.parameters()).device
    folder, manifest = ensure_export(model, identity, settings.export_dir, checkpoint_name, log=log)
    enc = OnnxEncoders(folder, manifest, device, settings.threads, settings.precision)
    desc = (f"onnxruntime {ort.__version__} {enc.providers} {enc.precision['ground']}, {threads}, "
            f"export {folder.name}")
    return OnnxRuntimeModel(model, enc), desc


def handle_with_backend(handle, settings: BackendSettings, log=print):
    """A :class:`~unifygeo_ros.model.handle.ModelHandle` whose model runs on ``settings``' backend."""
    name = Path(handle.checkpoint).name if handle.checkpoint else ""
    model, desc = attach_backend(handle.model, handle.identity, settings, name, log=log)
    return dataclasses.replace(handle, model=model, backend=desc)
