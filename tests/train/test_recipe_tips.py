"""The helper tips as Recipe fields in tw.fit (train/recipe_tips.py): each changes what it
should, checked against the helpers and plain torch on tiny models and a few steps; a tip that
does not apply is noted and left off; bad input is refused naming what was expected."""

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

import trainwise as tw
from train.fitkit import blob_setup, fast, run_json, train_rows
from trainwise.errors import SetupError
from trainwise.train.recipe_tips import tta_transforms

# -- a tiny image task: 1x8x8 images whose class is where the bright half is -----------------------


def _images(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 1, 8, 8, generator=g) * 0.5
    x[y == 0, :, :4] += 1.0  # top half
    x[y == 1, :, 4:] += 1.0  # bottom half
    return x, y


def _cnn() -> nn.Module:
    """Conv-BN-ReLU, Conv-ReLU, global pooling, Linear: takes any input size; 3 layer groups
    (conv1 + bn; conv2; the head)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3),
    )  # fmt: skip


def _image_setup(model=None, **kw) -> tw.Setup:
    (x, y), (vx, vy) = _images(96, 0), _images(48, 1)
    return tw.Setup(model=model if model is not None else _cnn(), train=TensorDataset(x, y),
                    val=TensorDataset(vx, vy), loss=nn.CrossEntropyLoss(), batch_size=32, **kw)  # fmt: skip


PER_EPOCH = 3  # 96 / 32
CONSTANT = {"schedule": "constant", "output_bias": False, "clip": None, "label_smoothing": 0.0}


def _fit(setup, recipe, tmp_path=None, **kw):
    return tw.fit(setup, recipe=recipe, record=tmp_path is not None, runs_dir=tmp_path,
                  verbose=False, **kw)  # fmt: skip


def _same(a: nn.Module, b: nn.Module, prefix: str) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa if k.startswith(prefix))


# -- finetune, freeze_batchnorm ---------------------------------------------------------------------


def test_finetune_trains_the_head_alone_first_then_one_more_group_at_a_third_of_the_lr(tmp_path):
    model = _cnn()
    result = _fit(_image_setup(model), fast(finetune=True, **CONSTANT), tmp_path, epochs=2)
    trained = result.model
    assert _same(trained, model, "0.") and _same(trained, model, "1.")  # group 0: frozen twice
    assert not _same(trained, model, "3.")  # group 1: trained in epoch 2
    assert not _same(trained, model, "7.")  # the head
    state = torch.load(result.record_path / "checkpoints" / "last.pt", weights_only=True)
    lrs = sorted({g["lr"] for g in state["optimizer"]["param_groups"]})
    assert lrs == pytest.approx([1e-2 / 9, 1e-2 / 3, 1e-2])  # head lr, / 3 per group back
    assert any(n.startswith("finetune: 3 layer groups") for n in result.notes)
    assert run_json(result.record_path)["config"]["recipe"]["finetune_ratio"] == 3.0


def test_freeze_batchnorm_keeps_its_statistics_and_affine_while_the_rest_trains():
    model = _cnn()
    trained = _fit(_image_setup(model), fast(freeze_batchnorm=True, **CONSTANT), steps=4).model
    assert _same(trained, model, "1.")  # weight, bias, running_mean/var, num_batches_tracked
    assert not _same(trained, model, "0.") and not _same(trained, model, "7.")


def test_finetune_and_freeze_batchnorm_are_noted_and_left_off_where_they_cannot_apply():
    result = _fit(blob_setup(), fast(finetune=True, freeze_batchnorm=True), steps=2)
    assert result.recipe.finetune is False and result.recipe.freeze_batchnorm is False
    assert any(n.startswith("finetune not applied: finetune needs 3 layer groups") for n in result.notes)
    assert "freeze_batchnorm not applied: the model has no BatchNorm layer" in result.notes


# -- tta ------------------------------------------------------------------------------------------


def test_tta_reports_the_metrics_of_the_averaged_predictions_and_the_plain_ones_in_a_note():
    setup = _image_setup()
    result = _fit(setup, fast(tta="flip+shift", **CONSTANT), steps=3)
    transforms, _ = tta_transforms("flip+shift", "image")
    probs, y = tw.tta(result.model, setup.val_loader(), transforms)  # the helper, by hand
    accuracy = float((probs.argmax(1) == y).float().mean())
    nll = float(F.nll_loss(probs.log(), y))
    assert result.metrics["val_accuracy"] == pytest.approx(accuracy)
    assert result.metrics["val_loss"] == pytest.approx(nll, rel=1e-5)
    note = next(n for n in result.notes if n.startswith("tta over the identity and horizontal flip"))
    assert "(without -> with)" in note


def test_tta_auto_has_no_transforms_for_tables_and_says_so():
    result = _fit(blob_setup(), fast(tta="auto"), steps=2)
    assert result.recipe.tta is None
    assert any(n.startswith("tta not applied: tta has no transforms for table inputs") for n in result.notes)
    none, reason = tta_transforms("auto", "signal", flat=True)  # a 1-D vector: a row, maybe
    assert none == [] and reason.startswith("tta auto does not shift 1-D inputs")
    shifts, _ = tta_transforms("shift", "signal", flat=True)  # asked for by name: shifted
    x = torch.arange(4.0).reshape(1, 4)
    assert [t(x).tolist() for t in shifts] == [[[3.0, 0, 1, 2]], [[1.0, 2, 3, 0]]]
    assert len(tta_transforms("auto", "image")[0]) == 4  # one pixel, four directions


# -- distill_from ---------------------------------------------------------------------------------


def _constant_teacher(path):
    """A state dict for blob_setup's mlp that predicts class 0 for every input."""
    teacher = blob_setup().build_model()
    with torch.no_grad():
        for p in teacher.parameters():
            p.zero_()
        teacher[2].bias[0] = 10.0
    torch.save(teacher.state_dict(), path)
    return str(path)


def test_a_student_distilled_with_alpha_1_follows_its_teacher_not_the_labels(tmp_path):
    teacher = _constant_teacher(tmp_path / "teacher.pt")
    recipe = fast(lr=3e-2, distill_from=teacher, distill_alpha=1.0, distill_temperature=1.0)
    taught = _fit(blob_setup(), recipe, tmp_path, epochs=2)
    plain = _fit(blob_setup(), fast(lr=3e-2), epochs=2)
    x, _ = blob_setup().val_dataset.tensors
    with torch.no_grad():
        assert (taught.model(x).argmax(1) == 0).all()  # the teacher's answer everywhere
    assert plain.metrics["val_accuracy"] > 0.9 > 0.3 > taught.metrics["val_accuracy"]
    row = train_rows(taught.record_path)[-1]  # the watch gets the plain CE and the mix
    assert "train/distill_loss" in row and row["train/loss"] != row["train/distill_loss"]
    assert any(n.startswith(f"distilled from {teacher}") for n in taught.notes)


def test_a_teacher_run_is_built_from_the_setup_file_its_record_names(tmp_path):
    setup_py = tmp_path / "teacher_setup.py"
    setup_py.write_text(
        "import torch\nfrom torch import nn\nimport trainwise as tw\nfrom train.fitkit import blob_setup\n"
        "def setup():\n    return blob_setup(model=lambda: nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4)))\n"
    )  # a wider teacher than the student's mlp (hidden 32)
    from trainwise.loader import load_setup

    teacher = _fit(load_setup(str(setup_py)), fast(), tmp_path, steps=4,
                   record_info={"setup": f"{setup_py}:setup"})  # as `trainwise fit` records it
    student = _fit(blob_setup(), fast(distill_from=str(teacher.record_path)), steps=2)
    assert any(f"({setup_py}:setup)" in n for n in student.notes)


def test_distill_from_a_missing_run_or_a_mismatched_checkpoint_is_refused(tmp_path):
    with pytest.raises(SetupError, match=r"distill_from .*nowhere: no checkpoint at"):
        _fit(blob_setup(), fast(distill_from=str(tmp_path / "nowhere")), steps=1)
    torch.save(nn.Linear(3, 3).state_dict(), tmp_path / "other.pt")
    with pytest.raises(SetupError, match=r"does not load into the student's own model"):
        _fit(blob_setup(), fast(distill_from=str(tmp_path / "other.pt")), steps=1)


# -- progressive_resize ---------------------------------------------------------------------------


def test_progressive_resize_trains_small_first_and_validates_at_full_size():
    model, seen = _cnn(), []
    model.register_forward_pre_hook(lambda m, args: seen.append((m, m.training, args[0].shape[-1])))
    result = _fit(_image_setup(model), fast(progressive_resize=(0.5, 1.0), **CONSTANT), epochs=2)
    seen = [(training, size) for m, training, size in seen if m is result.model]  # not the probes
    assert [size for training, size in seen if training] == [4] * PER_EPOCH + [8] * PER_EPOCH
    assert {size for training, size in seen if not training} == {8}


def test_progressive_resize_is_left_off_for_a_model_of_one_input_size_and_for_tables():
    fixed = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))  # 1x8x8 only
    result = _fit(_image_setup(fixed), fast(progressive_resize=(0.5, 1.0)), steps=2)
    assert any("the model fails on inputs of size (4, 4)" in n for n in result.notes)
    result = _fit(blob_setup(), fast(progressive_resize=(0.5, 1.0)), steps=2)
    assert any("progressive resizing is for image or signal batches" in n for n in result.notes)


# -- y_range --------------------------------------------------------------------------------------


def _regression_setup(model) -> tw.Setup:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(160, 4, generator=g)
    y = (2 + torch.tanh(x[:, :1]))  # targets in (1, 3)
    return tw.Setup(model=model, train=TensorDataset(x[:128], y[:128]),
                    val=TensorDataset(x[128:], y[128:]), loss=nn.MSELoss(), batch_size=32)  # fmt: skip


def test_y_range_bounds_the_outputs_and_the_checkpoint_loads_into_the_users_model(tmp_path):
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    result = _fit(_regression_setup(model), fast(y_range="auto"), tmp_path, steps=4)
    lo, hi = result.recipe.y_range  # "auto" resolved: the targets' range, 10% wider
    assert run_json(result.record_path)["config"]["recipe"]["y_range"] == [lo, hi]
    assert lo < 1.3 and 2.7 < hi < 3.5
    far = torch.randn(32, 4) * 1e3
    with torch.no_grad():
        out = result.model(far)
        assert ((out >= lo) & (out <= hi)).all()  # float32's sigmoid reaches 0 and 1
        users = copy.deepcopy(model)
        users.load_state_dict(torch.load(result.checkpoint, weights_only=True))  # its own keys
        assert not ((users(far) >= lo) & (users(far) <= hi)).all()  # unbounded by itself
        best = nn.Sequential(users, tw.YRange(lo, hi))(far)
        assert ((best >= lo) & (best <= hi)).all()
    assert any("nn.Sequential(model, tw.YRange(" in n for n in result.notes)


def test_y_range_puts_the_output_bias_at_the_target_means_place_in_the_range():
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    setup = _regression_setup(model)
    result = _fit(setup, fast(y_range=(0.0, 4.0), lr=1e-9, clip=None), steps=1)  # ~unchanged
    mean = float(setup.train_dataset.tensors[1].mean())
    assert float(result.model[2].bias.detach()) == pytest.approx(float(torch.logit(torch.tensor(mean / 4))), abs=1e-3)


# -- final_fit -----------------------------------------------------------------------------------


def test_final_fit_trains_again_on_train_and_val_and_keeps_the_first_runs_validation(tmp_path):
    setup = blob_setup()
    result = _fit(setup, fast(final_fit=True), tmp_path, epochs=2)
    first = _fit(setup, fast(), epochs=2)
    assert result.metrics == pytest.approx(first.metrics)  # the first run's numbers
    assert result.steps == 2 * (256 + 64) // 32  # the final run: train + val per epoch
    assert result.checkpoint.name == "final.pt" and result.record_path.name.endswith("-final")
    state = torch.load(result.checkpoint, weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in result.model.state_dict().items())
    note = next(n for n in result.notes if n.startswith("final fit: trained again"))
    assert "320 samples" in note and "no held-out measure" in note


# -- ablate ---------------------------------------------------------------------------------------


def test_the_helper_tips_that_do_not_apply_are_skipped_with_the_reason_and_nothing_trained():
    tips = ["finetune", "freeze-batchnorm", "tta", "distill", "progressive-resize", "y-range",
            "final-fit"]  # fmt: skip
    result = tw.ablate(blob_setup(), tips, steps=2, seeds=1, recipe=fast(), record=False)
    reasons = {t.tip: t.skipped for t in result.tips}
    assert reasons["tta"].startswith("tta has no transforms for table inputs")
    assert reasons["distill"].startswith("no teacher")
    assert reasons["y-range"].startswith("y_range bounds a regression's outputs")
    assert reasons["final-fit"].startswith("a final fit trains on the validation data")
    assert all(reasons.values()) and result.records == []


def test_ablate_measures_tta_against_the_same_training_without_it():
    result = tw.ablate(_image_setup(), ["tta"], steps=3, seeds=1, recipe=fast(**CONSTANT),
                       record=False)  # fmt: skip
    (effect,) = result.tips
    plain = _fit(_image_setup(), fast(**CONSTANT), steps=3, seed=0)
    assert effect.without == pytest.approx(plain.metrics["val_accuracy"])
    assert effect.with_ is not None and not effect.skipped


# -- resume ---------------------------------------------------------------------------------------


class _Interrupted(Exception):
    pass


def _stop_at(step: int):
    def check(status) -> None:
        if status.step == step:  # last.pt holds this step already
            raise _Interrupted

    return check


def test_a_run_with_the_per_epoch_tips_resumes_mid_epoch_to_the_same_weights(tmp_path):
    # Step 4: batch 1 of epoch 2, where the unfreezing schedule and the size have changed.
    recipe = fast(finetune=True, progressive_resize=(0.5, 0.75, 1.0), **CONSTANT)
    with pytest.raises(_Interrupted):
        _fit(_image_setup(), recipe, tmp_path / "killed", epochs=3, on_progress=_stop_at(4))
    (folder,) = (tmp_path / "killed").iterdir()
    resumed = tw.fit(_image_setup(), resume=folder, record=False, verbose=False)
    whole = _fit(_image_setup(), recipe, epochs=3)
    assert resumed.steps == whole.steps == 3 * PER_EPOCH
    for name, value in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name
