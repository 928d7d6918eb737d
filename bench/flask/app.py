"""
The design privatoon replaces, for side-by-side benchmarks only (never deployed): Flask under gunicorn's sync workers,
OpenCV for everything, as issue #12 describes it: cv2.imdecode, INTER_AREA shrink, pad, cv2.dnn, cv2.imencode q95.

`npm run bench:flask` starts it (bench/lib/flask-service.ts) with the manifest privatoon validated and resolved, as
JSON in BASELINE_MANIFEST_JSON, so both services run the same ONNX file by the same rules: shrink only (INTER_AREA,
sizes rounded as privatoon rounds them) to maxShortSide / maxLongSide, pad right and bottom to `multiple` (edge or a
grey level), the manifest's layout, channel order and range in and out, the padding cropped off, and the result
resized back where `resizeBack` says so. Raw JPEG bodies only (multipart is not read: Werkzeug would spool a large
one to a temporary file). No auth, no limits, no metadata handling: it is the baseline's cost that is measured, not
its manners.

Debian 12: apt-get install python3-flask python3-opencv gunicorn (PyPI is not needed).
"""
import json
import math
import os

import cv2
import numpy as np
from flask import Flask, Response, request

# One thread per worker process: two sync workers on two cores, as privatoon's 2 workers x 1 thread.
cv2.setNumThreads(int(os.environ.get("BASELINE_THREADS", "1")))

MANIFEST = json.loads(os.environ["BASELINE_MANIFEST_JSON"])
NET = cv2.dnn.readNetFromONNX(MANIFEST["file"])
SIZE = MANIFEST["size"]
INPUT = MANIFEST["input"]
OUTPUT = {**INPUT, **MANIFEST.get("output", {})}
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
    # Half up, as JavaScript's Math.round in privatoon's modelSize (Python's round() goes to even).
    size = (max(1, math.floor(w * scale + 0.5)), max(1, math.floor(h * scale + 0.5)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


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
    data = request.get_data()
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        return {"error": "not an image"}, 415
    original = img.shape[:2]
    img = shrink(img)
    h, w = img.shape[:2]
    padded = pad(img)
    NET.setInput(to_tensor(padded))
    out = to_pixels(NET.forward(OUTPUT["name"])[0])[:h, :w]
    if SIZE.get("resizeBack", True) and (h, w) != original:
        out = cv2.resize(out, (original[1], original[0]), interpolation=cv2.INTER_CUBIC)
    ok, jpeg = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    if not ok:
        return {"error": "encoding failed"}, 500
    return Response(jpeg.tobytes(), mimetype="image/jpeg")
