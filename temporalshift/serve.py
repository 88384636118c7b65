"""``tsm serve``: one loaded model behind an HTTP endpoint and a small web page.

``POST /predict`` takes the bytes of one video file as the request body (``curl --data-binary
@video.mp4``) and answers the :class:`~temporalshift.results.Prediction` as JSON; ``?topk=3`` and
``?name=clip.mkv`` (the client's file name, reported back and used for its suffix only) are
optional. ``GET /`` is a page to drop a video on, ``GET /health`` says which model runs.

The standard library's threading HTTP server: nothing to install, one thread per connection.
Uploads decode two at a time; the model runs one request at a time (it uses every core already).
Uploads are size-limited, frames above 4096x2160 refused from the header, each written to a private
temporary file and deleted after. An error answered before the body is read closes the
connection. It binds to 127.0.0.1 by default; behind a reverse proxy (TLS, authentication) it can
face a network.
"""

from __future__ import annotations

import html
import json
import socket
import tempfile
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from temporalshift.data.decode import VideoDecodeError, _short
from temporalshift.data.files import VIDEO_SUFFIXES
from temporalshift.predict import Predictor
from temporalshift.results import Prediction

MAX_DECODES = 2  # videos decoded at once: each holds its sampled frames at full size
MAX_PIXELS = 4096 * 2160  # larger frames are refused before decoding (a tiny file can hold huge frames)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>temporalshift</title>
<style>
body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#222}
#drop{border:2px dashed #999;border-radius:8px;padding:2.5rem;text-align:center;cursor:pointer}
#drop.over{background:#eef}
table{border-collapse:collapse;margin-top:1rem;width:100%}
td{padding:.3rem .5rem;border-bottom:1px solid #ddd}
td.p{text-align:right;font-variant-numeric:tabular-nums}
.err{color:#b00}
</style></head><body>
<h1>temporalshift</h1>
<p>Model <b>__MODEL__</b>. Drop a video below (at most __MAX_MB__ MB).</p>
<label id="drop">Drop a video here, or click to choose one
<input id="file" type="file" accept="video/*" hidden></label>
<div id="out"></div>
<script>
const drop = document.getElementById("drop"), out = document.getElementById("out");
const esc = s => String(s).replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
async function send(file) {
  out.textContent = "recognising " + file.name + " ...";
  try {
    const r = await fetch("predict?topk=5&name=" + encodeURIComponent(file.name), {method: "POST", body: file});
    const p = await r.json();
    if (p.error) { out.innerHTML = '<p class="err">' + esc(p.error) + "</p>"; return; }
    out.innerHTML = "<p>" + esc(p.source) + "</p><table>" + p.labels.map((l, i) =>
      "<tr><td>" + esc(l) + '</td><td class="p">' + (100 * p.scores[i]).toFixed(1) + "%</td></tr>").join("") +
      "</table>";
  } catch (e) { out.innerHTML = '<p class="err">' + esc(e) + "</p>"; }
}
document.getElementById("file").onchange = e => e.target.files.length && send(e.target.files[0]);
drop.ondragover = e => { e.preventDefault(); drop.classList.add("over"); };
drop.ondragleave = () => drop.classList.remove("over");
drop.ondrop = e => {
  e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files.length) send(e.dataTransfer.files[0]);
};
</script></body></html>
"""


class PredictionServer(ThreadingHTTPServer):
    """A :class:`Predictor` served over HTTP (see the module docstring for the endpoints)."""

    daemon_threads = True  # a hung client never keeps the process from exiting

    def __init__(
        self,
        predictor: Predictor,
        host: str = "127.0.0.1",
        port: int = 8000,
        max_mb: float = 200.0,
        topk: int = 5,
        model_name: str | None = None,
        quiet: bool = False,
    ) -> None:
        if max_mb <= 0:
            raise ValueError(f"max_mb must be positive, got {max_mb}")
        if topk < 1:
            raise ValueError(f"topk must be at least 1, got {topk}")
        self.predictor = predictor
        self.max_mb = max_mb
        self.max_bytes = int(max_mb * 2**20)
        self.topk = topk
        self.model_name = model_name or getattr(predictor.spec, "description", "") or "model"
        self.quiet = quiet
        self.model_lock = threading.Lock()  # one forward pass at a time
        self.decode_slots = threading.BoundedSemaphore(MAX_DECODES)  # bounds the decoded frames held at once
        self.served = 0
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}/" if self.address_family == socket.AF_INET6 else f"http://{host}:{port}/"

    def predict_bytes(self, video: bytes, name: str, topk: int) -> Prediction:
        """The prediction for one uploaded video (a failed :class:`Prediction` if it does not decode)."""
        suffix = Path(name).suffix.lower()
        suffix = suffix if suffix in VIDEO_SUFFIXES else ".mp4"  # the name chooses nothing but the suffix
        with tempfile.TemporaryDirectory(prefix="tsm-serve-") as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(video)
            size = _frame_size(path)
            if size is not None and size[0] * size[1] > MAX_PIXELS:
                return Prediction.failed(name, f"{name} has {size[0]}x{size[1]} frames, more than 4096x2160: "
                                               "resize it first (tsm prepare resize)")  # fmt: skip
            t0 = time.perf_counter()
            try:
                with self.decode_slots:
                    views, indices = self.predictor.load(str(path))
            except (VideoDecodeError, OSError, IndexError, ValueError) as exc:  # the upload's fault: told to the client
                reason = _short(exc).replace(f"{path}: ", "").replace(str(path), name)  # no server paths
                return Prediction.failed(name, f"{name} is not a readable video ({reason})")
            t1 = time.perf_counter()
            with self.model_lock:
                probs = self.predictor.scores(views)
                self.served += 1
            timings = {"decode_s": t1 - t0, "model_s": time.perf_counter() - t1}
        return self.predictor.to_prediction(name, probs, indices, topk, timings)


def _frame_size(path: Path) -> tuple[int, int] | None:
    """Width and height of the first video stream, read from the header (None if there is none)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            codec = container.streams.video[0].codec_context
            return codec.width, codec.height
    except (OSError, ValueError, av.error.FFmpegError):  # the decoder will say what is wrong
        return None


class _Handler(BaseHTTPRequestHandler):
    server: PredictionServer
    timeout = 60  # seconds a client may stall mid-request before its connection is dropped
    server_version = "temporalshift"
    protocol_version = "HTTP/1.1"  # answers curl's "Expect: 100-continue" for large uploads at once

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client left: nobody to answer
            self.close_connection = True

    def _json(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _refuse(self, status: HTTPStatus, error: str) -> None:
        """Answer an error before the body is read, and close: the unread body must never be taken
        for the next request on this connection."""
        self.close_connection = True
        self._json(status, {"error": error})

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        path = urlsplit(self.path).path
        if path == "/":
            page = _PAGE.replace("__MODEL__", html.escape(self.server.model_name))
            page = page.replace("__MAX_MB__", f"{self.server.max_mb:g}")
            self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")
        elif path == "/health":
            spec = self.server.predictor.spec
            self._json(HTTPStatus.OK, {"status": "ok", "model": self.server.model_name,
                                       "classes": spec.num_classes, "served": self.server.served})  # fmt: skip
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path} (POST /predict, GET /, GET /health)"})

    def do_POST(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        if url.path != "/predict":
            self._refuse(HTTPStatus.NOT_FOUND, f"POST a video to /predict, not {url.path}")
            return
        query = parse_qs(url.query)
        topk_text = query.get("topk", [str(self.server.topk)])[0]
        if not (len(topk_text) <= 6 and topk_text.isascii() and topk_text.isdigit() and int(topk_text) >= 1):
            self._refuse(HTTPStatus.BAD_REQUEST, "topk must be a whole number of at least 1")
            return
        topk = int(topk_text)
        name = Path(query.get("name", ["upload.mp4"])[0]).name or "upload.mp4"
        length_text = self.headers.get("Content-Length", "")
        if not (length_text.isascii() and length_text.isdigit() and len(length_text) <= 18):
            self._refuse(HTTPStatus.LENGTH_REQUIRED, "send the video as the body, with a Content-Length")
            return
        length = int(length_text)
        if length > self.server.max_bytes:
            left = length if length <= 2 * self.server.max_bytes else 0
            while left > 0:  # read and dropped, so that the client, still sending, gets the answer
                left -= len(self.rfile.read(min(2**20, left))) or left
            self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the video is larger than {self.server.max_mb:g} MB")
            return
        if length == 0:
            self._refuse(HTTPStatus.BAD_REQUEST, "empty body: send the bytes of a video file")
            return
        video = self.rfile.read(length)
        if len(video) < length:  # the client stopped sending
            self._refuse(HTTPStatus.BAD_REQUEST, f"the body ended after {len(video)} of {length} bytes")
            return
        prediction = self.server.predict_bytes(video, name, topk)
        status = HTTPStatus.OK if prediction.ok else HTTPStatus.UNPROCESSABLE_ENTITY
        self._json(status, prediction.to_dict())

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        if not self.server.quiet:  # http.server's line escapes control characters: a client cannot drive the terminal
            super().log_message(format, *args)
