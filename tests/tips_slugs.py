"""The rule slugs fixed by TIPS.md (a public contract: never renamed)."""

STATIC_MODEL = """softmax-before-loss multilabel-needs-sigmoid wrong-loss-for-task output-size-mismatch
bias-before-batchnorm batchnorm-small-batch large-kernel deconv-checkerboard vanilla-rnn
deep-without-skip saturating-activations dropout-before-batchnorm capacity-vs-data
segmentation-early-downsample frozen-parameters params-not-in-optimizer unused-parameters
constant-init hyperparameter-range weight-decay-on-norm-and-bias rnn-hidden-init""".split()
STATIC_DATA = """labels-out-of-range inputs-not-normalized nonfinite-inputs class-imbalance
train-val-overlap val-augmented unshuffled-train tiny-validation target-leak duplicate-samples""".split()
PROTOCOL = """initial-loss-off cannot-overfit-batch cannot-overfit-few input-independent batch-mixing
train-eval-mismatch no-better-than-baseline lr-too-high lr-too-low data-loader-bound slow-step
multi-device-broken""".split()
IN_FLIGHT = """nonfinite-loss nonfinite-gradient exploding-gradients vanishing-gradients dead-relu
saturated-activations update-ratio-high update-ratio-low loss-diverging loss-oscillating
loss-plateau overfitting underfitting weights-not-updating missing-zero-grad
eval-mode-during-training train-mode-during-eval lr-schedule-suspicious loss-weights-unbalanced
ddp-out-of-sync""".split()

CATEGORY_OF = {
    **{s: "model" for s in STATIC_MODEL},
    **{s: "data" for s in STATIC_DATA},
    **{s: "protocol" for s in PROTOCOL},
    **{s: "in-flight" for s in IN_FLIGHT},
}
