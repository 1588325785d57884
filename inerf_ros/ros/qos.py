"""Named QoS profiles of the topics between our nodes (images and masks use ``qos_profile_sensor_data``).

Results (detections, camera priors, camera poses, statuses) are reliable and keep 20 messages: a
slow subscriber (a replay collector, rviz, a node still busy with its previous message) loses none of
a burst. Every publisher and subscriber of these topics uses this one profile, so they always match.
"""
from __future__ import annotations

from rclpy.qos import QoSProfile

RESULT_QOS = QoSProfile(depth=20)
