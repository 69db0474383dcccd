"""A damaged or hostile index folder ends in one one-line IndexFormatError at load (issue #16, index metadata):
bad numbers and names in index.json, aerial field names that would leave the folder, NaN/inf in the arrays,
arrays whose shapes or dtypes disagree with the metadata. Each broken index is made from ``micro_index``."""
from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from unifygeo_ros import cli
from unifygeo_ros.errors import IndexFormatError
from unifygeo_ros.index import layout, store

from conftest import index_city


# ------------------------------------------------------------------------------------------------- helpers
def _copy(src: Path, dst: Path) -> Path:
    return Path(shutil.copytree(src, dst))


def _meta(ix: Path) -> dict:
    return json.loads((ix / "index.json").read_text())


def _write_meta(ix: Path, meta: dict) -> None:
    (ix / "index.json").write_text(json.dumps(meta))  # NaN/Infinity written as JSON's non-standard literals


def _resave(ix: Path, name: str, arr: np.ndarray) -> None:
    """Save ``arr`` as array file ``name`` and record it in index.json as a build would (bytes, shape, dtype,
    sha256): only the content check can refuse it."""
    np.save(ix / name, arr, allow_pickle=False)
    meta = _meta(ix)
    meta["arrays"][name] = layout.array_record(ix / name, arr)
    _write_meta(ix, meta)


def _refused(ix: Path, match: str, verify: str = "size") -> str:
    """The one-line message ``load_index`` refuses ``ix`` with (``match``: a regex it must contain)."""
    with pytest.raises(IndexFormatError, match=match) as info:
        store.load_index(ix, verify=verify)
    message = str(info.value)
    assert "\n" not in message and "rebuild the index" in message, message
    return message


def _parent(meta: dict, keys: tuple[str, ...]) -> dict:
    for key in keys[:-1]:
        meta = meta[key]
    return meta


def _set(*keys: str, value):
    """An edit of index.json: set ``meta[k0][k1]...`` to ``value``."""
    def edit(meta: dict) -> None:
        _parent(meta, keys)[keys[-1]] = value
    return edit


def _drop(*keys: str):
    """An edit of index.json: delete ``meta[k0][k1]...``."""
    def edit(meta: dict) -> None:
        del _parent(meta, keys)[keys[-1]]
    return edit


def _tile_value(key: str, row: int, value):
    def edit(meta: dict) -> None:
        meta["tiles"][key][row] = value
    return edit


# ------------------------------------------------------------------------------------------------- metadata
META_CASES = {  # case: (edit of index.json, what the one-line error says)
    "tile_m NaN": (_set("tile_m", value=math.nan), r"tile_m must be a finite number, got nan"),
    "tile_m inf": (_set("tile_m", value=math.inf), r"tile_m must be a finite number, got inf"),
    "tile_m string": (_set("tile_m", value="70"), r"tile_m must be a finite number, got '70'"),
    "tile_m negative": (_set("tile_m", value=-70.0), r"tile_m must be positive"),
    "tile_m zero": (_set("tile_m", value=0), r"tile_m must be positive"),
    "tile_m true": (_set("tile_m", value=True), r"tile_m must be a finite number, got True"),
    "gsd_m NaN": (_set("gsd_m", value=math.nan), r"gsd_m must be a finite number"),
    "gsd_m negative": (_set("gsd_m", value=-0.2), r"gsd_m must be positive"),
    "tile_px zero": (_set("tile_px", value=0), r"tile_px must be an integer >= 1, got 0"),
    "tile_px fraction": (_set("tile_px", value=32.5), r"tile_px must be an integer >= 1, got 32.5"),
    "tile_px missing": (_drop("tile_px"), r"metadata field 'tile_px' is missing"),
    "model_aerial_px string": (_set("model_aerial_px", value="64"), r"model_aerial_px must be an integer"),
    "descriptor_dim negative": (_set("descriptor_dim", value=-16), r"descriptor_dim must be an integer >= 1, got -16"),
    "descriptor_dim string": (_set("descriptor_dim", value="16"), r"descriptor_dim must be an integer"),
    "count string": (_set("count", value="25"), r"count must be an integer >= 1, got '25'"),
    "count NaN": (_set("count", value=math.nan), r"count must be an integer >= 1, got nan"),
    "count zero": (_set("count", value=0), r"count must be an integer >= 1, got 0"),
    "origin missing": (_drop("origin"), r"metadata field 'origin' is missing"),
    "origin lat string": (_set("origin", "lat_deg", value="47.6"),
                          r"origin.lat_deg must be a finite number, got '47.6'"),
    "origin lat NaN": (_set("origin", "lat_deg", value=math.nan), r"origin.lat_deg must be a finite number"),
    "origin lat 95": (_set("origin", "lat_deg", value=95.0), r"origin.lat_deg must lie in \[-90, 90\], got 95.0"),
    "origin lon -200": (_set("origin", "lon_deg", value=-200.0), r"origin.lon_deg must lie in \[-180, 180\]"),
    "origin lon missing": (_drop("origin", "lon_deg"), r"origin.lon_deg is missing"),
    "origin a list": (_set("origin", value=[47.6, -122.3]), r"origin must be an object"),
    "aerial mode bogus": (_set("aerial", "mode", value="bogus"),
                          r"aerial.mode must be one of features, tiles, got 'bogus'"),
    "aerial mode missing": (_drop("aerial", "mode"), r"aerial.mode must be one of features, tiles, got None"),
    "aerial fields empty": (_set("aerial", "fields", value=[]), r"aerial.fields must be a non-empty list"),
    "aerial fields missing": (_drop("aerial", "fields"), r"aerial.fields must be a non-empty list"),
    "aerial field not a name": (_set("aerial", "fields", value=["cells0", "cells 1"]),
                                r"'cells 1' is not a plain name"),
    "aerial field a number": (_set("aerial", "fields", value=[0]), r"aerial field 0 is not a plain name"),
    "aerial fields of the other mode": (_set("aerial", "fields", value=["tiles"]),
                                        r"mode features needs fields cells0"),
    "tiles list too short": (lambda m: m["tiles"]["lat_deg"].pop(), r"tiles.lat_deg has 24 entries for count 25"),
    "tiles list not a list": (_set("tiles", "east_m", value=3.0), r"tiles.east_m must be a list of 25 values"),
    "tile lat NaN": (_tile_value("lat_deg", 4, math.nan), r"tiles.lat_deg must hold finite numbers, found nan"),
    "tile lat string": (_tile_value("lat_deg", 4, "47.6"), r"tiles.lat_deg must hold finite numbers, found '47.6'"),
    "tile lon out of range": (_tile_value("lon_deg", 2, 181.0), r"tiles.lon_deg holds 181.0, outside"),
    "tile east null": (_tile_value("east_m", 0, None), r"tiles.east_m must hold finite numbers, found None"),
    "tile east a list": (_tile_value("east_m", 1, [1.0, 2.0]), r"tiles.east_m must hold finite numbers, found \[1.0"),
    "tile north inf": (_tile_value("north_m", 9, math.inf), r"tiles.north_m must hold finite numbers, found inf"),
    "tile ordinal fraction": (_tile_value("ordinal", 3, 2.5), r"tiles.ordinal must hold finite integers, found 2.5"),
    "tile ordinal repeated": (_tile_value("ordinal", 3, 2), r"tiles.ordinal must be distinct non-negative"),
    "tile ordinal negative": (_tile_value("ordinal", 3, -1), r"tiles.ordinal must be distinct non-negative"),
    "tile id a number": (_tile_value("ids", 1, 7), r"tiles.ids must all be strings"),
    "search kind bogus": (_set("search", "kind", value="bogus"), r"search.kind must be one of exact, ivf, hnsw, numpy"),
    "search param string": (_set("search", "params", value={"nprobe": "eight"}),
                            r"search.params.nprobe must be an integer"),
    "shard index past count": (_set("shard", value={"index": 2, "count": 2}), r"shard.index 2 is not below"),
    "model identity empty": (_set("model", "identity", value=""), r"model.identity must be the checkpoint's"),
    "source not an object": (_set("source", value="here"), r"source must be an object"),
    "array record not an object": (_set("arrays", "descriptors.npy", value=7),
                                   r"arrays.descriptors.npy must be an object"),
    "array bytes a string": (_set("arrays", "descriptors.npy", "bytes", value="5"),
                             r"arrays.descriptors.npy.bytes must be an integer"),
    "array record missing": (_drop("arrays", "aerial_cells0.npy"), r"arrays has no record of aerial_cells0.npy"),
    "array name with a folder": (_set("arrays", "../x.npy", value={"bytes": 1}), r"arrays lists '../x.npy', not a"),
    "metadata emptied": (lambda m: m.clear(), r"not a unifygeo-index index \(format None\)"),
}


@pytest.mark.parametrize("case", sorted(META_CASES))
def test_bad_metadata_is_one_line_at_load(micro_index, tmp_path, case):
    edit, match = META_CASES[case]
    ix = _copy(micro_index, tmp_path / "ix")
    meta = _meta(ix)
    edit(meta)
    _write_meta(ix, meta)
    with pytest.raises(IndexFormatError, match=match) as info:
        store.read_meta(ix)
    assert "\n" not in str(info.value) and "rebuild the index" in str(info.value)
    _refused(ix, match)  # the loader reads the metadata through the same check


def test_metadata_that_is_not_an_object_is_one_line(micro_index, tmp_path):
    ix = _copy(micro_index, tmp_path / "ix")
    (ix / "index.json").write_text("[1, 2]")
    _refused(ix, r"index.json: not a unifygeo-index index \(format None\)")


# ------------------------------------------------------------------------------------- paths out of the folder
def _outside_field(micro_index: Path, tmp_path: Path, field: str) -> Path:
    """A copy of ``micro_index`` at tmp_path/ix whose aerial fields add ``field``, with a valid array of 25 rows
    where ``aerial_<field>.npy`` points (outside the folder) and its record: only the name check refuses it."""
    ix = _copy(micro_index, tmp_path / "ix")
    target = Path(str(ix / f"aerial_{field}.npy"))
    target.parent.mkdir(parents=True, exist_ok=True)
    secret = np.arange(25 * 4, dtype=np.float16).reshape(25, 4, 1, 1)
    np.save(target, secret)
    meta = _meta(ix)
    meta["aerial"]["fields"].append(field)
    meta["arrays"][f"aerial_{field}.npy"] = layout.array_record(target, secret)
    _write_meta(ix, meta)
    return ix


@pytest.mark.parametrize("field", ["x/../../outside", "../outside", "sub/inner"])
def test_an_aerial_field_cannot_name_a_file_outside_the_folder(micro_index, tmp_path, field):
    ix = _outside_field(micro_index, tmp_path, field)
    _refused(ix, rf"aerial field '{re.escape(field)}' is not a plain name")


def test_an_absolute_aerial_field_is_refused(micro_index, tmp_path):
    ix = _copy(micro_index, tmp_path / "ix")
    meta = _meta(ix)
    meta["aerial"]["fields"] = [f"cells0{tmp_path}/x"]
    _write_meta(ix, meta)
    _refused(ix, r"is not a plain name")


def test_every_file_path_is_checked_to_stay_in_the_folder(micro_index, tmp_path):
    """Beyond the metadata check: the file reader itself refuses any name that leaves the folder."""
    ix = _outside_field(micro_index, tmp_path, "x/../../outside")
    rec = _meta(ix)["arrays"]["aerial_x/../../outside.npy"]
    assert (tmp_path / "outside.npy").is_file()  # the file the name points at exists, outside the folder
    for name in ("aerial_x/../../outside.npy", "../outside.npy", str(tmp_path / "outside.npy"), "..", "."):
        with pytest.raises(IndexFormatError, match="not a file name inside the index folder"):
            layout.load_npy(ix, name, rec, "size", mmap=True)
    assert layout.file_in_folder(ix, "descriptors.npy") == ix / "descriptors.npy"


# ------------------------------------------------------------------------------------- NaN/inf in the arrays
@pytest.mark.parametrize("name,row,value", [("descriptors.npy", 3, np.nan), ("descriptors.npy", 24, -np.inf),
                                            ("aerial_cells0.npy", 7, np.inf), ("aerial_cells0.npy", 0, np.nan)])
@pytest.mark.parametrize("verify", ["size", "sha256"])
def test_non_finite_values_in_the_arrays_are_refused_at_load(micro_index, tmp_path, name, row, value, verify):
    ix = _copy(micro_index, tmp_path / "ix")
    arr = np.load(ix / name)
    arr[row].flat[arr[row].size // 2] = value
    _resave(ix, name, arr)  # same shape and dtype, records updated: the hash check passes
    _refused(ix, rf"{name} holds NaN or infinite values \(tile row {row}\)", verify=verify)


def test_the_finite_scan_reads_in_bounded_chunks():
    arr = np.zeros((50, 4, 3, 3), np.float16)
    arr[37, 2, 1, 0] = np.nan
    assert layout.first_non_finite_row(arr, chunk_bytes=100) == 37  # 1 row (72 bytes) per chunk
    assert layout.first_non_finite_row(arr.astype(np.float32), chunk_bytes=10 ** 6) == 37
    assert layout.first_non_finite_row(arr.astype(">f4")) == 37  # not native: np.isfinite
    arr[37] = np.finfo(np.float16).max  # the largest finite value is not refused
    assert layout.first_non_finite_row(arr, chunk_bytes=100) is None
    assert layout.first_non_finite_row(np.full((3, 2), 255, np.uint8)) is None


def test_an_index_is_never_written_with_non_finite_values(micro_index, tmp_path):
    ix = _copy(micro_index, tmp_path / "ix")
    meta = _meta(ix)
    data = store.index_data(store.load_index(ix))
    data.aerial["cells0"][5, 0, 0, 0] = np.inf
    with pytest.raises(IndexFormatError, match=r"cannot write index .*aerial_cells0.npy of tile .* holds NaN"):
        store.write_index(ix, data, {k: meta[k] for k in ("model", "tile_m", "tile_px", "gsd_m", "origin",
                                                          "source", "aerial")})
    store.load_index(ix, verify="sha256")  # the index that was there is untouched


def test_a_damaged_record_cannot_make_a_rebuild_delete_other_files(micro_index, tmp_path):
    ix = _copy(micro_index, tmp_path / "ix")
    meta = _meta(ix)
    data = store.index_data(store.load_index(ix))
    (ix / "notes.txt").write_text("mine")
    meta["arrays"]["notes.txt"] = {"bytes": 4}
    _write_meta(ix, meta)
    store.write_index(ix, data, {k: meta[k] for k in ("model", "tile_m", "tile_px", "gsd_m", "origin", "source",
                                                      "aerial")})
    assert (ix / "notes.txt").read_text() == "mine"
    assert store.load_index(ix, verify="sha256").aerial_mode == "features"


# ----------------------------------------------------------------------------- shapes and dtypes vs metadata
ARRAY_CASES = {  # case: (file, new array from the old one, what the error says)
    "descriptors float64": ("descriptors.npy", lambda a: a.astype(np.float64), r"expected \(25, 16\) float32"),
    "descriptors one row short": ("descriptors.npy", lambda a: a[:24], r"is \(24, 16\) float32, expected \(25, 16\)"),
    "descriptors wider": ("descriptors.npy", lambda a: np.pad(a, ((0, 0), (0, 2))), r"expected \(25, 16\)"),
    "features one row short": ("aerial_cells0.npy", lambda a: a[:24], r"aerial_cells0.npy has 24 rows for 25 tiles"),
    "features float32": ("aerial_cells0.npy", lambda a: a.astype(np.float32),
                         r"dtype float32, aerial.dtype says float16"),
    "features 3-d": ("aerial_cells0.npy", lambda a: a.reshape(25, a.shape[1], -1),
                     r"not \(N, C, h, w\) floating-point features"),
    "features as integers": ("aerial_cells0.npy", lambda a: a.astype(np.int16), r"aerial.dtype says float16"),
}


@pytest.mark.parametrize("case", sorted(ARRAY_CASES))
def test_arrays_that_disagree_with_the_metadata_are_refused(micro_index, tmp_path, case):
    name, change, match = ARRAY_CASES[case]
    ix = _copy(micro_index, tmp_path / "ix")
    _resave(ix, name, change(np.load(ix / name)))
    _refused(ix, match, verify="sha256")


def test_a_record_that_disagrees_with_its_file_is_refused(micro_index, tmp_path):
    ix = _copy(micro_index, tmp_path / "ix")
    meta = _meta(ix)
    meta["arrays"]["aerial_cells0.npy"]["shape"][1] += 1  # same bytes on disk, another shape in the record
    _write_meta(ix, meta)
    _refused(ix, r"aerial_cells0.npy has shape .* the metadata says")


@pytest.fixture(scope="module")
def tiles_index(tmp_path_factory, vigor_city, micro_checkpoint) -> Path:
    """``vigor_city`` indexed with ``micro_checkpoint`` in aerial mode "tiles" (64 px model inputs)."""
    from unifygeo_ros.model.handle import load_model

    out = tmp_path_factory.mktemp("tiles") / "ix"
    return index_city(load_model(micro_checkpoint, "cpu"), vigor_city[0], out, aerial_mode="tiles")


def test_tiles_mode_arrays_are_checked_against_the_metadata(tiles_index, tmp_path):
    assert store.load_index(tiles_index).aerial["tiles"].shape == (25, 64, 64, 3)
    ix = _copy(tiles_index, tmp_path / "px")
    meta = _meta(ix)
    meta["model_aerial_px"] = 32
    _write_meta(ix, meta)
    _refused(ix, r"aerial_tiles.npy is \(25, 64, 64, 3\) uint8 \(64 px tiles, model_aerial_px says 32\)")
    ix = _copy(tiles_index, tmp_path / "float")
    meta = _meta(ix)
    del meta["aerial"]["dtype"]
    _write_meta(ix, meta)
    _resave(ix, "aerial_tiles.npy", np.load(ix / "aerial_tiles.npy").astype(np.float32))
    _refused(ix, r"not \(N, A, A, 3 or 4\) uint8 tiles\) in aerial mode tiles")
    ix = _copy(tiles_index, tmp_path / "fields")
    meta = _meta(ix)
    meta["aerial"]["fields"] = ["cells0"]
    _write_meta(ix, meta)
    _refused(ix, r"aerial mode tiles needs fields tiles, got cells0")


# ------------------------------------------------------------------------------------------------- the CLI
def _one_error_line(capsys) -> str:
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("damage,match", [
    ("tile_m", "tile_m must be a finite number, got nan"),
    ("field", "aerial field 'x/../../outside' is not a plain name"),
    ("descriptors", r"descriptors.npy holds NaN or infinite values \(tile row 2\)"),
])
def test_cli_localize_and_info_refuse_a_damaged_index_in_one_line(micro_index, micro_checkpoint, vigor_city,
                                                                  tmp_path, capsys, damage, match):
    if damage == "field":
        ix = _outside_field(micro_index, tmp_path, "x/../../outside")
    else:
        ix = _copy(micro_index, tmp_path / "ix")
        if damage == "tile_m":
            _write_meta(ix, {**_meta(ix), "tile_m": math.nan})
        else:
            desc = np.load(ix / "descriptors.npy")
            desc[2, 0] = np.nan
            _resave(ix, "descriptors.npy", desc)
    pano = sorted((vigor_city[0] / "panorama").iterdir())[0]
    assert cli.main(["localize", str(pano), "--index", str(ix), "--checkpoint", str(micro_checkpoint),
                     "--device", "cpu", "--json"]) == 1
    line = _one_error_line(capsys)
    assert line.startswith("unifygeo localize: error: ") and re.search(match, line), line
    assert cli.main(["index", "info", str(ix)]) == 1
    line = _one_error_line(capsys)
    assert line.startswith("unifygeo index: error: ") and re.search(match, line), line
