"""StarGAN — Choi, Choi, Kim, Ha, Kim & Choo 2018, "StarGAN: Unified Generative Adversarial Networks for
Multi-Domain Image-to-Image Translation" (CVPR 2018), sized for the 28×28×3 `multidomain` digits.

One generator G(x, c) translates a digit to any target label vector c = [colour one-hot (3: red, green, blue),
stroke one-hot (3: thin, regular, thick), mask (2)]. The training set is two sets, each labelled with one group
only (the paper's CelebA + RaFD): the mask says which group is meaningful and the other group's one-hot is
zeros (§3.2). c is tiled over the image and concatenated to it as extra channels (the paper's way).
    G: (3 + 8, 28, 28) -> conv7 -> (w, 28, 28) -> conv4/2 -> (2w, 14, 14) -> conv4/2 -> (4w, 7, 7)
       -> residual blocks -> convT4/2 -> (2w, 14, 14) -> convT4/2 -> (w, 28, 28) -> conv7 -> (3, 28, 28), tanh
       (InstanceNorm + ReLU; without running statistics, so eval mode equals train mode)
    D: (3, 28, 28) -> conv4/2 -> (w, 14, 14) -> conv4/2 -> (2w, 7, 7) -> conv4/2 -> (4w, 3, 3), LeakyReLU(0.01)
       -> D_src: conv3 -> (1, 3, 3) PatchGAN real/fake scores;  D_cls: conv3 -> (6, 1, 1) attribute logits
Losses (§3.1, eq. 1-7): D minimizes L_adv + λ_cls L_cls(real, own label); G minimizes L_adv + λ_cls
L_cls(fake, target) + λ_rec ‖x − G(G(x, c_trg), c_org)‖₁, with c_org the row's own (masked) label vector.
L_cls is the cross entropy of each *known* group only: the one-hot target of an unknown group is zeros, so its
term and its gradient are exactly zero (the mask at work). Targets while training: random labels of the row's
own group (the paper samples the target from the row's own data set). `adv_loss` picks WGAN-GP (the paper's
§4.3 choice, λ_gp = 10, gradient penalty through a double backward) or the original non-saturating GAN loss of
eq. 1 (cheaper: no double backward, and it learns faster in short CPU runs). n_critic = 5 D steps per G step,
each on its own minibatch (the engine hands the step `d_steps` minibatches at once); G trains on the last one.
Adam 1e-4, β = (0.5, 0.999), batch 16.

`residual_output` (off = the paper's G) replaces the final tanh by G(x, c) = clamp(x + Δ(x, c), −1, 1): G
starts as the identity and only learns the change. Why: in short CPU runs the paper's G never learns to carry
the digit through its 7×7 bottleneck and collapses to one blank-ish stroke per target; with the residual output
the digit survives from the first step (the probes: docs/notes/model-history.md). The cpu profile turns it on;
the paper's 200k-iteration runs need it not. `skips` (off = the paper's G) joins the 28×28 and 14×14 maps of
the way down to the way up (U-Net style, as Pix2Pix's G), so a colour change need not redraw the digit in another
channel through the 7×7 bottleneck. In 600 steps at lr 2e-4, with or without skips, G instead painted a patch of
the target colour over the digit (the evaluator read ~40 % of the recoloured digits); skips with lr 2e-3 recolour
the strokes (91-96 %; `metrics/probes/stargan_cpu_recipe/`). `max_steps` caps a run (the cpu profile's budget).

At test time a combination that no training set labels (a colour *and* a stroke) is reached either
sequentially, G(G(x, colour vector), stroke vector) (each step a vector the model trained on), or with one
joint vector of both groups and mask [1, 1] (never seen while training); `extra_scores` measures both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.models import adversarial as adv
from genzoo.models.base import ZooModel
from genzoo.models.blocks import adam, to_unit
from genzoo.params import TrainConfig, param

COLOURS, STROKES = ("red", "green", "blue"), ("thin", "regular", "thick")
NC, NS = len(COLOURS), len(STROKES)
LABEL_DIM = NC + NS + 2  # [colour one-hot, stroke one-hot, mask (colour known, stroke known)]
ADV_LOSSES = ("wgan_gp", "non_saturating")


def label_vector(colour: torch.Tensor, stroke: torch.Tensor) -> torch.Tensor:
    """(B,) colour, (B,) stroke int64, -1 = not labelled -> (B, 8): unknown group's one-hot zeros, mask 0."""
    known_c, known_s = (colour >= 0).float(), (stroke >= 0).float()  # (B,)
    onehot_c = F.one_hot(colour.clamp(min=0), NC).float() * known_c[:, None]  # (B, 3)
    onehot_s = F.one_hot(stroke.clamp(min=0), NS).float() * known_s[:, None]  # (B, 3)
    return torch.cat([onehot_c, onehot_s, known_c[:, None], known_s[:, None]], 1)


def target_vector(n: int, colour: int | None = None, stroke: int | None = None, device=None) -> torch.Tensor:
    """The same target for n rows: label_vector of one colour and/or one stroke (None = that group unknown)."""
    def full(v: int | None) -> torch.Tensor:
        return torch.full((n,), -1 if v is None else v, dtype=torch.long, device=device)

    return label_vector(full(colour), full(stroke))


def random_target(c_org: torch.Tensor) -> torch.Tensor:
    """Random labels of each row's own known groups (same mask): the paper's training targets."""
    b, device = len(c_org), c_org.device
    mask = c_org[:, NC + NS:]  # (B, 2)
    onehot_c = F.one_hot(torch.randint(0, NC, (b,), device=device), NC).float() * mask[:, :1]
    onehot_s = F.one_hot(torch.randint(0, NS, (b,), device=device), NS).float() * mask[:, 1:]
    return torch.cat([onehot_c, onehot_s, mask], 1)


def classification_loss(logits: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Cross entropy of the known groups only. logits (B, 6), c (B, 8): a zero one-hot (unknown group) adds
    -Σ 0·log p = 0, and its gradient softmax·Σc − c is zero too."""
    ce_c = -(F.log_softmax(logits[:, :NC], 1) * c[:, :NC]).sum(1)  # (B,)
    ce_s = -(F.log_softmax(logits[:, NC:NC + NS], 1) * c[:, NC:NC + NS]).sum(1)  # (B,)
    return (ce_c + ce_s).mean()


def reconstruction_loss(real_a: torch.Tensor, rec_a: torch.Tensor) -> torch.Tensor:
    return (rec_a - real_a).abs().mean()  # L1, eq. 4


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): (‖∇ critic(x̂)‖₂ − 1)², x̂ on random points between real and fake rows;
    the gradient of the sum of the critic's patch scores, as the paper's code takes it."""
    alpha = torch.rand(len(real), *([1] * (real.ndim - 1)), device=real.device)
    x_hat = (alpha * real + (1 - alpha) * fake).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def down(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.InstanceNorm2d(c_out, affine=True), nn.ReLU()]


def up(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.InstanceNorm2d(c_out, affine=True),
            nn.ReLU()]


class Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.InstanceNorm2d(c, affine=True), nn.ReLU(),
                                  nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.InstanceNorm2d(c, affine=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Generator(nn.Module):
    def __init__(self, width: int, res_blocks: int, channels: int, residual_output: bool = False,
                 skips: bool = False):
        super().__init__()
        w, self.residual_output, self.skips = width, residual_output, skips
        k = 2 if skips else 1  # an up layer's input: its own maps, with skips also the down path's of its size
        self.net = nn.Sequential(
            nn.Conv2d(channels + LABEL_DIM, w, 7, 1, 3, bias=False), nn.InstanceNorm2d(w, affine=True), nn.ReLU(),
            *down(w, 2 * w), *down(2 * w, 4 * w),  # (B, 4w, 7, 7)
            *[Residual(4 * w) for _ in range(res_blocks)],
            *up(4 * w, 2 * w), *up(k * 2 * w, w),  # (B, w, 28, 28)
            nn.Conv2d(k * w, channels, 7, 1, 3), *([] if residual_output else [nn.Tanh()]))
        self.up_starts = (9 + res_blocks + 3, 9 + res_blocks + 6)  # where the 14×14 and the 28×28 inputs enter

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        tiled = c[:, :, None, None].expand(-1, -1, *x.shape[2:])  # (B, 8, H, W)
        h = torch.cat([x, tiled], 1)
        if not self.skips:
            out = self.net(h)  # (B, C, H, W)
        else:  # U-Net style: the 28×28 and 14×14 maps of the way down join the way up at their size
            kept = []
            for i, layer in enumerate(self.net):
                if i in self.up_starts:
                    h = torch.cat([h, kept.pop()], 1)
                h = layer(h)
                if i in (2, 5):  # after the stem (w, 28, 28) and the first down (2w, 14, 14)
                    kept.append(h)
            out = h
        if self.residual_output:  # a change added to the input: identity is the starting point
            return (x + out).clamp(-1, 1)
        return out  # in [-1, 1] (tanh)


class Discriminator(nn.Module):
    def __init__(self, width: int, channels: int):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(channels, w, 4, 2, 1), nn.LeakyReLU(0.01),  # (B, w, 14, 14)
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.LeakyReLU(0.01),  # (B, 2w, 7, 7)
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.LeakyReLU(0.01))  # (B, 4w, 3, 3)
        self.src = nn.Conv2d(4 * w, 1, 3, 1, 1, bias=False)  # (B, 1, 3, 3) patch scores
        self.cls = nn.Conv2d(4 * w, NC + NS, 3, 1, 0, bias=False)  # (B, 6, 1, 1) attribute logits

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.src(h).flatten(1), self.cls(h).flatten(1)  # (B, 9), (B, 6)


@dataclass
class Config(TrainConfig):
    batch_size: int = param(16, gt=0)  # the paper's
    lr: float = param(1e-4, gt=0)  # both nets (the paper: 1e-4, decayed linearly over the second half)
    g_width: int = param(64, gt=0)  # G's channels at 28×28 (×2 at 14×14, ×4 at 7×7)
    res_blocks: int = param(6, ge=0)
    d_width: int = param(64, gt=0)
    d_steps: int = param(5, gt=0)  # n_critic
    adv_loss: str = param("wgan_gp", choices=ADV_LOSSES)
    lambda_cls: float = param(1.0, ge=0)
    lambda_rec: float = param(10.0, ge=0)
    lambda_gp: float = param(10.0, ge=0)
    beta1: float = param(0.5, ge=0, le=1)
    beta2: float = param(0.999, ge=0, le=1)
    residual_output: bool = param(False)  # G outputs input + change (off = the paper's G; see the docstring)
    skips: bool = param(False)  # U-Net skips around G's bottleneck (off = the paper's G; see the docstring)
    score_images: int = param(0, ge=0)  # test rows extra_scores translates to every target; 0 = all
    attribute_steps: int = param(1000, ge=1)  # the scoring attribute classifier's training steps (a tiny run: fewer)


class Model(ZooModel):
    Config = Config
    dataset = "multidomain"

    def __init__(self, config: Config, image_shape: tuple[int, ...] = (3, 28, 28), num_classes: int = 10):
        super().__init__()
        self.config, self.image_shape, self.num_classes = config, image_shape, num_classes
        if tuple(image_shape[1:]) != (28, 28):
            raise ValueError(f"stargan is sized for 28×28 images, got {image_shape}")
        channels = 3  # the multidomain set is coloured whatever the base images are
        self.batches_per_step = config.d_steps
        self.gen = Generator(config.g_width, config.res_blocks, channels, config.residual_output, config.skips)
        self.disc = Discriminator(config.d_width, channels)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        betas = (self.config.beta1, self.config.beta2)
        return {"disc": adam(self.disc.parameters(), self.config.lr, betas),
                "gen": adam(self.gen.parameters(), self.config.lr, betas)}

    def d_adv_loss(self, real_src: torch.Tensor, fake_src: torch.Tensor) -> torch.Tensor:
        if self.config.adv_loss == "wgan_gp":
            return fake_src.mean() - real_src.mean()  # the critic's Wasserstein estimate, negated
        return adv.d_loss(real_src, fake_src)

    def g_adv_loss(self, fake_src: torch.Tensor) -> torch.Tensor:
        if self.config.adv_loss == "wgan_gp":
            return -fake_src.mean()
        return adv.g_loss(fake_src, "non_saturating")

    def train_step(self, batch: dict[str, torch.Tensor], opt: dict) -> dict[str, torch.Tensor]:
        cfg = self.config
        reals = (to_unit(batch["x"]) * 2 - 1).chunk(cfg.d_steps)  # k minibatches (B, 3, 28, 28) in [-1, 1]
        origs = label_vector(batch["colour"], batch["stroke"]).chunk(cfg.d_steps)  # k × (B, 8)
        out: dict[str, torch.Tensor] = {}
        for real_a, c_org in zip(reals, origs):
            fake_b = self.gen(real_a, random_target(c_org)).detach()
            real_src, real_cls = self.disc(real_a)
            fake_src, _ = self.disc(fake_b)
            loss_d_adv = self.d_adv_loss(real_src, fake_src)
            loss_d_cls = classification_loss(real_cls, c_org)
            loss_d = loss_d_adv + cfg.lambda_cls * loss_d_cls
            if cfg.adv_loss == "wgan_gp":
                loss_gp = gradient_penalty(lambda x: self.disc(x)[0], real_a, fake_b)
                loss_d = loss_d + cfg.lambda_gp * loss_gp
                out["loss_gp"] = loss_gp.detach()
            opt["disc"].zero_grad(set_to_none=True)
            loss_d.backward()
            opt["disc"].step()
        with adv.frozen(self.disc):  # G's step: D passes gradients on and learns nothing
            c_trg = random_target(c_org)
            fake_b = self.gen(real_a, c_trg)
            fake_src, fake_cls = self.disc(fake_b)
            rec_a = self.gen(fake_b, c_org)
            loss_g_adv = self.g_adv_loss(fake_src)
            loss_g_cls = classification_loss(fake_cls, c_trg)
            loss_rec = reconstruction_loss(real_a, rec_a)
            loss_g = loss_g_adv + cfg.lambda_cls * loss_g_cls + cfg.lambda_rec * loss_rec
            opt["gen"].zero_grad(set_to_none=True)
            loss_g.backward()
            opt["gen"].step()
        return {**out, "loss_d": loss_d.detach(), "loss_d_adv": loss_d_adv.detach(),
                "loss_d_cls": loss_d_cls.detach(), "loss_g_adv": loss_g_adv.detach(),
                "loss_g_cls": loss_g_cls.detach(), "loss_rec": loss_rec.detach()}

    @torch.no_grad()
    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """On rows with both labels: D's attribute accuracy on real digits, on fakes of a random target of the
        sequential kind (colour only), and the L1 cycle error."""
        real_a = to_unit(batch["x"]) * 2 - 1
        c_org = label_vector(batch["colour"], batch["stroke"])
        c_trg = random_target(label_vector(batch["colour"], torch.full_like(batch["stroke"], -1)))
        _, real_cls = self.disc(real_a)
        fake_b = self.gen(real_a, c_trg)
        _, fake_cls = self.disc(fake_b)
        rec_a = self.gen(fake_b, c_org)
        return {"d_colour_acc_real": (real_cls[:, :NC].argmax(1) == batch["colour"]).float().mean(),
                "d_stroke_acc_real": (real_cls[:, NC:].argmax(1) == batch["stroke"]).float().mean(),
                "d_colour_acc_fake": (fake_cls[:, :NC].argmax(1) == c_trg[:, :NC].argmax(1)).float().mean(),
                "loss_rec": reconstruction_loss(real_a, rec_a)}

    @torch.no_grad()
    def translate(self, batch: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """batch["x"] uint8 (B, 3, 28, 28), target (B, 8) or (8,) label vector -> (B, 3, 28, 28) in [0, 1]."""
        real_a = to_unit(batch["x"]) * 2 - 1
        return (self.gen(real_a, target.expand(len(real_a), -1).to(real_a)) + 1) / 2

    @torch.no_grad()
    def translate_both(self, batch: dict[str, torch.Tensor], colour: int, stroke: int,
                       joint: bool = False) -> torch.Tensor:
        """A colour and a stroke at once: one joint vector (mask [1, 1]) or colour first, then stroke."""
        n, device = len(batch["x"]), batch["x"].device
        if joint:
            return self.translate(batch, target_vector(n, colour, stroke, device))
        coloured = self.translate(batch, target_vector(n, colour, None, device))
        return self.translate({"x": (coloured * 255).round().to(torch.uint8)}, target_vector(n, None, stroke, device))

    def all_targets(self, batch: dict[str, torch.Tensor], joint: bool = False) -> dict[str, torch.Tensor]:
        """Every target's translation of the batch: 3 colours, 3 strokes, 9 combinations."""
        n, device = len(batch["x"]), batch["x"].device
        out = {c: self.translate(batch, target_vector(n, i, None, device)) for i, c in enumerate(COLOURS)}
        out.update({s: self.translate(batch, target_vector(n, None, j, device)) for j, s in enumerate(STROKES)})
        for i, c in enumerate(COLOURS):
            for j, s in enumerate(STROKES):
                out[f"{c}_{s}"] = self.translate_both(batch, i, j, joint)
        return out

    @torch.no_grad()
    def output(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Every target's translation of the batch, stacked: (15 B, 3, 28, 28) in [0, 1]."""
        return torch.cat(list(self.all_targets(batch).values()))

    @torch.no_grad()
    def pictures(self, data: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, int]]:
        """Rows: 8 test digits; columns: the input, 3 colours, 3 strokes, the 9 colour × stroke combinations."""
        batch = {"x": data["x"][:8]}
        grids = {}
        for name, joint in (("targets", False), ("targets_joint", True)):
            outs = self.all_targets(batch, joint)
            columns = [to_unit(batch["x"])] + list(outs.values())  # 16 × (8, 3, 28, 28)
            grids[name] = (torch.stack(columns, 1).flatten(0, 1), len(columns))
        return grids

    @torch.no_grad()
    def extra_scores(self, data: dict[str, dict[str, torch.Tensor]], evaluator) -> dict[str, float]:
        from genzoo.metrics.attributes import score_translations

        return score_translations(self, data, evaluator, self.config.score_images,
                                  classifier_steps=self.config.attribute_steps)
