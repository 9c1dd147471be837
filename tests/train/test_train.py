"""Training: losses against hand-computed values, prompt simulation, loss reduction, resume,
fine-tuning vit_b on a COCO-format dataset, and checkpoints the official model loads."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import promptseg
from promptseg.build import construct_sam
from promptseg.cli import main
from promptseg.configs import VIT_TINY
from promptseg.data.synthetic import SyntheticScenes, generate_scene
from promptseg.train import TrainConfig, Trainer
from promptseg.train.losses import dice_loss, focal_loss, promptable_loss
from promptseg.train.prompts import add_corrective_clicks, first_prompts, jittered_boxes

mask_utils = pytest.importorskip("pycocotools.mask")


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def test_focal_and_dice_equal_the_formulas_on_a_hand_example():
    logits = torch.tensor([[0.0, 2.0], [-1.0, 3.0]])
    target = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    # Focal, alpha 0.25, gamma 2, pixel by pixel: -a_t (1 - p_t)^2 log(p_t).
    expected_focal = 0.0
    for z, t in [(0.0, 0), (2.0, 1), (-1.0, 1), (3.0, 0)]:
        p = _sigmoid(z)
        p_t, a_t = (p, 0.25) if t == 1 else (1 - p, 0.75)
        expected_focal += -a_t * (1 - p_t) ** 2 * math.log(p_t)
    expected_focal /= 4
    # Dice with smoothing 1: 1 - (2 sum(p t) + 1) / (sum(p) + sum(t) + 1).
    probs = [_sigmoid(z) for z in (0.0, 2.0, -1.0, 3.0)]
    overlap = probs[1] + probs[2]
    expected_dice = 1 - (2 * overlap + 1) / (sum(probs) + 2 + 1)
    assert focal_loss(logits, target).item() == pytest.approx(expected_focal, rel=1e-6)
    assert dice_loss(logits, target).item() == pytest.approx(expected_dice, rel=1e-6)


def test_promptable_loss_backpropagates_only_the_best_candidate():
    target = torch.zeros(1, 8, 8, dtype=torch.bool)
    target[0, 2:6, 2:6] = True
    good = torch.where(target[0], 5.0, -5.0)
    logits = torch.stack([-good, good, torch.zeros(8, 8)])[None].requires_grad_()
    iou = torch.tensor([[0.1, 0.9, 0.5]], requires_grad=True)
    terms = promptable_loss(logits, iou, target)
    assert terms.selected.tolist() == [1]
    terms.total.backward()
    assert logits.grad[0, 0].abs().sum() == 0 and logits.grad[0, 2].abs().sum() == 0
    assert logits.grad[0, 1].abs().sum() > 0
    assert terms.true_iou[0].tolist() == pytest.approx([0.0, 1.0, 0.0])
    # Candidates restrict the choice (a box prompt uses only the single-mask output 0).
    restricted = promptable_loss(logits, iou, target, candidates=torch.tensor([[True, False, False]]))
    assert restricted.selected.tolist() == [0]


def test_prompt_simulation():
    generator = torch.Generator().manual_seed(0)
    targets = torch.zeros(64, 100, 100, dtype=torch.bool)
    targets[:, 20:70, 30:50] = True  # 20 wide, 50 tall
    boxes = jittered_boxes(targets, generator)
    tight = torch.tensor([30.0, 20.0, 49.0, 69.0])
    assert ((boxes - tight).abs() <= 20.0 + 1e-4).all()
    assert (boxes[:, 2:] >= boxes[:, :2]).all()
    assert (boxes - tight).abs().std() > 1.0

    state = first_prompts(targets, box_probability=0.5, generator=generator)
    assert 10 < int(state.is_box.sum()) < 54
    x, y = state.points[:, 0, 0].long(), state.points[:, 0, 1].long()
    assert targets[torch.arange(64), y, x].all()

    predictions = torch.zeros_like(targets)
    predictions[:, 60:90, 30:50] = True  # misses the top (false negatives), spills below (false positives)
    state = add_corrective_clicks(state, predictions, targets, generator)
    clicks, labels = state.points[:, 1].long(), state.labels[:, 1]
    errors = predictions ^ targets
    assert errors[torch.arange(64), clicks[:, 1], clicks[:, 0]].all()
    assert torch.equal(labels.bool(), targets[torch.arange(64), clicks[:, 1], clicks[:, 0]])
    assert labels.sum() > 0 and (labels == 0).sum() > 0

    coords, token_labels = state.tokens()
    assert coords.shape == (64, 3, 2)
    point_first = ~state.is_box
    assert (token_labels[point_first][:, -1] == -1).all()  # clicks, then "not a point"
    assert (token_labels[state.is_box][:, -2:] == torch.tensor([2, 3])).all()  # click, then box corners


def _config(tmp_path, **overrides) -> TrainConfig:
    settings = dict(
        model_type="vit_tiny", out_dir=tmp_path, epochs=1, batch_size=2, lr=1e-3, rounds=1, silent_rounds=1,
        objects_per_image=2, warmup_steps=1, checkpoint_every=1000, seed=3,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def test_thirty_steps_on_a_fixed_batch_halve_the_loss(tmp_path):
    torch.manual_seed(0)
    trainer = Trainer(_config(tmp_path, epochs=30, lr=2e-3, warmup_steps=3, silent_rounds=0), SyntheticScenes(2, seed=5))
    losses = []
    for _ in range(30):
        trainer.generator.manual_seed(11)  # the same objects and prompts every step
        losses.append(trainer.train_step([0, 1])["loss"])
        trainer._optimizer_update()
    assert losses[-1] <= 0.5 * losses[0], losses


def test_resume_continues_with_the_same_optimizer_state(tmp_path, monkeypatch):
    scenes = SyntheticScenes(4, seed=6)
    torch.manual_seed(0)
    straight = Trainer(_config(tmp_path / "straight", epochs=2), scenes)
    straight.fit()

    torch.manual_seed(0)
    interrupted = Trainer(_config(tmp_path / "resumed", epochs=2), scenes)
    calls = {"count": 0}
    original_step = Trainer.train_step

    def crash_in_second_epoch(self, indices):
        calls["count"] += 1
        if calls["count"] > 2:
            raise KeyboardInterrupt
        return original_step(self, indices)

    monkeypatch.setattr(Trainer, "train_step", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    monkeypatch.setattr(Trainer, "train_step", original_step)

    resumed = Trainer(_config(tmp_path / "resumed", epochs=2), scenes, resume=True)
    saved_state = torch.load(tmp_path / "resumed" / "train_state.pt", weights_only=True)["optimizer"]["state"]
    for index, state in resumed.optimizer.state_dict()["state"].items():
        assert torch.equal(state["exp_avg"], saved_state[index]["exp_avg"])
        assert torch.equal(state["exp_avg_sq"], saved_state[index]["exp_avg_sq"])
    assert (resumed.update, resumed.epoch, resumed.batch_in_epoch) == (2, 1, 0)
    resumed.fit()
    assert resumed.update == straight.update == 4
    # Same weights up to rounding: a parameter whose gradient is rounding noise (e.g. the key
    # bias of an attention, to which softmax is invariant) may take one Adam step (~lr) apart.
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert (a - b).abs().max() <= 1e-3, name
    outputs = []
    for trainer in (straight, resumed):
        predictor = promptseg.SamPredictor(trainer.model.eval())
        predictor.set_image(scenes[0].image)
        outputs.append(predictor.predict(point_coords=scenes[0].first_clicks()[:1], point_labels=np.array([1]))[2])
    assert np.abs(outputs[0] - outputs[1]).max() <= 1e-4 * np.abs(outputs[0]).max()


def test_resume_refuses_changed_settings(tmp_path):
    trainer = Trainer(_config(tmp_path), SyntheticScenes(2, seed=6))
    trainer.save()
    with pytest.raises(ValueError, match="settings differ"):
        Trainer(_config(tmp_path, batch_size=1), SyntheticScenes(2, seed=6), resume=True)
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        Trainer(_config(tmp_path / "empty"), SyntheticScenes(2, seed=6), resume=True)


def _write_coco(folder, scenes, polygons_for_first: bool) -> None:
    """A COCO instances file for ``scenes``: polygons for the first image's instances, RLE elsewhere."""
    import cv2

    (folder / "images").mkdir(parents=True)
    images, annotations = [], []
    for image_id, scene in enumerate(scenes, start=1):
        name = f"scene_{image_id}.png"
        Image.fromarray(scene.image).save(folder / "images" / name)
        height, width = scene.image.shape[:2]
        images.append({"id": image_id, "file_name": name, "height": height, "width": width})
        for mask in scene.masks:
            if polygons_for_first and image_id == 1:
                contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                segmentation = [c.flatten().astype(float).tolist() for c in contours if len(c) >= 3]
            else:
                rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
                segmentation = {"size": rle["size"], "counts": rle["counts"].decode()}
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "segmentation": segmentation,
                 "area": float(mask.sum()), "bbox": [0, 0, 1, 1], "iscrowd": 0}
            )
    (folder / "instances.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "object"}]})
    )


def test_fine_tune_vit_b_on_a_coco_folder_and_load_into_official(tmp_path):
    import segment_anything

    data = tmp_path / "coco"
    _write_coco(data, [generate_scene((42, i), size=320) for i in range(4)], polygons_for_first=True)
    out = tmp_path / "run"
    code = main(
        [
            "train", "--data", str(data), "--model", "vit_b", "--freeze-image-encoder", "--epochs", "1",
            "--batch-size", "2", "--lr", "1e-5", "--rounds", "1", "--silent-rounds", "0", "--objects-per-image", "2",
            "--val-images", "1", "--out", str(out),
        ]
    )
    assert code == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert {"val_point_miou", "val_box_miou", "loss"} <= set(log[-1])
    official = segment_anything.sam_model_registry["vit_b"](checkpoint=str(out / "model.pth"))
    ours = promptseg.build_sam("vit_b", checkpoint=out / "model.safetensors")
    for key, value in ours.state_dict().items():
        assert torch.equal(official.state_dict()[key], value), key


def test_train_cli_on_synthetic_scenes_writes_loadable_checkpoints(tmp_path):
    import segment_anything.modeling

    out = tmp_path / "run"
    code = main(
        [
            "train", "--synthetic", "4", "--model", "vit_tiny", "--epochs", "1", "--batch-size", "2", "--lr", "1e-4",
            "--rounds", "2", "--val-scenes", "2", "--bf16", "--grad-accum", "2", "--out", str(out),
        ]
    )
    assert code == 0
    model = promptseg.build_sam("vit_tiny", checkpoint=out / "model.pth")
    official = construct_sam(VIT_TINY, modeling=segment_anything.modeling)
    official.load_state_dict(torch.load(out / "model.pth", weights_only=True), strict=True)
    assert model.image_encoder.img_size == official.image_encoder.img_size == 256


def test_train_cli_rejects_bad_settings(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--synthetic", "4", "--model", "vit_tiny", "--epochs", "0", "--batch-size", "2", "--lr", "1e-4", "--out", str(tmp_path)])
    assert "epochs must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--data", str(tmp_path / "none"), "--model", "vit_tiny", "--epochs", "1", "--batch-size", "2", "--lr", "1e-4", "--out", str(tmp_path)])
    assert "not found" in capsys.readouterr().err
