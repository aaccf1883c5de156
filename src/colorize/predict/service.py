"""The registered model as an MLflow pyfunc that carries its own pre- and post-processing.

Logged by colorize.track as a model *from code* (this file), never as a pickled object: loading
it runs this file from the installed package and reads the weights with weights_only=True.

Request: a DataFrame with one column `image` holding base64-encoded image files (any format the
pipeline reads), and optionally `params: {"temperature": T, "prior_correction": A}`
(classification head; defaults: the values the version was evaluated at, which colorize.track
passes as the model's config, `decoding`). Response: columns `image` (base64 PNG of the
colorized photo, at the input's full resolution) and `error` (empty, or why that row failed).
Served with `mlflow models serve -m models:/colorizer@champion --env-manager local`.
"""

from __future__ import annotations

import base64
import binascii

import mlflow.models
import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from colorize.data.images import ImageError, decode
from colorize.decoding import NEUTRAL, Decoding, checked, resolve
from colorize.errors import ConfigError
from colorize.imaging import encode_png
from colorize.model.file import load_model
from colorize.predict.photo import colorize_batch


def image_frame(blobs: list[bytes]) -> pd.DataFrame:
    """Image files -> the request DataFrame."""
    return pd.DataFrame({"image": [base64.b64encode(b).decode("ascii") for b in blobs]})


class ColorizerService(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self.model, self.size, _ = load_model(context.artifacts["checkpoint"])
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
        out, errors = [], []
        for b64 in model_input["image"]:
            try:
                data = base64.b64decode(b64, validate=True)
            except (binascii.Error, ValueError, TypeError) as e:
                out.append("")
                errors.append(f"not base64-encoded file bytes ({e})")
                continue
            try:
                rgb = decode(data).rgb
            except ImageError as e:
                out.append("")
                errors.append(str(e))
                continue
            result = colorize_batch(self.model, self.size, [rgb], decoding)[0]
            out.append(base64.b64encode(encode_png(result)).decode("ascii"))
            errors.append("")
        return pd.DataFrame({"image": out, "error": errors})


mlflow.models.set_model(ColorizerService())
