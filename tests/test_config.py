"""Configs: every zoo row has a recipe, typed overrides, helpful errors, one source of truth."""

import re

import pytest

import temporalshift as ts
from temporalshift.engine.config import CONFIG_DIR, Config, apply_overrides, load_config, save_config
from temporalshift.engine.data import sampling_spec
from temporalshift.models.zoo import get_spec


def test_every_zoo_row_has_a_recipe_and_every_recipe_names_a_zoo_model():
    recipes = {p.stem for p in CONFIG_DIR.glob("*.yaml")}
    assert set(ts.list_models()) <= recipes
    for name in recipes:
        cfg = load_config(name)
        assert cfg.model.name in ts.list_models()
        if name in ts.list_models():
            assert cfg.model.name == name


def test_published_recipe_values():
    cfg = load_config("tsm_r50_1x1x8_k400")
    assert (cfg.optim.lr, cfg.optim.ref_batch_size, cfg.optim.momentum, cfg.optim.weight_decay) == (
        0.02,
        128,
        0.9,
        1e-4,
    )
    assert (cfg.schedule.epochs, cfg.schedule.milestones, cfg.optim.clip_grad) == (50, [20, 40], 20.0)
    assert (cfg.optim.fc_lr_mult, cfg.optim.fc_bias_lr_mult) == (5.0, 10.0)
    assert load_config("tsm_r50_1x1x8_sthv2").data.flip_label_pairs


def test_sampling_and_test_protocol_come_from_the_zoo_entry():
    cfg = load_config("tsm_r50_dense_1x1x8_k400")
    spec = get_spec(cfg.model.name)
    train, test = sampling_spec(cfg, spec), sampling_spec(cfg, spec, test=True)
    assert train.mode == "dense" and train.num_segments == 8
    assert test.test_clips == 10 and not test.twice_sample
    k400 = load_config("tsm_r50_1x1x16_k400")
    assert sampling_spec(k400, get_spec(k400.model.name), test=True).twice_sample
    assert sampling_spec(k400, get_spec(k400.model.name)).num_segments == 16


def test_overrides_are_typed_by_the_field():
    cfg = load_config("tsm_r50_1x1x8_k400", [
        "optim.lr=0.005", "data.batch_size=4", "optim.clip_grad=none", "runtime.deterministic=true",
        "schedule.milestones=[10,20]", "model.overrides.shift_div=4", "data.label_map=null",
    ])  # fmt: skip
    assert cfg.optim.lr == 0.005 and isinstance(cfg.optim.lr, float)
    assert cfg.data.batch_size == 4 and cfg.optim.clip_grad is None and cfg.runtime.deterministic is True
    assert cfg.schedule.milestones == [10, 20] and cfg.model.overrides["shift_div"] == 4
    assert cfg.data.label_map is None


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lrr=0.1", "unknown config key 'optim.lrr'; did you mean 'lr'"),
        ("optm.lr=0.1", "unknown config key 'optm'; did you mean 'optim'"),
        ("data.batch_size=eight", "data.batch_size: expected int, got 'eight'"),
        ("runtime.deterministic=maybe", "expected true/false"),
        ("optim.lr", "not of the form section.key=value"),
        ("optim.clip_grad=-1", "optim.clip_grad must be at least 0, got -1.0"),  # would flip the gradient
        ("schedule.gamma=-1", "schedule.gamma must be above 0"),
        ("optim.fc_lr_mult=-5", "optim.fc_lr_mult must be at least 0"),
        ("optim.ref_batch_size=0", "optim.ref_batch_size must be at least 1"),
        ("runtime.device=gpu", "runtime.device must be one of auto, cpu, cuda, got 'gpu'"),
        ("runtime.threads=-1", "runtime.threads must be at least 1"),
        ("runtime.average=bogus", "runtime.average must be one of prob, score"),
        ("data.flip=2", "data.flip must be in [0, 1], got 2.0"),
        ("data.batch_size=", "data.batch_size: expected int, got nothing"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_config("tsm_r50_1x1x8_k400", [override])


def test_an_empty_value_clears_a_text_field():
    assert load_config("tsm_r50_1x1x8_k400", ["data.val_list="]).data.val_list == ""  # no validation, not 'None'


def test_unknown_key_in_a_yaml_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: tsm_r50_1x1x8_k400\noptim:\n  momentun: 0.9\n")
    with pytest.raises(ValueError, match="unknown config key 'optim.momentun'; did you mean 'momentum'"):
        load_config(bad)
    with pytest.raises(FileNotFoundError, match="did you mean 'tsm_r50_1x1x8_k400'"):
        load_config("tsm_r50_1x1x8_k40")


def test_saved_config_round_trips(tmp_path):
    cfg = apply_overrides(Config(), ["optim.lr=0.3", "model.overrides.width=16"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
