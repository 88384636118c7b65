"""Where weights come from: a cache directory, and downloads verified against published hashes.

``$TSM_HOME`` (default ``~/.cache/temporalshift``) holds every downloaded file under its
published name. Publishers put a sha256 prefix in their file names (mmaction2's
``..._20220831-64d69186.pth``, torchvision's ``resnet50-0676ba61.pth``); a download whose hash
does not match is deleted and refused. Offline, the error says where to put the file by hand.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from temporalshift.atomic import atomic_path

# torchvision's ImageNet weights (IMAGENET1K_V1, the ones TSM was trained from).
IMAGENET_URLS: dict[str, str] = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
    "resnet152": "https://download.pytorch.org/models/resnet152-394f9c45.pth",
    "mobilenetv2": "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
}


def cache_dir() -> Path:
    """``$TSM_HOME``, or ``~/.cache/temporalshift``."""
    return Path(os.environ.get("TSM_HOME", Path.home() / ".cache" / "temporalshift"))


def sha256_prefix(filename: str) -> str | None:
    """The hash prefix a publisher put at the end of a file name, if any.

    >>> sha256_prefix("tsm_r50_kinetics400-rgb_20220831-64d69186.pth")
    '64d69186'
    >>> sha256_prefix("TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth") is None
    True
    """
    m = re.search(r"-([0-9a-f]{8,64})\.(pth|pt|pdparams|safetensors)$", filename)
    return m.group(1) if m else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest_dir: str | os.PathLike[str] | None = None, progress: bool = True) -> Path:
    """Fetch ``url`` once into the cache (atomically), checking the hash its name carries."""
    dest_dir = Path(dest_dir) if dest_dir else cache_dir() / "checkpoints"
    name = url.rstrip("/").rsplit("/", 1)[-1]
    dest = dest_dir / name
    expected = sha256_prefix(name)
    if dest.is_file():  # downloaded before, or put there by hand: checked all the same
        if expected and not _sha256(dest).startswith(expected):
            raise OSError(f"{dest}: its sha256 does not start with {expected}, as its name says; "
                          "it is not the published file (delete it, or pass it as checkpoint=PATH)")  # fmt: skip
        return dest
    with atomic_path(dest) as tmp:  # a failed or refused download leaves nothing behind
        try:
            with urllib.request.urlopen(url, timeout=30) as response, open(tmp, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0)
                bar = None
                if progress:
                    from tqdm import tqdm

                    bar = tqdm(total=total or None, unit="B", unit_scale=True, desc=f"downloading {name}")
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
                if bar is not None:
                    bar.close()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise OSError(
                f"cannot download {url} ({reason}); download it by hand and put it at {dest} "
                f"(or pass checkpoint=PATH / --checkpoint PATH)"
            ) from None
        if expected and not _sha256(tmp).startswith(expected):
            raise OSError(f"{url}: the download's sha256 does not start with {expected}; refusing it")
    return dest


def resolve(source: str | os.PathLike[str]) -> Path:
    """A local path as is; an http(s) URL downloaded (once) into the cache."""
    text = str(source)
    if text.startswith(("http://", "https://")):
        return download(text)
    path = Path(text).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return path
