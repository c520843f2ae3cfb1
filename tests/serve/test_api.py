import asyncio
import io
import re
import subprocess
import sys
import threading
from importlib import resources

import numpy as np
import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient
from PIL import Image

from cxr.data.images import load_grayscale
from cxr.errors import CxrError
from cxr.inference.bundle import Bundle
from cxr.inference.onnx_export import weights_digest
from cxr.serve import create_app
from cxr.serve.limits import BodySizeLimit, InferencePool
from tests.data.dicom_files import write_dicom


@pytest.fixture(scope="module")
def client(served_run):
    with TestClient(create_app(served_run, backend="torch")) as c:
        yield c


def _upload(path_or_bytes, name="x.png"):
    data = path_or_bytes.read_bytes() if hasattr(path_or_bytes, "read_bytes") else path_or_bytes
    return {"file": (getattr(path_or_bytes, "name", name), data, "application/octet-stream")}


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def test_predict_matches_the_bundle_on_a_real_xray(client, served_run, xray):
    r = client.post("/v1/predict", files=_upload(xray))
    assert r.status_code == 200, r.text
    body = r.json()
    expected = Bundle.load(served_run, backend="torch").predict([xray])
    assert list(body["probabilities"]) == expected.classes == ["Covid", "Normal", "Viral Pneumonia"]
    np.testing.assert_allclose(list(body["probabilities"].values()), expected.probabilities[0], atol=1e-6)
    assert body["predicted"] == expected.predicted[0]
    version = weights_digest(Bundle.load(served_run, backend="torch").model.state_dict())[:12]
    assert body["model"] == {"id": "demo", "version": version, "architecture": "smallnet"}
    assert body["backend"] == "torch" and body["filename"] == xray.name and body["threshold"] is None


def test_inputs_unlike_the_training_films_get_a_score_and_a_warning(client, served_run, xray):
    from skimage import data

    odd = {
        "black.png": _png_bytes(Image.fromarray(np.zeros((512, 512), np.uint8))),
        "one_pixel.png": _png_bytes(Image.fromarray(np.full((1, 1), 128, np.uint8))),
        "sliver.png": _png_bytes(Image.fromarray(np.full((3, 5000), 90, np.uint8))),
        "cmyk.jpg": (
            lambda b: (Image.fromarray(data.astronaut()).convert("CMYK").save(b, format="JPEG"), b.getvalue())[1]
        )(io.BytesIO()),
    }
    for name, payload in odd.items():
        body = client.post("/v1/predict", files=_upload(payload, name)).json()
        assert body["in_distribution"] is False and body["ood_score"] > 0, (name, body)
        assert "unlike the films the model was trained on" in body["warning"], body
    body = client.post("/v1/predict", files=_upload(xray)).json()
    expected = Bundle.load(served_run, backend="torch").predict([xray])
    assert body["in_distribution"] == bool(expected.in_distribution[0])
    assert body["ood_score"] == pytest.approx(float(expected.ood_score[0]), rel=1e-5)
    assert (body["warning"] is None) == body["in_distribution"]


def test_dicom_upload_is_decoded_by_the_shared_decoder(client, served_run, xray, tmp_path):
    dcm = write_dicom(tmp_path / "scan.dcm", load_grayscale(xray))
    r = client.post("/v1/predict", files={"file": ("scan", dcm.read_bytes(), "application/dicom")})  # no extension
    assert r.status_code == 200, r.text
    expected = Bundle.load(served_run, backend="torch").predict([dcm]).probabilities[0]
    np.testing.assert_allclose(list(r.json()["probabilities"].values()), expected, atol=1e-6)


def test_model_metadata_health_docs_and_page(client):
    info = client.get("/v1/model").json()
    assert info["classes"] == ["Covid", "Normal", "Viral Pneumonia"] and info["image_size"] == 64
    assert info["threshold"] is None and info["backend"] == "torch" and info["model"]["id"] == "demo"
    assert info["metrics"]["test"] == {"n": 66, "accuracy": 0.75, "roc_auc": 0.9}  # scalars only
    assert info["metrics"]["training"]["best_score"] == 0.42 and info["explain"] is True
    assert client.get("/healthz").json()["status"] == "ok"
    docs = client.get("/docs")
    assert docs.status_code == 200 and "https://" not in docs.text  # Swagger UI from the package: no internet here
    assert client.get(re.search(r'"(/[^"]*swagger-ui-bundle\.js)"', docs.text)[1]).status_code == 200
    assert {"/v1/predict", "/v1/explain", "/v1/model", "/healthz"} <= set(client.get("/openapi.json").json()["paths"])
    page = client.get("/")
    assert page.status_code == 200 and 'src="/static/app.js"' in page.text
    assert client.get("/static/app.js").status_code == 200 and client.get("/static/style.css").status_code == 200


def test_page_loads_nothing_from_other_hosts():
    static = resources.files("cxr.serve").joinpath("static")
    for f in static.iterdir():
        text = f.read_text(encoding="utf-8")
        assert not re.search(r"(src|href)=\"(https?:)?//", text), f.name
        assert "http://" not in text and "https://" not in text, f.name


@pytest.mark.parametrize(
    "payload",
    [b"this is a text file, not an image", b"", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"%PDF-1.4 ..."],
    ids=["text", "empty", "truncated-png", "pdf"],
)
def test_not_an_image_is_415_with_a_message(client, payload):
    r = client.post("/v1/predict", files=_upload(payload, "notes.png"))
    assert r.status_code == 415, r.text
    assert "notes.png" in r.json()["detail"]


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_absurd_dimensions_are_400(client):
    bomb = _png_bytes(Image.new("1", (10_000, 10_000)))  # 100 Mpx, but only ~12 KB compressed
    assert len(bomb) < 100_000
    r = client.post("/v1/predict", files=_upload(bomb, "bomb.png"))
    assert r.status_code == 400 and "out of range" in r.json()["detail"]


def test_uploads_over_the_limit_are_413_declared_or_streamed(served_run):
    app = create_app(served_run, backend="torch", max_upload_mb=0.1, explain=False)
    big = _png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 256, (512, 512), np.uint8)))
    assert len(big) > 0.2 * 2**20
    with TestClient(app) as c:
        r = c.post("/v1/predict", files=_upload(big, "big.png"))
        assert r.status_code == 413 and "the limit is 0.1 MB" in r.json()["detail"]

        def chunks():  # no Content-Length: the body must be counted as it arrives
            yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n\r\n'
            for i in range(0, len(big), 65536):
                yield big[i : i + 65536]
            yield b"\r\n--b--\r\n"

        r = c.post("/v1/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
        assert r.status_code == 413, r.text
        small = _png_bytes(Image.new("L", (64, 64), 90))
        assert c.post("/v1/predict", files=_upload(small)).status_code == 200


def test_a_declared_oversized_body_is_refused_without_reading_it():
    sent, called = [], []

    async def app(scope, receive, send):
        called.append(scope)

    async def receive():
        raise AssertionError("the body must not be read")

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "headers": [(b"content-length", str(10**9).encode())]}
    asyncio.run(BodySizeLimit(app, max_bytes=2**20)(scope, receive, send))
    assert not called and sent[0]["status"] == 413 and b"limit is 1 MB" in sent[1]["body"]


def test_api_key_from_the_environment(served_run, xray, monkeypatch):
    monkeypatch.setenv("CXR_API_KEY", "s3cret")
    with TestClient(create_app(served_run, backend="torch", explain=False)) as c:
        assert c.get("/v1/model").status_code == 401
        assert c.get("/v1/model", headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.get("/v1/model", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.post("/v1/predict", files=_upload(xray)).status_code == 401
        assert c.post("/v1/predict", files=_upload(xray), headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.post("/v1/explain", files=_upload(xray)).status_code == 401
        health = c.get("/healthz")
        assert health.status_code == 200 and health.json()["auth"] is True
        assert c.get("/").status_code == 200  # the page itself asks for the key


def test_explain_returns_an_overlay_png_the_shape_of_the_image(client, xray):
    r = client.post("/v1/explain", files=_upload(xray))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    overlay = Image.open(io.BytesIO(r.content))
    h, w = load_grayscale(xray).shape
    scale = min(1.0, 1024 / max(h, w))
    assert overlay.mode == "RGB" and overlay.size == (round(w * scale), round(h * scale))
    assert np.asarray(overlay).std(axis=2).max() > 0  # coloured: a heatmap is drawn over the gray X-ray
    assert client.post("/v1/explain?target=Normal", files=_upload(xray)).status_code == 200
    unknown = client.post("/v1/explain?target=Cat", files=_upload(xray))  # the schema lists the classes
    assert unknown.status_code == 422 and isinstance(unknown.json()["detail"], list)  # FastAPI's list, as documented
    assert client.post("/v1/explain", files=_upload(b"nope", "a.png")).status_code == 415


def test_explain_without_grad_cam_is_501(served_run, xray):
    with TestClient(create_app(served_run, backend="torch", explain=False)) as c:
        assert c.get("/v1/model").json()["explain"] is False
        r = c.post("/v1/explain", files=_upload(xray))
        assert r.status_code == 501 and "Grad-CAM" in r.json()["detail"]


def test_a_full_queue_answers_503_and_workers_are_bounded():
    pool = InferencePool(workers=2, max_pending=3)
    release = threading.Event()
    running, peak, lock = [0], [0], threading.Lock()

    def work():
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        release.wait(5)
        with lock:
            running[0] -= 1
        return "done"

    async def burst():
        tasks = [asyncio.create_task(pool.run(work)) for _ in range(3)]
        await asyncio.sleep(0.2)
        with pytest.raises(HTTPException) as refused:
            await pool.run(work)
        release.set()
        return refused.value, await asyncio.gather(*tasks)

    refused, results = asyncio.run(burst())
    pool.shutdown()
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert results == ["done"] * 3 and peak[0] == 2 and pool.pending == 0


def test_serving_imports_no_lightning(served_run):
    code = (
        "import sys; from cxr.serve import create_app; app = create_app(sys.argv[1]); "
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')]; "
        "assert app.state.info.explain and not loaded, loaded"
    )
    done = subprocess.run([sys.executable, "-c", code, str(served_run)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_port_in_use_or_an_unknown_host_is_a_one_line_error_before_the_model_loads(tmp_path):
    import socket

    from cxr.serve.app import serve

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CxrError, match=f"cannot listen on 127.0.0.1:{port} .*pick another --port"):
            serve(tmp_path / "no-such-run", port=port)  # the port is checked first: the missing run is not reached
    with pytest.raises(CxrError, match="is not an address of this machine"):
        serve(tmp_path / "no-such-run", host="no-such-host.invalid", port=port)
