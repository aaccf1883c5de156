"""Huge scans: compose() works in strips yet equals the whole-image computation, and predict()
colorizes a 24 MP photo within a memory bound proportional to its pixel count."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from colorize import lab
from colorize.data.images import decode
from colorize.model.file import save_model
from colorize.predict.photo import _linear_taps, compose
from conftest import network, photo_tiles, write_rgb


def _whole(rgb: np.ndarray, ab_small: np.ndarray) -> np.ndarray:
    """The reference: full-size L, one cv2.resize of ab to the full size, one conversion."""
    h, w = rgb.shape[:2]
    ab = cv2.resize(np.ascontiguousarray(ab_small.transpose(1, 2, 0)), (w, h),
                    interpolation=cv2.INTER_LINEAR).reshape(h, w, 2)
    return lab.lab_to_rgb8(lab.join_l_ab(lab.rgb_to_lab(rgb)[..., 0], ab))


@pytest.mark.parametrize("h,s", [(301, 32), (17, 32), (1, 32), (1080, 192), (192, 192), (7, 3)])
def test_row_taps_reproduce_cv2_linear_resize(h, s):
    column = np.random.default_rng(h).uniform(-100, 100, (s, 1)).astype(np.float32)
    top, bottom, f = _linear_taps(0, h, h, s)
    ours = column[top] * (1 - f[..., 0]) + column[bottom] * f[..., 0]
    expected = cv2.resize(column, (1, h), interpolation=cv2.INTER_LINEAR).reshape(h, 1)
    assert np.abs(ours - expected).max() < 1e-2  # float32 rounding of the weights (ab units)


@pytest.mark.parametrize("h,w,s", [(301, 517, 32), (17, 40, 32), (1, 1, 32), (540, 960, 192)])
def test_strips_equal_the_whole_image(h, w, s):
    tile = photo_tiles(1, 128)[0]
    rgb = cv2.resize(tile, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, 3)
    noise = np.random.default_rng(0).uniform(-70, 70, (s, s, 2)).astype(np.float32)
    ab = cv2.GaussianBlur(noise, (0, 0), 1.5).transpose(2, 0, 1)  # smooth, like a network's ab
    whole = _whole(rgb, ab)
    for strip_pixels in (1, 7 * w, 10_000):  # one row, 7 rows, strips that do not divide h
        diff = np.abs(compose(rgb, ab, strip_pixels).astype(int) - whole)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, strip_pixels


_CHILD = """
import json, sys
from pathlib import Path
from colorize.predict.predict import predict

def kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

big, small, model, out = sys.argv[1:]
predict([small], out + "/warm", model)  # imports, model, thread pools: the fixed base
base = kib("VmRSS")
result = predict([big], out, model)
print(json.dumps({"base": base, "peak": kib("VmHWM"), "result": result}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_a_large_photo_is_colorized_in_memory_proportional_to_its_pixels(tmp_path):
    h, w = 4000, 6000
    torch.manual_seed(0)
    model = network(head="regression", decoder_width=16)
    with torch.no_grad():  # keep ab moderate, as in test_predict.py, so L survives the gamut
        model.head.weight.mul_(0.2)
    save_model(model, tmp_path / "model.pt", size=32)
    rgb = cv2.resize(photo_tiles(1, 256)[0], (w, h), interpolation=cv2.INTER_CUBIC)
    write_rgb(tmp_path / "big.jpg", rgb)
    write_rgb(tmp_path / "small.png", rgb[:64, :64])
    del rgb
    # Peak memory is read inside the child (VmHWM): a child's ru_maxrss on Linux starts at this
    # process's own peak, which would hide what predict() uses.
    done = subprocess.run([sys.executable, "-c", _CHILD, tmp_path / "big.jpg",
                           tmp_path / "small.png", tmp_path / "model.pt", tmp_path / "out"],
                          capture_output=True, text=True, check=True)
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["result"]["written"] == [str(tmp_path / "out" / "big.png")]
    # Decoding holds BGR + RGB + a 1-byte mask (7 B/px), colorizing input + output (6 B/px) and
    # one strip's floats (~50 MB), writing output + BGR copy (6 B/px): 8 B/px + 128 MiB is
    # ample. The whole-image float path needed over 50 B/px.
    used = (report["peak"] - report["base"]) * 1024
    assert used < 8 * h * w + (128 << 20), f"{used / (h * w):.1f} bytes per pixel"
    src = decode((tmp_path / "big.jpg").read_bytes()).rgb
    out = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / "big.png")), cv2.COLOR_BGR2RGB)
    assert out.shape == (h, w, 3)
    grid = (slice(None, None, 7), slice(None, None, 7))  # every 49th pixel: L is pointwise
    L_in, L_out = (lab.rgb_to_lab(x[grid])[..., 0] for x in (src, out))
    assert np.median(np.abs(L_in - L_out)) < 0.5
    assert np.percentile(np.abs(L_in - L_out), 99) < 3.0
