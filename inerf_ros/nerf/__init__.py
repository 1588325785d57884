"""The radiance-field engine: field, rays, differentiable volume rendering, training, model files.

Public API (other components call these names):

* ``inerf_ros.nerf.checkpoint.save_model(model, model_dir, extra=None, half_planes=False) -> Path``
  and ``load_model(model_dir, device="cpu") -> NerfModel`` (``MODEL_DIR/model.safetensors`` +
  ``MODEL_DIR/model.json``; loading never unpickles; bad files raise ``CheckpointError`` naming the file).
* ``inerf_ros.nerf.model.NerfModel`` (``nn.Module``): ``.field`` (:class:`~inerf_ros.nerf.field.RadianceField`),
  ``.occupancy``, ``.metadata`` (:class:`~inerf_ros.nerf.model.NerfMetadata`: ``aabb``, ``near``, ``far``,
  ``metres_per_unit``, ``background``, ``background_model`` ("constant", "learned" or "lightfield"),
  ``convention="opengl"``, ``format_version``, ``field`` config, ``n_samples``) and
  ``render_rays(origins (R, 3), directions (R, 3), max_level=None, *, n_samples=None, skip_empty=True,
  jitter=False, background=None) -> {"rgb" (R, 3), "depth" (R,), "opacity" (R,), "weights" (R, S), "t" (R, S),
  "deltas" (R, S)}``,
  differentiable with respect to ``origins`` and ``directions``. ``skip_empty=False`` gives fixed
  shapes (for CUDA-graph capture); ``max_level`` masks fine field levels (coarse-to-fine search;
  fractional values fade the next level in).
* ``inerf_ros.nerf.rays.pixel_rays(intrinsics, nerf_T_cam (..., 4, 4), pixels_uv (N, 2)) ->
  (origins (..., N, 3), unit directions (..., N, 3))``: OpenGL camera-to-NeRF poses, OpenCV pixel
  centres, differentiable with respect to ``nerf_T_cam`` and batched over its leading dimensions.
* ``inerf_ros.nerf.render.render_image(model, intrinsics, nerf_T_cam (4, 4), chunk=16384, max_level=None)
  -> {"rgb" (H, W, 3), "depth" (H, W), "opacity" (H, W)}`` (no gradient; previews and evaluation).
* ``inerf_ros.nerf.field.RadianceField``: ``density(x (N, 3), max_level=None) -> (sigma (N,), features)``,
  ``color(features, dirs (N, 3)) -> rgb (N, 3)``, ``set_level_mask(max_level)``, ``n_levels``.

Data sets: :func:`inerf_ros.datasets.transforms.load_transforms`. Commands: ``inerf-ros train-nerf``
(:mod:`.train`), ``inerf-ros render`` (:mod:`.render_command`). Figures: ``RESULTS.md``.
"""
