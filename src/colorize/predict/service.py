"""The registered model as an MLflow pyfunc that carries its own pre- and post-processing.

Request: a DataFrame with one column `image` holding base64-encoded image files (any format the
pipeline reads). Response: a column `image` with base64-encoded PNGs of the colorized photos, at
each input's full resolution. Served with
`mlflow models serve -m models:/colorizer@newest --env-manager local` (see README).
"""

from __future__ import annotations

import base64

import mlflow.pyfunc
import pandas as pd

from colorize.data.images import ImageError, decode
from colorize.imaging import encode_png
from colorize.model.checkpoint import load_model
from colorize.predict.photo import colorize_batch


def image_frame(blobs: list[bytes]) -> pd.DataFrame:
    """Image files -> the request DataFrame."""
    return pd.DataFrame({"image": [base64.b64encode(b).decode("ascii") for b in blobs]})


class ColorizerService(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self.model, self.size = load_model(context.artifacts["checkpoint"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        out, errors = [], []
        for b64 in model_input["image"]:
            try:
                rgb = decode(base64.b64decode(b64)).rgb
            except (ImageError, ValueError) as e:
                out.append("")
                errors.append(f"{getattr(e, 'reason', 'invalid')}: {e}")
                continue
            result = colorize_batch(self.model, self.size, [rgb])[0]
            out.append(base64.b64encode(encode_png(result)).decode("ascii"))
            errors.append("")
        return pd.DataFrame({"image": out, "error": errors})
