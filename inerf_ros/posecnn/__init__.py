"""PoseCNN (Xiang et al. 2018) in PyTorch: object classes, 6-DoF poses and label masks from one RGB image.

* :mod:`~inerf_ros.posecnn.network`: backbones (``light`` for CPUs, ``vgg16`` as in the paper) and heads.
* :mod:`~inerf_ros.posecnn.hough`: vectorised Hough voting for object centres.
* :mod:`~inerf_ros.posecnn.roi`: RoI align in plain torch (``grid_sample``).
* :mod:`~inerf_ros.posecnn.losses`: cross entropy, centre-direction / depth smooth L1, PLoss / SLoss.
* :mod:`~inerf_ros.posecnn.model`: ``load_posecnn(model_dir, device) -> PoseCNNDetector`` with
  ``.detect(image_rgb, K) -> DetectionResult``; checkpoints are safetensors + JSON.
* :mod:`~inerf_ros.posecnn.train` / :mod:`~inerf_ros.posecnn.evaluate`: ``inerf-ros train-posecnn``
  and ``inerf-ros eval-posecnn``. Figures: ``inerf_ros/posecnn/RESULTS.md``.
"""
