"""Point the ROS 2 PyPI wheels' exported CMake files at this interpreter.

The wheels are built under ``/opt/python/cp311-cp311``; their exported targets name that
interpreter's include directory and site-packages, which do not exist here, and CMake stops with
"includes non-existent path". Rewrite both prefixes in ``$VENV/share/*/cmake/*.cmake``.
"""
import pathlib
import sys
import sysconfig

BUILD_INCLUDE = "/opt/python/cp311-cp311/include/python3.11"
BUILD_SITE = "/opt/python/cp311-cp311/lib/python3.11/site-packages"


def main(venv: str) -> int:
    include = sysconfig.get_paths()["include"]
    site = sysconfig.get_paths(vars={"base": venv, "platbase": venv})["purelib"]
    changed = 0
    for path in pathlib.Path(venv, "share").glob("*/cmake/*.cmake"):
        text = path.read_text()
        new = text.replace(BUILD_INCLUDE, include).replace(BUILD_SITE, site)
        if new != text:
            path.write_text(new)
            changed += 1
    print(f"rewrote {changed} CMake files (include={include}, site-packages={site})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
