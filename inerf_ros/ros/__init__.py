"""Thin ROS 2 adaptors: messages <-> the ROS-free core's numpy/torch types, TF, QoS, parameters."""
