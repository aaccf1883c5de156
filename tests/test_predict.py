"""Full-resolution colorization of awkward photos with a small (untrained) model checkpoint."""

import io

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from colorize import lab
from colorize.model.checkpoint import save_model
from colorize.model.network import Colorizer
from colorize.predict.photo import colorize_batch
from colorize.predict.run import predict
from conftest import photo_tiles


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    # Seeded, with the last conv scaled down so that ab stays in the moderate range of a trained
    # model: untrained weights can predict ab far outside the sRGB gamut, where clipping moves L.
    torch.manual_seed(0)
    model = Colorizer(16)
    with torch.no_grad():
        model.decoder[-2].weight.mul_(0.2)
    path = tmp_path_factory.mktemp("m") / "model.pt"
    save_model(model, path, size=32)
    return path


def _photo(h, w, seed=0):
    tile = photo_tiles(seed + 1, 64)[seed]
    return cv2.resize(tile, (w, h), interpolation=cv2.INTER_LINEAR)


@pytest.mark.parametrize("h,w", [(1, 1), (17, 3000), (3000, 4000), (37, 53)])
def test_output_has_input_size_and_the_input_l(model_file, h, w):
    from colorize.predict.load import resolve

    model, size = resolve(str(model_file))
    rgb = _photo(h, w)
    out = colorize_batch(model, size, [rgb])[0]
    assert out.shape == rgb.shape and out.dtype == np.uint8
    L_in, L_out = lab.rgb_to_lab(rgb)[..., 0], lab.rgb_to_lab(out)[..., 0]
    # Exact L up to uint8 rounding of the output and gamut clipping of extreme ab.
    assert np.median(np.abs(L_in - L_out)) < 0.5
    assert np.percentile(np.abs(L_in - L_out), 99) < 3.0


def _files(folder):
    folder.mkdir()
    rgb = _photo(40, 60)
    cv2.imwrite(str(folder / "plain.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "gray.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    rgba = np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), np.full((40, 60), 128, np.uint8)])
    cv2.imwrite(str(folder / "rgba.png"), rgba)
    cv2.imwrite(str(folder / "deep.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.uint16)
                * 257)
    bio = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(bio, "JPEG")
    (folder / "cmyk.jpg").write_bytes(bio.getvalue())
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    return rgb


def test_folder_with_awkward_and_corrupt_files(model_file, tmp_path):
    rgb = _files(tmp_path / "in")
    result = predict([str(tmp_path / "in")], str(tmp_path / "out"), str(model_file),
                     batch_size=2)
    assert len(result["written"]) == 5
    assert [(p.endswith("corrupt.jpg"), r) for p, r in result["skipped"]] == [(True, "unreadable")]
    for name in ("plain", "gray", "rgba", "deep", "cmyk"):
        out = cv2.imread(str(tmp_path / "out" / "in" / f"{name}.png"))
        assert out.shape == rgb.shape, name


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model"):
        predict([str(tmp_path)], str(tmp_path / "o"), str(tmp_path / "nope.pt"))


def test_onnx_export_matches_pytorch(model_file, tmp_path):
    pytest.importorskip("onnxruntime")
    from colorize.predict.export import TOLERANCE, export_onnx

    result = export_onnx(str(model_file), tmp_path / "m.onnx")
    assert result["max_abs_diff"] <= TOLERANCE and (tmp_path / "m.onnx").stat().st_size > 0
