"""The encoders as ONNX graphs: export, parity with torch, and the export folder's manifest.

What runs per frame is the ground encoder (panorama -> global descriptor + the metric head's sector descriptors);
the aerial encoder (tile -> descriptor + dense cells) runs when an index is built or when an index stores tiles.
Both are exported; the metric head and the re-ranker are not: they take about 2.2 ms per frame in torch on one
thread and 2.3 ms as an onnxruntime graph (docs/DEPLOYMENT.md), so a graph would add a second copy of the
decision for no gain.

An export folder holds::

    ground.onnx   input ``panorama`` (B, 3, H, W)  -> descriptor (B, D), sectors<l> (B, S, d) per metric level
    aerial.onnx   input ``tile``     (B, C, A, A)  -> descriptor (B, D), cells<l> (B, S*d, h_l, w_l)
    parity.npz    two stored inputs per graph and torch's outputs for them (the load-time self-check)
    export.json   the manifest: format, the checkpoint's ``model_hash`` (its identity), the graphs' SHA-256,
                  input/output names and shapes, the opset, versions, and the parity figures of the export

The batch axis is dynamic. Exporting uses torch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``, opset
18; the legacy exporter cannot export ``adaptive_avg_pool2d`` after the circular azimuth pad). The manifest is
written last: a folder without it is not an export. :func:`read_manifest` refuses, with one
:class:`ExportError` line, a folder of another model (its identity differs), another format, or a graph whose
bytes changed since the export.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.file_names import is_file_name
from unifygeo_ros.model.onnx_sessions import cpu_session, require_onnxruntime

FORMAT = "unifygeo-onnx-export"
VERSION = 1
MANIFEST, PARITY = "export.json", "parity.npz"
DEFAULT_OPSET = 18
#: max |onnxruntime - torch| accepted for any output (float32; the outputs are L2-normalised, |v| <= 1)
PARITY_ATOL = 1e-4
#: batch sizes the export's parity check runs (1: the per-frame case; 3: not the traced batch of 2)
PARITY_BATCHES = (1, 3)
_TRACE_BATCH = 2  # an example batch of 1 would let the exporter specialise the batch axis to 1
_MAX_BATCH = 4096


class ExportError(UnifyGeoError):
    """An ONNX export is missing, damaged, of another format, or made from another model."""


@dataclass(frozen=True)
class GraphSpec:
    """One exported graph: file, input name and shape (batch first), output names."""

    file: str
    input: str
    input_shape: tuple[int, ...]  # without the batch
    outputs: tuple[str, ...]
    sha256: str = ""


@dataclass(frozen=True)
class ExportManifest:
    """``export.json``: what an export folder holds and which model it was made from."""

    model_hash: str
    graphs: dict  # "ground" / "aerial" -> GraphSpec
    opset: int = DEFAULT_OPSET
    levels: int = 1
    checkpoint_name: str = ""
    versions: dict = field(default_factory=dict)
    parity_max_abs: dict = field(default_factory=dict)  # graph -> output -> max |ort - torch|

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "model_hash": self.model_hash, "opset": self.opset,
                "levels": self.levels, "checkpoint_name": self.checkpoint_name, "versions": self.versions,
                "graphs": {k: {"file": g.file, "input": g.input, "input_shape": list(g.input_shape),
                               "outputs": list(g.outputs), "sha256": g.sha256} for k, g in self.graphs.items()},
                "parity_max_abs": self.parity_max_abs, "parity_atol": PARITY_ATOL,
                "parity_batches": list(PARITY_BATCHES)}


# ---- the graphs ---------------------------------------------------------------------------------------------
class _GroundGraph(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, panorama: torch.Tensor):
        g = self.model.encode_ground(panorama)
        return (g.descriptor, *g.sectors)


class _AerialGraph(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tile: torch.Tensor):
        a = self.model.encode_aerial(tile)
        return (a.descriptor, *a.cells)


def graph_specs(model: nn.Module) -> dict[str, GraphSpec]:
    """The two graphs of ``model`` (a :class:`~unifygeo_ros.model.unifygeo.UnifyGeo`), without their hashes."""
    cfg = model.cfg
    h, w = (int(v) for v in cfg.ground_hw)
    a = int(cfg.aerial_px)
    levels = len(cfg.metric_strides)
    return {"ground": GraphSpec("ground.onnx", "panorama", (3, h, w),
                                ("descriptor",) + tuple(f"sectors{l}" for l in range(levels))),
            "aerial": GraphSpec("aerial.onnx", "tile", (4 if cfg.aerial_height else 3, a, a),
                                ("descriptor",) + tuple(f"cells{l}" for l in range(levels)))}


def _module(model: nn.Module, name: str) -> nn.Module:
    return (_GroundGraph if name == "ground" else _AerialGraph)(model).eval()


def _inputs(spec: GraphSpec, batch: int, rng: np.random.Generator) -> np.ndarray:
    """ImageNet-normalised-like inputs (the network's input range)."""
    return rng.standard_normal((batch, *spec.input_shape)).astype(np.float32)


def _export_graph(model: nn.Module, name: str, spec: GraphSpec, path: Path, opset: int) -> None:
    x = torch.from_numpy(_inputs(spec, _TRACE_BATCH, np.random.default_rng(0)))
    batch = torch.export.Dim("batch", min=1, max=_MAX_BATCH)
    sink = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(_module(model, name), (x,), dynamo=True, opset_version=opset,
                                        input_names=[spec.input], output_names=list(spec.outputs),
                                        dynamic_shapes=({0: batch},), verbose=False)
    except Exception as exc:  # the exporter raises many types; the user needs the first line
        from unifygeo_ros.model.encoder import one_line

        raise ExportError(f"torch.onnx.export of the {name} encoder failed: {one_line(exc)}") from None
    program.save(str(path), external_data=False)


# ---- parity -------------------------------------------------------------------------------------------------
def torch_outputs(model: nn.Module, name: str, x: np.ndarray) -> list[np.ndarray]:
    with torch.inference_mode():
        out = _module(model, name)(torch.from_numpy(x))
    return [o.float().numpy() for o in out]


def max_abs(a: list[np.ndarray], b: list[np.ndarray], names) -> dict[str, float]:
    return {n: float(np.abs(np.asarray(p, np.float32) - np.asarray(q, np.float32)).max())
            for n, p, q in zip(names, a, b)}


def parity_check(model: nn.Module, sessions: dict, specs: dict[str, GraphSpec], seed: int = 1) -> dict:
    """Max |onnxruntime - torch| of every output of every graph over :data:`PARITY_BATCHES` random batches."""
    rng = np.random.default_rng(seed)
    result: dict[str, dict[str, float]] = {}
    for name, spec in specs.items():
        worst = dict.fromkeys(spec.outputs, 0.0)
        for b in PARITY_BATCHES:
            x = _inputs(spec, b, rng)
            got = sessions[name].run(list(spec.outputs), {spec.input: x})
            for k, v in max_abs(got, torch_outputs(model, name, x), spec.outputs).items():
                worst[k] = max(worst[k], v)
        result[name] = worst
    return result


def _write_parity_set(model: nn.Module, specs: dict[str, GraphSpec], path: Path, seed: int = 2) -> None:
    """Two inputs per graph and torch's outputs for them: what a backend checks its sessions against at load."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, spec in specs.items():
        x = _inputs(spec, 2, rng)
        arrays[f"{name}/{spec.input}"] = x
        for out_name, y in zip(spec.outputs, torch_outputs(model, name, x)):
            arrays[f"{name}/{out_name}"] = y
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def read_parity_set(folder: str | Path) -> dict[str, np.ndarray]:
    try:
        with np.load(Path(folder) / PARITY, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise ExportError(f"{folder}: unreadable {PARITY} ({exc.__class__.__name__}); export again") from None


# ---- export -------------------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _versions() -> dict:
    import onnx
    import onnxruntime

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def export_onnx(model: nn.Module, identity: str, out_dir: str | Path, checkpoint_name: str = "",
                opset: int = DEFAULT_OPSET) -> ExportManifest:
    """Export ``model``'s encoders into ``out_dir``, check them against torch and write the manifest.

    ``identity``: the checkpoint's ``model_hash``. The model is exported on the CPU in float32 (moved there for the
    export and back to its device and dtype after it). Raises :class:`ExportError` when an export or its parity check fails (a difference above
    :data:`PARITY_ATOL`)."""
    require_onnxruntime()
    if not all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript")):  # onnxscript: the dynamo exporter
        raise ExportError("exporting needs onnx and onnxscript (pip install 'unifygeo_ros[onnx]')")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # written last: a half-written folder is never an export
    param = next(model.parameters())
    device, dtype, training = param.device, param.dtype, model.training
    # moved, not copied: a deep copy would keep hooks that read the original trunk's azimuth-wrap flag
    model.to("cpu", torch.float32).eval()
    try:
        specs = graph_specs(model)
        for name, spec in specs.items():
            _export_graph(model, name, spec, out / spec.file, opset)
        sessions = {name: cpu_session(out / spec.file, threads=1) for name, spec in specs.items()}
        parity = parity_check(model, sessions, specs)
        worst = max((v, f"{g}.{k}") for g, d in parity.items() for k, v in d.items())
        if not worst[0] <= PARITY_ATOL:
            raise ExportError(f"onnxruntime differs from torch by {worst[0]:.3g} on {worst[1]} "
                              f"(accepted: {PARITY_ATOL:g}); the export in {out} is not usable")
        _write_parity_set(model, specs, out / PARITY)
    finally:
        model.to(device, dtype).train(training)
    graphs = {name: GraphSpec(s.file, s.input, s.input_shape, s.outputs, _sha256(out / s.file))
              for name, s in specs.items()}
    manifest = ExportManifest(identity, graphs, opset, len(model.cfg.metric_strides), checkpoint_name,
                              _versions(), parity)
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    os.replace(tmp, out / MANIFEST)
    return manifest


def read_manifest(folder: str | Path, identity: str | None = None, verify_files: bool = True) -> ExportManifest:
    """The manifest of an export folder; with ``identity``, refuses an export of another model (one line)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ExportError(f"{folder}: no {MANIFEST} (not an export; make one with: unifygeo export "
                          "--checkpoint CKPT --format onnx --out DIR)")
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ExportError(f"{path}: format {data.get('format')!r} version {data.get('version')!r}, expected "
                              f"{FORMAT!r} version {VERSION}")
        graphs = {k: GraphSpec(g["file"], g["input"], tuple(int(v) for v in g["input_shape"]),
                               tuple(g["outputs"]), g["sha256"]) for k, g in data["graphs"].items()}
        manifest = ExportManifest(str(data["model_hash"]), graphs, int(data["opset"]), int(data["levels"]),
                                  str(data.get("checkpoint_name", "")), dict(data.get("versions", {})),
                                  dict(data.get("parity_max_abs", {})))
    except ExportError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ExportError(f"{path}: malformed manifest ({exc.__class__.__name__}: {exc})") from None
    if set(graphs) != {"ground", "aerial"}:
        raise ExportError(f"{path}: graphs {sorted(graphs)}, expected aerial and ground")
    for g in graphs.values():  # no path from a file leaves its folder
        if not is_file_name(g.file):
            raise ExportError(f"{path}: graph file {g.file!r} is not a file name inside the export folder; export "
                              "again")
    if identity is not None and manifest.model_hash != identity:
        raise ExportError(f"{folder} was exported from model {manifest.model_hash[:12]}, not {identity[:12]} "
                          "(the checkpoint and its index); export this checkpoint again")
    if verify_files:
        for g in graphs.values():
            f = folder / g.file
            if not f.is_file() or _sha256(f) != g.sha256:
                raise ExportError(f"{f}: missing or changed since the export (SHA-256 differs); export again")
    return manifest


# ---- the automatic cache ------------------------------------------------------------------------------------
def cache_root() -> Path:
    """Where automatic exports live: ``$XDG_CACHE_HOME/unifygeo/onnx`` (default ``~/.cache/unifygeo/onnx``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "unifygeo" / "onnx"


def cached_export_dir(identity: str) -> Path:
    """The automatic export folder of a model: one per identity, so a stale export is never found there."""
    return cache_root() / identity[:32]


def ensure_export(model: nn.Module, identity: str, export_dir: str | Path | None = None,
                  checkpoint_name: str = "", log=print) -> tuple[Path, ExportManifest]:
    """The export to load for ``model``: ``export_dir`` when given (it must be this model's: refused otherwise),
    else the automatic cache folder, exported there first when it holds no valid export of this model."""
    if export_dir is not None:
        return Path(export_dir), read_manifest(export_dir, identity)
    folder = cached_export_dir(identity)
    try:
        return folder, read_manifest(folder, identity)
    except ExportError:
        pass
    log(f"exporting the encoders to ONNX once, into {folder} (a few seconds per graph)")
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        export_onnx(model, identity, tmp, checkpoint_name)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except OSError:  # another process finished first, or the cache cannot be written
        if not (folder / MANIFEST).is_file():
            raise ExportError(f"cannot write the ONNX cache {folder}; pass an export folder "
                              "(unifygeo export --out DIR, then --export DIR)") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder, read_manifest(folder, identity)
