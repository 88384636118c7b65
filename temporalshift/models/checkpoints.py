"""Reading checkpoint files safely and loading them strictly, with errors a user can act on.

Every ``torch.load`` here uses ``weights_only=True``: a file that needs more than tensors and
plain containers to unpickle is refused, never executed. PaddleVideo's ``.pdparams`` (a pickle of
numpy arrays) is read with an unpickler that admits numpy arrays and nothing else. Foreign layouts
(the authors' repository, mmaction2, PaddleVideo) are converted onto ours before the strict load.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

# Top-level keys under which the ecosystems nest their weights.
_NESTED_KEYS: tuple[str, ...] = ("state_dict", "model", "model_state_dict", "module")
FORMAT = "temporalshift/1"


class _Refused(pickle.UnpicklingError):
    """A global the pickle would call is not on the list: the file is refused, not damaged."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits the globals a pickled dict of numpy arrays needs, and refuses every other one."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
        ("_codecs", "encode"),  # protocol-2 pickles store array bytes as latin-1 text
    }

    def find_class(self, module: str, name: str) -> Any:
        if (
            (module, name) in self._ALLOWED
            or (module == "numpy" and name.endswith("DType"))
            or (module.startswith("numpy.dtypes") and name.endswith("DType"))
        ):
            return super().find_class(module, name)
        raise _Refused(f"refusing to unpickle {module}.{name}: only numpy arrays are allowed")


def _read_pdparams(path: Path) -> dict[str, Any]:
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(path.read_bytes())).load()
    except _Refused as exc:
        raise ValueError(f"refusing to load {path}: {exc}") from None
    except Exception:  # noqa: BLE001 - any other failure: not a readable pdparams file
        raise ValueError(f"{path} is not a readable PaddlePaddle .pdparams file (damaged, or another format)") from None
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a dict of weights")
    obj = {k: v for k, v in obj.items() if k != "StructuredToParameterName@@"}
    from temporalshift.models.foreign import to_tensors

    return to_tensors(obj)


def _read_safetensors(path: Path) -> dict[str, Any]:
    try:
        from safetensors import safe_open
    except ImportError:
        raise ValueError("reading .safetensors needs `pip install safetensors`") from None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            weights = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not a dict
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors' own error type: the file is damaged
        raise ValueError(f"{path} is not a readable .safetensors file ({_first_line(exc)})") from None
    out: dict[str, Any] = {"model": weights}
    if meta.get("format") == FORMAT:
        out.update(format=FORMAT, model_name=meta.get("model_name"), overrides=json.loads(meta.get("overrides", "{}")))
    return out


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


def _is_pickle(path: Path) -> bool:
    """Whether the file parses as a pickle (opcodes only, nothing is run): a pickle the weights-only
    reader refused is a refusal, anything else a damaged file."""
    try:
        with path.open("rb") as f:
            for _ in pickletools.genops(f):
                pass
    except Exception:  # noqa: BLE001 - any parse failure: not a pickle
        return False
    return True


def _looks_like_safetensors(path: Path) -> bool:
    """A safetensors file starts with its JSON header's length (8 bytes, little-endian) and the header."""
    with path.open("rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= path.stat().st_size


def _damaged(path: Path) -> ValueError:
    return ValueError(f"{path} is not a readable PyTorch checkpoint (damaged, or another format)")


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint (``.pth``/``.pt``/``.pdparams``/``.safetensors``) with no code execution."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".pdparams":
        return _read_pdparams(path)
    if path.suffix == ".safetensors" or _looks_like_safetensors(path):  # e.g. `convert --format safetensors x.pt`
        return _read_safetensors(path)
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty, not a checkpoint")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [line.strip().removeprefix("WeightsUnpickler error: ") for line in str(exc).splitlines()]
        refused = [line for line in lines if "GLOBAL" in line or line.startswith("Unsupported operand")]
        if not any("GLOBAL" in line for line in refused) and not _is_pickle(path):
            raise _damaged(path) from None
        reason = refused[-1].split(" was not")[0] if refused else _first_line(exc)
        raise ValueError(
            f"refusing to load {path}: it needs more than tensors to unpickle, and untrusted "
            f"pickles are never executed ({reason})"
        ) from None
    except (RuntimeError, EOFError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        # what torch.load raises on text, truncated or random bytes: its details name no cause a user has
        raise _damaged(path) from None
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a dict of weights")
    return dict(obj)


def extract_state_dict(obj: Mapping[str, Any]) -> dict[str, Tensor]:
    """The tensor dict of a checkpoint, unwrapping ``{'state_dict': ...}``-style nesting."""
    for key in _NESTED_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, Tensor) for v in inner.values()):
            return dict(inner)
    tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if not tensors:
        raise ValueError(f"no weights found in the checkpoint (top-level keys: {sorted(obj)[:8]})")
    return tensors


def _sample(keys: list[str], limit: int = 5) -> str:
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_weights(model: nn.Module, state_dict: Mapping[str, Tensor], source: str = "checkpoint") -> None:
    """Load ``state_dict`` strictly; on any mismatch raise one message naming the keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys: {_sample(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys: {_sample(unexpected)}")
        if shapes:
            parts.append(f"wrong shape for {len(shapes)} keys (file vs model): {_sample(shapes)}")
        raise ValueError(f"{source} does not fit the model: " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True)
