"""The demo world: a rendered tabletop scene with full ground truth (``make-scene``) and its rosbag (``make-bag``).

Read a rendered scene with :mod:`inerf_ros.scene.dataset`; the layout is in ``README.md`` here.
"""
