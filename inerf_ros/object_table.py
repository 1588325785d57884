"""Object poses for the initializer: make-scene's ``objects.yaml`` or an initializer config YAML, read
by one function for every command that takes an object table (replay, demo, eval-prior).
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from inerf_ros import config as config_tools
from inerf_ros.initializer import InitializerConfig, load_config


def initializer_config(objects_path: str | Path, metres_per_unit: float | None = None):
    """InitializerConfig from make-scene's ``objects.yaml`` (with ``classes.json`` beside it for the
    symmetric classes) or from an initializer config YAML.
    """
    path = Path(objects_path)
    if not path.is_file():
        raise FileNotFoundError(f"object table {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if not (isinstance(data, dict) and isinstance(data.get("objects"), dict)):
        return load_config(path)
    mpu = float(data.get("metres_per_unit", 1.0))
    entries, symmetric = [], []
    for name, entry in data["objects"].items():
        try:
            position = [float(v) / mpu for v in entry["position"]]
            quaternion = [float(v) for v in entry["quaternion_xyzw"]]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: objects.{name} needs position and quaternion_xyzw ({error})") from None
        entries.append(" ".join([name] + [repr(v) for v in position + quaternion]))
    classes = path.parent / "classes.json"
    if classes.is_file():
        symmetric = [c["name"] for c in json.loads(classes.read_text())["classes"]
                     if c.get("symmetry", "none") != "none"]
    if metres_per_unit is not None and abs(metres_per_unit - mpu) > 1e-9 * mpu:
        raise ValueError(f"{path} is in a frame of {mpu} m per unit but the NeRF has {metres_per_unit}")
    config = InitializerConfig(metres_per_unit=mpu, object_poses=entries, symmetric_classes=symmetric)
    config_tools.validate(config)
    return config
