"""``unifygeo info``: versions, compute device, and which optional parts (ROS 2, CUDA, faiss GPU) are usable."""
from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
from dataclasses import asdict, dataclass, field


@dataclass
class EnvironmentInfo:
    unifygeo_ros: str
    python: str
    platform: str
    packages: dict[str, str | None] = field(default_factory=dict)
    device: str = "cpu"
    cuda_devices: list[str] = field(default_factory=list)
    faiss_gpus: int = 0
    ros2: dict[str, str | bool | None] = field(default_factory=dict)


def _version(module_name: str) -> str | None:
    try:
        module = importlib.import_module(module_name)
    except Exception:  # noqa: BLE001 - any import failure means "not usable"
        return None
    return str(getattr(module, "__version__", "installed"))


def _ros_info() -> dict[str, str | bool | None]:
    import os

    info: dict[str, str | bool | None] = {"distro": os.environ.get("ROS_DISTRO")}
    for name in ("rclpy", "geographic_msgs", "sensor_msgs", "cv_bridge", "launch", "launch_ros"):
        try:
            importlib.import_module(name)
            info[name] = True
        except Exception:  # noqa: BLE001
            info[name] = False
    return info


def collect() -> EnvironmentInfo:
    from unifygeo_ros import __version__

    info = EnvironmentInfo(
        unifygeo_ros=__version__,
        python=sys.version.split()[0],
        platform=f"{platform.system()} {platform.machine()}",
    )
    for name in ("numpy", "torch", "torchvision", "timm", "faiss", "cv2", "safetensors", "rosbags", "yaml"):
        info.packages[name] = _version(name)
    try:
        import torch

        if torch.cuda.is_available():
            info.device = "cuda"
            info.cuda_devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001
        pass
    try:
        import faiss

        info.faiss_gpus = int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0
    except Exception:  # noqa: BLE001
        pass
    info.ros2 = _ros_info()
    return info


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        print(json.dumps(asdict(info), indent=2))
        return 0
    print(f"unifygeo_ros {info.unifygeo_ros}  (python {info.python}, {info.platform})")
    for name, version in info.packages.items():
        print(f"  {name:12s} {version or 'not installed'}")
    cuda = ", ".join(info.cuda_devices) if info.cuda_devices else "none"
    print(f"device (auto): {info.device}   CUDA devices: {cuda}   faiss GPUs: {info.faiss_gpus}")
    ros = info.ros2
    flags = "  ".join(f"{k}={'yes' if v else 'no'}" for k, v in ros.items() if k != "distro")
    print(f"ROS 2: distro={ros.get('distro') or 'unset'}  {flags}")
    return 0
