"""The registered model as an MLflow pyfunc that carries its own pre- and post-processing.

Logged by colorize.track as a model *from code* (this file), never as a pickled object: loading
it runs this file from the installed package and reads the weights with weights_only=True.

Request: a DataFrame with one column `image` holding base64-encoded image files (any format the
pipeline reads), an optional column `hints` (per row, JSON text of colour hints
`[[x, y, "#rrggbb"], [x, y, "#rrggbb", side], ...]` in that photo's pixels, for a version
trained with hints: its registry tag `hints` says), and optionally
`params: {"temperature": T, "prior_correction": A}`
(classification head; defaults: the values the version was evaluated at, which colorize.track
passes as the model's config, `decoding`). Response: columns `image` (base64 PNG of the
colorized photo, at the input's full resolution) and `error` (empty, or why that row failed).
Served with `mlflow models serve -m models:/colorizer@champion --env-manager local`, or with
`colorize serve`, which also caps the request body (MLflow's server reads any body whole).

Limits: at most MAX_ROWS photos per request (an HTTP 400 naming the limit); each photo at most
MAX_PIXELS pixels and max_file_bytes(MAX_PIXELS) bytes, checked on the base64 text's length and
then on the image header before anything is decoded (the row's `error` says which).
"""

from __future__ import annotations

import base64
import binascii
import json

import mlflow.models
import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from colorize.data.images import SERVED_MAX_PIXELS, ImageError, decode, max_file_bytes
from colorize.decoding import NEUTRAL, Decoding, checked, resolve
from colorize.errors import ConfigError, UserError, shortened
from colorize.imaging import encode_png
from colorize.model import hints as H
from colorize.model.file import load_model
from colorize.predict.photo import colorize_batch

MAX_ROWS = 16
MAX_PIXELS = SERVED_MAX_PIXELS
MAX_BASE64 = (max_file_bytes(MAX_PIXELS) + 2) // 3 * 4


def image_frame(blobs: list[bytes]) -> pd.DataFrame:
    """Image files -> the request DataFrame."""
    return pd.DataFrame({"image": [base64.b64encode(b).decode("ascii") for b in blobs]})


class ColorizerService(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self.model, self.size, _ = load_model(context.artifacts["checkpoint"], device="auto")
        evaluated = (context.model_config or {}).get("decoding")
        self.decoding = Decoding(**evaluated) if evaluated else NEUTRAL

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None
                ) -> pd.DataFrame:
        params = params or {}
        try:
            given = checked(params.get("temperature"), params.get("prior_correction"),
                            ("params.temperature", "params.prior_correction"))
        except ConfigError as e:
            raise MlflowException(str(e), error_code=INVALID_PARAMETER_VALUE) from None
        decoding = resolve(*given, self.decoding)
        if len(model_input) > MAX_ROWS:
            raise MlflowException(f"{len(model_input)} photos in one request: at most "
                                  f"{MAX_ROWS} (send the others in further requests)",
                                  error_code=INVALID_PARAMETER_VALUE)
        out, errors = [], []
        texts = model_input["hints"] if "hints" in model_input else [None] * len(model_input)
        for b64, text in zip(model_input["image"], texts, strict=True):
            try:
                given = _row_hints(text, self.model.config.hints)
                rgb = decode(_file_bytes(b64), MAX_PIXELS).rgb
                channels = (H.user_channels(given, *rgb.shape[:2], self.size, "the photo")[None]
                            if self.model.config.hints else None)
            except (ImageError, UserError) as e:
                out.append("")
                errors.append(str(e))
                continue
            result = colorize_batch(self.model, self.size, [rgb], decoding, hints=channels)[0]
            out.append(base64.b64encode(encode_png(result)).decode("ascii"))
            errors.append("")
        return pd.DataFrame({"image": out, "error": errors})


def _row_hints(text: object, takes_hints: bool) -> list[H.UserHint]:
    """A row's `hints` (JSON text; missing, empty or null: none) -> the hints; UserError."""
    if text is None or text == "" or (isinstance(text, float) and text != text):  # NaN
        return []
    if not isinstance(text, str) or len(text) > H.MAX_HINTS_FILE_BYTES:
        raise UserError("hints: expected JSON text such as '[[10, 20, \"#3a7bd5\"]]'")
    try:
        values = json.loads(text)
    except (ValueError, RecursionError):
        raise UserError(f"hints: not JSON ({shortened(text)})") from None
    given = H.from_list(values, "hints")
    if given and not takes_hints:
        raise UserError("hints: this model takes no colour hints (trained with model.hints: "
                        "false)")
    return given


def _file_bytes(b64: object) -> bytes:
    """A row's base64 text -> the file's bytes, refused by length before decoding it."""
    if not isinstance(b64, str):
        raise ImageError("unreadable", f"not base64 text but {type(b64).__name__}")
    if len(b64) > MAX_BASE64:
        raise ImageError("too_large", f"{len(b64)} base64 characters exceeds {MAX_BASE64} "
                                      f"(files up to {max_file_bytes(MAX_PIXELS)} bytes)")
    try:
        return base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ImageError("unreadable", f"not base64-encoded file bytes ({e})") from None


mlflow.models.set_model(ColorizerService())
