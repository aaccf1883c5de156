"""Colour hints (model/hints.py): the simulation against hand-built cases, a person's hints
from the command line, a file and a served request, and a trained tiny network that follows a
hint near it and leaves far pixels alone."""

import base64
import json

import numpy as np
import pandas as pd
import pytest
import torch

from colorize import lab
from colorize.data.images import decode
from colorize.decoding import NEUTRAL
from colorize.errors import UserError
from colorize.model import hints as H
from colorize.model.file import load_model
from colorize.model.inference import predict_ab
from colorize.predict.predict import predict
from colorize.preprocess.store import LabStore, write_index, write_shard
from colorize.train.data import LabDataset, train_transform
from conftest import photo_tiles, smooth_fields, train_hint_model, write_rgb


def test_the_count_is_geometric_with_one_in_eight_getting_none():
    rng = np.random.default_rng(0)
    counts = np.array([len(H.draw(rng, 64, 64)[2]) for _ in range(4000)])
    assert abs((counts == 0).mean() - 1 / 8) < 0.015  # P(0) = p
    assert abs(counts.mean() - 7) < 0.4  # (1 - p) / p
    assert abs((counts == 1).mean() - 1 / 8 * 7 / 8) < 0.015  # P(1) = p (1 - p)


def test_patches_have_sides_1_to_9_stay_inside_and_gather_at_the_centre():
    rng = np.random.default_rng(1)
    top, left, side = H.draw(rng, 64, 48, count=5000)
    assert side.min() == 1 and side.max() == H.MAX_SIDE
    assert (top >= 0).all() and (top + side <= 64).all() and (left + side <= 48).all()
    centre_y, centre_x = top + side / 2, left + side / 2
    assert abs(centre_y.mean() - 32) < 1 and abs(centre_x.mean() - 24) < 1
    # Gaussian with sigma a quarter of the room: about 68% within one sigma of the middle.
    room = 64 - side + 1
    share = (np.abs(top - (room - 1) / 2) <= room / 4).mean()
    assert 0.6 < share < 0.75


def test_a_patch_carries_the_mean_of_the_truth_under_it():
    rows, cols = np.mgrid[0:10, 0:12].astype(np.float32)
    ab = np.stack([cols, 2 * rows])  # a* = column, b* = 2 x row
    means = H.patch_means(ab, np.array([2, 0]), np.array([3, 11]), np.array([3, 1]))
    np.testing.assert_allclose(means, [[4, 6], [11, 0]], atol=1e-5)  # cols 3-5, rows 2-4


def test_painting_writes_colour_and_mask_exactly_under_each_patch():
    patches = H.Patches(np.array([1, 6]), np.array([2, 6]), np.array([2, 3]),
                        np.array([[55.0, -22.0], [0.0, 0.0]]))  # the second one gray
    out = H.paint((8, 8), patches)
    mask = np.zeros((8, 8))
    mask[1:3, 2:4] = 1
    mask[6:8, 6:8] = 1  # clipped at the border: 3 x 3 from (6, 6) keeps 2 x 2
    np.testing.assert_array_equal(out[2], mask)
    np.testing.assert_allclose(out[0][1:3, 2:4], 55 / lab.AB_SCALE)
    np.testing.assert_allclose(out[1][1:3, 2:4], -22 / lab.AB_SCALE)
    assert not out[:2][:, 6:, 6:].any()  # a gray hint: ab 0, but the mask says it is there
    assert not out[:2][:, mask == 0].any()


def test_simulated_hints_hold_the_truth_s_colour():
    rng = np.random.default_rng(2)
    ab = np.broadcast_to(np.array([30.0, -40.0])[:, None, None], (2, 32, 32)).copy()
    out = H.simulate(ab, rng, count=6)
    on = out[2] == 1
    assert on.any()
    np.testing.assert_allclose(out[0][on] * lab.AB_SCALE, 30, atol=1e-4)
    np.testing.assert_allclose(out[1][on] * lab.AB_SCALE, -40, atol=1e-4)


@pytest.fixture
def store(tmp_path):
    tiles = photo_tiles(4, 48)
    labs = np.stack([lab.rgb_to_lab(lab.to_float_rgb(t)).transpose(2, 0, 1) for t in tiles])
    write_shard(tmp_path / "s" / "shard-00000-x.npy", labs.astype(np.float16))
    write_index(tmp_path / "s", 48, [{"file": "shard-00000-x.npy", "count": 4,
                                      "ids": list("abcd"), "names": list("abcd")}])
    return LabStore(tmp_path / "s")


def test_training_hints_are_a_function_of_seed_epoch_and_image_and_leave_crops_alone(store):
    plain = LabDataset(store, train_transform(32, 0.3), seed=0)
    hinted = LabDataset(store, train_transform(32, 0.3), seed=0, hints=True)
    x, ab, _ = hinted[(1, 2)]
    assert x.shape == (4, 32, 32)
    again, _, _ = hinted[(1, 2)]
    assert torch.equal(x, again)  # reproducible
    L, ab_plain, _ = plain[(1, 2)]
    assert torch.equal(x[:1], L) and torch.equal(ab, ab_plain)  # the same crop with hints on
    assert not torch.equal(x[1:], hinted[(2, 2)][0][1:])  # another epoch, other hints
    hint = x[3] == 1  # the hint's colour is the crop's own colour under it
    if hint.any():
        assert (x[1:3][:, hint] - ab[:, hint]).abs().max() < 0.2
    val = LabDataset(store, seed=0, hints=True)
    assert torch.equal(val[2][0], val[2][0])  # validation: no hidden generator state


def test_hint_free_leaves_that_share_of_training_items_without_any_hint(store):
    def share_without(dataset) -> float:
        return float(np.mean([not dataset[(e, i)][0][3].any() for e in range(150)
                              for i in range(4)]))

    paper = LabDataset(store, train_transform(32, 0.3), seed=0, hints=True)
    half = LabDataset(store, train_transform(32, 0.3), seed=0, hints=True, hint_free=0.5)
    assert abs(share_without(paper) - 1 / 8) < 0.04  # the geometric draw's own zeros
    assert abs(share_without(half) - (0.5 + 0.5 / 8)) < 0.05
    # Validation keeps the paper's draw whatever hint_free is: its loss stays comparable.
    val_paper, val_half = (LabDataset(store, seed=0, hints=True, hint_free=f) for f in (0, .5))
    assert all(torch.equal(val_paper[i][0], val_half[i][0]) for i in range(4))


def test_a_person_s_hint_lands_at_the_mapped_pixel_with_its_colour():
    hint = H.parse("150,20,#ff0000")  # in a 200 x 100 photo, working size 32
    out = H.user_channels([hint], 100, 200, 32, "p.jpg")
    assert np.argwhere(out[2]).tolist() == [[20 * 32 // 100, 150 * 32 // 200]]
    red = lab.rgb_to_lab(np.array([[[1.0, 0.0, 0.0]]], np.float32))[0, 0]
    np.testing.assert_allclose(out[:2, 6, 24] * lab.AB_SCALE, red[1:], atol=1e-3)
    big = H.from_values([100, 50, "#00ff00", 25], "x")  # 25 of 100 px -> 8 of 32
    assert H.user_channels([big], 100, 200, 32, "p.jpg")[2].sum() == 8 * 8


@pytest.mark.parametrize("text,message", [
    ("1,2", "is not X,Y,#RRGGBB"),
    ("1,2,#ff00", "'#ff00' is not a colour"),
    ("1,2,#gg0000", "'#gg0000' is not a colour"),
    ("-3,2,#ff0000", "x: -3 is not a pixel coordinate"),
    ("1.5,2,#ff0000", "is not X,Y,#RRGGBB"),
])
def test_bad_hints_are_one_line_naming_the_hint(text, message):
    with pytest.raises(UserError, match=message):
        H.parse(text)


def test_a_hint_outside_its_photo_names_both():
    with pytest.raises(UserError, match=r"p.jpg: hint 200,5,#ff0000 is outside the photo"):
        H.user_channels([H.parse("200,5,#ff0000")], 100, 200, 32, "p.jpg")


@pytest.mark.parametrize("content,message", [
    ("[1]", "expected an object"),
    ('{"a.jpg": 3}', "a.jpg: expected a list of hints"),
    ('{"a.jpg": [[1, 2]]}', "a.jpg hint 1: [1, 2] is not a hint"),
    ('{"a.jpg": [[1, 2, "#ff0000", 0]]}', "side 0 must be at least 1"),
    ('{"a.jpg": [[true, 2, "#ff0000"]]}', "x: True is not a pixel coordinate"),
])
def test_hints_files_are_checked_entry_by_entry(tmp_path, content, message):
    (tmp_path / "h.json").write_text(content)
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        H.read_file(tmp_path / "h.json")


@pytest.fixture(scope="module")
def hint_model(tmp_path_factory):
    return train_hint_model(tmp_path_factory.mktemp("hint-model") / "model.pt", "regression")


def test_a_hint_colours_the_pixels_near_it_and_leaves_far_ones(hint_model):
    net = load_model(hint_model)[0]
    L = np.random.default_rng(5).uniform(20, 80, (1, 32, 32)).astype(np.float32)
    colour = np.array([[50.0, -45.0]])
    given = H.paint((32, 32), H.Patches(np.array([14]), np.array([14]), np.array([3]), colour))
    without, = predict_ab(net, L, [NEUTRAL])
    with_hint, = predict_ab(net, L, [NEUTRAL], hints=given[None])
    target = colour[0][:, None, None]
    near = (slice(None), slice(13, 18), slice(13, 18))  # the patch and a pixel around it
    far = (slice(None), slice(0, 5), slice(0, 5))  # a corner, 9+ pixels away
    before = np.abs(without[0][near] - target).mean()
    after = np.abs(with_hint[0][near] - target).mean()
    assert after < 0.6 * before  # well on the way to the hint's colour
    moved_near = np.abs(with_hint[0][near] - without[0][near]).mean()
    moved_far = np.abs(with_hint[0][far] - without[0][far]).mean()
    assert moved_far < 0.15 * moved_near  # far pixels almost unchanged


def _photo(tmp_path):
    rgb = photo_tiles(1, 64)[0]
    return write_rgb(tmp_path / "in" / "p.png", rgb), rgb


def test_predict_with_a_hint_brings_the_photo_s_colour_there_toward_it(hint_model, tmp_path):
    path, rgb = _photo(tmp_path)
    plain = predict([str(path)], str(tmp_path / "plain"), str(hint_model), amp="off")
    hinted = predict([str(path)], str(tmp_path / "hinted"), str(hint_model), amp="off",
                     hints={"p.png": [H.from_values([32, 32, "#2060ff", 8], "x")]})
    a = decode((tmp_path / "plain" / "p.png").read_bytes(), 10**6).rgb
    b = decode((tmp_path / "hinted" / "p.png").read_bytes(), 10**6).rgb
    assert plain["written"] and hinted["written"]
    blue = lab.rgb_to_lab(np.array([[[0x20, 0x60, 0xff]]], np.float32) / 255)[0, 0, 1:]

    def ab_at(img):
        return lab.rgb_to_lab(lab.to_float_rgb(img[30:35, 30:35]))[..., 1:].mean((0, 1))

    assert np.linalg.norm(ab_at(b) - blue) < 0.7 * np.linalg.norm(ab_at(a) - blue)
    corner = (slice(0, 6), slice(0, 6))  # 26+ photo pixels from the hint: nearly unchanged
    assert np.abs(a[corner].astype(int) - b[corner]).mean() < 3


def test_the_served_model_takes_hints_per_row_with_predict_s_pixels(hint_model, tmp_path):
    from colorize.predict.service import ColorizerService

    path, _ = _photo(tmp_path)
    predict([str(path)], str(tmp_path / "cli"), str(hint_model), amp="auto",
            hints={"p.png": [H.parse("32,32,#2060ff"), H.from_values([5, 60, "#ff2020", 4],
                                                                      "x")]})
    service = ColorizerService()
    service.model, service.size = load_model(hint_model)[:2]
    service.decoding = NEUTRAL
    request = pd.DataFrame({"image": [base64.b64encode(path.read_bytes()).decode()] * 3,
                            "hints": [json.dumps([[32, 32, "#2060ff"], [5, 60, "#ff2020", 4]]),
                                      None, "[[99, 1, \"#2060ff\"]]"]})
    answer = service.predict(None, request)
    served = base64.b64decode(answer["image"][0])
    assert served == (tmp_path / "cli" / "p.png").read_bytes()  # pixel- and byte-identical
    assert answer["error"][1] == "" and answer["image"][1] != answer["image"][0]  # no hints
    assert "outside the photo" in answer["error"][2] and answer["image"][2] == ""


def test_onnx_takes_hints_as_an_input_and_matches_pytorch(hint_model, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from colorize.model.network import WithDecoding
    from colorize.predict.export import export_onnx

    export_onnx(str(hint_model), tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    assert [i.name for i in session.get_inputs()] == ["L", "hints"]
    rng = np.random.default_rng(3)
    L = rng.uniform(-1, 1, (1, 1, 32, 32)).astype(np.float32)
    given = H.simulate(smooth_fields(rng, 1, 32)[0], rng, count=4)[None]
    got = session.run(None, {"L": L, "hints": given})[0]
    net = load_model(hint_model)[0]
    with torch.no_grad():
        expected = WithDecoding(net)(torch.from_numpy(L), torch.from_numpy(given)).numpy()
    assert np.abs(got - expected).max() < 1e-4
    meta = {p.key: p.value for p in __import__("onnx").load(str(tmp_path / "m.onnx"))
            .metadata_props}
    assert meta["hints"] == "true"


def test_evaluation_scores_the_hint_model_with_0_1_2_5_10_hints(hint_model, settings, tmp_path):
    from colorize.evaluate.evaluate import evaluate

    tiles = photo_tiles(12, 32)
    labs = np.stack([lab.rgb_to_lab(lab.to_float_rgb(t)).transpose(2, 0, 1) for t in tiles])
    write_shard(tmp_path / "val" / "shard-00000-x.npy", labs.astype(np.float16))
    write_index(tmp_path / "val", 32, [{"file": "shard-00000-x.npy", "count": 12,
                                        "ids": [str(i) for i in range(12)], "names": []}])
    np.save(tmp_path / "prior.npy", np.full(262, 1 / 262))
    outputs = {"metrics_path": tmp_path / "m.json", "detail_path": tmp_path / "d.json",
               "tradeoff_path": tmp_path / "t.csv",
               "samples_path": tmp_path / "s.png", "curve_path": tmp_path / "c.csv",
               "hints_path": tmp_path / "h.csv"}
    results = evaluate(settings, model_path=hint_model, data_dir=tmp_path,
                       prior_path=tmp_path / "prior.npy", **outputs)
    assert results["hints"] is True and results["headline"] == "val"
    headline = json.loads(outputs["metrics_path"].read_text())  # no test split: validation's
    assert (headline["split"], headline["photos"]) == ("val", 12)
    assert headline["ciede2000"] == results["val"]["model"]["ciede2000"]
    rows = [r.split(",") for r in outputs["hints_path"].read_text().splitlines()[1:]]
    assert [int(r[0]) for r in rows] == [0, 1, 2, 5, 10]
    model = [float(r[1]) for r in rows]
    gray = [float(r[2]) for r in rows]
    assert model[0] == results["val"]["model"]["ciede2000"]  # 0 hints: as without them
    assert model[-1] < model[0] and gray[-1] < gray[0]  # ten hints help both
    assert model[-1] < gray[-1]  # ... and the network spreads them beyond their patches
    again = evaluate(settings, model_path=hint_model, data_dir=tmp_path,
                     prior_path=tmp_path / "prior.npy", **outputs)
    assert again == results  # the same hints every run: fixed seeds


def test_hints_find_their_photo_by_path_or_file_name():
    from pathlib import Path

    from colorize.predict.predict import _match_hints

    a, b = [H.parse("1,1,#ff0000")], [H.parse("2,2,#00ff00")]
    photos = [Path("x/p.png"), Path("y/q.jpg"), Path("z/r.png")]
    assert _match_hints({"./x/p.png": a, "q.jpg": b}, photos) == {photos[0]: a, photos[1]: b}
    with pytest.raises(UserError, match="hints for s.png: no such photo among the inputs"):
        _match_hints({"p.png": a, "s.png": b}, photos)
