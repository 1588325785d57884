"""inerf_ros: camera localization by inverting a NeRF, started from PoseCNN object-pose priors.

The package is split in two: a ROS-free core (geometry, radiance field, renderer, optimizer,
PoseCNN, datasets, evaluation) and thin ROS 2 wrappers (``inerf_ros.ros``, ``inerf_ros.nodes``).
"""
# The generated message module (``inerf_ros.msg``) lives in colcon's install space while the
# hand-written modules may be imported from a source checkout; let the package span both.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
