"""Every mistake a user can make ends with one line that names the fix and exit code 2."""

import pickle
import subprocess

import pytest
import torch
import yaml

from colorize.cli import main
from colorize.model.file import save_model
from conftest import BIN, REPO, network, photo_tiles, write_rgb


class MakesAFile:
    """A pickle that, when loaded by an unsafe loader, creates a file (here: `marker`)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty folder (outside any repository) with the repository's params and 3 photos."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for i, tile in enumerate(photo_tiles(3, 40)):
        write_rgb(tmp_path / "photos" / f"p{i}.png", tile)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(source="folder", path="photos", min_size=16)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def _params(path, section, key, value=None, delete=False):
    p = yaml.safe_load(path.read_text())
    if delete:
        del p[section][key]
    else:
        p[section][key] = value
    path.write_text(yaml.safe_dump(p))


DECODING = ["--temperature", "0.2", "--prior-correction", "0.55"]  # outside a repository
CASES = [
    # (name, setup(workdir), argv, start of the message)
    ("bad value", lambda d: _params(d / "params.yaml", "train", "lr", -1),
     ["prepare"], "train.lr: -1 is out of range"),
    ("missing key", lambda d: _params(d / "params.yaml", "train", "lr", delete=True),
     ["train"], "train.lr: missing from params.yaml"),
    ("no params file", lambda d: None, ["--params", "nope.yaml", "prepare"],
     "nope.yaml: parameters file not found"),
    ("no validation image", lambda d: _params(d / "params.yaml", "data", "val_fraction", 1e-9),
     ["prepare"], "the split has 3 train / 0 validation photos"),
    ("data path missing", lambda d: _params(d / "params.yaml", "data", "path", "nowhere"),
     ["prepare"], "nowhere: folder not found"),
    ("fetch: data path missing", lambda d: _params(d / "params.yaml", "data", "path", "gone"),
     ["fetch"], "data.path: gone not found"),
    ("train before preprocess", lambda d: None, ["train"], "data/prior/ab_prior.npy: no ab prior"),
    ("evaluate without model", lambda d: None, ["evaluate"], "models/model.pt: no such model"),
    ("model file missing", lambda d: None,
     ["predict", "photos", "--out", "o", "--model", "nope.pt"], "nope.pt: no such model file"),
    ("no model outside a repository", lambda d: None, ["predict", "photos", "--out", "o"],
     "no model given and"),
    ("registry without a store", lambda d: None,
     ["predict", "photos", "--out", "o", "--model", "models:/colorizer@champion"],
     "no MLflow store to resolve registry models"),
    ("crafted model file", lambda d: torch.save({"state_dict": MakesAFile(d / "owned")},
                                                d / "evil.pt"),
     ["predict", "photos", "--out", "o", "--model", "evil.pt"], "evil.pt: refused"),
    ("plain pickle", lambda d: pickle.dump({"state_dict": MakesAFile(d / "owned")},
                                           (d / "evil.pt").open("wb")),
     ["predict", "photos", "--out", "o", "--model", "evil.pt"],
     "evil.pt: not a readable model file (not written by torch.save)"),
    ("not a model file", lambda d: (d / "junk.pt").write_bytes(b"hello"),
     ["export", "--model", "junk.pt"], "junk.pt: not a readable model file"),
    ("bad temperature", lambda d: None,
     ["predict", "photos", "--out", "o", "--temperature", "0"], "--temperature: 0.0 must be"),
    ("temperature that overflows", lambda d: None,
     ["predict", "photos", "--out", "o", "--temperature", "1e-300"],
     "--temperature: 1e-300 must be a temperature in [0.01, 100]"),
    ("no such photo", lambda d: None, ["predict", "holidy.jpg", "--out", "o"],
     "holidy.jpg: no such file or folder; nothing to colorize"),
    ("app with no such model", lambda d: None, ["app", "--model", "nope.pt"],
     "nope.pt: no such model file"),
    ("batch size 0", lambda d: None, ["predict", "photos", "--out", "o", "--batch-size", "0"],
     "--batch-size: 0 must be at least 1"),
    ("not a port", lambda d: None, ["serve", "--port", "70000"],
     "--port: 70000 is not a port"),
    ("bad prior correction", lambda d: None,
     ["predict", "photos", "--out", "o", "--prior-correction", "-1"],
     "--prior-correction: -1.0 is out of range"),
    ("unwritable output folder", lambda d: (d / "taken").write_text("a file"),
     ["predict", "photos", "--out", "taken/sub", "--model", "nope.pt"], "taken"),
    ("sweep --apply without a study", lambda d: None, ["sweep", "--apply"], "no study to apply"),
    ("hint for a model without hints", lambda d: _model(d / "m.pt", hints=False),
     ["predict", "photos/p0.png", "--out", "o", "--model", "m.pt", "--hint", "1,1,#ff0000"],
     "this model takes no colour hints"),
    ("hint for several photos", lambda d: None,
     ["predict", "photos", "--out", "o", "--hint", "1,1,#ff0000"], "--hint: for one photo"),
    ("hint with a bad colour", lambda d: None,
     ["predict", "photos/p0.png", "--out", "o", "--hint", "1,1,red"],
     "--hint 1,1,red: 'red' is not a colour (#rrggbb"),
    ("hint without a colour", lambda d: None,
     ["predict", "photos/p0.png", "--out", "o", "--hint", "1,1"], "--hint: '1,1' is not X,Y,"),
    ("hint outside the photo", lambda d: _model(d / "h.pt", hints=True),
     ["predict", "photos/p0.png", "--out", "o", "--model", "h.pt", "--hint", "40,1,#ff0000",
      *DECODING],
     "photos/p0.png: hint 40,1,#ff0000 is outside the photo (40 x 40 pixels"),
    ("hints file not JSON", lambda d: (d / "h.json").write_text("{nope"),
     ["predict", "photos", "--out", "o", "--hints", "h.json"], "--hints h.json: not JSON"),
    ("hints file with a bad hint", lambda d: (d / "h.json").write_text(
        '{"p0.png": [[1, 1, "#ff0000"], [1, "x", "#ff0000"]]}'),
     ["predict", "photos", "--out", "o", "--hints", "h.json"],
     "--hints h.json: p0.png hint 2 y: 'x' is not a pixel coordinate"),
    ("hints for a photo not given", lambda d: (_model(d / "h.pt", hints=True), (
        d / "h.json").write_text('{"p9.png": [[1, 1, "#ff0000"]]}')),
     ["predict", "photos", "--out", "o", "--model", "h.pt", "--hints", "h.json", *DECODING],
     "hints for p9.png: no such photo among the inputs"),
]


def _model(path, hints):
    save_model(network(decoder_width=16, hints=hints), path, size=32)


@pytest.mark.parametrize("name,setup,argv,message", CASES, ids=[c[0] for c in CASES])
def test_user_error_is_one_line_and_exit_2(workdir, capsys, name, setup, argv, message):
    setup(workdir)
    assert main(argv) == 2
    err = capsys.readouterr().err
    command = next(a for a in argv if not a.startswith("-") and a != "nope.yaml")
    errors = [line for line in err.splitlines() if line.startswith("colorize ")]
    assert errors == [err.strip().splitlines()[-1]], err  # one message, the last line
    assert errors[0].startswith(f"colorize {command}: error: ") and message in errors[0], err
    assert "Traceback" not in err
    assert not (workdir / "owned").exists()  # no code ran from a model file
    assert not (workdir / "mlflow.db").exists()  # no tracking store created as a side effect


def test_crafted_model_file_runs_no_code_in_a_real_process(tmp_path):
    marker = tmp_path / "owned"
    torch.save({"state_dict": MakesAFile(marker)}, tmp_path / "evil.pt")
    write_rgb(tmp_path / "p.png", photo_tiles(1, 32)[0])
    out = subprocess.run([BIN / "colorize", "predict", "p.png", "--out", "o", "--model",
                          "evil.pt"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 2 and not marker.exists()
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith(
        "colorize predict: error: evil.pt: refused")


def test_every_subcommand_s_help_has_an_example_and_the_decoding_ranges(capsys, monkeypatch):
    from colorize.cli import EXAMPLES, _parser
    from colorize.decoding import MAX_CORRECTION, MAX_TEMPERATURE

    monkeypatch.chdir(REPO)
    epochs = yaml.safe_load((REPO / "params.yaml").read_text())["sweep"]["epochs"]
    commands = _parser()._subparsers._group_actions[0].choices
    assert set(commands) == set(EXAMPLES)  # a new subcommand needs its example
    for name in commands:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert f"example: {' '.join(EXAMPLES[name].split())}" in text, name
        if name in ("predict", "request"):
            assert f"T in [0.01, {MAX_TEMPERATURE:g}]" in text
            assert f"in [0, {MAX_CORRECTION:g}]" in text
        if name == "sweep":  # the values params.yaml gives (here: the repository's)
            assert f"--epochs EPOCHS override params sweep.epochs (params.yaml: {epochs})" in text
