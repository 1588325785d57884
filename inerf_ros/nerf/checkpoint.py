"""Model files: ``MODEL_DIR/model.safetensors`` (weights) + ``MODEL_DIR/model.json`` (metadata).

Loading never unpickles. The json records the format, its version, the metadata, the name and
shape of every tensor and the SHA-256 of the weights file, so a corrupt, truncated or mismatched
file is reported with its path and the problem instead of failing somewhere downstream.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from inerf_ros.nerf.model import FORMAT_VERSION, NerfMetadata, NerfModel

FORMAT_NAME = "inerf_ros.nerf"
WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "model.json"


class CheckpointError(ValueError):
    """A model file is missing, corrupt, truncated or does not match; the message names the file."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model(model: NerfModel, model_dir, extra: dict | None = None, half_planes: bool = False) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into ``model_dir`` (created); returns the json path.

    Args:
        model: the model; its metadata is written as is, ``extra`` merged into ``metadata.extra``.
        half_planes: store the feature planes as float16 (half the file; loaded back as float32).
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    tensors = {name: (t.to(torch.uint8) if t.dtype == torch.bool else t) for name, t in tensors.items()}
    if half_planes:
        tensors = {name: (t.half() if name.startswith("field.planes.") else t) for name, t in tensors.items()}
    weights_path = model_dir / WEIGHTS_FILE
    save_file(tensors, str(weights_path), metadata={"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION)})
    metadata = dataclasses.replace(model.metadata, extra={**model.metadata.extra, **(extra or {})})
    doc = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "metadata": dataclasses.asdict(metadata),
        "tensors": {name: {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")}
                    for name, t in tensors.items()},
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": _sha256(weights_path),
        "weights_bytes": weights_path.stat().st_size,
    }
    json_path = model_dir / METADATA_FILE
    json_path.write_text(json.dumps(doc, indent=2))
    return json_path


def read_metadata(model_dir) -> tuple[NerfMetadata, dict]:
    """Parse and check ``model.json``; returns (metadata, the whole json document)."""
    json_path = Path(model_dir) / METADATA_FILE
    if not json_path.is_file():
        raise CheckpointError(f"{json_path}: not found (is {model_dir} a model directory from `inerf-ros train-nerf`?)")
    try:
        doc = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{json_path}: malformed JSON ({error})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{json_path}: not an {FORMAT_NAME} model file (format={doc.get('format')!r})"
                              if isinstance(doc, dict) else f"{json_path}: expected a JSON object")
    if doc.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{json_path}: format version {doc.get('format_version')!r} is not supported "
                              f"(this code reads version {FORMAT_VERSION})")
    try:
        meta_dict = dict(doc["metadata"])
        meta_dict["background"] = tuple(meta_dict.get("background", (1.0, 1.0, 1.0)))
        metadata = NerfMetadata(**meta_dict)
        metadata.check()
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{json_path}: bad metadata ({error})") from None
    return metadata, doc


def load_model(model_dir, device: str | torch.device = "cpu", verify_hash: bool = True) -> NerfModel:
    """Load a model written by :func:`save_model`, in eval mode on ``device``.

    Raises:
        CheckpointError: naming the file and the problem (missing, malformed, truncated, corrupt,
            version or tensor mismatch).
    """
    model_dir = Path(model_dir)
    metadata, doc = read_metadata(model_dir)
    weights_path = model_dir / doc.get("weights_file", WEIGHTS_FILE)
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: weights file not found")
    size = weights_path.stat().st_size
    if "weights_bytes" in doc and size != doc["weights_bytes"]:
        raise CheckpointError(f"{weights_path}: {size} bytes, expected {doc['weights_bytes']} "
                              "(truncated or replaced)")
    if verify_hash and "weights_sha256" in doc and _sha256(weights_path) != doc["weights_sha256"]:
        raise CheckpointError(f"{weights_path}: SHA-256 does not match {model_dir / METADATA_FILE} (corrupt file)")
    try:
        tensors = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{weights_path}: cannot read safetensors ({error})") from None
    model = NerfModel(metadata)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{weights_path}: tensors do not match the field configuration in "
                              f"{model_dir / METADATA_FILE} (missing {missing}, unexpected {unexpected})")
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise CheckpointError(f"{weights_path}: tensor {name} has shape {tuple(tensor.shape)}, "
                                  f"the configuration needs {tuple(expected[name].shape)}")
        if expected[name].dtype == torch.bool:
            tensors[name] = tensor.bool()
        elif tensor.dtype != expected[name].dtype:
            tensors[name] = tensor.to(expected[name].dtype)
        if expected[name].dtype != torch.bool and not torch.isfinite(tensors[name]).all():
            raise CheckpointError(f"{weights_path}: tensor {name} holds NaN or infinite values")
    model.load_state_dict(tensors)
    return model.to(device).eval()
