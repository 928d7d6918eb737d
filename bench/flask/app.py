"""
The design privatoon replaces, for side-by-side benchmarks only (never deployed): Flask under gunicorn's sync workers,
OpenCV for everything, as issue #12 describes it: cv2.imdecode, INTER_AREA shrink, pad, cv2.dnn, cv2.imencode q95.

It reads the same model manifest as privatoon (npm run bench:flask starts it), so both services run the same ONNX file
with the same rules: shrink only (INTER_AREA) to maxShortSide / maxLongSide, pad right and bottom to `multiple`
(edge or a grey level), the manifest's layout, channel order and range, the padding cropped off and the result
resized back. No auth, no limits,
no metadata handling: it is the baseline's cost that is measured, not its manners.

  BASELINE_MANIFEST=models/bench/nearfree-bench.json python3 -m gunicorn -w 2 -b 127.0.0.1:8081 \
      --chdir bench/flask app:app

Debian 12: apt-get install python3-flask python3-opencv gunicorn (PyPI is not needed).
"""
import json
import os

import cv2
import numpy as np
from flask import Flask, Response, request

# One thread per worker process: two sync workers on two cores, as privatoon's 2 workers x 1 thread.
cv2.setNumThreads(int(os.environ.get("BASELINE_THREADS", "1")))

MANIFEST_PATH = os.environ["BASELINE_MANIFEST"]
with open(MANIFEST_PATH, encoding="utf-8") as f:
    MANIFEST = json.load(f)
NET = cv2.dnn.readNetFromONNX(os.path.join(os.path.dirname(MANIFEST_PATH), MANIFEST["file"]))
SIZE = MANIFEST["size"]
INPUT = MANIFEST["input"]
OUTPUT = {**INPUT, **MANIFEST["output"]}
# Each range as (low, high): pixel level 0 maps to low, 255 to high (models/manifest.ts).
RANGES = {"0..1": (0.0, 1.0), "-1..1": (-1.0, 1.0), "0..255": (0.0, 255.0)}
QUALITY = 95

app = Flask(__name__)


def shrink(img):
    h, w = img.shape[:2]
    scale = 1.0
    if "maxShortSide" in SIZE and min(h, w) > SIZE["maxShortSide"]:
        scale = SIZE["maxShortSide"] / min(h, w)
    if "maxLongSide" in SIZE and max(h, w) * scale > SIZE["maxLongSide"]:
        scale = SIZE["maxLongSide"] / max(h, w)
    if scale == 1.0:
        return img
    return cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def pad(img):
    m = SIZE.get("multiple", 1)
    h, w = img.shape[:2]
    bottom, right = (-h) % m, (-w) % m
    if bottom == 0 and right == 0:
        return img
    if SIZE.get("pad", "edge") == "edge":
        return cv2.copyMakeBorder(img, 0, bottom, 0, right, cv2.BORDER_REPLICATE)
    grey = SIZE["pad"]
    return cv2.copyMakeBorder(img, 0, bottom, 0, right, cv2.BORDER_CONSTANT, value=(grey, grey, grey))


def to_tensor(img):
    """BGR uint8 pixels to the model's input: (x - mean) * scale maps 0..255 onto the manifest's range."""
    low, high = RANGES[INPUT["range"]]
    scale = (high - low) / 255.0
    mean = -low / scale
    rgb = INPUT["channels"] == "RGB"
    if INPUT["layout"] == "NCHW":
        return cv2.dnn.blobFromImage(img, scalefactor=scale, mean=(mean, mean, mean), swapRB=rgb)
    pixels = cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if rgb else img
    return ((pixels.astype(np.float32) - mean) * scale)[None]


def to_pixels(out):
    """One output image (CHW or HWC, as the manifest says) to BGR uint8 pixels."""
    low, high = RANGES[OUTPUT["range"]]
    hwc = out.transpose(1, 2, 0) if OUTPUT["layout"] == "NCHW" else out
    pixels = np.clip(np.rint((hwc - low) * (255.0 / (high - low))), 0, 255).astype(np.uint8)
    return cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR) if OUTPUT["channels"] == "RGB" else pixels


@app.get("/healthz")
def healthz():
    return {"status": "ok"}


@app.post("/api/cartoonize")
def cartoonize():
    data = request.files["image"].read() if request.files else request.get_data()
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        return {"error": "not an image"}, 415
    original = img.shape[:2]
    img = shrink(img)
    h, w = img.shape[:2]
    padded = pad(img)
    NET.setInput(to_tensor(padded))
    out = to_pixels(NET.forward()[0])[:h, :w]
    if (h, w) != original:
        out = cv2.resize(out, (original[1], original[0]), interpolation=cv2.INTER_CUBIC)
    ok, jpeg = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    return Response(jpeg.tobytes(), mimetype="image/jpeg")
