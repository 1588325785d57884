"""Fixtures of the replay tests live in replay_fixtures.py (importable under a unique name; every test
folder's `conftest` module shares one name, so `from conftest import ...` is ambiguous).
"""
from replay_fixtures import box_nerf, box_views, one_torch_thread  # noqa: F401
