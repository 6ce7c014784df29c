import cv2
import numpy as np
import pytest

from edge_inspector.data.imageio import from_tensor_layout, shrink, to_tensor_layout


@pytest.mark.parametrize("shape", [(1000, 1000), (1000, 1000, 3), (768, 1024), (2048, 1536)])
def test_shrink_is_within_a_gray_level_of_area_resize(shape):
    rng = np.random.default_rng(0)
    # texture with structure at several scales, not only white noise
    image = cv2.GaussianBlur((rng.random(shape) * 255).astype(np.uint8), (0, 0), 1.5)
    image = cv2.addWeighted(image, 0.5, (rng.random(shape) * 255).astype(np.uint8), 0.5, 0)
    ours, ref = shrink(image, 256).astype(int), cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA).astype(int)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).mean() < 0.5 and np.abs(ours - ref).max() <= 3


def test_shrink_at_an_integer_factor_is_exactly_area_resize():
    image = (np.random.default_rng(1).random((1024, 512)) * 255).astype(np.uint8)
    assert np.array_equal(shrink(image, 128), cv2.resize(image, (128, 128), interpolation=cv2.INTER_AREA))


def test_tensor_layout_round_trip_and_channel_order():
    rng = np.random.default_rng(2)
    images = [(rng.random((8, 8, 3)) * 255).astype(np.uint8) for _ in range(2)]
    batch = to_tensor_layout(images)
    assert batch.shape == (2, 3, 8, 8) and batch.dtype == np.float32 and batch.flags.c_contiguous
    assert np.allclose(batch[1, 0], images[1][:, :, 2] / 255.0)  # RGB from BGR
    assert np.array_equal(from_tensor_layout(batch), np.stack(images))
