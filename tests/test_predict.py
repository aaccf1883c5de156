"""Full-resolution colorization of awkward photos with a small (untrained) model checkpoint, and
what `colorize predict` does with names, missing inputs and bad output folders."""

import io
import warnings

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from colorize import lab
from colorize.decoding import Decoding
from colorize.errors import UserError
from colorize.model import bins
from colorize.model.file import save_model
from colorize.predict import layout
from colorize.predict import predict as run
from colorize.predict.photo import colorize_batch, working_l
from colorize.predict.predict import predict
from conftest import network, photo_tiles, write_rgb


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    # Seeded, with the last conv scaled down so that ab stays in the moderate range of a trained
    # model: untrained weights can predict ab far outside the sRGB gamut, where clipping moves L.
    torch.manual_seed(0)
    model = network(head="regression", decoder_width=16, hints=False)  # hints: test_hints.py
    with torch.no_grad():
        model.head.weight.mul_(0.2)
    path = tmp_path_factory.mktemp("m") / "model.pt"
    save_model(model, path, size=32)
    return path


def _photo(h, w, seed=0):
    tile = photo_tiles(seed + 1, 64)[seed]
    return cv2.resize(tile, (w, h), interpolation=cv2.INTER_LINEAR)


@pytest.mark.parametrize("h,w", [(1, 1), (17, 3000), (3000, 4000), (37, 53)])
def test_output_has_input_size_and_the_input_l(model_file, h, w):
    from colorize.predict.load import resolve

    found = resolve(str(model_file))
    model, size = found.model, found.size
    rgb = _photo(h, w)
    out = colorize_batch(model, size, [rgb], None)[0]
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
    with pytest.raises(UserError, match="no such model"):
        predict([str(tmp_path)], str(tmp_path / "o"), str(tmp_path / "nope.pt"))


def _real_l(h: int, w: int) -> np.ndarray:
    """A real photo's L*, normalized as the network takes it: (1, 1, h, w) float32."""
    return ((lab.rgb_to_lab(_photo(h, w, seed=2))[..., 0] - 50) / 50)[None, None].astype(
        np.float32)


def test_onnx_export_of_the_regression_head_gives_pytorch_s_ab(model_file, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from colorize.model.file import load_model
    from colorize.predict.export import export_onnx

    export_onnx(str(model_file), tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    assert [i.name for i in session.get_inputs()] == ["L"]
    L = _real_l(48, 64)  # another size than the working size: the axes are dynamic
    model = load_model(model_file)[0]
    with torch.no_grad():
        expected = model(torch.from_numpy(L)).numpy()
    assert np.abs(session.run(None, {"L": L})[0] - expected).max() < 1e-4


def test_onnx_export_of_the_classification_head_decodes_inside_the_graph(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from colorize.predict.export import export_onnx

    torch.manual_seed(0)
    model = network(decoder_width=16, head="classification", hints=False)
    model.set_prior(np.random.default_rng(0).dirichlet(np.ones(bins.num_bins())))
    save_model(model.eval(), tmp_path / "c.pt", size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a normal export prints no warning (Python hides
        warnings.simplefilter("ignore", DeprecationWarning)  # deprecations from users)
        result = export_onnx(str(tmp_path / "c.pt"), tmp_path / "c.onnx")
    session = ort.InferenceSession(str(tmp_path / "c.onnx"))
    assert [i.name for i in session.get_inputs()] == ["L", "temperature", "prior_correction"]
    L = _real_l(48, 40)  # any size that is a multiple of 8
    for d in (Decoding(0.5, 0.0), Decoding(0.2, 1.0)):
        ab = session.run(None, {"L": L, "temperature": np.array([d.temperature], np.float32),
                                "prior_correction": np.array([d.prior_correction],
                                                             np.float32)})[0]
        with torch.no_grad():
            expected = model.decode(model(torch.from_numpy(L)), d.temperature,
                                    d.prior_correction).numpy()
        assert ab.shape == (1, 2, 48, 40) and np.abs(ab - expected).max() < 1e-4, d
    # The file suggests the decoding predict would use: here (a file, run inside the
    # repository), params.yaml's.
    meta = session.get_modelmeta().custom_metadata_map
    assert result["decoding"] == Decoding(0.2, 0.55)
    assert (meta["temperature"], meta["prior_correction"], meta["head"]) == (
        "0.2", "0.55", "classification")
    # How to feed it is in the file, not only in a docstring (the scaling checked above).
    assert "L* / 50 - 1" in meta["input_L"] and "multiples of 8" in meta["input_L"]
    assert "a* / 110" in meta["output_ab"] and "temperature" in meta["decoding_inputs"]
    assert "input_hints" not in meta  # no hint channels in this network


@pytest.mark.parametrize("depth,max_diff,mean_diff",
                         [(np.uint8, 0.5, 0.15), (np.uint16, 0.3, 0.01)])
def test_working_l_from_integers_matches_the_float_path(depth, max_diff, mean_diff):
    # Measured on the skimage photos: uint8 max 0.41, mean <= 0.09; uint16 max 0.21, mean 0.001.
    rgb = _photo(1080, 1920, seed=1).astype(depth) * (257 if depth == np.uint16 else 1)
    on_floats = cv2.resize(lab.to_float_rgb(rgb), (192, 192), interpolation=cv2.INTER_AREA)
    diff = np.abs(working_l(rgb, 192) - lab.rgb_to_lab(on_floats)[..., 0])
    assert diff.max() < max_diff and diff.mean() < mean_diff


def _shape(path):
    return cv2.imread(str(path)).shape[:2]


def test_inputs_with_the_same_output_name_get_distinct_outputs(model_file, tmp_path, capsys):
    a = write_rgb(tmp_path / "a" / "x.jpg", _photo(40, 60))
    b = write_rgb(tmp_path / "b" / "x.jpg", _photo(30, 50))
    write_rgb(tmp_path / "in" / "pic.jpg", _photo(20, 30))
    write_rgb(tmp_path / "in" / "pic.png", _photo(24, 36))
    out = tmp_path / "out"
    result = predict([str(a), str(b), str(tmp_path / "in")], str(out), str(model_file))
    assert sorted(result["written"]) == sorted(str(out / p) for p in
                                               ("x.png", "x-2.png", "in/pic.png", "in/pic-2.png"))
    assert result["renamed"] == [(str(b), str(out / "x-2.png")),
                                 (str(tmp_path / "in" / "pic.png"), str(out / "in" / "pic-2.png"))]
    # Each output comes from its own input: the first in command-line / sorted order keeps the name.
    assert _shape(out / "x.png") == (40, 60) and _shape(out / "x-2.png") == (30, 50)
    assert _shape(out / "in" / "pic.png") == (20, 30)
    assert _shape(out / "in" / "pic-2.png") == (24, 36)
    printed = capsys.readouterr().out
    assert f"renamed {b} -> {out / 'x-2.png'}" in printed


def test_renaming_skips_names_that_other_photos_own(tmp_path):
    # x-2.jpg owns x-2.png, so the second x.jpg becomes x-3.png; X.JPG collides with x.jpg on
    # case-insensitive file systems and is renamed too.
    paths = [write_rgb(tmp_path / d / n, _photo(16, 16)) for d, n in
             (("a", "x.jpg"), ("b", "x.jpg"), ("c", "x-2.jpg"), ("d", "X.JPG"))]
    jobs, renamed = layout.unique_targets(layout.collect([str(p) for p in paths])[0],
                                          tmp_path / "o")
    assert [str(t) for _, t in jobs] == ["x.png", "x-3.png", "x-2.png", "X-4.png"]
    assert [s for s, _ in renamed] == [paths[1], paths[3]]


def test_the_same_photo_named_twice_is_colorized_once(model_file, tmp_path):
    f = write_rgb(tmp_path / "in" / "x.png", _photo(16, 16))
    result = predict([str(f), str(tmp_path / "in" / ".." / "in" / "x.png"), str(tmp_path / "in")],
                     str(tmp_path / "out"), str(model_file))
    assert result["written"] == [str(tmp_path / "out" / "x.png")] and result["renamed"] == []


def test_outputs_never_overwrite_the_inputs(model_file, tmp_path):
    f = write_rgb(tmp_path / "pic.png", _photo(16, 16))
    before = f.read_bytes()
    result = predict([str(f)], str(tmp_path), str(model_file))
    assert result["written"] == [str(tmp_path / "pic-2.png")] and f.read_bytes() == before


def test_every_input_without_an_output_is_listed_with_its_reason(model_file, tmp_path, capsys,
                                                                 monkeypatch):
    write_rgb(tmp_path / "ok.png", _photo(40, 60))
    (tmp_path / "as_data.dat").write_bytes((tmp_path / "ok.png").read_bytes())
    (tmp_path / "notes.txt").write_text("not a photo")
    (tmp_path / "empty").mkdir()
    write_rgb(tmp_path / "big" / "big.png", _photo(50, 60))
    monkeypatch.setattr(run, "MAX_PIXELS", 2400)  # 40x60 fits, 50x60 does not
    names = ["missing.jpg", "ok.png", "as_data.dat", "notes.txt", "empty", "big"]
    result = predict([str(tmp_path / n) for n in names], str(tmp_path / "out"), str(model_file))
    # An explicit file is tried whatever its suffix: the decoder decides.
    assert sorted(result["written"]) == [str(tmp_path / "out" / "as_data.png"),
                                         str(tmp_path / "out" / "ok.png")]
    assert sorted(result["skipped"]) == sorted([
        (str(tmp_path / "missing.jpg"), "not found"), (str(tmp_path / "empty"), "no images"),
        (str(tmp_path / "notes.txt"), "unreadable"),
        (str(tmp_path / "big" / "big.png"), "too_large")])
    printed = capsys.readouterr().out
    assert "skipped 4" in printed and "too_large (60x50 exceeds 2400 pixels)" in printed


def test_an_output_folder_blocked_by_a_file_is_listed(model_file, tmp_path):
    write_rgb(tmp_path / "in" / "x.png", _photo(16, 16))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "in").write_text("a file where the subfolder should go")
    result = predict([str(tmp_path / "in")], str(tmp_path / "out"), str(model_file))
    assert result["written"] == [] and result["skipped"] == [
        (str(tmp_path / "in" / "x.png"), "unwritable")]


def test_batches_hold_a_bounded_number_of_pixels(model_file, tmp_path, monkeypatch):
    for name, (h, w) in {"a": (40, 60), "b": (40, 60), "c": (100, 100), "d": (40, 60),
                         "e": (40, 60)}.items():
        write_rgb(tmp_path / "in" / f"{name}.png", _photo(h, w))
    batches = []

    def recording(model, size, photos, decoding, amp="auto", hints=None):
        batches.append([p.shape[0] * p.shape[1] for p in photos])
        return colorize_batch(model, size, photos, decoding, amp, hints)

    monkeypatch.setattr(run, "colorize_batch", recording)
    monkeypatch.setattr(run, "BATCH_PIXELS", 5000)
    result = predict([str(tmp_path / "in")], str(tmp_path / "out"), str(model_file), batch_size=8)
    # The 100x100 photo is over the budget alone; it goes in a batch of its own.
    assert batches == [[2400, 2400], [10000], [2400, 2400]]
    assert len(result["written"]) == 5
    batches.clear()
    predict([str(tmp_path / "in")], str(tmp_path / "out"), str(model_file), batch_size=1)
    assert batches == [[2400], [2400], [10000], [2400], [2400]]


@pytest.mark.parametrize("out", ["afile", "afile/sub"])
def test_an_unusable_output_folder_fails_before_any_work(tmp_path, out):
    (tmp_path / "afile").write_text("")
    # The model does not exist either: the output folder is checked first.
    with pytest.raises(UserError, match="afile is a file, not a folder") as e:
        predict([str(tmp_path)], str(tmp_path / out), str(tmp_path / "nope.pt"))
    assert "\n" not in str(e.value)
