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


def test_mcap_of_its_magic_bytes_alone_is_a_bag_error(tmp_path):
    """A recorder killed right after opening the file leaves the 8 magic bytes: one BagError like any truncation
    (rosbags raised a TypeError)."""
    _write_bag(tmp_path / "b", "mcap", n=2)
    f = next((tmp_path / "b").glob("*.mcap"))
    f.write_bytes(f.read_bytes()[:8])
    for warnings in ([], None):
        with pytest.raises(bags.BagError, match="cannot open bag"):
            with bags.open_bag(tmp_path / "b", warnings):
                pass


def _damaged_metadata(text: str) -> dict[str, str]:
    """metadata.yaml cut short where the YAML still parses but a mapping became None or a string (a copy made while
    the recorder wrote it), and values of the wrong kind."""
    top, start = "rosbag2_bagfile_information:", "starting_time:\n    nanoseconds_since_epoch"
    bag_start = text.rindex(start) + len(start) + 2  # the bag's (after the files'): rosbags reads that one
    return {"info None": text[:text.index(top) + len(top)],
            "info a string": text[:text.index(top) + len(top) + 7],
            "starting_time a string": text[:text.index(start) + len(start) - 6],
            "message_count many": text.replace("message_count: 2", "message_count: many", 1),
            "duration a string": text.replace("nanoseconds: ", "nanoseconds: x", 1),
            "starting_time yesterday": text[:bag_start] + "yesterday" + text[bag_start:],
            "not a mapping": "[1, 2, 3]\n"}


DAMAGED_METADATA = ("info None", "info a string", "starting_time a string", "message_count many",
                    "duration a string", "starting_time yesterday", "not a mapping")


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
@pytest.mark.parametrize("damage", DAMAGED_METADATA)
def test_damaged_metadata_yaml_is_salvaged_with_a_warning_never_a_traceback(tmp_path, storage, damage):
    """A damaged metadata.yaml: the storage file is read by the salvage scan (one warning says the bag is damaged)
    and replay chooses its topics; no AttributeError/TypeError/ValueError from the metadata."""
    from unifygeo_ros.rosbag.replay_topics import choose_topics

    d = tmp_path / "b"
    _write_bag(d, storage, n=2)
    (d / "metadata.yaml").write_text(_damaged_metadata((d / "metadata.yaml").read_text())[damage])
    warnings: list[str] = []
    with bags.open_bag(d, warnings) as r:
        assert [(t.topic, t.count) for t in bags.list_topics(r)] == [("/fix", 2), ("/img", 2)]
        topics = choose_topics(r, d, warnings=warnings)
    assert (topics.image, topics.gt, topics.kidnap_ns) == ("/img", "/fix", None)
    assert len(warnings) == 1 and "damaged or incomplete" in warnings[0] and "salvage" in warnings[0]


def _with_description(bag: Path, description_json: str) -> None:
    """Put ``description_json`` (bag synth's metadata description, JSON text) into the bag's metadata.yaml."""
    import yaml

    from unifygeo_ros.rosbag.synth_topics import METADATA_KEY

    meta = yaml.safe_load((bag / "metadata.yaml").read_text())
    meta["rosbag2_bagfile_information"]["custom_data"] = {METADATA_KEY: description_json}
    (bag / "metadata.yaml").write_text(yaml.safe_dump(meta))


GOOD_DESCRIPTION = {"camera": "panorama", "base_frame": "base_link", "kidnap_topic": "/gt/kidnap", "kidnap_at_s": 0.1,
                    "north_aligned": True, "stops": [],
                    "cameras": [{"name": "front", "image_topic": "/img", "yaw_deg": 0.0, "pitch_deg": 0.0}]}


@pytest.mark.parametrize("key, value, problem", [
    (None, None, ""),  # the description as bag synth writes it: taken whole, no warning
    ("kidnap_at_s", "NaN", "nan is not a number of seconds in [0, 1e+09]"),
    ("kidnap_at_s", "Infinity", "inf is not a number of seconds"),
    ("kidnap_at_s", '"soon"', "'soon' is not a number of seconds"),
    ("kidnap_at_s", "1e300", "1e+300 is not a number of seconds"),
    ("kidnap_at_s", "-3", "-3 is not a number of seconds"),
    ("north_aligned", '"false"', "'false' is not a boolean (true or false)"),
    ("cameras", "[1, 2]", "entry 1 is not a mapping"),
    ("cameras", '"front"', "'front' is not a list"),
    ("cameras", '[{"name": "front", "image_topic": "/img", "yaw_deg": NaN}]', "yaw_deg nan is not a finite number"),
    ("kidnap_topic", "7", "7 is not a name"),
])
def test_a_description_field_of_the_wrong_kind_is_ignored_with_one_warning_naming_it(tmp_path, key, value, problem):
    """bag synth's metadata description with one field of the wrong kind (JSON allows NaN; a hand-edited "false"):
    replay goes on as for a bag without that field and says so in one line; the other fields are kept."""
    import json

    from unifygeo_ros.rosbag.replay_inputs import resolve_heading_source
    from unifygeo_ros.rosbag.replay_topics import choose_topics

    d = tmp_path / "b"
    _write_bag(d, "sqlite3", n=2)
    text = json.dumps(GOOD_DESCRIPTION)
    _with_description(d, text if key is None else text[:-1] + f', "{key}": {value}}}')  # the last "key" wins
    warnings: list[str] = []
    with bags.open_bag(d, warnings) as r:
        topics = choose_topics(r, d, warnings=warnings)
    want = {k: v for k, v in GOOD_DESCRIPTION.items() if k != key}
    assert topics.description == want
    assert len(warnings) == (key is not None)
    assert all(w.startswith(f"bag metadata unifygeo.bag_synth: {key} ignored (") and problem in w for w in warnings)
    assert topics.kidnap_ns == (None if key == "kidnap_at_s" else T0 + 100_000_000)
    heading = resolve_heading_source("auto", topics.description, False, False, warnings)
    assert heading == ("model" if key == "north_aligned" else "north_aligned")  # the string "false" is no True


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
