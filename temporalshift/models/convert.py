"""``tsm convert``: any recognised checkpoint -> our format, rebuildable from the file alone."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from temporalshift.atomic import atomic_path
from temporalshift.models import hub
from temporalshift.models.checkpoints import FORMAT
from temporalshift.models.loading import Recognised, load_into, recognise


def convert_checkpoint(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], fmt: str | None = None
) -> tuple[Recognised, Path]:
    """Recognise ``src``, check it loads strictly into the model it implies, write it to ``dst``."""
    from temporalshift.models.zoo import create_model

    found = recognise(hub.resolve(src))
    if found.layout == "torchvision":
        raise ValueError(f"{src} is an ImageNet classifier, not a video model: use pretrained='imagenet' instead")
    model = create_model(found.model_name, **found.overrides)
    load_into(model, found.path)  # proves the conversion is complete before anything is written
    dst = Path(dst)
    if dst.exists() and Path(src).exists() and os.path.samefile(src, dst):
        raise ValueError(f"{dst} is the file being converted; write the converted copy to another file")
    fmt = fmt or ("safetensors" if dst.suffix == ".safetensors" else "torch")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    with atomic_path(dst) as tmp:
        if fmt == "safetensors":
            from safetensors.torch import save_file

            meta = {"format": FORMAT, "model_name": found.model_name, "overrides": json.dumps(found.overrides),
                    "source_layout": found.layout}  # fmt: skip
            save_file(state, str(tmp), metadata=meta)
        else:
            torch.save({"format": FORMAT, "model_name": found.model_name, "overrides": found.overrides,
                        "source_layout": found.layout, "model": state}, tmp)  # fmt: skip
    return found, dst
