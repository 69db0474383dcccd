"""A small synthetic city, a model and its aerial index, and panoramas with known poses: what the node tests,
the launch test and benchmarks/bench_node.py feed the node.

With the embedded demo (models/demo + models/demo/index, built on the demo city of ``unifygeo demo``) the demo
model and index are used and the queries are rendered in the demo city, so fixes can be checked against the
truth. Without it, a small city is rendered with ``unifygeo synth`` (``write_city``) and indexed with a randomly
initialised model of config/demo.yaml (the demo architecture: realistic latency, no accuracy).
"""
from __future__ import annotations

import base64
import json
import math
import queue
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
CITY = "NodeCity"
CITY_SEED = 4242
CITY_SIZE_M = 140.0
PANO_W = 256


@dataclass
class Query:
    rgb: np.ndarray  # H x W x 3 RGB uint8, centre column looks along heading_deg
    east_m: float  # index ENU
    north_m: float
    lat_deg: float
    lon_deg: float
    heading_deg: float  # compass


@dataclass
class NodeWorld:
    checkpoint: Path
    index: Path
    origin: tuple  # (lat, lon) of the index ENU frame
    trained: bool  # True: the demo model (check accuracy); False: random weights (check structure only)
    queries: list = field(default_factory=list)
    tile_m: float = 70.0
    known_orientation: bool = False  # the model needs the heading as input: queries are north-aligned
    extent_en_m: tuple = (0.0, 0.0, 0.0, 0.0)  # e0, e1, n0, n1 of the tiles' area


def demo_paths() -> tuple[Path, Path] | None:
    ckpt, ix = REPO / "models" / "demo", REPO / "models" / "demo" / "index"
    return (ckpt, ix) if (ckpt / "model.safetensors").is_file() and (ix / "index.json").is_file() else None


def _queries(city, origin, positions, headings, width=PANO_W):
    from unifygeo_ros import geo
    from unifygeo_ros.data import render as R

    enu = geo.LocalENU(*origin)
    light = R.GroundLighting.for_city(city)
    out = []
    for (e, n), h in zip(positions, headings):
        rgb = R.render_panorama(city, (float(e), float(n)), float(h), width, width // 2, 2.0, light)
        lat, lon = enu.from_en(float(e), float(n))
        out.append(Query(rgb, float(e), float(n), float(lat), float(lon), float(h)))
    return out


def build_world(tmp: Path, n_queries: int = 4, seed: int = 0, use_demo: bool = True) -> NodeWorld:
    """The world (see the module docstring); ``tmp``: a scratch folder for the city, model and index."""
    import torch

    from unifygeo_ros.data import synth
    from unifygeo_ros.data import world as W
    from unifygeo_ros.index import store

    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    demo = demo_paths() if use_demo else None
    if demo is not None:
        from unifygeo_ros.offline.demo import DEMO_SEED

        ckpt, ix = demo
        meta = store.read_meta(ix)
        size = 300.0
        origin = synth.origin_for_seed(DEMO_SEED)
        if abs(meta["origin"]["lat_deg"] - origin[0]) < 1e-6 and abs(meta["origin"]["lon_deg"] - origin[1]) < 1e-6:
            city = W.generate_city(DEMO_SEED, size)
            grid = synth.tile_grid(size, float(meta["tile_m"]))
            pos = synth.sample_camera_positions(city, grid, n_queries, rng)
            known = json.loads((ckpt / "config.json").read_text())["data"]["orientation"] == "known"
            heads = np.zeros(n_queries) if known else rng.uniform(-180, 180, n_queries)
            en = np.array([meta["tiles"]["east_m"], meta["tiles"]["north_m"]]).T
            t = float(meta["tile_m"]) / 2
            return NodeWorld(ckpt, ix, origin, True, _queries(city, origin, pos, heads), float(meta["tile_m"]),
                             known, (en[:, 0].min() - t, en[:, 0].max() + t, en[:, 1].min() - t, en[:, 1].max() + t))
    # random-weights fallback
    from unifygeo_ros.config import load_config
    from unifygeo_ros.index import build as index_build
    from unifygeo_ros.index import tiles
    from unifygeo_ros.model import build_model
    from unifygeo_ros.model.checkpoint import save_checkpoint

    data = tmp / "data"
    if not (data / CITY / "geo.json").exists():
        synth.write_city(str(data), CITY, CITY_SEED, CITY_SIZE_M, n_panos=2, tile_px=64, pano_width=PANO_W,
                         overwrite=True, progress=False)
    cfg = load_config(REPO / "config" / "demo.yaml")  # the demo architecture (known orientation), random weights
    torch.manual_seed(seed)
    ckpt = tmp / "ckpt"
    save_checkpoint(ckpt, build_model(cfg), cfg)
    from unifygeo_ros.model.handle import load_model

    ix = tmp / "index"
    handle = load_model(ckpt, "cpu")
    src = tiles.vigor_tiles(data / CITY, height=handle.aerial_channels == 4)
    index_build.build_index(handle, src, ix, progress=False)
    origin = (src.origin.lat0_deg, src.origin.lon0_deg)
    city = W.generate_city(CITY_SEED, CITY_SIZE_M)
    grid = synth.tile_grid(CITY_SIZE_M, src.tile_m)
    pos = synth.sample_camera_positions(city, grid, n_queries, rng)
    known = cfg.data.orientation == "known"
    heads = np.zeros(n_queries) if known else rng.uniform(-180, 180, n_queries)
    en = np.array([[t.east_m, t.north_m] for t in src.tiles])
    t = src.tile_m / 2
    return NodeWorld(ckpt, ix, origin, False, _queries(city, origin, pos, heads), src.tile_m, known,
                     (en[:, 0].min() - t, en[:, 0].max() + t, en[:, 1].min() - t, en[:, 1].max() + t))


def other_checkpoint(tmp: Path, seed: int = 99) -> Path:
    """A checkpoint of the same architecture with other weights (an index built with another model)."""
    import torch

    from unifygeo_ros.config import load_config
    from unifygeo_ros.model import build_model
    from unifygeo_ros.model.checkpoint import save_checkpoint

    cfg = load_config(REPO / "config" / "demo.yaml")  # the demo architecture (known orientation), random weights
    torch.manual_seed(seed)
    save_checkpoint(tmp / "other_ckpt", build_model(cfg), cfg)
    return tmp / "other_ckpt"


def heading_error_deg(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def distance_m(e0, n0, e1, n1) -> float:
    return math.hypot(e1 - e0, n1 - n0)


# ------------------------------------------------------------------------------------ talking to the node
def image_fields(rgb: np.ndarray, encoding: str = "rgb8") -> dict:
    from unifygeo_ros.image.codec import rgb_to_image_fields

    f = rgb_to_image_fields(rgb, encoding)
    f["data"] = base64.b64encode(f["data"]).decode()
    return f


def jpeg_fields(rgb: np.ndarray) -> dict:
    ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    return {"format": "jpeg", "data": base64.b64encode(buf.tobytes()).decode()}


class DriverProc:
    """test/node_driver.py as a child; ``call(op, **kw)`` sends one JSON command and returns its answer."""

    def __init__(self, env: dict, namespaces: list[str], command: list[str] | None = None, stderr=subprocess.PIPE):
        """``command``: the driver's command line (default: test/node_driver.py with ``namespaces``)."""
        cmd = command or [sys.executable, str(REPO / "test" / "node_driver.py"), json.dumps(namespaces)]
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                     text=True, bufsize=1)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        first = self._next(60.0)
        assert first.get("ready"), first

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.lines.put(json.loads(line))

    def _next(self, timeout: float) -> dict:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"driver did not answer within {timeout} s (alive: {self.proc.poll() is None})")

    def call(self, op: str, wait_s: float | None = None, **kw) -> dict:
        """Send ``op`` with its arguments (``timeout`` is the driver op's own); wait ``wait_s`` for the answer."""
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        res = self._next(wait_s or float(kw.get("timeout", 0) or 0) + 30.0)
        assert res.get("ok"), res
        return res

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('{"op": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
