"""Fine-tuning helpers: layer groups, discriminative LRs, freezing (parameters and BatchNorm
statistics, across model.train()), gradual unfreezing in a plain loop and in a Lightning Trainer.
References are plain torch: the parameters and buffers before and after real optimizer steps."""

from __future__ import annotations

import copy
import io
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trainwise as tw


def small_cnn(classes: int = 3) -> nn.Sequential:
    """conv-bn, conv-bn, conv-bn, head: the parameter counts make layer_groups(…, 3) cut
    [0, 1, 3, 4] | [6, 7] | [10]."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, classes),
    )  # fmt: skip


def batch(n: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g) * 3 + 1, torch.randint(0, 3, (n,), generator=g)


def train_steps(model: nn.Module, steps: int = 3, lr: float = 0.1) -> None:
    """SGD with momentum and weight decay over every parameter, model.train() before each step
    (as a loop calling it every epoch would)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=0.1)
    for i in range(steps):
        model.train()
        x, y = batch(seed=i)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict, module: nn.Module) -> set[str]:
    return {k for k, v in module.state_dict().items() if not torch.equal(v, before[k])}


# -- layer groups and discriminative LRs ---------------------------------------------------------


def test_layer_groups_split_in_order_with_the_head_last():
    model = small_cnn()
    groups = tw.layer_groups(model, 3)
    assert [g.names for g in groups] == [("0", "1", "3", "4"), ("6", "7"), ("11",)]
    flat = [p for g in groups for p in g.parameters()]
    assert [id(p) for p in flat] == [id(p) for p in model.parameters()]  # each once, in order
    assert [g.names for g in tw.layer_groups(model, 1)] == [("0", "1", "3", "4", "6", "7", "11")]


def test_layer_groups_look_inside_a_wrapper_and_refuse_too_many_groups():
    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))
            self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Linear(8, 2))

    groups = tw.layer_groups(Wrapped(), 3)
    assert groups[0].names[0] == "Wrapped (own parameters)"
    assert groups[-1].names == ("net.3",)
    with pytest.raises(tw.SetupError, match="has 4 layer\\(s\\).*cannot make 5 groups"):
        tw.layer_groups(Wrapped(), 5)


@pytest.mark.parametrize("ratio", [3, 10])
def test_discriminative_lrs_give_each_earlier_group_ratio_times_less(ratio):
    model = small_cnn()
    tw.freeze(model)  # frozen parameters are still handed to the optimizer
    opt = torch.optim.AdamW(tw.discriminative_lrs(model, lr=1e-2, ratio=ratio, groups=3))
    lr_of = {g["layer_group"]: g["lr"] for g in opt.param_groups}
    assert lr_of == pytest.approx({0: 1e-2 / ratio**2, 1: 1e-2 / ratio, 2: 1e-2})
    held = [p for g in opt.param_groups for p in g["params"]]
    assert len(held) == len({id(p) for p in held}) == len(list(model.parameters()))
    # weight decay split as tw.param_groups splits the whole model: none on biases and norms
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    tw.unfreeze(model)
    reference = tw.param_groups(model, weight_decay=0.01)
    assert decayed == {id(p) for p in reference[0]["params"]}
    assert all(g["weight_decay"] == 0.01 for g in opt.param_groups if id(g["params"][0]) in decayed)


def test_discriminative_lrs_refuse_bad_arguments():
    with pytest.raises(tw.SetupError, match="ratio=0.5"):
        tw.discriminative_lrs(small_cnn(), lr=1e-3, ratio=0.5)
    with pytest.raises(tw.SetupError, match="groups="):
        tw.discriminative_lrs(small_cnn(), lr=1e-3, groups=["body", "head"])


# -- freezing -----------------------------------------------------------------------------------


def test_freeze_stops_the_body_s_updates_and_its_batchnorm_statistics():
    model = small_cnn()
    before = snapshot(model)
    tw.freeze(model)  # every group but the head (2 groups: body | head)
    train_steps(model)
    assert changed(before, model) == {"11.weight", "11.bias"}
    assert not model[1].training  # held in eval mode although train_steps called model.train()


def test_without_freezing_the_same_steps_move_the_body_and_its_statistics():
    model = small_cnn()  # the negative of the test above: the steps do reach the body
    before = snapshot(model)
    train_steps(model)
    assert {"0.weight", "1.running_mean", "1.running_var", "1.num_batches_tracked"} <= changed(
        before, model
    )


def test_a_frozen_model_copied_or_pickled_stays_frozen():
    model = tw.freeze(small_cnn())
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    for twin in (copy.deepcopy(model), torch.load(buffer, weights_only=False)):
        before = snapshot(twin)
        train_steps(twin)
        assert changed(before, twin) == {"11.weight", "11.bias"}


def test_unfreeze_trains_everything_again():
    model = tw.freeze(small_cnn())
    tw.unfreeze(model)
    assert model[1].training  # back to the model's mode at once
    before = snapshot(model)
    train_steps(model)
    assert {"0.weight", "1.running_mean", "6.weight", "7.running_var"} <= changed(before, model)


def test_freeze_upto_a_module_name_and_a_group_index():
    model = tw.freeze(small_cnn(), upto="6")
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        "6.weight", "6.bias", "7.weight", "7.bias", "11.weight", "11.bias",
    ]  # fmt: skip
    tw.unfreeze(model, upto="3")  # 3 and after trainable, 0 and 1 still frozen
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == [
        "0.weight", "0.bias", "1.weight", "1.bias",
    ]  # fmt: skip
    model = tw.freeze(small_cnn(), upto=1, groups=3)
    assert [n for n, p in model.named_parameters() if not p.requires_grad][-1] == "4.bias"


def test_freeze_names_the_layers_when_upto_is_unknown():
    with pytest.raises(tw.SetupError, match=r"upto='nope'.*its layers: 0, 1, 2, 3"):
        tw.freeze(small_cnn(), upto="nope")
    with pytest.raises(tw.SetupError, match="has 3 layer groups"):
        tw.freeze(small_cnn(), upto=4, groups=3)


def test_freeze_batchnorm_fixes_statistics_and_affine_across_train_and_unfreeze():
    model = tw.freeze_batchnorm(small_cnn())
    tw.unfreeze(model)  # unfreezing the body leaves freeze_batchnorm's hold in place
    before = snapshot(model)
    train_steps(model)
    moved = changed(before, model)
    assert {"0.weight", "3.weight", "6.weight", "11.weight"} <= moved
    assert not any(k.startswith(("1.", "4.", "7.")) for k in moved)
    tw.unfreeze(model, batchnorm=True)
    before = snapshot(model)
    train_steps(model)
    assert {"1.weight", "1.running_mean", "7.running_var"} <= changed(before, model)


# -- gradual unfreezing ---------------------------------------------------------------------------


def trainable_by_group(groups) -> list[bool]:
    return [all(p.requires_grad for p in g.params) for g in groups]


def test_gradual_unfreezing_unfreezes_one_group_per_epoch_from_the_head():
    model = small_cnn()
    schedule = tw.GradualUnfreezing(model, groups=3, epochs_per_group=2)
    seen = []
    for epoch in range(7):
        schedule.on_epoch_start(epoch)
        before = snapshot(model)
        train_steps(model, steps=1)
        seen.append((trainable_by_group(schedule.groups), "0.weight" in changed(before, model)))
    head_only, two, everything = [False, False, True], [False, True, True], [True, True, True]
    assert [s[0] for s in seen] == [head_only] * 2 + [two] * 2 + [everything] * 3
    assert [s[1] for s in seen] == [False] * 4 + [True] * 3  # the first conv moves from epoch 4
    schedule.on_epoch_start(0)  # a resumed run at an earlier epoch: the state is set anew
    assert trainable_by_group(schedule.groups) == head_only


def test_gradual_unfreezing_as_a_lightning_callback():
    import lightning as L

    class Classifier(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = small_cnn()

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    class Recorder(L.Callback):
        """Per epoch: which groups trained (their first parameter moved)."""

        def __init__(self, groups):
            self.groups, self.moved = groups, []

        def on_train_epoch_start(self, trainer, pl_module):
            self.start = [g.params[0].detach().clone() for g in self.groups]

        def on_train_epoch_end(self, trainer, pl_module):
            now = [g.params[0] for g in self.groups]
            self.moved.append([not torch.equal(a, b) for a, b in zip(self.start, now, strict=True)])

    module = Classifier()
    schedule = tw.GradualUnfreezing(module.net, groups=3)
    recorder = Recorder(schedule.groups)
    x, y = batch(n=32)
    trainer = L.Trainer(
        max_epochs=4, callbacks=[schedule.lightning(), recorder], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        accelerator="cpu",
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=16))
    assert recorder.moved == [
        [False, False, True],
        [False, True, True],
        [True, True, True],
        [True, True, True],
    ]


def test_gradual_unfreezing_as_a_hugging_face_trainer_callback(tmp_path):
    from transformers import Trainer, TrainerCallback, TrainingArguments

    class Classifier(nn.Module):
        """The HF Trainer's contract: forward(**batch) returns a dict holding "loss"."""

        def __init__(self):
            super().__init__()
            self.net = small_cnn()

        def forward(self, x, labels):
            return {"loss": F.cross_entropy(self.net(x), labels)}

    class Recorder(TrainerCallback):
        """Per epoch: which groups trained (their first parameter moved). The Trainer builds
        its optimizer from the parameters that require gradients when training starts: the
        schedule must not have frozen anything by then, or the body would never train."""

        def __init__(self, groups):
            self.groups, self.moved = groups, []

        def on_epoch_begin(self, args, state, control, **kwargs):
            self.start = [g.params[0].detach().clone() for g in self.groups]

        def on_epoch_end(self, args, state, control, **kwargs):
            now = [g.params[0] for g in self.groups]
            self.moved.append([not torch.equal(a, b) for a, b in zip(self.start, now, strict=True)])

    class Pairs(torch.utils.data.Dataset):
        def __init__(self):
            self.x, self.y = batch(n=32)

        def __len__(self):
            return 32

        def __getitem__(self, i):
            return {"x": self.x[i], "labels": self.y[i]}

    model = Classifier()
    schedule = tw.GradualUnfreezing(model.net, groups=3)
    recorder = Recorder(schedule.groups)
    args = TrainingArguments(
        output_dir=str(tmp_path), num_train_epochs=3, per_device_train_batch_size=16,
        save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=Pairs(),
                      callbacks=[schedule.transformers(), recorder])  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train()
    assert recorder.moved == [[False, False, True], [False, True, True], [True, True, True]]


# -- a deliberate freeze is not the frozen-parameters mistake ------------------------------------


def _frozen_findings(findings) -> list:
    return [f for f in findings if f.rule == "frozen-parameters"]


def test_the_static_rule_leaves_the_helpers_freeze_alone_and_still_reports_a_manual_one():
    from builders import static

    x, y = batch(n=64)
    model = tw.freeze(small_cnn())  # the default optimizer holds every parameter, frozen ones too
    assert _frozen_findings(static(tw.Setup(model=model, train=TensorDataset(x, y),
                                            loss=nn.CrossEntropyLoss())).findings) == []  # fmt: skip
    manual = small_cnn()
    for p in manual[0].parameters():
        p.requires_grad_(False)
    found = _frozen_findings(static(tw.Setup(model=manual, train=TensorDataset(x, y),
                                             loss=nn.CrossEntropyLoss())).findings)  # fmt: skip
    assert [f.where for f in found] == ["0.weight"]


def test_the_watch_leaves_gradual_unfreezing_alone_and_still_reports_a_manual_freeze():
    def watched_run(model, schedule=None) -> list:
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        watch = tw.watch(model, opt, verbose=False)
        for epoch in range(3):
            if schedule is not None:
                schedule.on_epoch_start(epoch)
            for i in range(4):
                model.train()
                x, y = batch(seed=10 * epoch + i)
                opt.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                watch.log(loss=loss)
        watch.close()
        return _frozen_findings(watch.findings)

    model = small_cnn()
    assert watched_run(model, tw.GradualUnfreezing(model, groups=3)) == []
    manual = small_cnn()
    for p in manual[0].parameters():
        p.requires_grad_(False)
    assert [f.where for f in watched_run(manual)] == ["0.weight"]
