"""Domain randomization: image-space camera effects (seeded, in range, changing pixels) and the randomized
rendered frames of make-posecnn-data (objects moved per frame, cameras 0.3-1.5 m, BOP-like layout).
"""
import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from inerf_ros.posecnn import randomize
from inerf_ros.posecnn.randomize import CameraEffects

NO_EFFECT = CameraEffects(white_balance=(1.0, 1.0), noise_probability=0.0, motion_blur_probability=0.0,
                          defocus_probability=0.0, jpeg_probability=0.0)


def _image(seed=0, height=48, width=64):
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 120, np.uint8)
    image[10:30, 15:40] = rng.integers(0, 256, (20, 25, 3), dtype=np.uint8)  # an object with texture
    label = np.zeros((height, width), np.uint8)
    label[10:30, 15:40] = 2
    return image, label


def test_effects_are_deterministic_per_seed_and_keep_shape_and_dtype():
    image, label = _image()
    a = randomize.camera_effects(image, label, np.random.default_rng(5), background_share=0.5)
    b = randomize.camera_effects(image, label, np.random.default_rng(5), background_share=0.5)
    c = randomize.camera_effects(image, label, np.random.default_rng(6), background_share=0.5)
    assert a.shape == image.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 1.0


def test_the_sensor_model_keeps_every_level_when_the_exposure_is_right():
    values = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    linear_mean = float(randomize._TO_LINEAR[values].mean())
    level = linear_mean ** (1 / 2.2)  # auto exposure aiming at the image's own mean: a gain of one
    effects = dataclasses.replace(NO_EFFECT, brightness=(level, level), exposure=(1.0, 1.0))
    out = randomize.exposure_and_noise(values, np.random.default_rng(0), effects)
    assert np.abs(out.astype(int) - values.astype(int)).max() <= 1


def test_noise_changes_pixels_and_grows_with_the_signal():
    flat_dark = np.full((64, 64, 3), 40, np.uint8)
    flat_bright = np.full((64, 64, 3), 200, np.uint8)
    shot_only = CameraEffects(white_balance=(1.0, 1.0), shot_noise=(0.01, 0.01), read_noise=(0.0, 0.0),
                              noise_probability=1.0, exposure=(1.0, 1.0), max_gain=1.0, brightness=(1.0, 1.0))
    dark = randomize.exposure_and_noise(flat_dark, np.random.default_rng(0), shot_only)
    bright = randomize.exposure_and_noise(flat_bright, np.random.default_rng(0), shot_only)
    assert dark.std() > 1.0
    # Shot noise: variance proportional to the linear signal, so brighter pixels vary more in linear light.
    linear = randomize._TO_LINEAR
    assert linear[bright].std() > 2 * linear[dark].std()


def test_auto_exposure_brings_frames_to_its_range_with_white_balance_in_range():
    effects = CameraEffects(noise_probability=0.0)
    wanted = np.array(effects.brightness) ** 2.2 * np.array(effects.exposure)  # linear green after exposure
    for grey in (25, 128, 230):
        image = np.full((8, 8, 3), grey, np.uint8)
        for seed in range(20):
            out = randomize.exposure_and_noise(image, np.random.default_rng(seed), effects)
            green = randomize._TO_LINEAR[out[0, 0, 1]]
            gain = green / randomize._TO_LINEAR[grey]
            if grey == 25:  # too dark to reach the range: the gain stops at max_gain (times the error)
                assert effects.max_gain * effects.exposure[0] * 0.97 <= gain <= effects.max_gain * effects.exposure[1]
            else:
                assert wanted[0] * 0.97 <= green <= wanted[1] * 1.03
            ratios = randomize._TO_LINEAR[out[0, 0]] / green
            if out[0, 0].max() < 255:  # white balance of red and blue relative to green
                assert 0.8 * 0.97 <= ratios[0] <= 1.25 * 1.03 and 0.8 * 0.97 <= ratios[2] <= 1.25 * 1.03


def test_blurs_keep_flat_images_and_soften_edges():
    flat = np.full((32, 32, 3), 90, np.uint8)
    np.testing.assert_array_equal(randomize.motion_blur(flat, 7, 30.0), flat)
    np.testing.assert_array_equal(randomize.defocus_blur(flat, 2.0), flat)
    edge = np.zeros((32, 32, 3), np.uint8)
    edge[:, 16:] = 255
    horizontal = randomize.motion_blur(edge, 7, 0.0)
    assert 0 < horizontal[16, 15, 0] < 255 and 0 < horizontal[16, 16, 0] < 255
    vertical = randomize.motion_blur(edge, 7, 90.0)  # along the edge: nothing to smear
    np.testing.assert_array_equal(vertical[8:24, 10:22], edge[8:24, 10:22])
    assert 0 < randomize.defocus_blur(edge, 2.0)[16, 16, 0] < 255


def test_jpeg_changes_a_textured_image_a_little():
    image, _ = _image()
    out = randomize.jpeg(image, 30)
    assert out.shape == image.shape and out.dtype == np.uint8
    difference = np.abs(out.astype(int) - image.astype(int))
    assert difference.max() > 0 and difference.mean() < 40


def test_background_replaces_only_what_is_not_a_trained_object():
    image, label = _image()
    background = np.zeros_like(image)
    out = randomize.paste_background(image, label, background)
    np.testing.assert_array_equal(out[label > 0], image[label > 0])
    assert (out[label == 0] == 0).all()
    with pytest.raises(ValueError, match="does not match"):
        randomize.paste_background(image, label, background[:10])


def test_photo_backgrounds_are_cropped_to_the_frame_and_procedural_ones_need_no_photo(tmp_path):
    import cv2

    photo = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.jpg"), photo)
    photos = randomize.load_photos(tmp_path)
    assert len(photos) == 1 and photos[0].shape == (90, 120, 3)
    out = randomize.background_image(np.random.default_rng(0), 48, 64, photos)
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    procedural = randomize.background_image(np.random.default_rng(0), 48, 64)
    assert procedural.shape == (48, 64, 3) and procedural.std() > 5
    with pytest.raises(FileNotFoundError):
        randomize.load_photos(tmp_path / "missing")


def test_wrong_image_type_is_one_clear_error():
    image, label = _image()
    with pytest.raises(ValueError, match="uint8"):
        randomize.camera_effects(image.astype(np.float32), label, np.random.default_rng(0))


@pytest.fixture(scope="module")
def randomized_scene(tmp_path_factory):
    # A separate process: the renderer picks its OpenGL back end when mujoco is first imported.
    out = tmp_path_factory.mktemp("randomized") / "scene"
    done = subprocess.run([sys.executable, "-m", "inerf_ros.cli", "make-posecnn-data", "--out", str(out),
                           "--train-views", "6", "--test-views", "2", "--scale", "0.125",
                           "--scene-layout-share", "0", "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_randomized_frames_move_the_objects_and_keep_the_camera_in_range(randomized_scene):
    from inerf_ros.scene.dataset import load_frames

    frames = list(load_frames(randomized_scene, "posecnn_train"))
    assert len(frames) == 6 and frames[0].rgb.shape == (60, 80, 3)
    layouts = []
    for frame in frames:
        placed = [frame.world_T_cam_optical @ o.cam_T_obj for o in frame.objects if o.px_count_all > 0]
        assert placed, "every frame shows objects"
        layouts.append({o.class_id: (frame.world_T_cam_optical @ o.cam_T_obj)[:3, 3].round(4).tobytes()
                        for o in frame.objects})
        for world_T_obj in placed:  # on the table top, no lower than it
            assert abs(world_T_obj[0, 3]) < 0.6 and abs(world_T_obj[1, 3]) < 0.5 and world_T_obj[2, 3] > 0
        distances = [np.linalg.norm(o.cam_T_obj[:3, 3]) for o in frame.objects if o.px_count_visib > 0]
        assert min(distances) < 1.5 + 0.5  # the camera aims 0.3-1.5 m from a point near an object
        assert frame.world_T_cam_optical[2, 3] > 0  # above the table
    assert len({tuple(sorted(layout.items())) for layout in layouts}) == len(layouts)
    info = json.loads((randomized_scene / "randomization.json").read_text())
    assert info["distance"] == [0.3, 1.5]


def test_randomized_test_split_is_another_stream(randomized_scene):
    from inerf_ros.scene.dataset import load_frames

    train = next(iter(load_frames(randomized_scene, "posecnn_train")))
    test = next(iter(load_frames(randomized_scene, "posecnn_test")))
    assert not np.allclose(train.world_T_cam_optical, test.world_T_cam_optical)
