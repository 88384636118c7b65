"""The optimiser recipe: parameter groups and learning-rate schedules."""

import pytest
import torch

import temporalshift as ts
from temporalshift.engine.config import OptimConfig, ScheduleConfig
from temporalshift.engine.optim import build_optimizer, lr_factor, param_groups


def test_parameter_groups_follow_the_published_recipe():
    model = ts.create_model("tsm_r50_1x1x8_k400", backbone="resnet18", width=8, num_classes=5)
    cfg = OptimConfig(lr=0.01, weight_decay=1e-4)
    groups = {g["name"]: g for g in param_groups(model, cfg)}
    assert set(groups) == {"weight", "norm", "fc_weight", "fc_bias"}  # ResNet convs have no bias
    assert groups["fc_weight"]["lr_mult"] == 5 and groups["fc_bias"]["lr_mult"] == 10
    assert groups["fc_weight"]["weight_decay"] == 1e-4 and groups["fc_bias"]["weight_decay"] == 0
    assert groups["norm"]["weight_decay"] == 0 and groups["weight"]["weight_decay"] == 1e-4
    assert groups["fc_weight"]["params"] == [model.head.fc.weight]
    n_norm = sum(2 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert len(groups["norm"]["params"]) == n_norm
    counted = sum(p.numel() for g in groups.values() for p in g["params"])
    assert counted == ts.count_params(model)  # every parameter in exactly one group
    decayed_norms = {g["name"]: g for g in param_groups(model, OptimConfig(decay_norm=True))}
    assert decayed_norms["norm"]["weight_decay"] == 1e-4
    opt = build_optimizer(model, cfg, lr=0.02)
    assert {g["name"]: g["lr"] for g in opt.param_groups}["fc_bias"] == pytest.approx(0.2)


def test_biases_never_decay_and_frozen_norms_are_left_out():
    model = ts.create_model("tsm_mobilenetv2_1x1x8_k400", num_classes=3)  # non-local free, has no conv bias
    nl = ts.create_model("tsm_r50_nl_dot_1x1x8_k400", backbone="resnet18", width=8, num_classes=3)
    groups = {g["name"]: g for g in param_groups(nl, OptimConfig())}
    assert groups["bias"]["weight_decay"] == 0 and any(p is nl.backbone.layer2[0].non_local.g.bias
                                                      for p in groups["bias"]["params"])  # fmt: skip
    model.set_partial_bn(True)
    groups = {g["name"]: g for g in param_groups(model, OptimConfig())}
    assert len(groups["norm"]["params"]) == 2  # only the first BN still learns


def test_step_schedule_with_warmup():
    cfg = ScheduleConfig(epochs=50, policy="step", milestones=[20, 40], warmup_epochs=2, warmup_factor=0.1)
    f = [lr_factor(int(e * 10), 10, cfg, 0.02) for e in (0, 1, 2, 19.9, 20, 39.9, 40, 49.9)]
    assert f == pytest.approx([0.1, 0.55, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01])


def test_cosine_schedule():
    cfg = ScheduleConfig(epochs=10, policy="cosine", min_lr=0.001)
    assert lr_factor(0, 100, cfg, 0.1) == pytest.approx(1.0)
    assert lr_factor(500, 100, cfg, 0.1) == pytest.approx(0.505)
    assert lr_factor(1000, 100, cfg, 0.1) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="unknown lr policy"):
        lr_factor(0, 1, ScheduleConfig(policy="linear"), 0.1)
