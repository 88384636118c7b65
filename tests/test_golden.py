"""Seeded tiny models keep golden logits, so a silent change of semantics (a shift direction,
a block order, an initialisation) fails loudly. Regenerate with TSM_REGEN_GOLDEN=1."""

import json
import os
from pathlib import Path

import pytest
import torch

import temporalshift as ts

EXPECT = Path(__file__).parent / "expect"
CASES = {
    "tsm_r18_4f": dict(name="tsm_r50_1x1x8_k400", backbone="resnet18", num_segments=4),
    "tsm_r18_4f_block_circulant": dict(
        name="tsm_r50_1x1x8_k400", backbone="resnet18", num_segments=4, shift_place="block",
        shift_padding="circulant",
    ),
    "tsm_mbv2_4f_right": dict(name="tsm_mobilenetv2_1x1x8_k400", num_segments=4, shift_direction="right"),
    "tsn_r18_4f": dict(name="tsn_r50_1x1x8_k400", backbone="resnet18", num_segments=4),
}  # fmt: skip


def _logits(case: dict) -> torch.Tensor:
    torch.manual_seed(0)
    kw = dict(case)
    model = ts.create_model(kw.pop("name"), num_classes=5, **kw).eval()
    with torch.no_grad():
        for p in model.head.fc.parameters():  # a larger head so the logits are not ~0
            p.copy_(torch.randn_like(p))
        clip = torch.randn(2, model.num_segments, 3, 48, 48)
        return model(clip)


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_logits(case):
    path = EXPECT / f"{case}.json"
    logits = _logits(CASES[case])
    if os.environ.get("TSM_REGEN_GOLDEN"):
        path.write_text(json.dumps(logits.tolist()))
    expected = torch.tensor(json.loads(path.read_text()))
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
