"""Static rules about the model's architecture and initialization, read from the traced graph.

They work from the module calls and functional calls recorded on one real batch
(trainwise.tracing), so a BatchNorm inside a Sequential inside a custom block, or a conv reaching
a BatchNorm on a residual branch, is judged by what feeds what, not by class names alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn

from trainwise.context import StaticContext
from trainwise.rules.registry import Hit, rule
from trainwise.tracing import FunctionCall, ModuleCall

WEIGHT_LAYERS = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd, nn.RNNBase)
BATCH_NORMS = (nn.modules.batchnorm._BatchNorm,)
NORMS = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm*, SyncBatchNorm
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)
SATURATING_MODULES = (nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Softsign, nn.Hardsigmoid)
SATURATING_FUNCTIONS = {"sigmoid", "tanh", "hardtanh", "softsign", "hardsigmoid"}
SKIP_FUNCTIONS = {"add", "__add__", "__radd__", "__iadd__", "add_", "cat", "concat", "concatenate"}

# Per-device batch size below which BatchNorm's batch statistics get noisy: Wu & He, Group
# Normalization (2018), fig. 1: ImageNet error rises steeply below 16 images per GPU.
BN_MIN_BATCH = 16
# Kernel size from which one conv costs more than the 3x3 stack with the same receptive field
# (Simonyan & Zisserman, VGG (2014), sec. 2.3: a 5x5 = two 3x3, 7x7 = three 3x3).
LARGE_KERNEL = 5
# Plain chains trainable from a random init: VGG's 11-layer net A was, its deeper nets were
# initialized from A (Simonyan & Zisserman 2014, sec. 3.1); He et al. (ResNet, 2016, fig. 1)
# show plain nets degrading with depth. From 12 weight layers without normalization or skips,
# the chain counts as deep.
DEEP_CHAIN = 12
# Glorot & Bengio (2010) saw sigmoid nets of 4-5 hidden layers saturate their top hidden layer;
# from 3 hidden saturating activations the stack counts as deep.
SATURATING_STACK = 3
# Parameters per training sample. Seed 003 (2/n) and seed 004 advise the same order of
# magnitude; over-parameterized nets generalize well far past that, so only three orders of
# magnitude apart (and a model over the seed's ~1M-parameter starting point) are flagged.
OVERPARAMETERIZED = 1000
START_UNDER_PARAMS = 1_000_000
UNDERPARAMETERIZED = 1000  # samples per parameter
# A tanh RNN keeps its state stable when W_hh's singular values are near 1 (orthogonal or
# identity init; Saxe et al. 2014, Le et al. 2015). PyTorch's uniform default spreads them
# over ~0..1.15.
SINGULAR_VALUE_BAND = (0.5, 1.5)


def _unique_calls(ctx: StaticContext, types: tuple[type, ...]) -> list[ModuleCall]:
    """The first call of each module of these types, in the order the forward reached them."""
    seen, calls = set(), []
    for call in ctx.trace.leaf_calls:
        if isinstance(call.module, types) and id(call.module) not in seen:
            seen.add(id(call.module))
            calls.append(call)
    return calls


def _label(call: ModuleCall | FunctionCall) -> str:
    if isinstance(call, ModuleCall):
        return f"{call.name} ({type(call.module).__name__})"
    return f"{call.name} in {call.inside or 'forward'}"


def has_skip_connection(ctx: StaticContext) -> bool:
    """A residual add or a concatenation of two activations somewhere in the forward."""
    for fn in ctx.trace.functions:
        if fn.name not in SKIP_FUNCTIONS or fn.parameter_input or len(fn.input_ids) < 2:
            continue
        if fn.name.startswith("cat") or fn.name.startswith("concat"):
            return True
        if len(set(fn.input_shapes)) == 1 and len(fn.input_shapes[0]) >= 2:
            return True  # x + f(x): two activations of one shape (not a bias or a scalar)
    return False


def _uses_normalization(ctx: StaticContext) -> bool:
    return any(isinstance(m, NORMS) for m in ctx.model.modules())


@rule(
    "bias-before-batchnorm",
    severity="info",
    category="model",
    summary="A conv/linear layer with a bias feeds straight into BatchNorm, which cancels it",
    why=(
        "BatchNorm subtracts the per-channel batch mean, so a constant added per channel by the "
        "layer before it disappears; BatchNorm's own shift (beta) plays that role. The bias is "
        "dead weight: memory, optimizer state and weight decay for parameters that can never "
        "change the output."
    ),
    fix="Create the layer with `bias=False` when BatchNorm follows it.",
    example=(
        "nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128)\n\n"
        "nn.Conv2d(64, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128)"
    ),
    source="A. Marcolini, Deep Learning Best Practices (fast.ai course notes) (fast.ai: no bias before BatchNorm). Ioffe & "
    "Szegedy, Batch Normalization (2015), sec. 3.2.",
)
def bias_before_batchnorm(ctx: StaticContext) -> Iterator[Hit]:
    pairs = []
    for bn in _unique_calls(ctx, BATCH_NORMS):
        src = ctx.trace.producer(bn)
        if (
            isinstance(src, ModuleCall)
            and isinstance(src.module, (nn.Linear, nn.modules.conv._ConvNd))
            and src.module.bias is not None
        ):
            pairs.append((src, bn))
    if not pairs:
        return
    saved = sum(src.module.bias.numel() for src, _ in pairs)
    layers = [src.name for src, _ in pairs]
    shown = ", ".join(f"{s.name} -> {b.name}" for s, b in pairs[:5])
    more = f" and {len(pairs) - 5} more" if len(pairs) > 5 else ""
    yield Hit(
        f"{len(pairs)} layer(s) with a bias feed straight into BatchNorm ({shown}{more}); "
        f"BatchNorm subtracts the mean, so their {saved:,} bias parameters do nothing",
        where=layers[0],
        evidence={"layers": layers, "parameters_saved": saved},
        fix=f"Pass `bias=False` to {', '.join(layers[:5])}{more}: saves {saved:,} parameters "
        "with identical outputs.",
    )


@rule(
    "batchnorm-small-batch",
    severity="warning",
    category="model",
    summary=f"BatchNorm with a per-device batch under {BN_MIN_BATCH}",
    why=(
        "BatchNorm normalizes with the mean and variance of the current batch. With a handful "
        "of samples these estimates are noisy, training sees a different normalization every "
        "step, and the running statistics used at evaluation disagree with what training saw; "
        "accuracy drops steeply below about 16 samples per device (Wu & He 2018)."
    ),
    fix=(
        "Replace BatchNorm with GroupNorm (or LayerNorm), whose statistics do not depend on the "
        "batch: `model = tw.convert_batchnorm(model, to='group')`; or raise the batch size."
    ),
    example=(
        "loader = DataLoader(ds, batch_size=4)          # e.g. large images\n"
        "model = resnet_with_batchnorm()\n\n"
        "model = tw.convert_batchnorm(model, to='group', groups=32)"
    ),
    source="Deep Learning Projects - Tips & Tricks (a thesis write-up, 2020) (use GroupNorm when batches are small), Deep Learning Tips & Tricks (a tips list) "
    "(BN needs large batches). Wu & He, Group Normalization (2018).",
)
def batchnorm_small_batch(ctx: StaticContext) -> Iterator[Hit]:
    bns = [n for n, m in ctx.model.named_modules() if isinstance(m, BATCH_NORMS)]
    batch = ctx.setup.effective_batch_size
    if not bns or batch >= BN_MIN_BATCH:
        return
    yield Hit(
        f"{len(bns)} BatchNorm layer(s) (first: {bns[0]}) train on batches of {batch} per "
        f"device; below {BN_MIN_BATCH} the batch statistics are too noisy",
        where=bns[0],
        evidence={"batchnorm_layers": len(bns), "batch_size": batch, "minimum": BN_MIN_BATCH},
        fix="Convert to GroupNorm: `model = tw.convert_batchnorm(model, to='group')` (in your "
        f"model factory), or use a batch of at least {BN_MIN_BATCH}.",
    )


@rule(
    "large-kernel",
    severity="info",
    category="model",
    summary=f"A convolution with a kernel of {LARGE_KERNEL} or more past the stem",
    why=(
        "A stack of 3x3 convolutions covers the same receptive field as one large kernel with "
        "fewer parameters and more non-linearities in between (two 3x3 = one 5x5, three = one "
        "7x7). Large kernels make sense in the stem, on the raw input, and as cheap depthwise "
        "convolutions; elsewhere they cost parameters and compute."
    ),
    fix="Replace the large-kernel conv by a stack of 3x3 convs (with activations between them).",
    example=(
        "nn.Conv2d(64, 64, 7, padding=3)\n\n"
        "nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),\n"
        "              nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),\n"
        "              nn.Conv2d(64, 64, 3, padding=1))"
    ),
    source="Deep Learning Tips & Tricks (a tips list) (stacked small kernels), Deep Learning Practical Tricks (a tips list). Simonyan & "
    "Zisserman, VGG (2014), sec. 2.3.",
)
def large_kernel(ctx: StaticContext) -> Iterator[Hit]:
    convs = _unique_calls(ctx, (nn.Conv1d, nn.Conv2d, nn.Conv3d))
    for call in convs[1:]:  # the first conv is the stem: a large kernel on raw input is fine
        conv = call.module
        k = max(conv.kernel_size)
        depthwise = conv.groups > 1 and conv.groups == conv.in_channels
        if k < LARGE_KERNEL or depthwise:
            continue
        d = len(conv.kernel_size)
        cin, cout = conv.in_channels // conv.groups, conv.out_channels
        stack = math.ceil((k - 1) / 2)  # 3x3 convs giving the same receptive field
        one = cin * cout * k**d
        stacked = cin * cout * 3**d + (stack - 1) * cout * cout * 3**d
        size = "x".join(str(s) for s in conv.kernel_size)
        yield Hit(
            f"{call.name} is a {size} conv past the stem: {one:,} weights, where {stack} "
            f"stacked 3-wide convs with the same receptive field need {stacked:,} "
            f"({stacked / one:.0%}) and add {stack - 1} non-linearities",
            where=call.name,
            evidence={
                "kernel": list(conv.kernel_size),
                "weights": one,
                "stacked_3x3": stacked,
                "stack_depth": stack,
            },
            fix=f"Replace {call.name} by {stack} convs of kernel 3 (padding 1) with activations "
            f"between them: {stacked:,} weights instead of {one:,}.",
        )


@rule(
    "deconv-checkerboard",
    severity="warning",
    category="model",
    summary="A transposed convolution whose kernel is not a multiple of its stride",
    why=(
        "When the kernel size is not divisible by the stride, output pixels receive "
        "contributions from an uneven number of input pixels, which paints a checkerboard "
        "pattern into generated images and segmentation maps (Odena et al., Distill 2016)."
    ),
    fix=(
        "Use kernel = 2 x stride (e.g. kernel 4, stride 2, padding 1), or upsample "
        "(nn.Upsample / F.interpolate) followed by a regular 3x3 convolution."
    ),
    example=(
        "nn.ConvTranspose2d(64, 32, kernel_size=3, stride=2, padding=1, output_padding=1)\n\n"
        "nn.ConvTranspose2d(64, 32, kernel_size=4, stride=2, padding=1)\n"
        "# or\n"
        "nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(64, 32, 3, padding=1))"
    ),
    source="Deep Learning Practical Tricks (a tips list) (checkerboard artifacts of deconvolution). Odena, "
    "Dumoulin & Olah, Deconvolution and Checkerboard Artifacts (Distill, 2016).",
)
def deconv_checkerboard(ctx: StaticContext) -> Iterator[Hit]:
    for name, m in ctx.model.named_modules():
        if not isinstance(m, nn.modules.conv._ConvTransposeNd):
            continue
        uneven = [(k, s) for k, s in zip(m.kernel_size, m.stride, strict=True) if s > 1 and k % s]
        if not uneven:
            continue
        k, s = uneven[0]
        yield Hit(
            f"{name} ({type(m).__name__}) has kernel {k} with stride {s}: {k} is not a multiple "
            f"of {s}, so output pixels get uneven overlap (checkerboard artifacts)",
            where=name,
            evidence={"kernel": list(m.kernel_size), "stride": list(m.stride)},
            fix=f"Use kernel_size={2 * s}, stride={s}, padding={s // 2} in {name}, or "
            f"`nn.Upsample(scale_factor={s})` followed by a 3x3 conv.",
        )


@rule(
    "vanilla-rnn",
    severity="warning",
    category="model",
    summary="The model uses nn.RNN (an Elman RNN) instead of a GRU or an LSTM",
    why=(
        "A plain RNN multiplies its state by the same matrix at every step, so gradients "
        "vanish or explode exponentially with sequence length and it cannot learn dependencies "
        "beyond a few dozen steps. GRU and LSTM gates give the gradient an additive path."
    ),
    fix="Swap nn.RNN for nn.GRU (same arguments) or nn.LSTM (returns (h, c) as its state).",
    example=(
        "self.rnn = nn.RNN(64, 128, batch_first=True)\n\nself.rnn = nn.GRU(64, 128, batch_first=True)"
    ),
    source="A. Marcolini, Deep Learning Best Practices (fast.ai course notes) (fast.ai: use GRU/LSTM, not a vanilla RNN). "
    "Bengio, Simard & Frasconi (1994) on the difficulty of long-term dependencies.",
)
def vanilla_rnn(ctx: StaticContext) -> Iterator[Hit]:
    for name, m in ctx.model.named_modules():
        if isinstance(m, (nn.RNN, nn.RNNCell)):
            kind = "nn.RNN" if isinstance(m, nn.RNN) else "nn.RNNCell"
            yield Hit(
                f"{name} is a vanilla {kind} ({m.nonlinearity}, hidden size {m.hidden_size}); "
                "its gradients vanish or explode over long sequences",
                where=name,
                evidence={"hidden_size": m.hidden_size, "nonlinearity": m.nonlinearity},
                fix=f"Replace {name} by `nn.{'GRU' if kind == 'nn.RNN' else 'GRUCell'}(...)` with "
                "the same sizes (or an LSTM).",
            )


@rule(
    "deep-without-skip",
    severity="warning",
    category="model",
    summary=f"A chain of {DEEP_CHAIN}+ weight layers with no residual connection and no "
    "normalization",
    why=(
        "Each layer multiplies the signal and its gradient by its weights; through a long plain "
        "chain they shrink or grow geometrically, and even with good init plain nets get worse "
        "as they get deeper (He et al. 2016). Residual connections give the gradient a direct "
        "path, normalization keeps every layer's input at unit scale."
    ),
    fix="Group the layers into residual blocks (`x = x + block(x)`) and/or add BatchNorm, "
    "LayerNorm or GroupNorm after the weight layers.",
    example=(
        "layers = [nn.Linear(256, 256), nn.ReLU()] * 16        # 16 plain layers\n\n"
        "class Block(nn.Module):\n"
        "    def forward(self, x):\n"
        "        return x + self.fc2(F.relu(self.norm(self.fc1(x))))"
    ),
    source="Deep Learning Tips & Tricks (a tips list) (ResNets: skip connections make deep nets "
    "trainable). He et al., Deep Residual Learning (2016).",
)
def deep_without_skip(ctx: StaticContext) -> Iterator[Hit]:
    # Distinct modules, not calls: a cell applied at every time step is one layer deep.
    layers = _unique_calls(ctx, WEIGHT_LAYERS)
    if len(layers) < DEEP_CHAIN or _uses_normalization(ctx) or has_skip_connection(ctx):
        return
    yield Hit(
        f"the forward runs through {len(layers)} weight layers ({layers[0].name} .. "
        f"{layers[-1].name}) without a residual connection or a normalization layer",
        where=layers[0].name,
        evidence={"weight_layers": len(layers), "threshold": DEEP_CHAIN},
        fix="Add residual connections around pairs of layers (`x = x + f(x)`) and a "
        "normalization layer (BatchNorm/LayerNorm) in each block, or use fewer layers.",
    )


@rule(
    "saturating-activations",
    severity="warning",
    category="model",
    summary=f"{SATURATING_STACK}+ hidden layers use sigmoid/tanh activations",
    why=(
        "Sigmoid and tanh flatten out for large inputs, where their derivative is near zero "
        "(sigmoid's is at most 0.25 anywhere). Stacked as hidden activations they multiply the "
        "gradient by these small factors layer after layer, and units saturate early in "
        "training (Glorot & Bengio 2010). ReLU-family activations pass the gradient unchanged "
        "where they are active."
    ),
    fix="Use nn.ReLU / nn.LeakyReLU / nn.GELU for hidden layers; keep sigmoid or tanh only "
    "where a bounded output is the point (a final output, a gate).",
    example=(
        "nn.Sequential(nn.Linear(64, 128), nn.Sigmoid(), nn.Linear(128, 128), nn.Sigmoid(), ...)\n\n"
        "nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), ...)"
    ),
    source="Deep Learning Tips & Tricks (a tips list) (backpropagation: prefer ReLU to sigmoid). Glorot & "
    "Bengio, Understanding the difficulty of training deep feedforward networks (2010).",
)
def saturating_activations(ctx: StaticContext) -> Iterator[Hit]:
    hidden, fed = [], set()
    for op in ctx.trace.ops:
        saturating = (
            isinstance(op.module, SATURATING_MODULES)
            if isinstance(op, ModuleCall)
            else op.name in SATURATING_FUNCTIONS
        )
        if not saturating:
            continue
        # Hidden: its output is the input of a weight layer (a gate multiplies, an output
        # activation ends the model; neither feeds a weight layer).
        # Counted once per weight layer fed, so a hand-written recurrence
        # (h = tanh(W x + U h) at every step) counts as one layer, not one per step.
        layers = {
            id(c.module)
            for c in ctx.trace.consumers(op)
            if isinstance(c, ModuleCall) and isinstance(c.module, WEIGHT_LAYERS)
        }
        if layers - fed:
            fed |= layers
            hidden.append(op)
    if len(hidden) < SATURATING_STACK:
        return
    yield Hit(
        f"{len(hidden)} hidden activations are sigmoid/tanh ({', '.join(_label(h) for h in hidden[:4])}"
        f"{' ...' if len(hidden) > 4 else ''}); their gradients shrink at every layer",
        where=hidden[0].name,
        evidence={"saturating_hidden_activations": len(hidden), "threshold": SATURATING_STACK},
        fix="Use nn.ReLU() (or nn.LeakyReLU(0.01) / nn.GELU()) for the hidden layers.",
    )


@rule(
    "dropout-before-batchnorm",
    severity="warning",
    category="model",
    summary="Dropout feeds directly into BatchNorm",
    why=(
        "Dropout changes the variance of its output between training (units dropped, the rest "
        "scaled up) and evaluation (nothing dropped). A BatchNorm right after it learns running "
        "statistics under the training variance and applies them to evaluation inputs of a "
        "different variance, which shifts every later layer at test time (Li et al. 2019, "
        "'variance shift')."
    ),
    fix="Put Dropout after the BatchNorm block (e.g. before the final classifier), or drop one "
    "of the two; BatchNorm already regularizes.",
    example=(
        "nn.Linear(256, 256), nn.Dropout(0.5), nn.BatchNorm1d(256), nn.ReLU()\n\n"
        "nn.Linear(256, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.5)"
    ),
    source="NeuraLint. Li et al., Understanding the "
    "Disharmony between Dropout and Batch Normalization by Variance Shift (CVPR 2019).",
)
def dropout_before_batchnorm(ctx: StaticContext) -> Iterator[Hit]:
    for bn in _unique_calls(ctx, BATCH_NORMS):
        src = ctx.trace.producer(bn)
        if isinstance(src, ModuleCall) and isinstance(src.module, nn.modules.dropout._DropoutNd):
            yield Hit(
                f"{src.name} ({type(src.module).__name__}, p={src.module.p}) feeds straight into "
                f"{bn.name} ({type(bn.module).__name__})",
                where=bn.name,
                evidence={"dropout": src.name, "batchnorm": bn.name, "p": src.module.p},
                fix=f"Move {src.name} after the BatchNorm/activation, or remove it.",
            )
        elif isinstance(src, FunctionCall) and src.name in ("dropout", "dropout1d", "dropout2d"):
            yield Hit(
                f"F.{src.name} in {src.inside or 'forward'} feeds straight into {bn.name}",
                where=bn.name,
                evidence={"dropout": src.name, "batchnorm": bn.name},
                fix=f"Apply the dropout after {bn.name} and its activation, or remove it.",
            )


@rule(
    "capacity-vs-data",
    severity="warning",
    category="model",
    summary="The parameter count and the number of training samples are orders of magnitude apart",
    why=(
        "A model with thousands of parameters per training sample memorizes the set before it "
        "learns anything general and is slow to iterate on; one with a tiny fraction of a "
        "parameter per sample cannot fit the data at all. The seeds advise starting with a "
        "model of the same order as the data (and under about a million parameters) and "
        "scaling from there."
    ),
    fix="Start smaller (fewer/narrower layers) and grow once the small model overfits; or "
    "gather more data. For a tiny model on a big set, widen it.",
    example=(
        "model = nn.Sequential(nn.Linear(64, 4096), nn.ReLU(), nn.Linear(4096, 4096), ...)  "
        "# 17M params, 1,500 samples\n\n"
        "model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))  # 10k params"
    ),
    source="How to start a deep learning project? (a 15-part thread) (2/n: start small), Deep Learning Practical Tricks (a tips list) (model size vs data).",
)
def capacity_vs_data(ctx: StaticContext) -> Iterator[Hit]:
    samples = ctx.train_sample.dataset_size
    params = sum(p.numel() for p in ctx.model.parameters() if p.requires_grad)
    if not samples or not params:
        return
    ratio = params / samples
    evidence = {"parameters": params, "train_samples": samples, "params_per_sample": ratio}
    if ratio >= OVERPARAMETERIZED and params > START_UNDER_PARAMS:
        target = max(10 * samples, 10_000)
        yield Hit(
            f"the model has {params:,} trainable parameters for {samples:,} training samples "
            f"({ratio:,.0f} per sample)",
            where="model",
            evidence=evidence,
            fix=f"Start with a model of about {target:,} parameters (well under 1M) and grow it "
            "only once it fits the training set; or use more data / a pretrained backbone.",
        )
    elif samples / params >= UNDERPARAMETERIZED:
        yield Hit(
            f"the model has {params:,} trainable parameters for {samples:,} training samples "
            f"({samples / params:,.0f} samples per parameter): it is likely too small to fit them",
            where="model",
            evidence=evidence,
            fix="Widen or deepen the model until it can overfit a subset of the data.",
            severity="info",
        )


@rule(
    "segmentation-early-downsample",
    severity="warning",
    category="model",
    summary="A segmentation model with a 7x7 stride-2 stem and no skip connections",
    why=(
        "A classification stem (7x7, stride 2, often followed by pooling) throws away the "
        "fine spatial detail in the first layer; without skip connections from the early, "
        "high-resolution features to the decoder, boundaries and thin structures cannot be "
        "recovered and the masks come out blurred."
    ),
    fix="Use a stride-1 3x3 stem, add U-Net style skip connections from encoder to decoder "
    "(torch.cat), or keep resolution with dilated convolutions.",
    example=(
        "stem = nn.Conv2d(3, 64, 7, stride=2, padding=3)   # then decode from 1/4 resolution\n\n"
        "stem = nn.Conv2d(3, 64, 3, padding=1)\n"
        "x = self.up(torch.cat([decoder_features, encoder_features], dim=1))"
    ),
    source="Deep Learning Tips & Tricks (a tips list) and A. Marcolini, Deep Learning Best Practices (fast.ai course notes) (segmentation keeps resolution: U-Net "
    "skips, dilated convs). Ronneberger et al., U-Net (2015).",
)
def segmentation_early_downsample(ctx: StaticContext) -> Iterator[Hit]:
    if ctx.task != "segmentation":
        return
    convs = _unique_calls(ctx, (nn.Conv2d,))
    if not convs or has_skip_connection(ctx):
        return
    stem = convs[0]
    k, s = max(stem.module.kernel_size), max(stem.module.stride)
    if k < 7 or s < 2:
        return
    yield Hit(
        f"segmentation model starts with a {k}x{k} stride-{s} conv ({stem.name}) and has no "
        "skip connection: fine detail lost in the stem never reaches the output",
        where=stem.name,
        evidence={"stem_kernel": k, "stem_stride": s},
        fix=f"Make {stem.name} a 3x3 stride-1 conv and concatenate encoder features into the "
        "decoder (U-Net skips), or use dilated convs instead of striding.",
    )


@rule(
    "constant-init",
    severity="warning",
    category="model",
    summary="A weight tensor is initialized to a constant (all zeros or all equal)",
    why=(
        "Units of a layer whose weights are all equal compute the same function and receive "
        "the same gradient, so they stay identical: the layer behaves like a single unit. All "
        "zeros also block the gradient to everything before it. Random init (Kaiming for ReLU "
        "nets, PyTorch's default) breaks the symmetry."
    ),
    fix="Remove the constant init (`nn.init.zeros_` / `fill_`) for hidden weights and keep "
    "PyTorch's default or `nn.init.kaiming_normal_(w, nonlinearity='relu')`.",
    example=(
        "nn.init.zeros_(self.fc1.weight)\n\n"
        "nn.init.kaiming_normal_(self.fc1.weight, nonlinearity='relu')"
    ),
    source="A. Marcolini, Deep Learning Best Practices (fast.ai course notes) (Kaiming init). He et al., Delving Deep into "
    "Rectifiers (2015).",
)
def constant_init(ctx: StaticContext) -> Iterator[Hit]:
    out = ctx.output
    last = ctx.trace.producer_of(out) if isinstance(out, torch.Tensor) else None
    head = id(last.module) if last is not None else None  # a zero-init head is a known trick
    for name, module in ctx.model.named_modules():
        if id(module) == head or not isinstance(module, (*WEIGHT_LAYERS, nn.Embedding)):
            continue
        for pname, p in module.named_parameters(recurse=False):
            if p.dim() < 2 or p.numel() < 2 or not p.requires_grad:
                continue
            lo, hi = torch.aminmax(p.detach())
            if bool(lo == hi):
                full = f"{name}.{pname}" if name else pname
                yield Hit(
                    f"{full} {tuple(p.shape)} is initialized to the constant {float(lo):g}: its "
                    f"{p.shape[0]} units start identical and stay symmetric",
                    where=full,
                    evidence={"value": float(lo), "shape": list(p.shape)},
                    fix=f"Drop the constant init of {full}; use the default or "
                    f"`nn.init.kaiming_normal_(model.{full}, nonlinearity='relu')`.",
                )


@rule(
    "rnn-hidden-init",
    severity="warning",
    category="model",
    summary="A vanilla RNN's hidden-to-hidden weights are far from orthogonal/identity",
    why=(
        "A plain RNN applies W_hh at every step; singular values below 1 make the state and the "
        "gradient vanish over time, values above 1 make them explode. Orthogonal init (all "
        "singular values 1, Saxe et al. 2014) or the identity (IRNN, Le et al. 2015) keeps "
        "them stable at the start; PyTorch's uniform default does not."
    ),
    fix="Initialize every weight_hh with `nn.init.orthogonal_` (tanh) or `nn.init.eye_` "
    "(ReLU RNN), or switch to a GRU/LSTM.",
    example=(
        "rnn = nn.RNN(32, 64)\n\n"
        "rnn = nn.RNN(32, 64)\n"
        "for name, w in rnn.named_parameters():\n"
        "    if name.startswith('weight_hh'):\n"
        "        nn.init.orthogonal_(w)"
    ),
    source="A. Marcolini, Deep Learning Best Practices (fast.ai course notes) (identity init for RNN hidden state). Le, Jaitly & "
    "Hinton, A Simple Way to Initialize Recurrent Networks of ReLUs (2015).",
)
def rnn_hidden_init(ctx: StaticContext) -> Iterator[Hit]:
    lo_band, hi_band = SINGULAR_VALUE_BAND
    for name, m in ctx.model.named_modules():
        if not isinstance(m, (nn.RNN, nn.RNNCell)):
            continue
        for pname, w in m.named_parameters(recurse=False):
            if not pname.startswith("weight_hh"):
                continue
            sv = torch.linalg.svdvals(w.detach().float())
            lo, hi = float(sv.min()), float(sv.max())
            if lo >= lo_band and hi <= hi_band:
                continue
            full = f"{name}.{pname}" if name else pname
            init = "nn.init.orthogonal_" if m.nonlinearity == "tanh" else "nn.init.eye_"
            yield Hit(
                f"{full} has singular values {lo:.3f}..{hi:.3f} (orthogonal/identity: all 1); "
                "the hidden state and its gradient shrink or grow at every step",
                where=full,
                evidence={
                    "singular_min": lo,
                    "singular_max": hi,
                    "band": list(SINGULAR_VALUE_BAND),
                },
                fix=f"`{init}(model.{full})` after building the model (or use a GRU/LSTM).",
            )
