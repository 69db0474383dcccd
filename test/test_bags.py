"""rosbag2 plumbing without ROS: geographic_msgs typestore, image conversions, reading damaged bags."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from rosbags.rosbag2 import StoragePlugin, Writer

from unifygeo_ros.errors import ImageError
from unifygeo_ros.rosbag import io as bags

THIRD_PARTY_MSGS = Path(__file__).resolve().parents[1] / "third_party" / "geographic_msgs" / "msg"
T0 = 1_700_000_000 * 1_000_000_000


def test_embedded_geographic_msgs_definitions_are_upstreams():
    assert bags.geographic_msgs_defs(THIRD_PARTY_MSGS) == bags.GEOGRAPHIC_MSGS_DEFS


def test_typestore_serializes_geopose_with_covariance_round_trip():
    ts = bags.make_typestore()
    T = ts.types
    pose = T["geographic_msgs/msg/GeoPose"](
        position=T["geographic_msgs/msg/GeoPoint"](latitude=47.5, longitude=8.25, altitude=2.0),
        orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.5 ** 0.5, w=0.5 ** 0.5))
    cov = np.arange(36, dtype=np.float64)
    msg = T[bags.GEOPOSE_COV_STAMPED](header=bags.header(ts, T0 + 5, "map"),
                                      pose=T["geographic_msgs/msg/GeoPoseWithCovariance"](pose=pose, covariance=cov))
    back = ts.deserialize_cdr(ts.serialize_cdr(msg, bags.GEOPOSE_COV_STAMPED), bags.GEOPOSE_COV_STAMPED)
    assert back.pose.pose.position.latitude == 47.5 and bags.stamp_to_ns(back.header.stamp) == T0 + 5
    np.testing.assert_array_equal(back.pose.covariance, cov)
    # the message definition the bag embeds is the upstream one (field `pose`, ros2 branch)
    text, _ = ts.generate_msgdef(bags.GEOPOSE_STAMPED, ros_version=2)
    assert "geographic_msgs/GeoPose pose" in text


def test_image_messages_convert_to_rgb_for_every_supported_encoding():
    ts = bags.make_typestore()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 12, 3), dtype=np.uint8)
    msg = bags.rgb_to_image_msg(ts, rgb, T0, "cam")
    np.testing.assert_array_equal(bags.image_msg_to_rgb(msg), rgb)
    # bgr8 with row padding (step > 3 W)
    padded = np.zeros((6, 40), np.uint8)
    padded[:, :36] = rgb[:, :, ::-1].reshape(6, 36)
    bgr = ts.types[bags.IMAGE](header=msg.header, height=6, width=12, encoding="bgr8", is_bigendian=0, step=40,
                               data=padded.reshape(-1))
    np.testing.assert_array_equal(bags.image_msg_to_rgb(bgr), rgb)
    mono = ts.types[bags.IMAGE](header=msg.header, height=6, width=12, encoding="mono8", is_bigendian=0, step=12,
                                data=rgb[:, :, 0].reshape(-1).copy())
    assert bags.image_msg_to_rgb(mono).shape == (6, 12, 3)
    # 16-bit grey (the node's codec; replay used to refuse it): scaled by >> 8
    mono16 = ts.types[bags.IMAGE](header=msg.header, height=1, width=2, encoding="mono16", is_bigendian=0, step=4,
                                  data=np.array([0x1234, 0xFF00], "<u2").view(np.uint8))
    assert bags.image_msg_to_rgb(mono16)[0, :, 0].tolist() == [0x12, 0xFF]
    jpeg = bags.rgb_to_compressed_msg(ts, np.full((32, 64, 3), 120, np.uint8), T0, "cam")
    assert np.abs(bags.compressed_msg_to_rgb(jpeg).astype(int) - 120).max() <= 3


def test_bad_image_messages_raise_image_errors():
    ts = bags.make_typestore()
    msg = bags.rgb_to_image_msg(ts, np.zeros((4, 8, 3), np.uint8), T0, "cam")
    short = ts.types[bags.IMAGE](header=msg.header, height=4, width=8, encoding="rgb8", is_bigendian=0, step=24,
                                 data=np.zeros(50, np.uint8))
    with pytest.raises(ImageError, match="truncated"):
        bags.image_msg_to_rgb(short)
    odd = ts.types[bags.IMAGE](header=msg.header, height=4, width=8, encoding="bayer_rggb8", is_bigendian=0,
                               step=8, data=np.zeros(32, np.uint8))
    with pytest.raises(ImageError, match="unsupported encoding"):
        bags.image_msg_to_rgb(odd)
    with pytest.raises(ImageError, match="not an image message type"):
        bags.msg_to_rgb(msg, bags.NAVSATFIX)
    broken = bags.rgb_to_compressed_msg(ts, np.zeros((16, 32, 3), np.uint8), T0, "cam")
    broken.data = broken.data[: len(broken.data) // 2]
    with pytest.raises(ImageError):
        bags.compressed_msg_to_rgb(broken)


def _write_bag(path: Path, storage: str, n: int = 30) -> None:
    ts = bags.make_typestore()
    plugin = StoragePlugin.SQLITE3 if storage == "sqlite3" else StoragePlugin.MCAP
    with Writer(path, version=9, storage_plugin=plugin) as w:
        ci = w.add_connection("/img", bags.IMAGE, typestore=ts)
        cf = w.add_connection("/fix", bags.NAVSATFIX, typestore=ts)
        rng = np.random.default_rng(1)
        for i in range(n):
            t = T0 + i * 100_000_000
            img = rng.integers(0, 256, (48, 96, 3), dtype=np.uint8)  # incompressible: spreads over pages
            w.write(ci, t, ts.serialize_cdr(bags.rgb_to_image_msg(ts, img, t, "cam"), bags.IMAGE))
            fix = ts.types[bags.NAVSATFIX](
                header=bags.header(ts, t, "gps"),
                status=ts.types["sensor_msgs/msg/NavSatStatus"](status=0, service=1),
                latitude=47.0 + i * 1e-5, longitude=8.0, altitude=0.0,
                position_covariance=np.zeros(9), position_covariance_type=0)
            w.write(cf, t, ts.serialize_cdr(fix, bags.NAVSATFIX))


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_intact_bag_lists_topics_and_reads_every_message(tmp_path, storage):
    _write_bag(tmp_path / "b", storage)
    warnings: list[str] = []
    with bags.open_bag(tmp_path / "b", warnings) as r:
        topics = bags.list_topics(r)
        assert [(t.topic, t.msgtype, t.count) for t in topics] == [("/fix", bags.NAVSATFIX, 30),
                                                                  ("/img", bags.IMAGE, 30)]
        got = [(c.topic, t) for c, t, _m in bags.iter_messages(r, r.connections, warnings)]
    assert len(got) == 60 and warnings == []


@pytest.mark.parametrize("storage,suffix", [("sqlite3", ".db3"), ("mcap", ".mcap")])
def test_bag_cut_in_half_is_salvaged_up_to_the_cut_with_a_warning(tmp_path, storage, suffix):
    _write_bag(tmp_path / "b", storage)
    f = next((tmp_path / "b").glob(f"*{suffix}"))
    with open(f, "r+b") as fh:
        fh.truncate(os.path.getsize(f) // 2)
    warnings: list[str] = []
    with bags.open_bag(tmp_path / "b", warnings) as r:
        msgs = list(bags.iter_messages(r, r.connections, warnings))
    assert 10 <= len(msgs) < 60
    assert any("damaged or incomplete" in w and "salvage" in w for w in warnings)
    stamps = [t for c, t, _ in msgs if c.topic == "/img"]
    assert stamps == [T0 + i * 100_000_000 for i in range(len(stamps))]  # a clean prefix, in order
    with pytest.raises(bags.BagError, match="damaged or incomplete"):
        with bags.open_bag(tmp_path / "b"):  # no warnings list: a damaged bag is an error
            pass


def test_missing_topic_error_lists_the_available_topics(tmp_path):
    _write_bag(tmp_path / "b", "sqlite3", n=2)
    with bags.open_bag(tmp_path / "b") as r:
        with pytest.raises(bags.BagError, match=r"'/camera' not in bag; available topics: /fix \(sensor_msgs/msg/"
                                                r"NavSatFix, 2 msgs\), /img"):
            bags.connections_for(r, "/camera")
        with pytest.raises(bags.BagError, match="expected one of sensor_msgs/msg/Image"):
            bags.connections_for(r, "/fix", bags.IMAGE_TYPES)


def test_unreadable_paths_raise_bag_errors(tmp_path):
    with pytest.raises(bags.BagError, match="not found"):
        with bags.open_bag(tmp_path / "nope"):
            pass
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "junk.mcap").write_bytes(b"not an mcap at all")
    with pytest.raises(bags.BagError, match="cannot open bag"):
        with bags.open_bag(tmp_path / "junk", []):
            pass
    shutil.rmtree(tmp_path / "junk")


def test_type_hashes_match_the_rosidl_generated_geographic_msgs():
    """`ros2 bag` checks a bag's type hashes against the installed interfaces: ours must be rosidl's."""
    import json

    overlay = Path(__file__).resolve().parents[1] / ".ros_overlay" / "install" / "share" / "geographic_msgs" / "msg"
    if not overlay.is_dir():
        pytest.skip(f"{overlay} not built (scripts/setup_ros_env.sh)")
    ts = bags.make_typestore()
    for name in bags.GEOGRAPHIC_MSGS_DEFS:
        desc = json.loads((overlay / f"{name.rsplit('/', 1)[1]}.json").read_text())
        want = next(h["hash_string"] for h in desc["type_hashes"] if h["type_name"] == name)
        assert ts.hash_rihs01(name) == want, name
