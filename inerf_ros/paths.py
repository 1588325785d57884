"""Where the package's shared files (config/, launch/, models/) are: the ament share directory of
an installed package, else the source checkout.
"""
from __future__ import annotations

from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parent.parent


def share_dir() -> Path:
    """The source checkout when the package runs from one (always current), else the ament share dir."""
    if (SOURCE_ROOT / "package.xml").is_file():
        return SOURCE_ROOT
    try:
        # lazy and optional: only an installed ROS package has an ament index
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
        try:
            return Path(get_package_share_directory("inerf_ros"))
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    return SOURCE_ROOT


def config_file(name: str) -> Path:
    """The shipped config file ``name`` (e.g. localize.yaml) under the share directory's config/."""
    return share_dir() / "config" / name


def model_dir(name: str) -> Path:
    """The shipped model directory ``name`` (e.g. nerf_tabletop) under the share directory's models/."""
    return share_dir() / "models" / name
