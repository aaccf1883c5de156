"""Global scene context and its scene-classification loss (Iizuka et al. 2016), and the
training-only colourfulness floor: the measures of the quality issue that need a new network
or new training data, each against a hand-built case."""

import numpy as np
import pytest
import torch

from colorize.data.manifest import read_manifest
from colorize.data.prepare import prepare
from colorize.errors import UserError
from colorize.model.file import load_model, network_entry
from colorize.preprocess.store import LabStore, write_index
from colorize.train.data import NO_LABEL, folder_labels
from colorize.train.loss import SceneLoss
from conftest import network, photo_tiles


def _far_columns(net, L, changed):
    """The network's output over the right quarter of the photo, before and after the change."""
    with torch.no_grad():
        before, after = net(L), net(changed)
    q = before.shape[-1] // 4
    return before[..., -q:], after[..., -q:]


def test_only_the_global_context_carries_content_from_far_away():
    L = torch.rand(1, 1, 64, 512) * 2 - 1
    changed = L.clone()
    changed[..., :256] = 1.0  # the left half white, 128+ px from the right quarter
    torch.manual_seed(0)
    local = network(decoder_width=16).eval()
    a, b = _far_columns(local, L, changed)
    assert torch.allclose(a, b, atol=1e-6)  # beyond every convolution's reach
    torch.manual_seed(0)
    glob = network(decoder_width=16, global_context=True).eval()
    a, b = _far_columns(glob, L, changed)
    assert (a - b).abs().max() > 1e-4  # the pooled vector reaches every pixel (100x)


def test_the_global_context_leaves_the_other_parts_initialised_as_before():
    torch.manual_seed(0)
    before = network(decoder_width=16).state_dict()
    torch.manual_seed(0)
    after = network(decoder_width=16, global_context=True).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert {k.split(".")[0] for k in set(after) - set(before)} == {"global_context"}


def test_model_files_from_before_the_global_context_still_load(tmp_path):
    net = network(decoder_width=16).eval()
    entry = network_entry(net, 32)
    del entry["model"]["global_context"]  # what files written before the key hold
    torch.save(entry, tmp_path / "old.pt")
    loaded, size, _ = load_model(tmp_path / "old.pt")
    assert not loaded.config.global_context and size == 32
    L = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(L), net(L))


def _store(root, names):
    write_index(root, 8, [{"file": "none.npy", "count": len(names), "ids": names,
                           "names": names}])
    return LabStore(root)


def test_scene_classes_are_the_training_photos_folders(tmp_path):
    train = _store(tmp_path / "train", ["p/lake/1.jpg", "p/road/2.jpg", "p/lake/3.jpg",
                                        "q/lake/4.jpg"])
    val = _store(tmp_path / "val", ["p/road/5.jpg", "p/moon/6.jpg"])
    classes, (train_labels, val_labels) = folder_labels(train, val)
    assert classes == ["p/lake", "p/road", "q/lake"]  # sorted; the whole folder path counts
    assert train_labels.tolist() == [0, 1, 0, 2]
    assert val_labels.tolist() == [1, NO_LABEL]  # a folder training never saw: no label


def test_scene_labels_need_names_and_two_folders(tmp_path):
    one = _store(tmp_path / "one", ["lake/1.jpg", "lake/2.jpg"])
    with pytest.raises(UserError, match="at least two folders"):
        folder_labels(one)
    write_index(tmp_path / "old", 8, [{"file": "none.npy", "count": 2, "ids": ["a", "b"]}])
    with pytest.raises(UserError, match="rerun the preprocess stage"):
        folder_labels(LabStore(tmp_path / "old"))


def test_the_scene_loss_trains_the_network_through_its_global_vector():
    torch.manual_seed(0)
    net = network(decoder_width=16, global_context=True)
    scene = SceneLoss(net, classes=2)
    tiles = np.stack(photo_tiles(4, 32)).astype(np.float32)
    L = torch.from_numpy(tiles.mean(-1) / 127.5 - 1)[:, None]
    labels = torch.tensor([0, 1, 0, 1])
    opt = torch.optim.Adam([*net.parameters(), *scene.parameters()], lr=3e-3)
    trunk = net.trunk.conv1.weight.detach().clone()
    losses = []
    for _ in range(40):
        net(L)
        assert scene.vector.shape == (4, 256)  # the hook kept this pass's pooled vector
        loss = scene(labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 0.5 and losses[-1] < 0.05  # from chance (ln 2) to learnt
    assert not torch.equal(trunk, net.trunk.conv1.weight)  # the gradient reached the trunk
    scene.detach()
    net(L)
    assert scene.vector is None  # the hook is gone: the finished network runs as any other


def test_the_scene_loss_needs_the_global_context():
    with pytest.raises(ValueError, match="global_context"):
        SceneLoss(network(decoder_width=16), classes=2)


def test_the_training_colourfulness_floor_drops_pale_training_photos_only(settings,
                                                                         photo_folder,
                                                                         tmp_path):
    data = settings.override(data={"source": "folder", "path": str(photo_folder),
                                   "val_fraction": 0.3, "test_fraction": 0.2,
                                   "min_size": 16}).data
    prepare(data, tmp_path / "all", tmp_path / "all.json")
    rows = read_manifest(tmp_path / "all" / "manifest.csv")
    train = sorted(float(r["colourfulness"]) for r in rows if r["split"] == "train")
    floor = (train[len(train) // 2 - 1] + train[len(train) // 2]) / 2  # half of them below
    prepare(data.model_copy(update={"min_train_colourfulness": floor}), tmp_path / "floor",
            tmp_path / "floor.json")
    kept = read_manifest(tmp_path / "floor" / "manifest.csv")
    assert [r["id"] for r in kept if r["split"] != "train"] == [
        r["id"] for r in rows if r["split"] != "train"]  # validation and test untouched
    assert sorted(float(r["colourfulness"]) for r in kept if r["split"] == "train") == [
        c for c in train if c >= floor]
    rejected = (tmp_path / "floor" / "rejected.csv").read_text()
    assert rejected.count("pale_for_training") == len(train) // 2
