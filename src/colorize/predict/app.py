"""`colorize app`: colorize photos in the browser (Gradio, served from this machine only).

Upload photos, see each as the network's gray input, the result and the original side by side;
move the temperature and prior-correction sliders (the network's output is cached per photo
and hints, so a move only re-decodes: predict/live.py); click on the result to place a colour
hint with the colour picker's colour (models trained with model.hints), undo or clear them, save
them as `colorize predict --hints` JSON; choose the model (the workspace file, a registry alias
or version, a .pt file); download the full-resolution PNG, the same pixels as
`colorize predict` makes with the same model, decoding and hints.

Offline by construction: Gradio's analytics and version check are off, the theme uses the
system's fonts (no font CDN), nothing is shared. Bound to 127.0.0.1 unless --host says
otherwise; uploads are limited like the served model's rows (predict/live.py). Mistakes show as
one line on the page, never a stack.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import threading
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

import cv2  # noqa: E402
import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from colorize.config import repository_decoding  # noqa: E402
from colorize.data.images import max_file_bytes  # noqa: E402
from colorize.decoding import MAX_CORRECTION, NEUTRAL, Decoding, resolve  # noqa: E402
from colorize.errors import UserError  # noqa: E402
from colorize.imaging import save_png  # noqa: E402
from colorize.model import hints as H  # noqa: E402
from colorize.predict import live  # noqa: E402
from colorize.predict.load import DEFAULT_MODEL, registered_specs  # noqa: E402
from colorize.predict.load import resolve as resolve_model  # noqa: E402

MAX_UPLOAD_BYTES = max_file_bytes(live.MAX_PIXELS)
SYSTEM_FONTS = ["system-ui", "sans-serif"]
SHOWN = ["download", "fullscreen"]  # no "share": it posts to a hub


class Models:
    """Models loaded so far, by spec, shared by every page (read-only after loading)."""

    def __init__(self) -> None:
        self._loaded: dict[str, live.Colorizing] = {}
        self._lock = threading.Lock()

    def get(self, spec: str) -> live.Colorizing:
        with self._lock:
            if spec not in self._loaded:
                self._loaded[spec] = live.Colorizing(resolve_model(spec))
            return self._loaded[spec]


def default_decoding(found) -> Decoding:
    """predict's order: the registry version's evaluated decoding, then params.yaml; the
    neutral one (the mean colour) where neither exists."""
    return resolve(None, None, found.decoding, repository_decoding()) or NEUTRAL


def describe(colorizing: live.Colorizing, decoding: Decoding, n_hints: int) -> str:
    found = colorizing.found
    line = f"**Model:** {found.description}"
    if found.metrics:
        line += " · test " + ", ".join(f"{k.removeprefix('eval_')} {v:.3f}"
                                       for k, v in sorted(found.metrics.items()))
    evaluated = f" (evaluated at {found.decoding.label()})" if found.decoding else ""
    made = (f"decoding {decoding.label()}{evaluated}" if colorizing.decodes else
            "regression head (no decoding)")
    hints = (f", {n_hints} colour hint(s)" if colorizing.takes_hints else
             ", takes no colour hints")
    return f"{line}  \n**This image:** {made}{hints}"


def build(model_spec: str | None, registered_model: str = "colorizer") -> gr.Blocks:
    """The page. Every handler returns a one-line status instead of raising."""
    models = Models()
    workspace = str(DEFAULT_MODEL) if model_spec is None else model_spec
    choices = [workspace] + [s for s in registered_specs(registered_model) if s != workspace]
    # The first model is loaded before the page is served: a bad --model stops the command
    # with its one-line error, and the sliders start at its decoding.
    first = models.get(workspace)
    start = default_decoding(first.found)
    outdir = Path(tempfile.mkdtemp(prefix="colorize-app-"))

    def current(state: dict, spec: str) -> tuple[live.Colorizing, live.Photo | None]:
        colorizing = models.get(spec or workspace)
        photo = state["photos"].get(state.get("shown"))
        return colorizing, photo

    def hints_of(state: dict) -> list[H.UserHint]:
        return state["hints"].setdefault(state.get("shown"), [])

    def decoding_of(T: float, A: float) -> Decoding:
        return Decoding(float(T), float(A))

    def render(state, spec, T, A):
        """-> (the result's preview with the hints outlined, the line saying what made it)."""
        colorizing, photo = current(state, spec)
        if photo is None:
            return None, describe(colorizing, decoding_of(T, A), 0)
        hints = hints_of(state)
        image = marked(colorizing.preview(photo, decoding_of(T, A), hints), photo, hints)
        return image, describe(colorizing, decoding_of(T, A), len(hints))

    def guarded(fn, n_outputs: int):
        """Run a handler; a user's mistake becomes the status line, other outputs unchanged.
        (wraps: Gradio reads the handler's signature to pass click coordinates.)"""
        @functools.wraps(fn)
        def run(*args):
            try:
                return fn(*args)
            except (UserError, live.ImageError, ValueError) as e:
                return (*[gr.skip()] * (n_outputs - 1), f"⚠ {e}")
        return run

    with gr.Blocks(title="colorize") as page:
        state = gr.State({"photos": {}, "hints": {}, "shown": None})
        gr.Markdown("# colorize\nUpload photos; move the sliders; click on the result to place "
                    "a colour hint (models trained with hints); download the full-resolution "
                    "PNG.")
        with gr.Row():
            model = gr.Dropdown(choices, value=workspace, label="Model", allow_custom_value=True,
                                info="workspace file, models:/NAME@ALIAS, models:/NAME/VERSION "
                                     "or a .pt path", elem_id="model", scale=3)
            files = gr.File(file_count="multiple", label="Photos", elem_id="upload", scale=2)
        status = gr.Markdown("", elem_id="status")
        about = gr.Markdown(describe(first, start, 0), elem_id="about")
        photo = gr.Dropdown([], label="Photo", elem_id="photo")
        with gr.Row():
            gray = gr.Image(label="Gray input", interactive=False, format="jpeg",
                            elem_id="gray", buttons=SHOWN)
            result = gr.Image(label="Result (click to place a hint)", interactive=False,
                              format="jpeg", elem_id="result", buttons=SHOWN)
            original = gr.Image(label="Original", interactive=False, format="jpeg",
                                elem_id="original", buttons=SHOWN)
        with gr.Row():
            T = gr.Slider(0.01, 1.0, value=start.temperature, step=0.01, interactive=first.decodes,
                          label="Temperature (smaller = more vivid)", elem_id="temperature")
            A = gr.Slider(0.0, MAX_CORRECTION, value=start.prior_correction, step=0.05,
                          interactive=first.decodes, elem_id="correction",
                          label="Prior correction (more = rarer, more saturated colours)")
        with gr.Row():
            colour = gr.ColorPicker("#d03030", label="Hint colour", elem_id="colour")
            side = gr.Slider(1, H.MAX_SIDE, value=3, step=1, label="Hint size (network pixels)")
            undo = gr.Button("Undo hint")
            clear = gr.Button("Clear hints")
        hint_list = gr.Code("", language="json", label="Hints (colorize predict --hints)",
                            elem_id="hints")
        with gr.Row():
            save = gr.Button("Prepare full-resolution PNG", elem_id="save", variant="primary")
            save_hints = gr.Button("Save hints JSON")
        download = gr.File(label="Download", elem_id="download", interactive=False, height=80)

        def hints_text(state):
            name = state.get("shown")
            return json.dumps(live.hints_json(name, hints_of(state)) if name else {})

        def on_model(state, spec):
            colorizing = models.get(spec)  # a bad spec: the status line says why
            d = default_decoding(colorizing.found)
            image, text = render(state, spec, d.temperature, d.prior_correction)
            return (gr.update(value=d.temperature, interactive=colorizing.decodes),
                    gr.update(value=d.prior_correction, interactive=colorizing.decodes),
                    image, text, "")

        def on_upload(state, paths, spec, T_, A_):
            skipped = []
            added = []
            for path in paths or []:
                name = Path(path).name
                try:
                    state["photos"][name] = live.read_photo(path, name)
                    added.append(name)
                except live.ImageError as e:
                    skipped.append(f"{name}: {e.reason}" + (f" ({e.detail})" if e.detail else ""))
            if added:
                state["shown"] = added[0]
            message = ("⚠ skipped " + "; ".join(skipped)) if skipped else ""
            shown = state["photos"].get(state["shown"])
            gray_, original_ = (shown.gray(), shown.preview) if shown else (None, None)
            result_, about_ = render(state, spec, T_, A_) if shown else (None, "")
            return (state, gr.update(choices=list(state["photos"]), value=state["shown"]),
                    gray_, result_, original_, about_, hints_text(state), message)

        def on_photo(state, name, spec, T_, A_):
            if name not in state["photos"]:
                return state, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), ""
            state["shown"] = name
            shown = state["photos"][name]
            image, text = render(state, spec, T_, A_)
            return state, shown.gray(), image, shown.preview, text, hints_text(state), ""

        def on_decoding(state, spec, T_, A_):
            return *render(state, spec, T_, A_), ""

        def on_click(state, spec, T_, A_, colour_, side_, evt: gr.SelectData):
            colorizing, shown = current(state, spec)
            if shown is None:
                return state, gr.skip(), gr.skip(), gr.skip(), "⚠ upload a photo first"
            if not colorizing.takes_hints:
                return (state, gr.skip(), gr.skip(), gr.skip(), "⚠ this model takes no colour "
                        "hints (it was trained with model.hints: false); choose one trained with "
                        "hints")
            x, y = live.to_photo_pixels(shown, *evt.index)
            rgb = H.parse_colour(_hex(colour_), "hint colour")
            side_photo = max(1, round(int(side_) * min(shown.rgb.shape[:2])
                                      / colorizing.found.size))
            hints_of(state).append(H.UserHint(x, y, rgb, side_photo))
            image, text = render(state, spec, T_, A_)
            return state, image, text, hints_text(state), ""

        def on_undo(state, spec, T_, A_, drop_all: bool):
            hints = hints_of(state)
            if drop_all:
                hints.clear()
            elif hints:
                hints.pop()
            image, text = render(state, spec, T_, A_)
            return state, image, text, hints_text(state), ""

        def on_save(state, spec, T_, A_):
            colorizing, shown = current(state, spec)
            if shown is None:
                return gr.skip(), "⚠ upload a photo first"
            rgb = colorizing.full(shown, decoding_of(T_, A_), hints_of(state))
            # A folder per save: two pages saving photos of one name never overwrite each other.
            path = Path(tempfile.mkdtemp(dir=outdir)) / (Path(shown.name).stem + ".png")
            save_png(rgb, path)
            return str(path), ""

        def on_save_hints(state):
            if state.get("shown") is None:
                return gr.skip(), "⚠ upload a photo first"
            path = Path(tempfile.mkdtemp(dir=outdir)) / "hints.json"
            path.write_text(hints_text(state) + "\n")
            return str(path), ""

        knobs = [state, model, T, A]
        model.change(guarded(on_model, 5), [state, model], [T, A, result, about, status])
        files.upload(guarded(on_upload, 8), [state, files, model, T, A],
                     [state, photo, gray, result, original, about, hint_list, status])
        photo.input(guarded(on_photo, 7), [state, photo, model, T, A],
                     [state, gray, result, original, about, hint_list, status])
        for knob in (T, A):
            knob.change(guarded(on_decoding, 3), knobs, [result, about, status],
                        trigger_mode="always_last", show_progress="hidden")
        result.select(guarded(on_click, 5), [*knobs, colour, side],
                      [state, result, about, hint_list, status])
        undo.click(guarded(lambda *a: on_undo(*a, False), 5), knobs,
                   [state, result, about, hint_list, status])
        clear.click(guarded(lambda *a: on_undo(*a, True), 5), knobs,
                    [state, result, about, hint_list, status])
        save.click(guarded(on_save, 2), knobs, [download, status])
        save_hints.click(guarded(on_save_hints, 2), [state], [download, status])
    return page


def marked(image: np.ndarray, photo: live.Photo, hints: list[H.UserHint]) -> np.ndarray:
    """The preview with each hint's square outlined in its own colour (the page only: the
    downloaded PNG is the result alone)."""
    for h in hints:
        x, y = h.x / photo.scale, h.y / photo.scale
        r = max(2.0, h.side / photo.scale / 2)
        corners = (round(x - r), round(y - r)), (round(x + r), round(y + r))
        cv2.rectangle(image, *corners, (255, 255, 255), 3)
        cv2.rectangle(image, *corners, tuple(int(c) for c in h.rgb), 1)
    return image


def _hex(colour: str) -> str:
    """The colour picker's value ('#rrggbb', or 'rgb(r, g, b)' / 'rgba(...)') -> '#rrggbb'."""
    text = str(colour).strip()
    if text.startswith("rgb"):
        parts = text[text.index("(") + 1:text.rindex(")")].split(",")[:3]
        return "#" + bytes(round(float(p)) for p in parts).hex()
    return text[:7].lower()


def serve(model_spec: str | None, host: str, port: int, registered_model: str = "colorizer",
          block: bool = True):
    """Build the page and serve it (blocking unless block=False, which returns the page)."""
    page = build(model_spec, registered_model)
    page.queue(default_concurrency_limit=2)
    page.launch(theme=gr.themes.Default(font=SYSTEM_FONTS, font_mono=["monospace"]),
                server_name=host, server_port=port, share=False, inbrowser=False,
                max_file_size=MAX_UPLOAD_BYTES, prevent_thread_lock=not block,
                show_error=False, quiet=not block)
    return page


__all__ = ["build", "serve"]
