"""`unifygeo train --data vigor`'s options: the split (exact values), the cities (any VIGOR-layout city, e.g.
`unifygeo synth` output), the labels (true / false / auto) and the original VIGOR scale; and the CLI words the
reader's "corrected labels not found" error names."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from unifygeo_ros import geo
from unifygeo_ros.config import Config, ConfigError
from unifygeo_ros.data.vigor_layout import label_file_path
from unifygeo_ros.errors import DataFormatError
from unifygeo_ros.offline import train_data

from conftest import TINY_MODEL
from vigor_fixture import ORIGINAL_LABEL_ERROR_PX, write_vigor_world


def vigor_training_set(cfg: Config):
    return train_data.vigor_training_set(cfg)


def _cfg(root, **data) -> Config:
    return Config.from_dict({"model": TINY_MODEL, "data": {"source": "vigor", "vigor_root": str(root),
                                                           "batch_size": 2, "num_workers": 0, **data}})


@pytest.fixture()
def synthville(tmp_path):
    """A VIGOR-layout root whose one city is not named after a VIGOR city (as `unifygeo synth --city` writes)."""
    return tmp_path, write_vigor_world(tmp_path, ("Synthville",), geo_json=True, seed=2)["Synthville"]


# ------------------------------------------------------------------------------------------------ split
@pytest.mark.parametrize("typo", ["Same_area", "same", "same-area", "cross", "SAME_AREA", ""])
def test_a_mistyped_vigor_split_is_one_clear_error(typo):
    with pytest.raises(ConfigError, match=r"data.vigor_split must be same_area or cross_area, got"):
        Config.from_dict({"data": {"vigor_split": typo}})


def test_both_vigor_splits_are_accepted_and_read_their_label_files(synthville):
    root, truth = synthville
    same = vigor_training_set(_cfg(root, vigor_split="same_area", vigor_cities=["Synthville"]))
    cross = vigor_training_set(_cfg(root, vigor_split="cross_area", vigor_cities=["Synthville"]))
    assert (same.split, len(same)) == ("same", len(truth.train))
    assert (cross.split, len(cross)) == ("cross", len(truth.pano_names))


# ----------------------------------------------------------------------------------------------- cities
def test_vigor_cities_trains_on_a_city_of_any_name(synthville):
    root, truth = synthville
    ds = vigor_training_set(_cfg(root, vigor_cities=["Synthville"]))
    assert ds.cities == ("Synthville",) and ds.train and len(ds) == len(truth.train)


def test_default_cities_missing_name_what_exists_and_the_option(synthville):
    root, _ = synthville
    with pytest.raises(DataFormatError, match=r"city folder\(s\) NewYork, Seattle, SanFrancisco, Chicago not found "
                                              r"under .*; cities there: Synthville \(choose them with --vigor-cities"):
        vigor_training_set(_cfg(root))


@pytest.mark.parametrize("bad", [["Synthville", "Synthville"], ["a/b"], [""], [3]])
def test_bad_vigor_cities_are_refused_by_the_config(bad):
    assert Config.from_dict({"data": {"vigor_cities": ["A", "B"]}}).data.vigor_cities == ["A", "B"]
    with pytest.raises(ConfigError, match="data.vigor_cities must be a list of distinct city folder names"):
        Config.from_dict({"data": {"vigor_cities": bad}})


def _train(tmp_path, root, *extra) -> int:
    from unifygeo_ros.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"model": TINY_MODEL, "data": {"num_workers": 0},
                                   "train": {"tensorboard": False, "threads": 1, "log_every": 1}}))
    return main(["train", "--config", str(cfg), "--out", str(tmp_path / "run"), "--data", "vigor", "--vigor-root",
                 str(root), "--steps", "1", "--batch-size", "2", "--no-progress", *extra])


def test_train_cli_vigor_cities(synthville, tmp_path_factory, capsys):
    root, _ = synthville
    runs = tmp_path_factory.mktemp("runs")
    assert _train(runs, root, "--vigor-cities", "Boston") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Boston not found" in err and "cities there: Synthville" in err
    assert _train(runs, root, "--vigor-cities", "Synthville") == 0
    saved = yaml.safe_load((runs / "run" / "config.yaml").read_text())
    assert saved["data"]["vigor_cities"] == ["Synthville"]


# ----------------------------------------------------------------------------------------------- labels
def test_missing_corrected_labels_name_the_cli_options_and_train_accepts_auto(tmp_path):
    truth = write_vigor_world(tmp_path, ("Chicago",), seed=5)["Chicago"]
    for f in (tmp_path / "splits__corrected" / "Chicago").glob("same_area*"):
        f.unlink()
    with pytest.raises(DataFormatError) as exc:
        label_file_path(tmp_path, "Chicago", "same_train", corrected=True)
    msg = str(exc.value)
    assert "\n" not in msg and "--labels original|auto" in msg and "--set data.vigor_corrected=false|auto" in msg
    with pytest.raises(DataFormatError, match="data.vigor_corrected=false"):
        vigor_training_set(_cfg(tmp_path, vigor_cities=["Chicago"]))
    with pytest.warns(UserWarning, match="no corrected labels for Chicago"):
        auto = vigor_training_set(_cfg(tmp_path, vigor_cities=["Chicago"], vigor_corrected="auto"))
    original = vigor_training_set(_cfg(tmp_path, vigor_cities=["Chicago"], vigor_corrected=False))
    assert auto.records == original.records and len(auto) == len(truth.train)
    corrected_d_row = truth.label_offsets[truth.train, 0, 0]  # the positives' exact offsets, 640-px pixels
    np.testing.assert_allclose(sorted(r.d_row[0] for r in auto.records),
                               sorted(corrected_d_row + ORIGINAL_LABEL_ERROR_PX[0]), atol=1e-5)


@pytest.mark.parametrize("bad", ["yes", "original", 1, None])
def test_vigor_corrected_takes_true_false_or_auto(bad):
    assert Config.from_dict({"data": {"vigor_corrected": "auto"}}).data.vigor_corrected == "auto"
    with pytest.raises(ConfigError, match="data.vigor_corrected must be true, false or auto"):
        Config.from_dict({"data": {"vigor_corrected": bad}})


# ------------------------------------------------------------------------------------------------ scale
def test_vigor_original_mpp_gives_the_original_scale(tmp_path):
    write_vigor_world(tmp_path, ("Chicago",), seed=5)
    per_city = vigor_training_set(_cfg(tmp_path, vigor_cities=["Chicago"]))
    original = vigor_training_set(_cfg(tmp_path, vigor_cities=["Chicago"], vigor_original_mpp=True))
    assert per_city.city_mpp_native[0] == pytest.approx(geo.VIGOR_MPP_640["Chicago"])
    assert original.city_mpp_native[0] == pytest.approx(geo.VIGOR_MPP_ORIGINAL)
    np.testing.assert_allclose(original.offsets_en_m, per_city.offsets_en_m * geo.VIGOR_MPP_ORIGINAL
                               / geo.VIGOR_MPP_640["Chicago"])
