"""onnxruntime, imported on demand, and its CPU sessions: what the ONNX export (:mod:`unifygeo_ros.model.export`,
its parity check) and the onnxruntime backend (:mod:`unifygeo_ros.model.backends`) both open graphs with."""
from __future__ import annotations

from pathlib import Path

from unifygeo_ros.errors import UnifyGeoError


def require_onnxruntime():
    """The onnxruntime module, or a one-line :class:`UnifyGeoError` naming the install."""
    try:
        import onnxruntime
    except ImportError:
        raise UnifyGeoError("onnxruntime is not installed (pip install 'unifygeo_ros[onnx]')") from None
    return onnxruntime


def session_options(threads: int):
    """Sequential execution on ``threads`` intra-op threads (0: onnxruntime's default), errors-only logging."""
    ort = require_onnxruntime()
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3  # errors only
    return so


def cpu_session(path: str | Path, threads: int):
    """An onnxruntime session of the graph at ``path`` on the CPU provider."""
    ort = require_onnxruntime()
    return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
