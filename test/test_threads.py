"""CPU threads (issue #18): ``--threads`` of localize / replay / eval and the node's ``cpu_threads`` set torch's
intra-op threads (and onnxruntime's: test_export.py); the default is one thread, measured (docs/DEPLOYMENT.md)."""
from __future__ import annotations

import argparse
import importlib

import pytest
import torch

from unifygeo_ros import cli
from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.localization.localizer import Localizer
from unifygeo_ros.model.backends import DEFAULT_THREADS, BackendSettings, backend_from_args
from unifygeo_ros.ros.params import PARAMETERS, NodeSettings


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """Each test may change torch's process-wide thread count; the suite runs on one."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_default_is_one_thread_everywhere():
    assert DEFAULT_THREADS == 1 and BackendSettings().threads == 1
    assert {p.name: p.default for p in PARAMETERS}["cpu_threads"] == 1
    node = NodeSettings.from_params({})
    assert node.cpu_threads == 1 and node.backend_settings() == BackendSettings("torch", 1, None)


@pytest.mark.parametrize("command", ["localize", "replay", "eval"])
def test_each_offline_command_takes_backend_and_threads(command):
    module = importlib.import_module(cli.COMMANDS[command][0])
    parser = argparse.ArgumentParser()
    module.configure_parser(parser)
    required = {"localize": ["x.jpg", "--index", "ix"], "replay": ["bag", "--index", "ix", "--out", "o"],
                "eval": ["--data", "d", "--checkpoint", "c", "--json", "j"]}[command]
    assert backend_from_args(parser.parse_args(required)) == BackendSettings("torch", 1, None, "auto")
    args = parser.parse_args(required + ["--backend", "onnxruntime", "--threads", "2", "--export", "e"])
    assert backend_from_args(args) == BackendSettings("onnxruntime", 2, "e", "auto")
    with pytest.raises(UnifyGeoError, match="threads must be a non-negative"):
        backend_from_args(parser.parse_args(required + ["--threads", "-1"]))


def test_localize_threads_set_torch_and_zero_keeps_its_default(micro_index, vigor_city, capsys):
    image = str(sorted((vigor_city[0] / "panorama").iterdir())[0])
    torch.set_num_threads(1)
    assert cli.main(["localize", image, "--index", str(micro_index), "--device", "cpu", "--threads", "2"]) == 0
    assert torch.get_num_threads() == 2
    capsys.readouterr()
    Localizer.from_paths(micro_index, device="cpu", backend=BackendSettings("torch", threads=0))
    assert torch.get_num_threads() == 2  # 0: left as it was
    Localizer.from_paths(micro_index, device="cpu", backend=None)
    assert torch.get_num_threads() == 2  # no settings: untouched (the API's old behaviour)


def test_the_node_loads_with_its_cpu_threads_and_backend(micro_checkpoint, micro_index):
    from unifygeo_ros.ros.worker import load_pipeline

    torch.set_num_threads(3)
    pipeline, info = load_pipeline(NodeSettings.from_params({"checkpoint": str(micro_checkpoint),
                                                             "index": str(micro_index), "device": "cpu"}))
    assert torch.get_num_threads() == 1  # the default, measured
    assert info.backend.startswith("torch") and "1 thread" in info.backend
    assert pipeline.localizer.handle.backend == info.backend


@pytest.mark.parametrize("params, text", [
    ({"backend": "tensorflow"}, "parameter backend"),
    ({"onnx_export": "/some/export"}, "onnx_export: needs backend onnxruntime"),
    ({"cpu_threads": -2}, "cpu_threads: must be a non-negative"),
])
def test_impossible_backend_parameters_of_the_node_are_refused(params, text):
    with pytest.raises(UnifyGeoError, match=text):
        NodeSettings.from_params(params)
