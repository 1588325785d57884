"""Posed-image data sets: ``transforms.json`` loading (:mod:`.transforms`) and structure from motion (:mod:`.sfm`)."""
