"""ONNX export and the onnxruntime backend: the command and its parity check, the manifest's identity, the
automatic cache, and fixes that agree with torch (issue #18)."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from unifygeo_ros import cli
from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.image.preprocess import load_image
from unifygeo_ros.localization.localizer import Localizer, Prior
from unifygeo_ros.model.backends import BackendSettings, OnnxRuntimeModel
from unifygeo_ros.model.onnx_sessions import cpu_session
from unifygeo_ros.model.checkpoint import read_meta
from unifygeo_ros.model.export import (MANIFEST, PARITY_ATOL, ExportError, cached_export_dir, graph_specs,
                                       read_manifest)
from unifygeo_ros.model.handle import load_model

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def micro_export(micro_checkpoint, tmp_path_factory) -> tuple[Path, str]:
    """``unifygeo export`` of ``micro_checkpoint``: (folder, what the command printed). Read-only."""
    out = tmp_path_factory.mktemp("micro_export") / "onnx"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = cli.main(["export", "--checkpoint", str(micro_checkpoint), "--format", "onnx", "--out", str(out)])
    assert rc == 0
    return out, printed.getvalue()


def _panoramas(vigor_city, n: int = 4) -> list[np.ndarray]:
    return [load_image(p) for p in sorted((vigor_city[0] / "panorama").iterdir())[:n]]


def test_export_command_prints_the_parity_of_every_output_and_records_the_checkpoint_identity(
        micro_export, micro_checkpoint):
    folder, printed = micro_export
    manifest = read_manifest(folder)
    assert manifest.model_hash == read_meta(micro_checkpoint).model_hash
    assert manifest.opset == 18 and sorted(manifest.graphs) == ["aerial", "ground"]
    for name, graph in manifest.graphs.items():
        assert (folder / graph.file).is_file() and len(graph.sha256) == 64
        for output in graph.outputs:  # every output's figure is printed and recorded, and within the tolerance
            value = manifest.parity_max_abs[name][output]
            assert 0.0 <= value <= PARITY_ATOL
            assert f"{output} " in printed.split(f"  {name}: ")[-1].splitlines()[0]
    assert "parity with torch" in printed and "dynamic batch" in printed
    text = (folder / MANIFEST).read_text()
    assert str(micro_checkpoint.parent) not in text  # no absolute path of this machine


def test_exported_graphs_equal_torch_at_any_batch_on_real_images(micro_export, micro_checkpoint, vigor_city):
    """The graphs against a freshly loaded torch model (not the one exported): panoramas and tiles of a city,
    batches of 1, 4 and 5, and a panorama rolled round its azimuth (the circular padding is in the graph)."""
    folder, _ = micro_export
    handle = load_model(micro_checkpoint, "cpu")
    specs = graph_specs(handle.model)
    panos = _panoramas(vigor_city)
    x = handle.ground_batch(panos + [np.roll(panos[0], panos[0].shape[1] // 3, axis=1)])
    tiles = [load_image(p) for p in sorted((vigor_city[0] / "satellite").iterdir())[:4]]
    inputs = {"ground": (x[:1], x[:4], x), "aerial": (handle.aerial_batch(tiles[:1]), handle.aerial_batch(tiles))}
    for name, batches in inputs.items():
        session = cpu_session(folder / specs[name].file, threads=1)
        for batch in batches:
            got = session.run(list(specs[name].outputs), {specs[name].input: batch.numpy()})
            with torch.inference_mode():
                feats = (handle.model.encode_ground if name == "ground" else handle.model.encode_aerial)(batch)
            want = [feats.descriptor] + list(feats.sectors if name == "ground" else feats.cells)
            assert [g.shape for g in got] == [tuple(w.shape) for w in want]
            worst = max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want))
            assert worst < PARITY_ATOL, (name, len(batch), worst)


def test_fixes_with_onnxruntime_agree_with_torch(micro_export, micro_index, vigor_city):
    folder, _ = micro_export
    panos = _panoramas(vigor_city, 5)
    ref = Localizer.from_paths(micro_index, device="cpu", backend=BackendSettings("torch"))
    ort = Localizer.from_paths(micro_index, device="cpu", backend=BackendSettings("onnxruntime",
                                                                                 export_dir=str(folder)))
    assert isinstance(ort.handle.model, OnnxRuntimeModel) and ort.handle.backend.startswith("onnxruntime")
    assert ref.handle.backend.startswith("torch")
    prior = Prior(float(ref.index.en_m[3, 0]), float(ref.index.en_m[3, 1]), 20.0)
    for pano in panos:
        for p in (None, prior):
            a, b = ref.localize(pano, p), ort.localize(pano, p)
            assert (a.tile_id, a.evidence_tile_id, a.candidate_tile_ids) == \
                (b.tile_id, b.evidence_tile_id, b.candidate_tile_ids)
            assert np.hypot(a.east_m - b.east_m, a.north_m - b.north_m) < 1e-3  # well under a centimetre
            assert abs(a.score - b.score) < 1e-5 and abs(a.heading_deg - b.heading_deg) < 1e-3
            np.testing.assert_allclose(a.covariance_en_m2, b.covariance_en_m2, rtol=1e-4, atol=1e-6)
            assert abs(a.protection_level_m - b.protection_level_m) <= 1e-4 * max(1.0, a.protection_level_m)
    batch_a, batch_b = ref.localize_batch(panos), ort.localize_batch(panos)  # the dynamic batch axis
    assert max(np.hypot(a.east_m - b.east_m, a.north_m - b.north_m) for a, b in zip(batch_a, batch_b)) < 1e-3


def test_an_export_of_another_model_is_refused_in_one_line(micro_export, micro_index, vigor_city, tmp_path,
                                                          capsys):
    folder, _ = micro_export
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    data = json.loads((other / MANIFEST).read_text())
    data["model_hash"] = "f" * 64  # what an export of another checkpoint records
    (other / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ExportError, match="was exported from model ffffffffffff, not"):
        Localizer.from_paths(micro_index, device="cpu", backend=BackendSettings("onnxruntime",
                                                                               export_dir=str(other)))
    image = str(sorted((vigor_city[0] / "panorama").iterdir())[0])
    rc = cli.main(["localize", image, "--index", str(micro_index), "--device", "cpu", "--backend",
                   "onnxruntime", "--export", str(other)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "was exported from model ffffffffffff" in err[0]


def test_a_changed_or_missing_graph_and_a_folder_without_manifest_are_refused(micro_export, micro_checkpoint,
                                                                              tmp_path):
    folder, _ = micro_export
    identity = read_meta(micro_checkpoint).model_hash
    changed = tmp_path / "changed"
    shutil.copytree(folder, changed)
    raw = bytearray((changed / "ground.onnx").read_bytes())
    raw[-1] ^= 0xFF
    (changed / "ground.onnx").write_bytes(bytes(raw))
    with pytest.raises(ExportError, match="changed since the export"):
        read_manifest(changed, identity)
    (changed / "ground.onnx").unlink()
    with pytest.raises(ExportError, match="missing or changed"):
        read_manifest(changed, identity)
    with pytest.raises(ExportError, match="no export.json"):
        read_manifest(tmp_path, identity)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(ExportError, match="malformed manifest"):
        read_manifest(tmp_path, identity)
    # a manifest naming a graph outside its folder is refused before anything is read (the hash is the writer's)
    for name in ("../outside/ground.onnx", str(tmp_path / "abs.onnx"), "..", "sub/ground.onnx"):
        escaped = tmp_path / f"esc{abs(hash(name))}"
        shutil.copytree(folder, escaped)
        data = json.loads((escaped / MANIFEST).read_text())
        data["graphs"]["ground"]["file"] = name
        (escaped / MANIFEST).write_text(json.dumps(data))
        with pytest.raises(ExportError, match="not a file name inside the export folder"):
            read_manifest(escaped, identity)


def test_without_a_folder_the_export_is_made_once_in_the_cache_of_its_model(micro_index, micro_checkpoint,
                                                                           tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    identity = read_meta(micro_checkpoint).model_hash
    settings = BackendSettings("onnxruntime")
    first = Localizer.from_paths(micro_index, device="cpu", backend=settings)
    folder = cached_export_dir(identity)
    assert folder.parent == tmp_path / "cache" / "unifygeo" / "onnx" and folder.name == identity[:32]
    assert read_manifest(folder, identity).model_hash == identity
    assert "exporting the encoders to ONNX once" in capsys.readouterr().out
    stamp = (folder / MANIFEST).stat().st_mtime_ns
    second = Localizer.from_paths(micro_index, device="cpu", backend=settings)  # reused, not exported again
    assert "exporting" not in capsys.readouterr().out and (folder / MANIFEST).stat().st_mtime_ns == stamp
    pano = np.random.default_rng(0).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    assert first.localize(pano).tile_id == second.localize(pano).tile_id
    assert not list(folder.parent.glob("*.tmp*"))  # the work folder is gone


def test_an_index_of_another_model_fails_before_any_export(micro_checkpoint, other_micro_checkpoint, micro_index,
                                                          tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(UnifyGeoError, match="model"):
        Localizer.from_paths(micro_index, other_micro_checkpoint, device="cpu",
                             backend=BackendSettings("onnxruntime"))
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("kwargs, text", [
    ({"backend": "tensorflow"}, "backend must be one of torch, onnxruntime"),
    ({"threads": -1}, "threads must be a non-negative integer"),
    ({"export_dir": "x"}, "needs backend onnxruntime"),
    ({"backend": "onnxruntime", "precision": "int8"}, "precision must be one of"),
])
def test_impossible_backend_settings_are_one_line_errors(kwargs, text):
    with pytest.raises(UnifyGeoError, match=text) as info:
        BackendSettings(**kwargs)
    assert "\n" not in str(info.value)


def test_fp16_without_tensorrt_is_refused_not_faked(micro_export, micro_checkpoint):
    folder, _ = micro_export
    with pytest.raises(UnifyGeoError, match="fp16 needs onnxruntime's TensorRT"):
        load_model(micro_checkpoint, "cpu", BackendSettings("onnxruntime", export_dir=str(folder),
                                                            precision="fp16"))


def test_the_sessions_run_on_the_requested_threads(micro_export, micro_checkpoint):
    folder, _ = micro_export
    before = torch.get_num_threads()
    try:
        handle = load_model(micro_checkpoint, "cpu", BackendSettings("onnxruntime", threads=2,
                                                                     export_dir=str(folder)))
        sessions = handle.model.encoders.sessions
        assert torch.get_num_threads() == 2 and "2 threads" in handle.backend
        assert {n: s.get_session_options().intra_op_num_threads for n, s in sessions.items()} == \
            {"ground": 2, "aerial": 2}
        assert handle.model.encoders.precision == {"ground": "fp32", "aerial": "fp32"}  # CPU: float32 only
    finally:
        torch.set_num_threads(before)


def test_the_node_loads_the_onnxruntime_backend_from_its_parameters(micro_export, micro_checkpoint, micro_index,
                                                                   vigor_city):
    from unifygeo_ros.localization.pipeline import Frame
    from unifygeo_ros.ros.params import NodeSettings
    from unifygeo_ros.ros.worker import load_pipeline

    folder, _ = micro_export
    settings = NodeSettings.from_params({"checkpoint": str(micro_checkpoint), "index": str(micro_index),
                                         "device": "cpu", "backend": "onnxruntime", "onnx_export": str(folder),
                                         "min_score": 0.0, "max_protection_level_m": float("inf")})
    pipeline, info = load_pipeline(settings)
    assert info.backend.startswith("onnxruntime") and "CPUExecutionProvider fp32, 1 thread" in info.backend
    pano = _panoramas(vigor_city, 1)[0]
    out = pipeline.process(Frame(1, 1.0, lambda: pano))
    ref = Localizer.from_paths(micro_index, device="cpu").localize(pano)
    assert out.published and np.hypot(out.fix.east_m - ref.east_m, out.fix.north_m - ref.north_m) < 1e-3
