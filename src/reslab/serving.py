"""The model as MLflow serves it: a pyfunc that takes images as a user has them and answers with class names.

`reslab predict` and `mlflow models serve` run the same code: `ImageClassifier.classify`.

Contract of the served model (`mlflow.pyfunc.load_model(uri).predict(df)`, or `POST /invocations`):

- **Input**: a DataFrame with one column `image` (signature type `binary`), one encoded image file per row, as its
  bytes: any format Pillow decodes (JPEG, PNG, GIF, WebP, TIFF, BMP, ...), any size. A Python caller may also pass
  the bytes base64-encoded as a string. Over HTTP the bytes travel base64-encoded, as MLflow's JSON formats carry a
  `binary` column (MLflow decodes them before `predict`):
  `{"dataframe_split": {"columns": ["image"], "data": [["<base64>"], ...]}}` or
  `{"dataframe_records": [{"image": "<base64>"}, ...]}`. File paths are not accepted: a served model does not open
  files on the server's disk.
- **Output**: a DataFrame with one row per input row, in order:
  `class` (str, the most probable class), `probability` (float, its probability), `probabilities`
  ({class: probability} over all classes, in the model's class order) and `error` (None, or why this row could not
  be classified, e.g. "not a readable image (...)"; then the other three are None). A bad row never fails the
  batch. Over HTTP: `{"predictions": [{"class": ..., "probability": ..., "probabilities": {...}, "error": null}]}`.

Each image is decoded and resized exactly as `prepare` did the training images (`data.prepared.load_resized`:
`data.images.to_rgb` turns it upright, 8-bit RGB, first frame, transparency over white; then a bilinear resize to
the model's size, ignoring aspect), and scaled to [0, 1] as in training.

Serialization: MLflow "models from code", no pickle. The logged model holds `MODEL_CODE` (three lines that import
`ImageClassifier` from reslab and pass an instance to `mlflow.models.set_model`), the reslab code it runs: this
module and the reslab modules it imports, transitively, as source in the model's `code/` folder (MLflow's
`code_paths`, copied by `tracking.records.served_code`), and one artifact, the weights-only model file
(`models.serialization`), which `load_context` reads with `torch.load(weights_only=True)` once its SHA-256 matches the
one recorded at logging (`model_config`, key `weights_sha256`; the registered version carries it as a tag). Its
requirements.txt pins the rest of what that code imports (torch, pillow, numpy, pandas, and MLflow's own pin), so the model loads where
only those are installed, and reslab is not: `mlflow models serve -m models:/reslab-classifier@champion` with
MLflow's default env manager (it builds that environment), or `mlflow models build-docker`. So this module and what
it imports stay within those packages: no DVC, Optuna, matplotlib or the rest of reslab. (A process that has already
imported reslab, such as the project's tests, runs that reslab instead.)
"""
from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError

from . import offline  # noqa: F401, I001  (before any MLflow module: no telemetry)
import mlflow.pyfunc
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, DataType, Map, Schema

from .data.prepared import load_resized
from .models.serialization import load_model_file, model_file_sha256

IMAGE_COLUMN = "image"
OUTPUT_COLUMNS = ("class", "probability", "probabilities", "error")
MODEL_FILE = "model_file"  # the artifact's key in the logged model
WEIGHTS_SHA256 = "weights_sha256"  # the logged model's config key: its weights file's SHA-256, checked at load
MODEL_CODE_FILE = "reslab_image_classifier.py"
MODEL_CODE = '''"""reslab's served image classifier (see reslab.serving), logged as an MLflow model from code; reslab
comes with the model, in its code/ folder."""
import mlflow

from reslab.serving import ImageClassifier

mlflow.models.set_model(ImageClassifier())
'''
BATCH_SIZE = 64  # rows per forward pass: bounds memory for a large request

SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec(DataType.binary, IMAGE_COLUMN)]),
    outputs=Schema([ColSpec(DataType.string, "class", required=False),
                    ColSpec(DataType.double, "probability", required=False),
                    ColSpec(Map(DataType.double), "probabilities", required=False),
                    ColSpec(DataType.string, "error", required=False)]),
)


class ImageError(ValueError):
    """A row that is not an image the model can classify; its message is the row's `error`."""


def input_example(size: int = 16) -> pd.DataFrame:
    """A real encoded image (a small PNG colour gradient) in the model's input format."""
    ramp = np.linspace(0, 255, size, dtype=np.uint8)
    pixels = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], ramp[::-1, None]), axis=-1)  # (S, S, 3)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format="PNG")
    return pd.DataFrame({IMAGE_COLUMN: [buf.getvalue()]})


def image_bytes(value: Any) -> bytes:
    """One row's value -> the encoded image's bytes (bytes as they are; a string as base64)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=False)
        except (binascii.Error, ValueError):
            raise ImageError("not an image: a string that is not base64-encoded image bytes") from None
    raise ImageError(f"not an image: expected encoded image bytes, got {type(value).__name__}")


def decode_image(data: bytes, image_size: int) -> np.ndarray:
    """Encoded image -> (image_size, image_size, 3) uint8, as prepare decoded the training images."""
    if not data:
        raise ImageError("not a readable image (empty)")
    try:
        return load_resized(io.BytesIO(data), image_size)
    except UnidentifiedImageError:
        raise ImageError("not a readable image (UnidentifiedImageError: no image format recognised)") from None
    except Exception as e:  # noqa: BLE001 - any decoder failure is this row's error, the rest of the batch goes on
        raise ImageError(f"not a readable image ({type(e).__name__}: {e})") from None


@torch.no_grad()
def class_probabilities(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) uint8 -> (N, K) softmax probabilities."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255  # (N, 3, S, S), as the training loader scales
    return torch.softmax(model(x).float(), 1).numpy()


class ImageClassifier(mlflow.pyfunc.PythonModel):
    """The pyfunc model: encoded images in, class names and probabilities out (the contract is the module's
    docstring). MLflow builds it empty and calls `load_context`; `from_model_file` builds one without MLflow."""

    model: torch.nn.Module
    classes: list[str]
    image_size: int
    architecture: str

    def load_context(self, context) -> None:
        """Load the weights file the model carries, refused unless its SHA-256 is the one recorded when the model was
        logged (its `model_config`; a model logged before reslab recorded it has none, and is not checked)."""
        path = Path(context.artifacts[MODEL_FILE])
        expected = (context.model_config or {}).get(WEIGHTS_SHA256)
        if expected is not None and (actual := model_file_sha256(path)) != expected:
            raise ValueError(f"the model's weights file {path.name} has SHA-256 {actual}, not the {expected} recorded "
                             "when the model was logged: it was changed since; not served")
        self._load(path)

    @classmethod
    def from_model_file(cls, path: Path) -> ImageClassifier:
        """The classifier of a weights-only model file (models/<role>/seed_<seed>.pt)."""
        classifier = cls()
        classifier._load(Path(path))
        return classifier

    def _load(self, path: Path) -> None:
        self.model, meta = load_model_file(path)  # torch.load(weights_only=True)
        self.classes, self.image_size, self.architecture = list(meta["classes"]), int(meta["image_size"]), meta["model"]

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """`model_input`: a DataFrame with an `image` column (or a sequence of encoded images). The DataFrame hint
        tells MLflow to pass the input on as it is (its schema is the logged signature's)."""
        if isinstance(model_input, pd.DataFrame):
            if IMAGE_COLUMN not in model_input.columns:
                raise ValueError(f"the input needs a column {IMAGE_COLUMN!r} of encoded images; "
                                 f"got columns {list(model_input.columns)}")
            model_input = model_input[IMAGE_COLUMN]
        return self.classify(list(model_input))

    def classify(self, images: Sequence[Any]) -> pd.DataFrame:
        """Encoded images (bytes, or base64 strings) -> one output row each; a row that fails carries its `error`."""
        rows: list[dict[str, Any]] = [{c: None for c in OUTPUT_COLUMNS} for _ in images]
        decoded: list[tuple[int, np.ndarray]] = []
        for i, value in enumerate(images):
            try:
                decoded.append((i, decode_image(image_bytes(value), self.image_size)))
            except ImageError as e:
                rows[i]["error"] = str(e)
        for start in range(0, len(decoded), BATCH_SIZE):
            batch = decoded[start:start + BATCH_SIZE]
            probs = class_probabilities(self.model, np.stack([image for _, image in batch]))
            for (i, _), p in zip(batch, probs):
                best = int(np.argmax(p))
                rows[i].update({"class": self.classes[best], "probability": float(p[best]),
                                "probabilities": {c: float(v) for c, v in zip(self.classes, p)}})
        return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS), dtype=object)  # None, not NaN: valid JSON
