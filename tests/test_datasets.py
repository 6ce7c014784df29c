import logging

import cv2
import numpy as np
import pytest

from edge_inspector.data import load_split
from edge_inspector.data.loader import iter_batches
from edge_inspector.errors import UserError


def write(path, value=128, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full(size, value, np.uint8))
    return path


def test_folder_layout_masks_beside_and_in_mirror(tmp_path):
    for i in range(6):
        write(tmp_path / "good" / f"g{i}.png")
    write(tmp_path / "dent" / "d0.png")
    write(tmp_path / "dent" / "d0_mask.png", 255)  # beside
    write(tmp_path / "dent" / "d1.jpg")
    write(tmp_path / "dent" / "d1.png", 255)  # beside a JPEG, Magnetic Tile style
    write(tmp_path / "dent" / "d2.png")
    write(tmp_path / "masks" / "dent" / "d2.png", 255)  # mirror folder
    write(tmp_path / "smear" / "s0.png")  # no mask at all
    split = load_split("folder", tmp_path)
    anomalous = {s.image.name: s for s in split.few_shot + split.test_anomalous}
    assert set(anomalous) == {"d0.png", "d1.jpg", "d2.png", "s0.png"}  # masks are not taken as images
    assert anomalous["d0.png"].mask.name == "d0_mask.png"
    assert anomalous["d1.jpg"].mask.name == "d1.png"
    assert anomalous["d2.png"].mask.parent.parent.name == "masks"
    assert anomalous["s0.png"].mask is None
    assert split.sizes()["train_normal"] == 4 and split.sizes()["test_normal"] == 2


def test_mvtec_layout(tmp_path):
    root = tmp_path / "bottle"
    for i in range(3):
        write(root / "train" / "good" / f"{i:03d}.png")
        write(root / "test" / "good" / f"{i:03d}.png")
        write(root / "test" / "broken" / f"{i:03d}.png")
        write(root / "ground_truth" / "broken" / f"{i:03d}_mask.png", 255)
    split = load_split("mvtec", tmp_path, "bottle")
    assert split.sizes() == {"train_normal": 3, "few_shot": 2, "test_normal": 3, "test_anomalous": 1}
    assert split.test_anomalous[0].mask.name == "002_mask.png"
    assert split.test_anomalous[0].defect_type == "broken"


def test_visa_layout_from_split_csv(tmp_path):
    rows = ["object,split,label,image,mask"]
    for i in range(4):
        write(tmp_path / "pcb1" / "Data" / "Images" / "Normal" / f"{i:03d}.JPG")
        rows.append(f"pcb1,{'train' if i < 3 else 'test'},normal,pcb1/Data/Images/Normal/{i:03d}.JPG,")
    for i in range(3):
        write(tmp_path / "pcb1" / "Data" / "Images" / "Anomaly" / f"{i:03d}.JPG")
        write(tmp_path / "pcb1" / "Data" / "Masks" / "Anomaly" / f"{i:03d}.png", 255)
        rows.append(f"pcb1,test,anomaly,pcb1/Data/Images/Anomaly/{i:03d}.JPG,pcb1/Data/Masks/Anomaly/{i:03d}.png")
    rows.append("candle,train,normal,candle/x.JPG,")
    (tmp_path / "split_csv").mkdir()
    (tmp_path / "split_csv" / "1cls.csv").write_text("\n".join(rows) + "\n")
    split = load_split("visa", tmp_path, "pcb1")
    assert split.sizes() == {"train_normal": 3, "few_shot": 2, "test_normal": 1, "test_anomalous": 1}
    assert split.test_anomalous[0].mask.is_file()
    with pytest.raises(UserError, match="no rows for object 'nope'"):
        load_split("visa", tmp_path, "nope")


def test_missing_dataset_folder_is_named(tmp_path):
    with pytest.raises(UserError, match=str(tmp_path / "absent")):
        load_split("folder", tmp_path / "absent")


def test_corrupt_image_is_named_and_skipped(tmp_path, caplog):
    good = [write(tmp_path / "good" / f"g{i}.png") for i in range(3)]
    bad = tmp_path / "good" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    split = load_split("folder", tmp_path)
    with caplog.at_level(logging.WARNING):
        batches = list(iter_batches(split.train_normal + split.test_normal, size=32, batch_size=2))
    seen = [s.image for b in batches for s in b.samples]
    assert sorted(seen) == sorted(good)
    assert str(bad) in caplog.text
    assert all(b.images.shape[1:] == (3, 32, 32) for b in batches)


def test_magnetic_tile_images_and_masks_read_at_model_size(magnetic_tile):
    split = load_split("magnetic-tile", magnetic_tile)
    batch = next(iter_batches(split.few_shot, size=256, batch_size=10))
    assert batch.images.shape == (10, 3, 256, 256)
    assert batch.masks.dtype == bool and all(m.any() for m in batch.masks)
    # grayscale replicated to three channels
    assert np.allclose(batch.images[:, 0], batch.images[:, 2])
