"""Rules judged by the preflight protocol's experiments (src/trainwise/stages/).

Each stage measures and builds its Findings through `CATALOGUE[slug].finding(...)`; this module
holds their documentation, so `trainwise rules` and `trainwise explain` list them.
"""

from __future__ import annotations

from trainwise.rules.registry import Rule, register

SEED_003 = "seed 003 (how to start a deep learning project, a 15-step thread)"

register(
    Rule(
        slug="initial-loss-off",
        severity="warning",
        category="protocol",
        summary="The loss of the freshly initialized model is far above what a model that knows "
        "nothing should score (log C for C-class cross-entropy)",
        why=(
            "At initialization a classifier should spread its probability evenly, so "
            "cross-entropy starts near log C (2.30 for 10 classes), binary cross-entropy near "
            "log 2 and MSE near the target variance. A much higher start means the outputs are "
            "confidently wrong from step one: logits too large (an output layer initialized with "
            "a large std, a temperature, a scaling bug) or targets far from the outputs' range. "
            "The first hundreds of steps are then spent undoing the initialization (the "
            "'hockey stick' loss curve), and large initial gradients can destabilize training."
        ),
        fix=(
            "Keep the output layer at a small initialization (PyTorch's default, or scale its "
            "weights down), drop any scaling of the logits, and set the last bias to the log of "
            "the class prior (classification) or the target mean (regression); standardize "
            "regression targets."
        ),
        example=(
            "head = nn.Linear(128, 10)\n"
            "nn.init.normal_(head.weight, std=1.0)   # logits of std ~10: loss ~15 at init\n\n"
            "head = nn.Linear(128, 10)                # default init: loss ~log(10) = 2.30\n"
            "nn.init.zeros_(head.weight)              # or start from exactly uniform outputs\n"
            "head.bias.data = torch.log(class_prior)  # and the prior as the bias"
        ),
        source="TIPS.md protocol table; seed 004 (initialization); beyond the seeds: Karpathy, "
        "'A recipe for training neural networks' (verify loss @ init, init well).",
    )
)

_OVERFIT_FIX = (
    "Follow the cause the evidence points to: if another learning rate worked, use it; if some "
    "layers get no gradient, fix the graph (a .detach(), torch.no_grad(), a frozen or unused "
    "layer); if identical inputs carry different labels, fix the labels; otherwise give the "
    "model more capacity or check that the output layer matches the task."
)

register(
    Rule(
        slug="cannot-overfit-batch",
        severity="error",
        category="protocol",
        summary="With regularization off, the model cannot drive the loss of one batch near zero",
        why=(
            "A network with enough parameters can memorize a single batch: with dropout and "
            "weight decay off and a constant learning rate, its loss must fall near zero within "
            "a few hundred steps. When it cannot, a full training cannot work either, and the "
            "reason is one of a few: a learning rate far off, gradients that do not reach some "
            "layers, inputs and labels that do not match, or too little capacity. Finding this "
            "in a minute beats finding it after a day of training."
        ),
        fix=_OVERFIT_FIX,
        example=(
            "# copied from a fine-tuning recipe: far too low to train from scratch\n"
            "optimizer = lambda p: torch.optim.SGD(p, lr=1e-5)\n\n"
            "optimizer = lambda p: torch.optim.AdamW(p, lr=1e-3)"
        ),
        source=f"TIPS.md protocol table; {SEED_003} (5/n: overfit first, regularizers off); "
        "seed 004 (overfit a small subset).",
    )
)

register(
    Rule(
        slug="cannot-overfit-few",
        severity="error",
        category="protocol",
        summary="With regularization off, the model cannot memorize 5-10 training samples",
        why=(
            "Memorizing a handful of samples checks that the model can produce a different, "
            "correct output for each input. It is the cheapest proof that data loading, the "
            "model and the optimization fit together; if it fails, the loss curves of a long "
            "training will only show it much later."
        ),
        fix=_OVERFIT_FIX,
        example=(
            "out, _ = self.gru(x)          # (B, T, H)\n"
            "return self.head(out[:, 0])   # reads the first step: it has seen one token\n\n"
            "return self.head(out[:, -1])  # the last step has seen the whole sequence"
        ),
        source=f"TIPS.md protocol table; {SEED_003} (6/n: overfit 5-10 samples).",
    )
)

register(
    Rule(
        slug="input-independent",
        severity="error",
        category="protocol",
        summary="The model's output does not depend on its input: it ignores the data",
        why=(
            "A model trained on one batch should do far worse when its inputs are replaced by "
            "zeros, and it should give different samples different outputs. When neither holds, "
            "the input never reaches the output: a forward that reads the wrong tensor, a "
            "dataset that returns the same item, a mask that zeroes everything. The loss still "
            "falls a little (the model learns the label frequencies), which hides the bug."
        ),
        fix=(
            "Trace the input through forward: check that the tensor fed to the head comes from "
            "the input (print shapes and a few values), and that the dataset returns different "
            "inputs for different indices."
        ),
        example=(
            "h = self.encoder(self.embed(tokens) + self.pos)  # (B, T, D)\n"
            "return self.head(self.cls_token[:, 0])           # the parameter, not the output\n\n"
            "return self.head(h[:, 0])                        # the encoder output at CLS"
        ),
        source="TIPS.md protocol table; beyond the seeds: Karpathy, 'A recipe for training "
        "neural networks' (input-independent baseline).",
    )
)

register(
    Rule(
        slug="batch-mixing",
        severity="error",
        category="protocol",
        summary="In eval mode, the output for one sample depends on the inputs of other samples "
        "in the batch",
        why=(
            "Samples in a batch must be processed independently (BatchNorm in train mode aside). "
            "A reshape across the batch dimension (view instead of permute), a recurrent layer "
            "that takes the batch for the time axis, or a reduction over dim 0 silently mixes "
            "information between samples: training may even look fine, but the model learns "
            "from its neighbours and fails at batch size 1 or on shuffled data. trainwise "
            "measures it exactly: the gradient of sample i's output with respect to input j "
            "must be zero."
        ),
        fix=(
            "Use permute/transpose to reorder dimensions and view/reshape only within a sample "
            "(x.flatten(1)); give nn.GRU/nn.LSTM/nn.Transformer* batch_first=True for (B, T, F) "
            "inputs; reduce over the feature dimensions, not dim 0."
        ),
        example=(
            "self.gru = nn.GRU(8, 32)                  # expects (T, B, F)\n"
            "out, _ = self.gru(x)                      # x is (B, T, F): runs across the batch\n\n"
            "self.gru = nn.GRU(8, 32, batch_first=True)"
        ),
        source="TIPS.md protocol table; beyond the seeds: Karpathy, 'A recipe for training "
        "neural networks' (use backprop to chart dependencies).",
    )
)

register(
    Rule(
        slug="train-eval-mismatch",
        severity="error",
        category="protocol",
        summary="After a short training, the model's outputs in eval mode differ wildly from "
        "train mode on the same batch",
        why=(
            "Validation and inference run in eval mode: BatchNorm uses its running statistics "
            "and dropout is off. If those running statistics are stale (momentum 0, tiny or "
            "unrepresentative batches) or a custom dropout does not rescale, eval-mode outputs "
            "differ from what the model was trained to produce, and validation numbers say "
            "nothing about what training achieved."
        ),
        fix=(
            "Look at the named layer: for BatchNorm, keep momentum at 0.1 (PyTorch's convention "
            "is the weight of the new batch, the opposite of Keras), use batches of 16 or more "
            "or GroupNorm; for a custom dropout, scale the kept units by 1/(1-p) in training "
            "(or use nn.Dropout)."
        ),
        example=(
            "nn.BatchNorm2d(64, momentum=0.0)  # 'no momentum': running stats never move\n\n"
            "nn.BatchNorm2d(64)                # momentum=0.1"
        ),
        source="TIPS.md protocol table; seed 002 (BatchNorm at test time).",
    )
)

register(
    Rule(
        slug="no-better-than-baseline",
        severity="error",
        category="protocol",
        summary="A short training does not beat the trivial baselines (majority class, mean "
        "target) on validation data",
        why=(
            "A few hundred steps are enough for a working setup to beat predicting the most "
            "frequent class or the mean target: if it does not, nothing has been learned yet "
            "and a longer run would most likely waste the compute. A linear model on the "
            "flattened inputs is the next bar: when a short run is below it, that is worth "
            "knowing (reported as info), since a simple baseline often beats complex models."
        ),
        fix=(
            "Read the stage's curves: a flat training loss points at the optimization (LR, "
            "gradients), a falling training loss with flat validation at the data (train/val "
            "from different distributions, labels misaligned). Start from the simplest model "
            "that beats the baselines and grow it."
        ),
        example=(
            "# trains on shuffled labels: the loss falls, validation stays at chance\n"
            "train = TensorDataset(x_train, y_train[torch.randperm(len(y_train))])"
        ),
        source=f"TIPS.md protocol table; {SEED_003} (7/n: generalize for the first time; "
        "14/n: simple baselines).",
    )
)

register(
    Rule(
        slug="data-loader-bound",
        severity="warning",
        category="protocol",
        summary="Waiting for the next batch takes most of the training step",
        why=(
            "While the main process prepares data, the model is idle. When loading dominates "
            "the step, a faster model or a GPU changes nothing: the loader is the bottleneck. "
            "The usual causes are per-sample work in __getitem__ (decoding, recomputed "
            "statistics) done in the main process (num_workers=0)."
        ),
        fix=(
            "Move work out of __getitem__ (precompute, cache), and load in parallel: "
            "DataLoader(..., num_workers=N, persistent_workers=True, pin_memory=True on GPU). "
            "The finding gives the wait share measured with the suggested settings."
        ),
        example=(
            "def __getitem__(self, i):   # normalizes with statistics of the whole set, per item\n"
            "    return (self.x[i] - self.x.mean()) / self.x.std(), self.y[i]\n\n"
            "self.x = (x - x.mean()) / x.std()  # once, in __init__"
        ),
        source=f"TIPS.md protocol table; {SEED_003} (8/n: know where the bottleneck lies).",
    )
)

register(
    Rule(
        slug="slow-step",
        severity="warning",
        category="protocol",
        summary="One training step takes over a second",
        why=(
            "Deep learning is empirical: fast turnaround decides how many ideas get tried. A "
            "step over a second makes every debugging run slow; in the first phase of a project "
            "a smaller model or smaller inputs answer the same questions many times faster."
        ),
        fix=(
            "Start small (under ~1M parameters), downsample early (a strided stem), use smaller "
            "inputs or batches while debugging; the finding shows where the step's time goes "
            "(data, forward, backward, optimizer)."
        ),
        example=(
            "nn.Conv2d(3, 128, 3, padding=1)  # full resolution, 224x224, 128 channels\n\n"
            "nn.Conv2d(3, 32, 3, stride=2, padding=1)  # downsample in the stem"
        ),
        source=f"TIPS.md protocol table; {SEED_003} (2/n: start simple; 8/n: a single batch "
        "in under a second).",
    )
)
