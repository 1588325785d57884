"""Ray samplers: pixels only where they should be, fallbacks that say so."""
import numpy as np
import pytest

from inerf_ros.optim.sampling import PixelSampler, SamplingConfig


def textured_image(h=60, w=80, seed=0):
    rng = np.random.default_rng(seed)
    image = np.full((h, w, 3), 128, np.uint8)
    image[20:40, 30:50] = (rng.random((20, 20, 3)) * 255).astype(np.uint8)  # the only texture
    return image


def big_textured_image(seed=0):
    """ORB ignores a 31-pixel border, so keypoint tests need a larger image: texture only in [60:100, 80:140]."""
    rng = np.random.default_rng(seed)
    image = np.full((160, 220, 3), 128, np.uint8)
    image[60:100, 80:140] = np.kron(rng.random((10, 15, 3)) > 0.5, np.ones((4, 4, 1))).astype(np.uint8) * 255
    return image


def label_mask(h=60, w=80):
    mask = np.zeros((h, w), np.uint8)
    mask[5:10, 5:10] = 1
    mask[50:60, 70:80] = 2  # touches the image corner: dilation must stay inside
    return mask


def test_random_covers_the_image_and_is_deterministic():
    cfg = SamplingConfig(num_rays=5000)
    a = PixelSampler(textured_image(), cfg, seed=3).sample()
    b = PixelSampler(textured_image(), cfg, seed=3).sample()
    assert (a.uv == b.uv).all()
    assert a.uv[:, 0].min() >= 0 and a.uv[:, 0].max() <= 79 and a.uv[:, 1].max() <= 59
    assert a.uv[:, 0].max() > 70 and a.uv[:, 1].min() < 5


def test_mask_region_never_leaves_the_chosen_class():
    cfg = SamplingConfig(strategy="mask_region", num_rays=2000, mask_dilation=0, mask_classes=["2"])
    uv = PixelSampler(textured_image(), cfg, label_mask()).sample().uv.long()
    assert (label_mask()[uv[:, 1], uv[:, 0]] == 2).all()


def test_dilated_mask_stays_in_the_image_and_grows():
    cfg = SamplingConfig(strategy="mask_region", num_rays=4000, mask_dilation=3)
    sampler = PixelSampler(textured_image(), cfg, label_mask())
    assert sampler.region.shape == (60, 80)
    assert sampler.region.sum() > (label_mask() > 0).sum()
    uv = sampler.sample().uv.long()
    assert (uv[:, 0] >= 0).all() and (uv[:, 0] < 80).all() and (uv[:, 1] >= 0).all() and (uv[:, 1] < 60).all()
    assert sampler.region[uv[:, 1], uv[:, 0]].all()


def test_empty_mask_falls_back_to_random_and_says_so():
    cfg = SamplingConfig(strategy="mask_region", num_rays=100)
    sampled = PixelSampler(textured_image(), cfg, np.zeros((60, 80), np.uint8)).sample()
    assert sampled.strategy == "random"
    assert "empty" in sampled.note
    assert sampled.uv.shape == (100, 2)


def test_interest_regions_sit_on_texture():
    cfg = SamplingConfig(strategy="interest_regions", num_rays=500, dilation_iterations=1)
    sampled = PixelSampler(big_textured_image(), cfg).sample()
    assert sampled.strategy == "interest_regions" and sampled.note == ""
    uv = sampled.uv.long()
    # keypoints lie within the textured block (+ its edge), dilated once by 2 pixels
    inside = (uv[:, 0] >= 80 - 4) & (uv[:, 0] < 140 + 4) & (uv[:, 1] >= 60 - 4) & (uv[:, 1] < 100 + 4)
    assert inside.all()


def test_interest_points_top_up_with_random_pixels():
    cfg = SamplingConfig(strategy="interest_points", num_rays=3000, max_keypoints=50)
    sampled = PixelSampler(big_textured_image(), cfg).sample()
    assert sampled.uv.shape == (3000, 2) and sampled.note == ""
    flat = np.full((160, 220, 3), 100, np.uint8)
    none = PixelSampler(flat, cfg).sample()
    assert "no keypoints" in none.note and none.uv.shape == (3000, 2)


def test_union_of_mask_and_interest_regions():
    cfg = SamplingConfig(strategy="mask_region+interest_regions", num_rays=3000, mask_dilation=0,
                         dilation_iterations=0)
    mask = np.zeros((160, 220), np.uint8)
    mask[5:20, 5:20] = 3
    sampler = PixelSampler(big_textured_image(), cfg, mask)
    uv = sampler.sample().uv.long()
    in_mask = mask[uv[:, 1], uv[:, 0]] > 0
    assert in_mask.any() and (~in_mask).any()
    assert sampler.region[uv[:, 1], uv[:, 0]].all()


@pytest.mark.parametrize("strategy", ["grid", "random+mask_region", ""])
def test_bad_strategies_are_refused(strategy):
    with pytest.raises(ValueError, match="strategy|random"):
        SamplingConfig(strategy=strategy).check()


def test_mask_of_wrong_size_is_refused():
    with pytest.raises(ValueError, match="does not match"):
        PixelSampler(textured_image(), SamplingConfig(strategy="mask_region"), np.zeros((10, 10), np.uint8))


def test_foreground_keeps_to_the_rendered_opacity_and_dilation_stays_in_the_image():
    opacity = np.zeros((60, 80), np.float32)
    opacity[0:10, 70:80] = 0.9  # a corner: the dilation must stay inside the image
    opacity[30:40, 30:40] = 0.3  # under the threshold
    cfg = SamplingConfig(strategy="foreground", num_rays=3000, foreground_opacity=0.5, foreground_dilation=0)
    sampler = PixelSampler(textured_image(), cfg, opacity=opacity)
    uv = sampler.sample().uv.long()
    assert sampler.strategy == "foreground" and sampler.note == ""
    assert (opacity[uv[:, 1], uv[:, 0]] >= 0.5).all()
    dilated = PixelSampler(textured_image(), SamplingConfig(strategy="foreground", foreground_dilation=2),
                           opacity=opacity)
    assert dilated.region.shape == (60, 80) and dilated.region.sum() > (opacity >= 0.5).sum()
    assert not dilated.region[30:40, 30:40].any()


def test_foreground_without_opacity_or_surfaces_falls_back_and_says_so():
    cfg = SamplingConfig(strategy="foreground", num_rays=100)
    missing = PixelSampler(textured_image(), cfg)
    assert missing.strategy == "random" and "no rendered opacity" in missing.note
    empty = PixelSampler(textured_image(), cfg, opacity=np.zeros((60, 80), np.float32)).sample()
    assert empty.strategy == "random" and "empty" in empty.note and empty.uv.shape == (100, 2)


def test_bad_opacity_is_refused():
    cfg = SamplingConfig(strategy="foreground")
    with pytest.raises(ValueError, match="does not match"):
        PixelSampler(textured_image(), cfg, opacity=np.zeros((10, 10), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        PixelSampler(textured_image(), cfg, opacity=np.full((60, 80), np.nan, np.float32))
