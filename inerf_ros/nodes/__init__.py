"""ROS 2 nodes: parse messages -> one call into the ROS-free core -> build messages."""
