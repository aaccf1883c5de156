"""`colorize serve`: the registered model's HTTP endpoint, as `mlflow models serve` runs it, with
a cap on the request body.

MLflow's scoring server reads every request body whole before anything looks at it, so one
client can make it hold gigabytes. Here the body is refused with HTTP 413 (naming the limit)
as soon as its declared length, or what has arrived of it, goes over `max_bytes`; below that,
the served model's own limits apply (predict/service.py). Same protocol, same app: MLflow's
own (`scoring_server.init`), wrapped. A request whose `params` name a parameter the model does
not take (a misspelled "temprature") is refused with HTTP 400 naming it: MLflow would log a
warning on the server and answer 200 with the defaults.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

MAX_BODY_MB = 128  # default: photos up to about 90 MB each (base64 adds a third)


class BodyLimit:
    """ASGI middleware: at most `max_bytes` of request body reach the app, or a 413; with
    `known_params`, a JSON body whose `params` holds any other name gets a 400."""

    def __init__(self, app, max_bytes: int, known_params: set[str] | None = None):
        self.app, self.max_bytes, self.known = app, max_bytes, known_params

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send)
        body, more = [], True
        while more:  # read it here, up to the limit, then hand it on in one piece
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body.append(message.get("body", b""))
            more = message.get("more_body", False)
            if sum(map(len, body)) > self.max_bytes:
                return await self._refuse(send)
        whole = b"".join(body)
        if (unknown := self._unknown_params(whole)):
            return await self._answer(send, 400, "INVALID_PARAMETER_VALUE", (
                f"params: unknown {', '.join(unknown)}; this model takes "
                f"{', '.join(sorted(self.known or ()))}"))
        delivered = False

        async def replay() -> dict:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": whole, "more_body": False}

        return await self.app(scope, replay, send)

    def _unknown_params(self, body: bytes) -> list[str]:
        """The names in the body's `params` that the model does not take (a body that is not
        JSON is left for MLflow to refuse)."""
        if self.known is None or b'"params"' not in body:
            return []
        try:
            params = json.loads(body).get("params")
        except (ValueError, AttributeError, RecursionError):
            return []
        if not isinstance(params, dict):
            return []
        return sorted(repr(k)[:60] for k in params if k not in self.known)

    async def _refuse(self, send: Send) -> None:
        await self._answer(send, 413, "REQUEST_TOO_LARGE", (
            f"the request body exceeds {self.max_bytes} bytes (colorize serve --max-body-mb); "
            "send fewer or smaller photos per request"))

    async def _answer(self, send: Send, status: int, code: str, text: str) -> None:
        message = json.dumps({"error_code": code, "message": text}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(message)).encode())]})
        await send({"type": "http.response.body", "body": message})


def serve(model_uri: str, host: str, port: int, max_body_mb: int) -> None:
    """Load the pyfunc at `model_uri` (models:/..., runs:/..., or a logged model's folder) and
    serve it until interrupted."""
    import mlflow.pyfunc
    import uvicorn
    from mlflow.pyfunc import scoring_server

    from colorize.decoding import NEUTRAL
    from colorize.predict.load import use_tracking_store

    if model_uri.startswith(("models:/", "runs:/")):
        use_tracking_store()
    model = mlflow.pyfunc.load_model(model_uri)
    app = BodyLimit(scoring_server.init(model), max_body_mb << 20, set(NEUTRAL.params()))
    print(f"serving {model_uri} at http://{host}:{port}/invocations (bodies up to "
          f"{max_body_mb} MB)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
