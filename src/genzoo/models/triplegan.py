"""Triple-GAN — Li, Xu, Zhu & Zhang 2017, "Triple Generative Adversarial Nets" (NIPS 2017), MNIST with 100 labels.

Three players: a classifier C(x) -> p_c(y|x), a class-conditional generator G(z, y) and a discriminator D(x, y)
that judges *pairs*. D calls the labelled pairs (x_l, y_l) real and two kinds of pairs fake, weighted α and 1 - α:
(x_u, y ~ C(x_u)) for unlabelled digits and (G(z, y_g), y_g) for generated ones. At the equilibrium both p_c(x, y)
and p_g(x, y) equal the data's p(x, y), so C learns from the unlabelled digits through D.
    loss_d   = BCE(D(x_l, y_l), 1) + α BCE(D(x_u, ŷ_u), 0) + (1 - α) BCE(D(G(z, y_g), y_g), 0)
    loss_c   = CE(C(x_l), y_l)                              R_L: labelled pairs only
             + α p_c(ŷ_u|x_u) BCE(D(x_u, ŷ_u), 1)           C's adversarial term, ŷ_u = argmax p_c(y|x_u)
             + entropy_weight H(p_c(y|x_u))                 the authors' code: entropy minimization on x_u
             + [steps >= pseudo_warmup] α_p CE(C(G(z, y_g)), y_g)   R_P, the pseudo-discriminative loss
    loss_g   = (1 - α) BCE(D(G(z, y_g), y_g), 1)            non-saturating, as in the authors' code
C's adversarial term is the paper's "argmax" estimator (its code's default objective): D sees the one-hot of
the most probable label, and the loss is weighted by that label's probability p_c, through which alone the
gradient reaches C (a discrete label has no gradient; this is the REINFORCE-like form of E_{p_c}[log D]).
Update order per step (`update_order`). dcg, ours: D, then C through a frozen D, then G through frozen D and C;
D sees the C and G of before this step, C the D just updated and, in its pseudo-label loss, the fakes D just saw
(the G of before this step's G update), G the D just updated (C is not in G's loss). dgc, the authors' script's
D, G, C: D as before; G next, through the D just updated (its update is the same function of the same weights as
in dcg, only the random draws come in another order); then C through the D just updated, its pseudo-label loss
on a fresh draw of the G just updated (the fakes D saw are the old G's). In both, D's (x_u, ŷ) pairs carry the
labels of the C of before this step.

Architectures and values follow the authors' MNIST script (github.com/zhenxuan00/triple-gan):
    G: (z ~ U^100, y) -> [cat y] 500 BN softplus -> [cat y] 500 BN softplus -> [cat y] 784 sigmoid (weight norm)
    D: (x, y) -> +N(0, .3²) -> [cat y] 1000 -> [cat y, +N(0, .5²)] 500 -> 250 -> 250 -> 250 -> 1, leaky ReLU,
       the one-hot label concatenated at every layer, Gaussian noise after every hidden layer (training only)
    C: conv5 32, pool, drop .5 -> conv3 64 -> conv3 64, pool, drop .5 -> conv3 128 -> conv3 128 -> mean -> 10,
       BatchNorm + ReLU after every conv (width w scales the 32/64/128)
    α = 0.5, α_p = 0.1 from the 300th of 1000 epochs, entropy weight 0.3, Adam lr 1e-3 with β1 = 0.5, 100 labelled
    and 100 unlabelled digits per C step.
Ours leaves out what the script adds (docs/notes/gpu-runs.md); the paper recipe (pipeline/conf/recipes.yaml,
`paper: triplegan:`) puts it back, each piece off by default:
    c_pretrain_epochs  C alone on the labelled pairs before the game (the script's 30 epochs): `Pretraining`, a
                       fit() of its own that the triplegan stage runs first, every seed as a copy; the game's
                       optimizers start afresh after it and its step counter (R_P's warm-up) from 0
    ema_decay          a moving average of C's weights and BatchNorm statistics (the script's 0.99), updated in
                       place after every step of C (pre-training included), starting from C's initial weights;
                       it is the C that `predict` and `validate` use (the test error), saved with the model
    lr_decay           with `lr_schedule: exponential` (genzoo.engine.training), game epoch e (from 0) trains all
                       three players at lr * lr_decay^max(0, e - lr_decay_start_epoch) (the script's 0.995 from 299)
    update_order       dgc: the script's D, G, C (above)
and what the script does beyond the paper's text (read 2026-12-02, docs/notes/gpu-runs.md), each a field, off by
default:
    disc_labelled_batch, disc_real_unlabelled   D's real pairs: 1 labelled pair and 400 unlabelled digits with C's
                       argmax labels (`attach_unlabelled`), where ours has the C step's 100 labelled pairs
    c_adversarial      nonsaturating: C's term is p_c(ŷ|x) (-log D(x, ŷ)), where ours has p_c(ŷ|x) log(1 - D)
    noise              uniform01: z ~ U(0, 1)
    gen_batch          G's pairs per step (200, 20 per class), where ours has the unlabelled batch's 100
    balance_weight     CE(mean_B p_c(y|x_u), uniform), the classes kept in balance (1e-3 in the game)
    c_weight_decay     1e-4 × the sum of squares of C's last layer's weights (game and pre-training)
    labelled_draw      cycle: consecutive labelled draws walk one random order of the set (the 100 every C step)
    disc_style         script: D's layers at unit-norm weights (gain fixed at 1, the script's nn.DenseLayer) with
                       ReLU, and the label concatenated twice into its second layer, the first time under the noise
    pretrain_batch, pretrain_lr, pretrain_beta1, pretrain_entropy_weight, pretrain_balance_weight
                       the pre-training's 500 unlabelled digits a step (30 × 120 steps), Adam(3e-4, β1 0.9), and
                       its loss CE + 0.3 entropy + 0.3 balance + the weight decay
    unlabelled         train+val: all 60,000 training digits (the stage's), 600 steps an epoch
The labelled set comes once through `attach_labelled` and lives on the device as non-persistent buffers (not in
the state_dict); each step draws its labelled minibatch with torch.randint there (or walks one order of it:
labelled_draw cycle). The engine's batch is the unlabelled data: only its "x" is ever read, so no training label
other than the 100 reaches the model. C's forward of G's images (R_P) moves C's BatchNorm running statistics, the
ones C is tested with, only once R_P is on: before the warm-up its loss is weighted 0 (no branch) and its
statistics are put back (`running_stats_kept_unless`), so C's tested statistics are the digits' alone.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.models import adversarial as adv
from genzoo.models.base import ZooModel
from genzoo.models.blocks import adam, running_stats_kept_unless, to_unit
from genzoo.params import TrainConfig, param

UPDATE_ORDERS = ("dcg", "dgc")  # the players' order within a step: D, C, G (ours) or D, G, C (the authors' code)
DISC_STYLES = ("ours", "script")  # leaky-ReLU linear layers | the script's unit-norm ReLU layers
C_ADVERSARIAL = ("log1m", "nonsaturating")  # C's adversarial term: p log(1 - D) | p (-log D) (the script's)
LABELLED_DRAWS = ("replacement", "cycle")  # labelled minibatches drawn with replacement | walking one order
UNLABELLED_SETS = ("train", "train+val")  # the unlabelled digits: the training split | all the training digits


class Generator(nn.Module):
    """G(z, y): the one-hot label is concatenated to the input of every layer (the authors' MLPConcatLayer)."""

    def __init__(self, noise_dim: int, width: int, num_classes: int, pixels: int):
        super().__init__()
        self.hidden = nn.ModuleList([nn.Linear(noise_dim + num_classes, width, bias=False),
                                     nn.Linear(width + num_classes, width, bias=False)])
        self.norms = nn.ModuleList([nn.BatchNorm1d(width), nn.BatchNorm1d(width)])
        self.out = nn.utils.parametrizations.weight_norm(nn.Linear(width + num_classes, pixels))

    def forward(self, z: torch.Tensor, y_onehot: torch.Tensor) -> torch.Tensor:
        h = z  # (B, L)
        for linear, norm in zip(self.hidden, self.norms):
            h = F.softplus(norm(linear(torch.cat([h, y_onehot], 1))))  # (B, width)
        return torch.sigmoid(self.out(torch.cat([h, y_onehot], 1)))  # (B, pixels) in [0, 1]


class UnitNormLinear(nn.Module):
    """x W^T / |W_j| + b: every unit's weight vector at norm 1, its gain fixed (the script's nn.DenseLayer, whose
    weight_scale is not trained). Only the weights' directions and the biases learn."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(0.1 * torch.randn(n_out, n_in))  # the script's N(0, 0.1²); only its direction counts
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight / self.weight.norm(dim=1, keepdim=True), self.bias)


class Discriminator(nn.Module):
    """D(x, y) -> logit: an MLP on concat(x, y) with y again at every layer and Gaussian noise (Improved-GAN's
    MNIST D, made conditional). The noise is what regularizes D against the 100 labelled pairs it calls real.
    style "script": unit-norm ReLU layers, and after the first hidden layer y is concatenated before the noise and
    again after it (the script's dis-4 to dis-6), so the second layer reads the label twice, once noisy."""

    def __init__(self, pixels: int, widths: list[int], num_classes: int, input_noise: float, noise: float,
                 style: str = "ours"):
        super().__init__()
        if style not in DISC_STYLES:
            raise ValueError(f"triplegan: disc_style must be one of {DISC_STYLES}, got {style!r}")
        sizes = [pixels, *widths]
        extra = [num_classes] + [2 * num_classes if style == "script" and i == 1 else num_classes
                                 for i in range(1, len(sizes))]  # the label's columns in each layer's input
        linear = UnitNormLinear if style == "script" else nn.Linear
        self.hidden = nn.ModuleList([linear(n_in + k, n_out) for n_in, n_out, k in zip(sizes, sizes[1:], extra)])
        self.out = linear(sizes[-1] + extra[len(widths)], 1)
        self.input_noise, self.noise, self.style = input_noise, noise, style

    def forward(self, x01: torch.Tensor, y_onehot: torch.Tensor) -> torch.Tensor:
        h = x01.flatten(1)  # (B, pixels)
        if self.training:
            h = h + self.input_noise * torch.randn_like(h)
        for i, linear in enumerate(self.hidden):
            h = linear(torch.cat([h, y_onehot], 1))  # (B, width)
            h = F.relu(h) if self.style == "script" else F.leaky_relu(h, 0.2)
            if self.style == "script" and i == 0:
                h = torch.cat([h, y_onehot], 1)  # (B, width + K): the noise below reaches this copy of y too
            if self.training:
                h = h + self.noise * torch.randn_like(h)
        return self.out(torch.cat([h, y_onehot], 1)).squeeze(1)  # (B,) logits


def classifier(width: int, dropout: float, channels: int, num_classes: int) -> nn.Sequential:
    """C: the paper's MNIST CNN (Table 4 / the authors' code); 28 -> 24 -> 12 -> 10 -> 5 -> global mean."""
    def conv(c_in: int, c_out: int, k: int, pad: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, k, padding=pad, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

    w = width
    return nn.Sequential(
        *conv(channels, w, 5, 0), nn.MaxPool2d(2), nn.Dropout(dropout),  # (B, w, 12, 12)
        *conv(w, 2 * w, 3, 1),  # (B, 2w, 12, 12)
        *conv(2 * w, 2 * w, 3, 0), nn.MaxPool2d(2), nn.Dropout(dropout),  # (B, 2w, 5, 5)
        *conv(2 * w, 4 * w, 3, 1), *conv(4 * w, 4 * w, 3, 1),  # (B, 4w, 5, 5)
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, num_classes),  # (B, K) logits
    )



def ema_copy(module: nn.Module) -> nn.Module:
    """A copy of `module` that holds the moving average of its weights and buffers (no gradient reaches it)."""
    average = copy.deepcopy(module)
    average.requires_grad_(False)
    return average


@torch.no_grad()
def ema_update(average: nn.Module, live: nn.Module, decay: float) -> None:
    """average <- decay * average + (1 - decay) * live, for every parameter and floating buffer (BatchNorm's running
    statistics); integer buffers (BatchNorm's batch count) are copied. In place, with foreach kernels and a constant
    weight: a CUDA graph captures it as it captures the optimizer step."""
    floats, integers = [], []
    for mine, theirs in zip([*average.parameters(), *average.buffers()], [*live.parameters(), *live.buffers()]):
        (floats if mine.is_floating_point() else integers).append((mine, theirs))
    if floats:
        torch._foreach_lerp_([m for m, _ in floats], [t for _, t in floats], 1.0 - decay)
    for mine, theirs in integers:
        mine.copy_(theirs)


def classifier_adversarial_loss(p_max: torch.Tensor, adv_logits: torch.Tensor, form: str = "log1m") -> torch.Tensor:
    """C's adversarial term, the paper's α·E_{p_c}[log(1 - D(x, y))] with the argmax estimator: p_c(ŷ|x) times
    log(1 - D(x, ŷ)). It rewards C's confidence where D takes the pair for real. The non-saturating -log D form
    (`form="nonsaturating"`, the authors' script), positive everywhere, pushes every p_c(ŷ|x) down (most where D
    doubts); in ours, without the script's other terms, C's accuracy decayed as it trained
    (docs/notes/model-history.md)."""
    if form == "nonsaturating":
        minus_log_d = F.binary_cross_entropy_with_logits(adv_logits, torch.ones_like(adv_logits), reduction="none")
        return (p_max * minus_log_d.flatten()).mean()
    log_one_minus_d = -F.binary_cross_entropy_with_logits(adv_logits, torch.zeros_like(adv_logits), reduction="none")
    return (p_max * log_one_minus_d.flatten()).mean()


def last_layer_l2(cls: nn.Sequential) -> torch.Tensor:
    """The sum of squares of C's last layer's weights (the script's L2, its biases left out)."""
    return cls[-1].weight.pow(2).sum()


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """The mean entropy of the rows of probs (B, K): low when C is sure of each unlabelled digit."""
    return -(probs * probs.clamp_min(1e-8).log()).sum(1).mean()


def class_balance(probs: torch.Tensor) -> torch.Tensor:
    """CE(uniform, mean_B probs): low when the batch's predictions spread over the classes (the script's
    categorical_crossentropy_of_mean); it keeps entropy minimisation from calling every digit one class."""
    return -probs.mean(0).clamp_min(1e-8).log().mean()

@dataclass
class Config(TrainConfig):
    epochs: int = param(1000, gt=0)  # over the unlabelled training split
    batch_size: int = param(100, gt=0)  # unlabelled digits per step (C's and D's (x_u, ŷ) pairs); also G's batch
    lr: float = param(1e-3, gt=0)  # D and G
    lr_c: float = param(1e-3, gt=0)
    beta1: float = param(0.5, ge=0, le=1)  # Adam's β1 for all three
    seeds: list[int] = param([0, 1, 2], ge=0)  # the stage trains one model per seed and reports mean ± std
    labelled_batch: int = param(100, gt=0)  # labelled pairs per step, drawn with replacement from the 100
    alpha: float = param(0.5, ge=0, le=1)  # weight of (x_u, C(x_u)) among D's fakes; 1 - α for G's
    pseudo_weight: float = param(0.1, ge=0)  # α_p of R_P
    pseudo_warmup: int = param(165000, ge=0)  # steps before R_P: the paper's 300 epochs × 550 steps
    entropy_weight: float = param(0.3, ge=0)  # entropy of p_c(y|x_u), the authors' code (0 = off)
    noise_dim: int = param(100, gt=0)
    noise: str = param("uniform", choices=adv.NOISES)
    gen_width: int = param(500, gt=0)
    disc_widths: list[int] = param([1000, 500, 250, 250, 250], gt=0)
    disc_input_noise: float = param(0.3, ge=0)  # std of the Gaussian noise on D's input pixels
    disc_noise: float = param(0.5, ge=0)  # ... and after every hidden layer of D
    c_width: int = param(32, gt=0)  # C's first conv width; later ones 2w and 4w
    c_dropout: float = param(0.5, ge=0, le=1)
    # the paper recipe's additions (pipeline/conf/recipes.yaml, `paper: triplegan:`); the defaults leave them out
    c_pretrain_epochs: int = param(0, ge=0)  # C alone on the labelled pairs first, for this many epochs' steps
    ema_decay: float = param(0.0, ge=0, le=1)  # moving average of C's weights, tested in C's place (0 = off)
    lr_decay: float = param(1.0, gt=0, le=1)  # lr_schedule exponential: × lr_decay per epoch past the start
    lr_decay_start_epoch: int = param(0, ge=0)
    update_order: str = param("dcg", choices=UPDATE_ORDERS)  # dcg: D, C, G (ours); dgc: D, G, C (the authors')
    # what the authors' script does beyond the paper's text (the module docstring); the defaults are ours
    disc_style: str = param("ours", choices=DISC_STYLES)
    disc_labelled_batch: int = param(0, ge=0)  # D's labelled real pairs per step (0 = the C step's labelled pairs)
    disc_real_unlabelled: int = param(0, ge=0)  # unlabelled digits with C's argmax labels D also calls real
    c_adversarial: str = param("log1m", choices=C_ADVERSARIAL)
    gen_batch: int = param(0, ge=0)  # G's pairs per step, balanced over the classes (0 = batch_size)
    balance_weight: float = param(0.0, ge=0)  # class balance of C's predictions on the unlabelled batch
    c_weight_decay: float = param(0.0, ge=0)  # × the sum of squares of C's last layer's weights
    labelled_draw: str = param("replacement", choices=LABELLED_DRAWS)
    unlabelled: str = param("train", choices=UNLABELLED_SETS)  # the stage's unlabelled digits
    pretrain_batch: int = param(0, ge=0)  # unlabelled digits per pre-training step (0 = none: cross-entropy alone,
    # steps of the game's batch_size)
    pretrain_lr: float = param(0.0, ge=0)  # the pre-training's Adam lr (0 = lr_c)
    pretrain_beta1: float = param(0.5, ge=0, le=1)  # ... and its β1 (ours: the game's 0.5)
    pretrain_entropy_weight: float = param(0.0, ge=0)  # with pretrain_batch: entropy of C on its unlabelled digits
    pretrain_balance_weight: float = param(0.0, ge=0)  # ... and their class balance


class Model(ZooModel):
    Config = Config
    samples = True
    conditional = True
    few_labels = True

    def __init__(self, config: Config, image_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10):
        super().__init__()
        self.config, self.image_shape, self.num_classes = config, image_shape, num_classes
        pixels = math.prod(image_shape)
        self.gen = Generator(config.noise_dim, config.gen_width, num_classes, pixels)
        self.disc = Discriminator(pixels, config.disc_widths, num_classes, config.disc_input_noise, config.disc_noise,
                                  config.disc_style)
        self.cls = classifier(config.c_width, config.c_dropout, image_shape[0], num_classes)
        if config.ema_decay >= 1:
            raise ValueError(f"triplegan: ema_decay must be below 1 (0 = off), got {config.ema_decay}")
        if (config.pretrain_entropy_weight or config.pretrain_balance_weight) and not config.pretrain_batch:
            raise ValueError("triplegan: the pre-training's entropy and balance terms read its unlabelled digits: "
                             "set pretrain_batch > 0")
        if config.lr_decay != 1 and config.lr_schedule != "exponential":
            raise ValueError(f"triplegan: lr_decay {config.lr_decay} takes lr_schedule exponential (the engine's "
                             f"per-epoch decay), not {config.lr_schedule}")
        # the moving average of C (ema_decay > 0): what the test error and predict() use; in the state_dict, so
        # saved with the model and resumed with it (made after the three players: their initial weights stay the same)
        self.cls_ema = ema_copy(self.cls) if config.ema_decay > 0 else None
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # on the device: CUDA-graph safe
        # the few labelled pairs: non-persistent, so neither in the state_dict nor in saved models
        self.register_buffer("labelled_x", torch.zeros(0, *image_shape, dtype=torch.uint8), persistent=False)
        self.register_buffer("labelled_y", torch.zeros(0, dtype=torch.long), persistent=False)
        # labelled_draw cycle: the order the draws walk (drawn at attach from the caller's seed, so drawn again alike
        # on resuming) and where the next draw starts (saved with the weights: a resumed run walks on from it)
        self.register_buffer("labelled_order", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("labelled_cursor", torch.zeros((), dtype=torch.long),
                             persistent=config.labelled_draw == "cycle")
        # disc_real_unlabelled: the unlabelled digits D's extra real pairs come from (`attach_unlabelled`)
        self.register_buffer("unlabelled_x", torch.zeros(0, *image_shape, dtype=torch.uint8), persistent=False)

    def attach_labelled(self, x_uint8: torch.Tensor, y: torch.Tensor) -> None:
        """The labelled set (N, C, H, W) uint8 and (N,) labels; the model draws its labelled minibatches here."""
        if len(x_uint8) != len(y) or len(y) == 0:
            raise ValueError(f"attach_labelled: need as many labels as images, got {len(x_uint8)} and {len(y)}")
        device = self.steps.device
        self.labelled_x = x_uint8.to(device, torch.uint8).clone()
        self.labelled_y = y.to(device, torch.long).clone()
        if self.config.labelled_draw == "cycle":  # one random order from the global stream (the caller seeds it)
            self.labelled_order = torch.randperm(len(y)).to(device)
            self.labelled_cursor.zero_()

    def attach_unlabelled(self, x_uint8: torch.Tensor) -> None:
        """The unlabelled digits (N, C, H, W) uint8 that D's extra real pairs are drawn from (disc_real_unlabelled),
        with replacement, on the device (the script walks a permutation of them)."""
        if len(x_uint8) == 0:
            raise ValueError("attach_unlabelled: no images")
        self.unlabelled_x = x_uint8.to(self.steps.device, torch.uint8)

    # ---- the three players -------------------------------------------------------------------------------
    def onehot(self, y: torch.Tensor) -> torch.Tensor:
        return F.one_hot(y, self.num_classes).float()  # (B, K)

    def noise(self, n: int) -> torch.Tensor:
        return adv.draw_noise(n, self.config.noise_dim, self.config.noise, self.steps.device)

    def generate(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.gen(z, self.onehot(y)).view(len(z), *self.image_shape)  # (B, C, H, W) in [0, 1]

    def classify(self, x01: torch.Tensor) -> torch.Tensor:
        return self.cls(x01)  # (B, K) logits

    def classify_test(self, x01: torch.Tensor) -> torch.Tensor:
        """The C that is tested: the moving average of C's weights when ema_decay > 0, else C itself."""
        return (self.cls if self.cls_ema is None else self.cls_ema)(x01)  # (B, K) logits

    def update_ema(self) -> None:
        """After every step of C (its pre-training's too): the moving average takes in C's new weights."""
        if self.cls_ema is not None:
            ema_update(self.cls_ema, self.cls, self.config.ema_decay)

    def criticize(self, x01: torch.Tensor, y_soft: torch.Tensor) -> torch.Tensor:
        return self.disc(x01, y_soft)  # (B,) logits; y_soft is a one-hot (or probability) vector

    def balanced_labels(self, n: int) -> torch.Tensor:
        """n labels, classes in order in equal blocks (0, 0, ..., 1, 1, ...): balanced when K divides n."""
        return torch.arange(n, device=self.steps.device) * self.num_classes // n  # (n,)

    # ---- the contract ------------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        betas = (self.config.beta1, 0.999)
        return {"disc": adam(self.disc.parameters(), self.config.lr, betas),
                "cls": adam(self.cls.parameters(), self.config.lr_c, betas),
                "gen": adam(self.gen.parameters(), self.config.lr, betas)}

    def labelled_batch(self, n: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """n labelled pairs (0 = labelled_batch): drawn with replacement, or (labelled_draw cycle) the next n of one
        random order, going round (n = the set's size: every pair, each draw)."""
        n = n or self.config.labelled_batch
        if len(self.labelled_y) == 0:  # a shape, known on the host: no sync
            raise RuntimeError("triplegan: call attach_labelled(x, y) with the labelled subset before training")
        if self.config.labelled_draw == "cycle":
            at = (self.labelled_cursor + torch.arange(n, device=self.steps.device)) % len(self.labelled_y)
            idx = self.labelled_order[at]
            self.labelled_cursor.copy_((self.labelled_cursor + n) % len(self.labelled_y))  # in place: graph safe
        else:
            idx = torch.randint(0, len(self.labelled_y), (n,), device=self.steps.device)
        return to_unit(self.labelled_x[idx]), self.labelled_y[idx]

    def unlabelled_batch(self, n: int) -> torch.Tensor:
        if len(self.unlabelled_x) == 0:
            raise RuntimeError("triplegan: disc_real_unlabelled > 0 needs attach_unlabelled(x) before training")
        idx = torch.randint(0, len(self.unlabelled_x), (n,), device=self.steps.device)
        return to_unit(self.unlabelled_x[idx])  # (n, C, H, W)

    def train_step(self, batch: dict[str, torch.Tensor], opt: dict) -> dict[str, torch.Tensor]:
        """D, then C and G in `update_order` (see the module docstring for what each player sees in each)."""
        cfg = self.config
        real_x_u = to_unit(batch["x"])  # (B, C, H, W) unlabelled: batch["y"], if any, is never read
        real_x_l, real_y_l = self.labelled_batch()  # (Bl, C, H, W), (Bl,)
        fake_y = self.balanced_labels(cfg.gen_batch or len(real_x_u))  # (Bg,) y_g ~ uniform p(y), stratified
        d, fake_x = self._step_d(real_x_u, real_x_l, real_y_l, fake_y, opt["disc"])
        if cfg.update_order == "dcg":  # C's R_P on the fakes D just saw: the G of before this step's G update
            c = self._step_c(real_x_u, real_x_l, real_y_l, fake_x, fake_y, opt["cls"])
            g = self._step_g(len(fake_y), fake_y, opt["gen"])
        else:  # dgc: G first, then C's R_P on a fresh draw of the G just updated
            g = self._step_g(len(fake_y), fake_y, opt["gen"])
            with torch.no_grad():
                fake_x = self.generate(self.noise(len(fake_y)), fake_y)  # (Bg, C, H, W) G after G's update
            c = self._step_c(real_x_u, real_x_l, real_y_l, fake_x, fake_y, opt["cls"])
        self.steps += 1
        return {"loss_d": d["loss_d"], "loss_d_real": d["loss_d_real"], "loss_d_fake_c": d["loss_d_fake_c"],
                "loss_d_fake_g": d["loss_d_fake_g"], "loss_c": c["loss_c"], "loss_c_sup": c["loss_c_sup"],
                "loss_c_adv": c["loss_c_adv"], "loss_c_ent": c["loss_c_ent"], "loss_c_pseudo": c["loss_c_pseudo"],
                "loss_c_balance": c["loss_c_balance"],
                "pseudo_on": c["pseudo_on"], "loss_g_adv": g["loss_g_adv"], "d_real": d["d_real"],
                "d_fake_c": d["d_fake_c"], "d_fake_g": d["d_fake_g"]}

    def _step_d(self, real_x_u, real_x_l, real_y_l, fake_y, opt) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """D: labelled pairs real (the C step's, or disc_labelled_batch of its own, and disc_real_unlabelled digits
        with C's labels); C's pairs (weight α) and G's pairs (weight 1 - α) fake, all made by the C and G of before
        this step. Returns its numbers and G's fakes."""
        cfg = self.config
        if cfg.disc_labelled_batch:
            real_x_l, real_y_l = self.labelled_batch(cfg.disc_labelled_batch)
        with torch.no_grad():
            pseudo_y_u = self.classify(real_x_u).argmax(1)  # (B,) C's labels before C's update
            fake_x = self.generate(self.noise(len(fake_y)), fake_y)  # (Bg, C, H, W) G before G's update
            if cfg.disc_real_unlabelled:  # the script: digits C labels, called real (C in training mode, as there)
                extra_x = self.unlabelled_batch(cfg.disc_real_unlabelled)
                real_x_l = torch.cat([real_x_l, extra_x])
                real_y_l = torch.cat([real_y_l, self.classify(extra_x).argmax(1)])
        real_logits = self.criticize(real_x_l, self.onehot(real_y_l))
        fake_c_logits = self.criticize(real_x_u, self.onehot(pseudo_y_u))
        fake_g_logits = self.criticize(fake_x, self.onehot(fake_y))
        loss_d_real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
        loss_d_fake_c = F.binary_cross_entropy_with_logits(fake_c_logits, torch.zeros_like(fake_c_logits))
        loss_d_fake_g = F.binary_cross_entropy_with_logits(fake_g_logits, torch.zeros_like(fake_g_logits))
        loss_d = loss_d_real + cfg.alpha * loss_d_fake_c + (1 - cfg.alpha) * loss_d_fake_g
        opt.zero_grad(set_to_none=True)
        loss_d.backward()
        opt.step()
        return {"loss_d": loss_d.detach(), "loss_d_real": loss_d_real.detach(),
                "loss_d_fake_c": loss_d_fake_c.detach(), "loss_d_fake_g": loss_d_fake_g.detach(),
                "d_real": torch.sigmoid(real_logits).mean().detach(),
                "d_fake_c": torch.sigmoid(fake_c_logits).mean().detach(),
                "d_fake_g": torch.sigmoid(fake_g_logits).mean().detach()}, fake_x

    def _step_c(self, real_x_u, real_x_l, real_y_l, fake_x, fake_y, opt) -> dict[str, torch.Tensor]:
        """C: supervised on the labelled pairs, adversarial through the frozen D, entropy, pseudo-labels on G's pairs
        (fake_x, fake_y); then the moving average of C, if any."""
        cfg = self.config
        with adv.frozen(self.disc), adv.frozen(self.gen):
            loss_c_sup = F.cross_entropy(self.classify(real_x_l), real_y_l)  # R_L: labelled pairs only
            probs_u = self.classify(real_x_u).softmax(1)  # (B, K)
            p_max, label_u = probs_u.max(1)  # (B,) the argmax estimator: D sees one-hot(ŷ), weight p_c(ŷ|x)
            adv_logits = self.criticize(real_x_u, self.onehot(label_u))
            loss_c_adv = classifier_adversarial_loss(p_max, adv_logits, cfg.c_adversarial)
            loss_c_ent = entropy(probs_u)
            loss_c_balance = class_balance(probs_u)
            pseudo_on = (self.steps >= cfg.pseudo_warmup).float()  # 0 before the warm-up, 1 after: no branch
            # G's images reach the statistics C is tested with only when R_P trains C on them
            with running_stats_kept_unless(self.cls, pseudo_on):
                loss_c_pseudo = F.cross_entropy(self.classify(fake_x), fake_y)  # R_P on (G(z, y), y)
                loss_c = (loss_c_sup + cfg.alpha * loss_c_adv + cfg.entropy_weight * loss_c_ent
                          + pseudo_on * cfg.pseudo_weight * loss_c_pseudo)
                if cfg.balance_weight:  # the script's terms (a static branch: off, ours adds nothing)
                    loss_c = loss_c + cfg.balance_weight * loss_c_balance
                if cfg.c_weight_decay:
                    loss_c = loss_c + cfg.c_weight_decay * last_layer_l2(self.cls)
                opt.zero_grad(set_to_none=True)
                loss_c.backward()
                opt.step()
        self.update_ema()
        return {"loss_c": loss_c.detach(), "loss_c_sup": loss_c_sup.detach(), "loss_c_adv": loss_c_adv.detach(),
                "loss_c_ent": loss_c_ent.detach(), "loss_c_pseudo": loss_c_pseudo.detach(),
                "loss_c_balance": loss_c_balance.detach(), "pseudo_on": pseudo_on}

    def _step_g(self, n: int, fake_y, opt) -> dict[str, torch.Tensor]:
        """G: fool the frozen D with (G(z, y), y) on fresh noise; C is frozen too (not in G's loss)."""
        with adv.frozen(self.disc), adv.frozen(self.cls):
            gen_logits = self.criticize(self.generate(self.noise(n), fake_y), self.onehot(fake_y))
            loss_g_adv = (1 - self.config.alpha) * F.binary_cross_entropy_with_logits(
                gen_logits, torch.ones_like(gen_logits))
            opt.zero_grad(set_to_none=True)
            loss_g_adv.backward()
            opt.step()
        return {"loss_g_adv": loss_g_adv.detach()}

    @torch.no_grad()
    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The tested C's error and cross-entropy on labelled held-out digits (the moving average's when
        ema_decay > 0, with C's own error beside it as error_c_live)."""
        x01 = to_unit(batch["x"])
        logits = self.classify_test(x01)
        out = {"error_c": (logits.argmax(1) != batch["y"]).float().mean(),
               "loss_c": F.cross_entropy(logits.float(), batch["y"])}
        if self.cls_ema is not None:
            out["error_c_live"] = (self.classify(x01).argmax(1) != batch["y"]).float().mean()
        return out

    @torch.no_grad()
    def predict(self, x_uint8: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
        """The tested C's labels for uint8 images (the moving average's when ema_decay > 0), in eval mode, chunked."""
        with adv.evaluating(self):
            return torch.cat([self.classify_test(to_unit(x_uint8[i:i + chunk])).argmax(1)
                              for i in range(0, len(x_uint8), chunk)])

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """n class-conditional samples, classes in order in equal blocks (rows of a 10-wide grid when n = 100)."""
        return self.generate(self.noise(n), self.balanced_labels(n))  # (n, C, H, W) in [0, 1]

    @torch.no_grad()
    def sample_given(self, y: torch.Tensor) -> torch.Tensor:
        """One sample per label in y (N,): (N, C, H, W) in [0, 1]."""
        return self.generate(self.noise(len(y)), y.to(self.steps.device))

    @torch.no_grad()
    def class_style_grid(self, columns: int = 10) -> torch.Tensor:
        """One row per class, one column per shared z: the classes apart from the style (the paper's Fig. 3)."""
        z = self.noise(columns).repeat(self.num_classes, 1)  # (K * columns, L): the same z in every row
        y = torch.arange(self.num_classes, device=z.device).repeat_interleave(columns)  # (K * columns,)
        return self.generate(z, y)

    @torch.no_grad()
    def pictures(self, data: dict[str, torch.Tensor] | None = None) -> dict[str, tuple[torch.Tensor, int]]:
        with adv.evaluating(self):
            grids = {"class_conditional": (self.class_style_grid(10), 10)}
        if len(self.labelled_y):  # the labelled digits, sorted by class: all that C was told
            order = self.labelled_y.argsort(stable=True)
            per_row = max(1, len(order) // self.num_classes)
            grids["labelled"] = (to_unit(self.labelled_x[order]), per_row)
        return grids


def pretrain_batch_size(cfg: Config) -> int:
    """The pre-training's engine batch: pretrain_batch unlabelled digits (the script's), else the game's batch."""
    return cfg.pretrain_batch or cfg.batch_size


class Pretraining(nn.Module):
    """C alone before the game (`c_pretrain_epochs`): cross-entropy on labelled minibatches drawn as the game draws
    them, a fresh Adam(pretrain_lr or lr_c, pretrain_beta1) at a constant lr, the moving average of C (if any) after
    each step. With pretrain_batch > 0 (the script's), the engine's batch is that many unlabelled digits, and the
    loss adds their entropy and class balance; the weight decay joins where c_weight_decay > 0. A model of its own
    for fit(), so the triplegan stage trains every seed's pre-training as copies (genzoo.engine.copies), each
    exactly as alone, one CUDA graph for all on a GPU, under the engine's precision like the game. Its config is
    the model's with `c_pretrain_epochs` as its epochs (over the unlabelled set in batches of pretrain_batch, or of
    batch_size when its images are not read) and a constant schedule. The game's step counter (`steps`: R_P's
    warm-up) is left at 0; D and G rest."""

    def __init__(self, model: Model):
        super().__init__()
        self.model = model
        cfg = model.config
        self.config = dataclasses.replace(cfg, epochs=cfg.c_pretrain_epochs, batch_size=pretrain_batch_size(cfg),
                                          lr_schedule="constant", lr_decay=1.0)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config
        return {"cls": adam(self.model.cls.parameters(), cfg.pretrain_lr or cfg.lr_c, (cfg.pretrain_beta1, 0.999))}

    def train_step(self, batch: dict[str, torch.Tensor], opt: dict) -> dict[str, torch.Tensor]:
        cfg = self.config
        real_x_l, real_y_l = self.model.labelled_batch()
        loss_sup = F.cross_entropy(self.model.classify(real_x_l), real_y_l)
        loss, out = loss_sup, {"loss_c_sup": loss_sup.detach()}  # logged by the stage as seed<k>/pretrain/...
        if cfg.pretrain_batch:  # the script's: the unlabelled batch's entropy and class balance
            probs_u = self.model.classify(to_unit(batch["x"])).softmax(1)  # (B, K)
            ent, balance = entropy(probs_u), class_balance(probs_u)
            loss = loss + cfg.pretrain_entropy_weight * ent + cfg.pretrain_balance_weight * balance
            out.update(loss_c_ent=ent.detach(), loss_c_balance=balance.detach())
        if cfg.c_weight_decay:
            loss = loss + cfg.c_weight_decay * last_layer_l2(self.model.cls)
        opt["cls"].zero_grad(set_to_none=True)
        loss.backward()
        opt["cls"].step()
        self.model.update_ema()
        return out

    @torch.no_grad()
    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.model.validate(batch)
