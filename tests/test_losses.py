"""The mask losses: what each Dice weighs."""

import torch

from edge_inspector.model.kmdgan.losses import dice_loss, image_dice_loss, tversky_loss


def batch_with_a_missed_pit():
    """Two images: a large blob found exactly, and a 4-pixel pit missed entirely."""
    target = torch.zeros(2, 1, 32, 32)
    target[0, 0, 4:28, 4:28] = 1
    target[1, 0, 10:12, 10:12] = 1
    prob = target.clone()
    prob[1] = 0
    return prob, target


def test_a_missed_small_defect_counts_per_image_not_by_its_pixels():
    prob, target = batch_with_a_missed_pit()
    assert dice_loss(prob, target) < 0.01  # 4 of 580 pixels: the batch's Dice hardly sees the pit
    assert 0.35 < image_dice_loss(prob, target) < 0.45  # per image: one of two images all wrong (0.8 with eps 1)


def test_tversky_beta_weighs_missed_pixels_against_false_ones_and_half_is_the_dice():
    target = torch.zeros(1, 1, 32, 32)
    target[0, 0, 8:24, 8:24] = 1
    part = target.clone()
    part[0, 0, 8:24, 16:24] = 0  # half of the defect covered, nothing outside it
    over = target.clone()
    over[0, 0, 0:32, 4:28] = 1  # all of it covered, and as much again outside it
    assert torch.isclose(tversky_loss(part, target, 0.5, eps=0), dice_loss(part, target, eps=0))
    assert tversky_loss(part, target, 0.7) > tversky_loss(part, target, 0.5) > tversky_loss(part, target, 0.3)
    assert tversky_loss(over, target, 0.7) < tversky_loss(over, target, 0.5) < tversky_loss(over, target, 0.3)


def test_images_without_a_defect_are_left_out_and_a_normal_batch_gives_zero():
    prob, target = batch_with_a_missed_pit()
    normal = torch.zeros(1, 1, 32, 32)
    with_normal = image_dice_loss(torch.cat([prob, normal + 0.3]), torch.cat([target, normal]))
    assert torch.isclose(with_normal, image_dice_loss(prob, target))
    empty = image_dice_loss(torch.full((2, 1, 8, 8), 0.4, requires_grad=True), torch.zeros(2, 1, 8, 8))
    assert empty.item() == 0.0
    empty.backward()  # still a graph: the training step's sum of terms needs no special case


def test_the_per_image_dice_and_tversky_beta_come_from_the_config_and_change_the_training(product_set, tmp_path):
    from edge_inspector.config import KMDGANModelConfig
    from edge_inspector.data import load_split
    from edge_inspector.model.kmdgan.pool import prepare
    from edge_inspector.model.kmdgan.training import train_kmdgan

    split = load_split("folder", product_set)
    split.train_normal = split.train_normal[:12]

    def config(**kw):
        return KMDGANModelConfig(kind="kmdgan", input_size=64, bank_size=300, iterations=3, batch_size=6, **kw)

    prepared = prepare(split, config(), seed=0, progress=False)
    batch = train_kmdgan(split, config(), tmp_path / "batch.safetensors", seed=3, progress=False, prepared=prepared)
    image = train_kmdgan(split, config(dice="image"), tmp_path / "image.safetensors", seed=3, progress=False,
                         prepared=prepared)
    plain = train_kmdgan(split, config(tversky_beta=0.5), tmp_path / "dice.safetensors", seed=3,
                         progress=False, prepared=prepared)
    a, b, c = (m.model.state_dict() for m in (batch, image, plain))
    assert not all(torch.equal(a[k], b[k]) for k in a)  # the same batches, another loss
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert image.meta["training"]["dice"] == "image" and batch.meta["training"]["dice"] == "batch"
    # the default weighs a missed pixel more than a false one; 0.5, the plain soft Dice, trains otherwise
    assert batch.meta["training"]["tversky_beta"] == 0.8 and plain.meta["training"]["tversky_beta"] == 0.5
