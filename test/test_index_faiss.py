"""The faiss structure of an index (search.faiss) is checked at load, not only its size: the vectors it stores are
finite and normalised, each tile stored once; its class and metric are the search kind's; an HNSW graph links only
stored vectors. A search.faiss full of NaN with the right size used to load and make
``unifygeo localize`` and the node's warm-up end in a traceback (RuntimeError in the metric head). Each damaged
index is made from ``micro_index`` and recorded as a build would (bytes, sha256): only the content check can refuse
it."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from unifygeo_ros import cli
from unifygeo_ros.errors import IndexFormatError, UnifyGeoError
from unifygeo_ros.index import layout, store
from unifygeo_ros.index import search as search_mod

faiss = pytest.importorskip("faiss")
KINDS = ("exact", "ivf", "hnsw")


def _index_with(micro_index: Path, tmp_path: Path, kind: str, edit=None) -> Path:
    """A copy of ``micro_index`` whose search.faiss is a ``kind`` structure built from its descriptors, then changed
    by ``edit(faiss_index)`` or, when that returns bytes, replaced by them."""
    ix = Path(shutil.copytree(micro_index, tmp_path / "ix"))
    desc = np.load(ix / "descriptors.npy")
    index, info = search_mod.build_faiss_index(desc, kind, recall_queries=20)
    path = ix / "search.faiss"
    faiss.write_index(index, str(path))
    if edit is not None:
        data = edit(index)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            faiss.write_index(index, str(path))
    meta = json.loads((ix / "index.json").read_text())
    meta["search"] = info.to_dict()
    meta["arrays"]["search.faiss"] = layout.file_record(path)
    (ix / "index.json").write_text(json.dumps(meta))
    return ix


def _refused(ix: Path, match: str) -> str:
    for verify in ("size", "sha256"):
        with pytest.raises(IndexFormatError, match=match) as info:
            store.load_index(ix, verify=verify)
    message = str(info.value)
    assert "\n" not in message and message.endswith("; rebuild the index"), message
    return message


def _vector_bytes(index, row: int) -> bytes:
    """The stored vector ``row`` as it is written (an IVF copy needs a direct map to reconstruct it)."""
    if isinstance(index, faiss.IndexIVF):
        index = faiss.clone_index(index)
        index.make_direct_map()
    return np.asarray(index.reconstruct(row), np.float32).tobytes()


def _row_edit(row: int, new_vector):
    """An edit: the bytes of stored vector ``row`` in the written file replaced by those of ``new_vector(vector)``
    (the file's size unchanged)."""
    def edit(index) -> bytes:
        data = faiss.serialize_index(index).tobytes()
        old = _vector_bytes(index, row)
        assert data.count(old) == 1
        return data.replace(old, np.asarray(new_vector(np.frombuffer(old, np.float32)), np.float32).tobytes())
    return edit


def _nan_row(row: int):
    return _row_edit(row, lambda v: np.full_like(v, np.nan))


@pytest.mark.parametrize("kind", KINDS)
def test_valid_structures_of_every_kind_load_and_search_as_exact(micro_index, tmp_path, kind):
    ix = store.load_index(_index_with(micro_index, tmp_path, kind))
    q = ix.descriptors[:5] + 0.01
    assert (ix.searcher.search(q, 3)[1][:, 0] == search_mod.numpy_topk(q, ix.descriptors, 3)[1][:, 0]).all()


@pytest.mark.parametrize("kind", KINDS)
def test_nan_in_search_faiss_is_refused_at_load_in_one_line(micro_index, tmp_path, kind):
    ix = _index_with(micro_index, tmp_path, kind, edit=_nan_row(2))
    assert (ix / "search.faiss").stat().st_size == json.loads((ix / "index.json").read_text())["arrays"][
        "search.faiss"]["bytes"]
    _refused(ix, r"search.faiss holds NaN or infinite values \(tile row 2\)")


@pytest.mark.parametrize("kind", KINDS)
def test_infinite_or_not_normalised_vectors_are_refused(micro_index, tmp_path, kind):
    _refused(_index_with(micro_index, tmp_path / "inf", kind, edit=_row_edit(1, lambda v: v * np.inf)),
             r"search.faiss holds NaN or infinite values \(tile row 1\)")
    _refused(_index_with(micro_index, tmp_path / "x3", kind, edit=_row_edit(4, lambda v: v * 3)),
             r"search.faiss holds a vector of norm 3, not a normalised descriptor \(tile row 4\)")


def test_another_class_or_metric_is_refused(micro_index, tmp_path):
    ix = _index_with(micro_index, tmp_path / "a", "ivf")
    meta = json.loads((ix / "index.json").read_text())
    meta["search"] = {"kind": "exact", "params": {}}
    (ix / "index.json").write_text(json.dumps(meta))
    _refused(ix, r"search.faiss holds faiss IndexIVFFlat, not IndexFlat \(search kind exact\)")

    def l2(index) -> bytes:
        flat = faiss.IndexFlatL2(index.d)
        flat.add(search_mod.normalize(np.load(micro_index / "descriptors.npy")))
        return faiss.serialize_index(flat).tobytes()
    _refused(_index_with(micro_index, tmp_path / "b", "exact", edit=l2), "search.faiss ranks by metric 1")


def test_a_tile_stored_twice_in_the_inverted_lists_is_refused(micro_index, tmp_path):
    def twice(index) -> bytes:
        desc = search_mod.normalize(np.load(micro_index / "descriptors.npy"))
        ids = np.arange(len(desc))
        ids[3], desc[3] = 2, desc[2]
        index.reset()
        index.add_with_ids(desc, ids)
        return faiss.serialize_index(index).tobytes()
    _refused(_index_with(micro_index, tmp_path, "ivf", edit=twice), "search.faiss stores tile row 2 2 times")


def test_hnsw_links_outside_the_vectors_are_refused(micro_index, tmp_path):
    """faiss 1.15 refuses such a graph when reading it (validate_HNSW); the load's own check covers a faiss that
    does not."""
    edited = []

    def far_link(index) -> None:
        links = faiss.rev_swig_ptr(index.hnsw.neighbors.data(), index.hnsw.neighbors.size())
        links[int(np.flatnonzero(links >= 0)[0])] = index.ntotal + 7
        edited.append(index)
    ix = _index_with(micro_index, tmp_path, "hnsw", edit=far_link)
    assert search_mod.structure_problem(edited[0], "hnsw") == f"has HNSW links outside its {edited[0].ntotal} vectors"
    _refused(ix, r"search.faiss (has HNSW links outside|\(.*HNSW neighbors\[0\] = \d+ out of range)")


def test_cli_localize_refuses_nan_in_search_faiss_in_one_line(micro_index, micro_checkpoint, vigor_city, tmp_path,
                                                              capsys):
    ix = _index_with(micro_index, tmp_path, "exact", edit=_nan_row(0))
    pano = sorted((vigor_city[0] / "panorama").iterdir())[0]
    assert cli.main(["localize", str(pano), "--index", str(ix), "--checkpoint", str(micro_checkpoint),
                     "--device", "cpu", "--json"]) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.match(r"unifygeo localize: error: .*search.faiss holds NaN or infinite values \(tile row 0\)", lines[0])


def test_an_unexpected_warm_up_failure_is_one_error_naming_model_and_index(micro_index, micro_checkpoint,
                                                                           monkeypatch):
    from unifygeo_ros.localization import pipeline as pipeline_mod

    def broken(self, *args, **kwargs):
        raise RuntimeError("cannot reshape tensor of 0 elements into shape [0, -1]\nmore")
    monkeypatch.setattr(pipeline_mod.Localizer, "localize", broken)
    with pytest.raises(UnifyGeoError) as info:
        pipeline_mod.build_pipeline(micro_index, micro_checkpoint, pipeline_mod.PipelineSettings(), device="cpu")
    message = str(info.value)
    assert "\n" not in message and "the warm-up query failed (RuntimeError: cannot reshape" in message
    assert str(micro_checkpoint) in message and str(micro_index) in message
