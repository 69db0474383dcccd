"""ament_python package that also installs with plain pip (``pip install -e .``)."""
from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = "unifygeo_ros"


def tree(src: str) -> list[tuple[str, list[str]]]:
    """data_files entries that mirror ``src`` under share/<package>/<src>."""
    entries = []
    for root, _dirs, files in os.walk(src):
        paths = [os.path.join(root, f) for f in sorted(files) if not f.startswith(".")]
        if paths:
            entries.append((os.path.join("share", PACKAGE, root), paths))
    return entries


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    python_requires=">=3.10",
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        *tree("config"),
        *tree("models"),
    ],
    install_requires=[
        "numpy",
        "pyyaml",
        "scipy",
        "opencv-python-headless",
        "simplejpeg",
        "safetensors",
        "tqdm",
        "matplotlib",
    ],
    extras_require={
        "ml": ["torch", "torchvision", "timm", "faiss-cpu"],
        "bags": ["rosbags", "evo", "filterpy"],
        "ortho": ["rasterio", "pyproj"],
        "onnx": ["onnx", "onnxruntime", "onnxscript"],
        "test": ["pytest", "pytest-timeout", "pyproj", "geographiclib", "psutil"],
    },
    zip_safe=True,
    maintainer="unifygeo_ros maintainers",
    maintainer_email="maintainers@unifygeo.invalid",
    description="Cross-view geo-localization (UnifyGeo) for ROS 2: panorama + aerial map -> GeoPoseStamped",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "unifygeo = unifygeo_ros.cli:main",
            "localizer_node = unifygeo_ros.ros.node:main",
        ],
    },
)
