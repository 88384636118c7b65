"""`tsm serve`: POST /predict answers what `ts.predict` says; the page, health, limits and errors."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

import temporalshift as ts
from temporalshift.cli import main
from temporalshift.predict import Predictor
from temporalshift.serve import PredictionServer


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    torch.manual_seed(0)
    model = ts.create_model("tsm_r50_1x1x8_k400", backbone="resnet18", width=8, num_classes=8, input_size=56,
                            labels="moving_digits", test_crops="center", twice_sample=False)  # fmt: skip
    with torch.no_grad():
        model.head.fc.weight.normal_(0, 1)
    path = tmp_path_factory.mktemp("serve") / "digits.pt"
    torch.save({"format": "temporalshift/1", "model_name": model.name, "model": model.state_dict(),
                "overrides": ts.models.zoo.spec_overrides(model)}, path)  # fmt: skip
    return model.eval(), path


@pytest.fixture(scope="module")
def server(small_model):
    model, _ = small_model
    srv = PredictionServer(Predictor(model), port=0, max_mb=1, topk=3, model_name="digits", quiet=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    kind = response.getheader("Content-Type", "")
    return response.status, json.loads(data) if kind.startswith("application/json") else data.decode()


def test_a_posted_video_gets_the_prediction_of_ts_predict(server, small_model, numbered_videos):
    model, _ = small_model
    port = server.server_address[1]
    video = numbered_videos["mkv"].read_bytes()
    status, answer = _request(port, "POST", "/predict?name=my%20clip.mkv", video)
    assert status == 200 and answer["error"] is None
    expected = ts.predict(numbered_videos["mkv"], model=model, topk=3)
    assert answer["labels"] == expected.labels and answer["indices"] == expected.indices
    assert answer["scores"] == pytest.approx(expected.scores, abs=1e-5)
    assert answer["source"] == "my clip.mkv" and answer["frames"] == expected.frames
    status, answer = _request(port, "POST", "/predict?topk=1", video)
    assert status == 200 and answer["labels"] == expected.labels[:1]
    status, health = _request(port, "GET", "/health")
    assert status == 200 and health["status"] == "ok" and health["model"] == "digits" and health["classes"] == 8
    assert health["served"] >= 2


def test_the_page_and_the_errors(server):
    port = server.server_address[1]
    status, page = _request(port, "GET", "/")
    assert status == 200 and "<b>digits</b>" in page and 'fetch("predict' in page and "at most 1 MB" in page
    status, answer = _request(port, "POST", "/predict?name=../../etc/passwd", b"not a video at all")
    assert status == 422 and "passwd is not a readable video" in answer["error"]  # only the base name is kept
    assert _request(port, "POST", "/predict", b"")[0] == 400
    status, answer = _request(port, "POST", "/predict", b"x" * (3 * 2**19))  # 1.5 MB
    assert status == 413 and "larger than 1 MB" in answer["error"]
    status, answer = _request(port, "POST", "/predict?topk=0", b"x")
    assert status == 400 and "topk" in answer["error"]
    assert _request(port, "GET", "/nothing")[0] == 404
    assert _request(port, "POST", "/elsewhere", b"x")[0] == 404
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)  # no Content-Length at all
    conn.putrequest("POST", "/predict")
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 411 and "Content-Length" in json.loads(response.read())["error"]
    conn.close()


def _raw(port, data: bytes, half_close: bool = False) -> str:
    """Send bytes as they are (what a broken or hostile client sends); everything until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode("latin-1")


def test_hostile_requests_get_one_answer_and_no_server_details(server):
    port = server.server_address[1]
    smuggled = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"  # an unread body must not become a request
    for head in (b"POST /predict?topk=0 HTTP/1.1", b"POST /elsewhere HTTP/1.1"):
        reply = _raw(port, head + b"\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(smuggled) + smuggled)
        assert reply.count("HTTP/1.1 ") == 1 and '"status": "ok"' not in reply
    reply = _raw(port, "POST /predict HTTP/1.1\r\nContent-Length: \u00b2\r\n\r\n".encode())  # isdigit() but no int
    assert reply.startswith("HTTP/1.1 411")
    reply = _raw(port, b"POST /predict HTTP/1.1\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10, half_close=True)
    assert reply.startswith("HTTP/1.1 400") and "ended after 10 of 1000 bytes" in reply
    status, answer = _request(port, "POST", "/predict?name=a.mp4", b"\x00" * 100)
    assert status == 422 and "tsm-serve" not in answer["error"] and "/tmp" not in answer["error"]


def test_log_lines_escape_control_characters(small_model, capsys):
    srv = PredictionServer(Predictor(small_model[0]), port=0, model_name="digits")
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        _raw(srv.server_address[1], b"\x1b]0;pwned\x07GET / HTTP/1.1\r\n\r\n")
    finally:
        srv.shutdown()
        srv.server_close()
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b]0;pwned\\x07" in err


def test_frames_too_large_are_refused_from_the_header(server, tmp_path):
    from temporalshift.data.encode import write_video

    write_video(tmp_path / "huge.mp4", np.zeros((2, 2176, 4112, 3), np.uint8), fps=25)  # tiny file, 4112x2176 frames
    status, answer = _request(server.server_address[1], "POST", "/predict?name=huge.mp4",
                              (tmp_path / "huge.mp4").read_bytes())  # fmt: skip
    assert status == 422 and "4112x2176 frames, more than 4096x2160" in answer["error"]


def test_bad_settings_are_refused(small_model, capsys):
    with pytest.raises(ValueError, match="topk must be at least 1"):
        PredictionServer(Predictor(small_model[0]), port=0, topk=0)
    _, ckpt = small_model
    for args, message in ((["--topk", "0"], "--topk must be at least 1"), (["--max-mb", "0"], "--max-mb must be"),
                          (["--port", "70000"], "--port must be 0-65535")):  # fmt: skip
        assert main(["serve", "--checkpoint", str(ckpt), *args]) == 2
        err = capsys.readouterr().err
        assert f"tsm serve: error: {message}" in err and "Traceback" not in err


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_cli_serves_until_stopped(small_model, numbered_videos, stop):
    _, ckpt = small_model
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "temporalshift", "serve", "--checkpoint", str(ckpt), "--port", "0", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = proc.stdout.readline()  # "serving tsm_r50_1x1x8_k400 at http://127.0.0.1:PORT/ ..."
        assert first.startswith("serving tsm_r50_1x1x8_k400 at http://127.0.0.1:"), first + proc.stderr.read()
        port = int(first.split("http://127.0.0.1:")[1].split("/")[0])
        status, answer = _request(port, "POST", "/predict?name=n.mp4", numbered_videos["mp4"].read_bytes())
        assert status == 200 and len(answer["labels"]) == 5 and answer["source"] == "n.mp4"
    finally:
        proc.send_signal(stop)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # never leave a server behind
            proc.kill()
            proc.communicate()
            raise
    assert proc.returncode == 0 and "stopped" in err and "Traceback" not in err
