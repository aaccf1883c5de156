"""colorize: reproducible automatic image colorization.

One subcommand per pipeline stage (what dvc.yaml runs, with its file layout as the defaults),
plus predict, export, sweep and promote. Mistakes in the input end with one line on stderr
that names the fix and exit code 2; `predict` exits 1 when it skipped some photos.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

# The DVC layout (dvc.yaml passes nothing: these defaults are its paths).
RAW = "data/raw"
INTERIM = "data/interim"
MANIFEST = "data/interim/manifest.csv"
PROCESSED = "data/processed"
PRIOR = "data/prior/ab_prior.npy"
MODEL = "models/model.pt"
RUN_FILE = "models/run.json"


def _settings(args):
    from colorize import config

    return config.load(args.params)


def cmd_fetch(args) -> int:
    from colorize.data.fetch import fetch

    fetch(_settings(args).data, args.raw_dir)
    return 0


def cmd_prepare(args) -> int:
    from colorize.data.prepare import prepare

    prepare(_settings(args).data, args.out_dir, args.report)
    return 0


def cmd_preprocess(args) -> int:
    from colorize.preprocess.preprocess import preprocess

    s = _settings(args)
    preprocess(s.data, s.preprocess, args.manifest, args.out, workers=args.workers,
               stats_path=args.stats)
    return 0


def cmd_prior(args) -> int:
    from colorize.preprocess.prior import prior

    prior(args.train_dir, args.out, args.plot)
    return 0


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, handled like Ctrl-C: the stack unwinds, so the MLflow run ends as
    KILLED and finished checkpoints stay (the default action would kill the process where it
    stands and leave the run RUNNING forever)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop_on_signals() -> None:
    import signal

    def stop(signum, frame):
        raise Stopped(signum)

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, stop)


def cmd_train(args) -> int:
    from colorize.train import dist

    _stop_on_signals()

    s = _settings(args)
    if s.train.nproc > 1 and not dist.launched_by_torchrun():
        # train.nproc > 1: become torchrun running this same command (signals reach it, and
        # it stops its ranks), with train.nproc processes on this machine.
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={s.train.nproc}", "-m", "colorize.cli", *args.argv]
        print("launching:", " ".join(cmd[1:]), flush=True)
        os.execv(sys.executable, cmd)
    from colorize.train.train import train

    train(s, data_dir=args.data, prior_path=args.prior, manifest=args.manifest,
        model_path=args.model, run_file=args.run_file, metrics_path=args.metrics,
        history_path=args.history, checkpoints=args.checkpoints)
    return 0


def cmd_evaluate(args) -> int:
    from colorize.evaluate.evaluate import evaluate
    from colorize.track.models import log_evaluation

    s = _settings(args)
    outputs = {"metrics_path": args.metrics, "detail_path": args.detail,
               "tradeoff_path": args.tradeoff,
               "samples_path": args.samples, "curve_path": args.curve,
               "hints_path": args.hints}
    results = evaluate(s, model_path=args.model, data_dir=args.data, prior_path=args.prior,
                       **outputs)
    log_evaluation(s, results, run_file=args.run_file, model_path=args.model,
                   files=list(outputs.values()))
    return 0


def _at_least_one(option: str, value: int) -> int:
    if value < 1:
        from colorize.errors import ConfigError

        raise ConfigError(f"{option}: {value} must be at least 1")
    return value


def cmd_predict(args) -> int:
    _at_least_one("--batch-size", args.batch_size)
    temperature, correction = _decoding(args)
    hints = _hints(args)
    _something_to_colorize(args.inputs)  # before torch is imported: a typo answers at once
    from colorize.predict.predict import predict

    result = predict(args.inputs, args.out, args.model, args.batch_size,
                     amp="off" if args.fp32 else "auto", temperature=temperature,
                     correction=correction, hints=hints)
    return 1 if result["skipped"] else 0


def _something_to_colorize(inputs: list[str]) -> None:
    """None of the inputs exists: a one-line error (exit 2). When some exist, the missing ones
    are skipped and listed with the others' results (exit 1)."""
    if not any(os.path.exists(p) for p in inputs):
        from colorize.errors import UserError

        shown = ", ".join(inputs[:3]) + (" ..." if len(inputs) > 3 else "")
        raise UserError(f"{shown}: no such file or folder; nothing to colorize")


def _hints(args) -> dict | None:
    """--hint (one photo) and --hints FILE.json -> the hints per photo (model/hints.py)."""
    if not args.hint and not args.hints:
        return None
    from colorize.errors import UserError
    from colorize.model import hints

    if args.hint and args.hints:
        raise UserError("--hint and --hints: give the hints one way (--hints FILE.json holds "
                        "them for several photos)")
    if args.hints:
        return hints.read_file(args.hints)
    if len(args.inputs) != 1 or os.path.isdir(args.inputs[0]):
        raise UserError("--hint: for one photo; for several, write them to a file for --hints "
                        'FILE.json ({"photo.jpg": [[x, y, "#rrggbb"], ...]})')
    return {args.inputs[0]: [hints.parse(h) for h in args.hint]}


def _decoding(args) -> tuple[float | None, float | None]:
    """--temperature and --prior-correction, checked (None when not given)."""
    from colorize.decoding import checked

    return checked(args.temperature, args.prior_correction,
                   ("--temperature", "--prior-correction"))


def cmd_request(args) -> int:
    from colorize.predict.client import request

    T, alpha = _decoding(args)
    result = request(args.photos, args.url, args.out, T, alpha)
    return 1 if result["skipped"] else 0


def cmd_serve(args) -> int:
    from colorize.predict.serve import MAX_BODY_MB, serve

    limit = _at_least_one("--max-body-mb",
                          MAX_BODY_MB if args.max_body_mb is None else args.max_body_mb)
    _port(args.port)
    serve(args.model, args.host, args.port, limit)
    return 0


def cmd_app(args) -> int:
    _port(args.port)
    from colorize.predict.app import serve

    print(f"colorize app: http://{args.host}:{args.port}/ (Ctrl-C stops it)", flush=True)
    serve(args.model, args.host, args.port)
    return 0


def _port(port: int) -> None:
    if not 1 <= port <= 65535:
        from colorize.errors import ConfigError

        raise ConfigError(f"--port: {port} is not a port (1 to 65535)")


def cmd_export(args) -> int:
    from colorize.predict.export import export_onnx

    export_onnx(args.model, args.out)
    return 0


def cmd_sweep(args) -> int:
    from colorize.sweep.sweep import sweep

    sweep(_settings(args), workers=args.workers, apply=args.apply, params_path=args.params,
          n_trials=args.n_trials, epochs=args.epochs, storage=args.storage, study=args.study)
    return 0


def cmd_promote(args) -> int:
    from colorize.track import mlflow_run
    from colorize.track.models import promote

    s = _settings(args)
    mlflow_run.setup(s.tracking.experiment)
    promote(s.tracking.registered_model, args.version,
            args.alias or s.tracking.champion_alias)
    return 0


EXAMPLES = {
    "fetch": "colorize fetch   (dvc repro runs every stage in order)",
    "prepare": "colorize prepare --out-dir data/interim",
    "preprocess": "colorize preprocess --workers 2",
    "prior": "colorize prior",
    "train": "colorize train   (or: dvc exp run -S train.lr=0.001)",
    "evaluate": "colorize evaluate --model models/checkpoints/<fingerprint>/last.pt",
    "predict": "colorize predict photo.jpg holidays/ --out colorized/ --temperature 0.38",
    "request": "colorize request photo.jpg --url http://127.0.0.1:5001 --out served/",
    "serve": "colorize serve --model models:/colorizer@champion --port 5001",
    "app": "colorize app --model models:/colorizer@champion   (then open http://127.0.0.1:7861)",
    "export": "colorize export --model models:/colorizer@champion --out champion.onnx",
    "sweep": "colorize sweep --workers 2 --n-trials 8; then colorize sweep --apply",
    "promote": "colorize promote 3",
}


def _sweep_defaults(helping: bool):
    """-> a function giving ' (params.yaml: VALUE)' for a sweep key, read from ./params.yaml
    when --help is asked for (plain YAML, no validation: a broken file shows no values; only
    scalars, and a URL is not shown: it may hold a password)."""
    values: dict = {}
    try:
        if helping and os.path.getsize("params.yaml") < (1 << 20):
            import yaml

            with open("params.yaml") as f:
                values = (yaml.safe_load(f) or {}).get("sweep") or {}
    except (OSError, ValueError, AttributeError, ImportError):
        pass

    def shown(key: str) -> str:
        value = values.get(key) if isinstance(values, dict) else None
        if not isinstance(value, int | float | str) or isinstance(value, bool):
            return ""
        return f" (params.yaml: {value if '://' not in str(value) else 'a URL'})"
    return shown


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, unless there is none or the help already names it."""

    def _get_help_string(self, action):
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    from colorize.decoding import MAX_CORRECTION, MAX_TEMPERATURE, MIN_TEMPERATURE

    t_range = f"[{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}]"
    a_range = f"[0, {MAX_CORRECTION:g}]"
    fmt = _Help
    parser = argparse.ArgumentParser(prog="colorize", description=__doc__, formatter_class=fmt)
    parser.add_argument("--params", default="params.yaml", help="parameters file")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def stage(name, func, help_, description):
        p = sub.add_parser(name, help=help_, description=description, formatter_class=fmt,
                           epilog=f"example: {EXAMPLES[name]}")
        p.set_defaults(func=func)
        return p

    p = stage("fetch", cmd_fetch, "stage 0: obtain the configured source's raw photos",
              "Reads params data.source/path/url. sample: downloads the pinned offline photos "
              "into data.path; places205: downloads the archive (resume, checksum); folder / "
              "archive: nothing to fetch.")
    p.add_argument("--raw-dir", default=RAW, help="where sources are fetched to")
    p = stage("prepare", cmd_prepare, "stage 1: check every photo, write the split manifest",
              "Reads the source at data.path; writes manifest.csv (usable photos, split by "
              "content hash) and rejected.csv (with reasons) to --out-dir, and the data report.")
    p.add_argument("--out-dir", default=INTERIM, help="manifest.csv and rejected.csv go here")
    p.add_argument("--report", default="metrics/data.json", help="data report (counts)")
    p = stage("preprocess", cmd_preprocess, "stage 2: decode, resize, LAB float16 shards",
              "Reads the manifest and the source; writes memory-mapped LAB shards per split.")
    p.add_argument("--manifest", default=MANIFEST, help="split manifest (input)")
    p.add_argument("--out", default=PROCESSED, help="shards: <out>/train, <out>/val")
    p.add_argument("--stats", default="logs/preprocess.json", help="throughput and reuse")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: params preprocess.workers)")
    p = stage("prior", cmd_prior, "stage 3: ab prior over the colour bins (training split)",
              "Reads the training shards only; writes the smoothed ab prior and its picture.")
    p.add_argument("--train-dir", default=f"{PROCESSED}/train", help="training shards (input)")
    p.add_argument("--out", default=PRIOR, help="(Q,) float64 .npy")
    p.add_argument("--plot", default="data/prior/ab_prior.png", help="picture of the prior")
    p = stage("train", cmd_train, "stage 4: train with checkpoints, log to MLflow",
              "Reads the shards and the prior; writes the best model, the MLflow run id, "
              "metrics and the loss history; resumes from models/checkpoints after a crash. "
              "With params train.nproc > 1 it relaunches itself under torchrun.")
    p.add_argument("--data", default=PROCESSED, help="LAB shards (input)")
    p.add_argument("--prior", default=PRIOR, help="ab prior (input)")
    p.add_argument("--manifest", default=MANIFEST, help="logged as the run's datasets")
    p.add_argument("--model", default=MODEL, help="best weights (output)")
    p.add_argument("--run-file", default=RUN_FILE, help="MLflow run id (output)")
    p.add_argument("--metrics", default="metrics/train.json", help="best epoch and loss")
    p.add_argument("--history", default="plots/train_history.csv", help="loss per epoch")
    p.add_argument("--checkpoints", default="models/checkpoints",
                   help="resumable checkpoints, one folder per settings+data fingerprint")
    p = stage("evaluate", cmd_evaluate, "stage 5: metrics vs gray; log and register the model",
              "Reads the model, the test and validation shards and the prior; writes metrics "
              "(test: the headline; validation beside it), the temperature trade-off "
              "(validation), the sample grid and the AuC curve; adds them and the "
              "model to the train stage's MLflow run and registers a new version.")
    p.add_argument("--model", default=MODEL, help="model file (input)")
    p.add_argument("--data", default=PROCESSED,
                   help="LAB shards; the test and val splits are scored")
    p.add_argument("--prior", default=PRIOR, help="ab prior, for the rebalanced AuC")
    p.add_argument("--run-file", default=RUN_FILE, help="the train stage's MLflow run")
    p.add_argument("--metrics", default="metrics/evaluate.json",
                   help="the headline, model vs gray (output)")
    p.add_argument("--detail", default="metrics/evaluate_detail.json",
                   help="every metric of both splits and the decoding (output)")
    p.add_argument("--tradeoff", default="plots/tradeoff.csv",
                   help="metrics per temperature, validation split (output)")
    p.add_argument("--samples", default="plots/samples.png", help="labelled grid (output)")
    p.add_argument("--curve", default="plots/ab_error_cmf.csv",
                   help="cumulative ab-error curve (output)")
    p.add_argument("--hints", default="plots/hints.csv",
                   help="CIEDE2000 and PSNR against the number of colour hints (output)")

    p = stage("predict", cmd_predict, "colorize your own photos at full resolution",
              "Writes one PNG per photo: a file named on the command line -> OUT/<name>.png, "
              "a folder -> OUT/<folder>/<path inside>.png (colliding names get -2, -3, ...). "
              "Bad files are skipped and listed; the exit code is then 1.")
    p.add_argument("inputs", nargs="+", help="photos and/or folders")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--model", default=None, help="a model file, models:/colorizer@<alias>, "
                   "models:/colorizer/<version> or runs:/<run id> (default: the repository's "
                   "models/model.pt, found from the repository root)")
    p.add_argument("--temperature", type=float, default=None,
                   help=f"classification head: annealed-mean T in {t_range}, 1 = faithful and "
                   "pale, smaller = more vivid (default: the registry version's evaluated value, "
                   "else params evaluate.temperature of the repository)")
    p.add_argument("--prior-correction", type=float, default=None,
                   help=f"classification head: logits - A log(prior), A in {a_range}; 0 = as "
                   "trained, more = rarer, more saturated colours (default: as for "
                   "--temperature, evaluate.prior_correction)")
    p.add_argument("--batch-size", type=int, default=8, help="photos per network call")
    p.add_argument("--fp32", action="store_true",
                   help="plain fp32 (default: bf16 autocast where the CPU/GPU supports it)")
    p.add_argument("--hint", action="append", default=[], metavar="X,Y,#RRGGBB",
                   help="a colour hint for a model trained with model.hints: the point X, Y "
                   "(the photo's pixels, from its top-left corner) has this sRGB colour (its "
                   "a*b*; the photo keeps its L*); repeatable; one photo only")
    p.add_argument("--hints", default=None, metavar="FILE.json",
                   help='hints for several photos: {"photo.jpg": [[x, y, "#rrggbb"], '
                   '[x, y, "#rrggbb", side], ...]} (keys: the path given or the file name; '
                   "side: the square's side in the photo's pixels, default 1)")
    p = stage("request", cmd_request, "colorize photos with a served model over HTTP",
              "Posts each photo (any size) to URL/invocations of `mlflow models serve` and "
              "writes OUT/<name>.png; a photo the server refuses is skipped and listed.")
    p.add_argument("photos", nargs="+", help="photo files")
    p.add_argument("--url", default="http://127.0.0.1:5001", help="the served model")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--temperature", type=float, default=None,
                   help=f"classification head: annealed-mean T in {t_range} (default: the "
                   "served version's)")
    p.add_argument("--prior-correction", type=float, default=None,
                   help=f"classification head: prior correction in {a_range} (default: the served "
                   "version's)")
    p = stage("serve", cmd_serve, "serve a registered model over HTTP, with a body limit",
              "The served model of `mlflow models serve` (same protocol: POST /invocations), "
              "with request bodies over --max-body-mb refused (HTTP 413) before they are "
              "read whole. Bound to 127.0.0.1 unless --host says otherwise.")
    p.add_argument("--model", default="models:/colorizer@champion",
                   help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/<id>/colorizer")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    p.add_argument("--port", type=int, default=5001, help="port")
    p.add_argument("--max-body-mb", type=int, default=None,
                   help="largest request body, in MiB (default: 128, photos up to ~90 MB)")
    p = stage("app", cmd_app, "colorize photos in the browser (local web app)",
              "A local page: upload photos, compare gray input, result and original, move the "
              "decoding sliders (no rerun of the network), click to place colour hints, "
              "download the full-resolution PNG. Bound to 127.0.0.1: --host 0.0.0.0 lets "
              "anyone on your network use it (and your CPU); there is no login.")
    p.add_argument("--model", default=None,
                   help="the model first shown (as for predict; default: models/model.pt); "
                        "the page offers the registry's versions too")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    p.add_argument("--port", type=int, default=7861, help="port")
    p = stage("export", cmd_export, "export the network and its decoding to ONNX",
              "Reads a model (as for predict); writes an ONNX file checked against PyTorch "
              "with onnxruntime. Input L: L*/50 - 1, N x 1 x H x W, H and W multiples of 8; "
              "output ab: a*/110, b*/110 (the file's metadata says the same, with the working "
              "size and the suggested decoding).")
    p.add_argument("--model", default=None, help="as for predict")
    p.add_argument("--out", default="models/colorizer.onnx", help="ONNX file (output)")
    p = stage("sweep", cmd_sweep, "Optuna study over learning rate, width and the heads",
              "Reads params sweep and the preprocessed data; runs (or continues) the study in "
              "sweep.storage, logs nested MLflow runs, writes sweeps/<study>-best.json.")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    sweep = _sweep_defaults(bool({"-h", "--help"} & set(argv or ())))
    p.add_argument("--n-trials", type=int, default=None,
                   help=f"override params sweep.n_trials (the study's total){sweep('n_trials')}")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"override params sweep.epochs{sweep('epochs')}")
    p.add_argument("--storage", default=None,
                   help=f"override params sweep.storage (journal file or RDB URL)"
                   f"{sweep('storage')}")
    p.add_argument("--study", default=None, help=f"override params sweep.study{sweep('study')}")
    p.add_argument("--apply", action="store_true",
                   help="run nothing: write the best trial of the existing study to params.yaml")
    p = stage("promote", cmd_promote, "point @champion at a registered model version",
              "Sets the alias (params tracking.champion_alias) on VERSION of "
              "tracking.registered_model; `mlflow models serve` uses it in the README.")
    p.add_argument("version", help="registered version number (see `mlflow ui`)")
    p.add_argument("--alias", default=None,
                   help="alias to set (default: params tracking.champion_alias)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(argv).parse_args(argv)
    args.argv = argv
    from colorize.errors import UserError

    try:
        return args.func(args)
    except UserError as e:
        print(f"colorize {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path that cannot be read or written: the user's to fix
        where = f": {e.filename}" if e.filename else ""
        print(f"colorize {args.command}: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"colorize {args.command}: interrupted; finished work is kept, rerun to resume",
              file=sys.stderr)
        return 128 + getattr(e, "signum", 2)  # 130 for Ctrl-C, 143 for SIGTERM


if __name__ == "__main__":
    sys.exit(main())
