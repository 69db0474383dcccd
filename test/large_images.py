"""Large panoramas over DDS to a real localizer_node: what test_dds_large.py asserts and
benchmarks/bench_dds_large.py measures (docs/NODE.md, "Large images over DDS").

* :data:`SETUPS` - the DDS set-ups compared: Fast DDS's defaults, ``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA``, and the
  project's profile ``config/fastdds_large_data.xml`` (in every process, or in the node only). Each set-up is the
  environment of the node and the environment of the publisher.
* :func:`setup_env` - a ROS environment with exactly one set-up's DDS variables.
* :class:`NodeUnderTest` - one ``localizer_node`` process (its log in a file).
* :func:`large_panorama` / :func:`with_sensor_noise` - a panorama of the node world's city rendered at any width.
* :func:`stream` - a stream of one image at ``hz`` for ``seconds`` through the driver (test/node_driver.py), and
  what became of its frames, from the node's own ``/diagnostics`` counters (:class:`StreamResult`).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ros_helpers import NodeProcess

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "config" / "fastdds_large_data.xml"
# every variable that selects Fast DDS transports: removed before a set-up adds its own
DDS_VARIABLES = ("FASTDDS_BUILTIN_TRANSPORTS", "FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE",
                 "RMW_FASTRTPS_USE_QOS_FROM_XML")
_PROFILE_VARS = {"FASTDDS_DEFAULT_PROFILES_FILE": str(PROFILE)}
SETUPS: dict[str, tuple[dict, dict]] = {  # name -> (node's DDS variables, publisher's DDS variables)
    "defaults": ({}, {}),
    "large_data": ({"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}, {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}),
    "profile": (_PROFILE_VARS, _PROFILE_VARS),
    "profile_node_only": (_PROFILE_VARS, {}),
}
# the counters of the node's /diagnostics a stream is measured with
COUNTERS = ("received", "processed", "frames_dropped", "published", "withheld", "bad_input", "error")
TIMINGS = ("processing_ms_p50", "processing_ms_p95")  # the node's window of its last 100 frames


def setup_env(env: dict, variables: dict) -> dict:
    """``env`` without any Fast DDS transport variable, plus ``variables``."""
    out = {k: v for k, v in env.items() if k not in DDS_VARIABLES}
    out.update(variables)
    return out


NodeUnderTest = NodeProcess  # one localizer_node process (test/ros_helpers.py)


def large_panorama(world, width: int) -> np.ndarray:
    """The node world's first query (position, heading) rendered at ``width`` x ``width / 2`` (RGB uint8)."""
    import node_world as NW
    from unifygeo_ros.data import render as R
    from unifygeo_ros.data import world as W

    if world.trained:  # the embedded demo: its city (node_world.build_world renders the queries there)
        from unifygeo_ros.offline.demo import DEMO_SEED

        city = W.generate_city(DEMO_SEED, 300.0)
    else:
        city = W.generate_city(NW.CITY_SEED, NW.CITY_SIZE_M)
    q = world.queries[0]
    return R.render_panorama(city, (q.east_m, q.north_m), q.heading_deg, width, width // 2, 2.0,
                             R.GroundLighting.for_city(city))


def with_sensor_noise(rgb: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """``rgb`` plus Gaussian noise of ``sigma`` grey levels (a camera's noise: a rendered image compresses far better
    than a photograph)."""
    noise = np.random.default_rng(seed).normal(0.0, sigma, rgb.shape)
    return np.clip(rgb.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def counters(driver, ns: str, timeout_s: float = 10.0) -> dict:
    """The node's cumulative counters (and its recent processing times) from its first /diagnostics published
    from now on."""
    st = driver.call("diagnostics", name_contains=f"{ns}/", after_ns=time.time_ns(), timeout=timeout_s)["status"]
    if st is None:
        raise RuntimeError(f"no /diagnostics from {ns} within {timeout_s:g} s")
    return {**{k: int(float(st["values"][k])) for k in COUNTERS},
            **{k: float(st["values"].get(k, "nan")) for k in TIMINGS}}


def wait_subscribed(driver, ns: str, topic: str, kind: str, fields: dict, timeout_s: float = 30.0) -> None:
    """Publish a small image every second until the node counts one received (discovery is complete)."""
    start = counters(driver, ns)["received"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        driver.call("publish", topic=topic, kind=kind, fields=fields)
        if counters(driver, ns)["received"] > start:
            return
    raise RuntimeError(f"{ns} received nothing on {topic} within {timeout_s:g} s")


@dataclass
class StreamResult:
    """What became of a stream of frames. ``published``: frames the driver published; the others are the node's
    counters over the stream: ``received`` by its subscription (so ``published - received`` were lost by DDS),
    ``processed`` by the network, ``dropped`` from its one-frame slot (newer frame arrived first, by design),
    ``fixes`` published by it (the others ``withheld`` by its gate, or ``bad_input`` / ``error``); its processing
    time per frame (decoding included) at the end of the stream."""

    published: int
    publish_rate_hz: float
    received: int
    processed: int
    dropped: int
    fixes: int
    withheld: int
    bad_input: int
    error: int
    processing_ms_p50: float
    processing_ms_p95: float

    @property
    def delivered(self) -> float:
        return self.received / self.published if self.published else float("nan")

    @property
    def processed_share(self) -> float:
        return self.processed / self.published if self.published else float("nan")

    def as_dict(self) -> dict:
        return {**asdict(self), "delivered": round(self.delivered, 4),
                "processed_share": round(self.processed_share, 4)}


def stream(driver, ns: str, topic: str, kind: str, fields: dict, hz: float, seconds: float,
           settle_s: float = 3.0) -> StreamResult:
    """Publish ``fields`` (a fresh stamp each time) at ``hz`` for ``seconds``, wait ``settle_s`` for the node to
    finish, and count from the node's /diagnostics before and after."""
    before = counters(driver, ns)
    f = driver.call("flood", wait_s=seconds + 60.0, topic=topic, kind=kind, fields=fields, hz=hz, seconds=seconds)
    time.sleep(settle_s)
    after = counters(driver, ns)
    d = {k: after[k] - before[k] for k in COUNTERS}
    return StreamResult(published=int(f["published"]), publish_rate_hz=round(f["published"] / seconds, 2),
                        received=d["received"], processed=d["processed"], dropped=d["frames_dropped"],
                        fixes=d["published"], withheld=d["withheld"], bad_input=d["bad_input"], error=d["error"],
                        processing_ms_p50=after["processing_ms_p50"], processing_ms_p95=after["processing_ms_p95"])
