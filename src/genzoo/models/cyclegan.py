"""CycleGAN — Zhu, Park, Isola & Efros 2017, "Unpaired Image-to-Image Translation using Cycle-Consistent
Adversarial Networks" (ICCV 2017), sized for 28×28 on the "unpaired" set: domain A thin strokes, domain B thick
strokes, the two halves of the training set disjoint, so no (thin(x), thick(x)) pair ever reaches training.

Two generators G: A -> B (gen_ab) and F: B -> A (gen_ba), two discriminators D_A (disc_a) and D_B (disc_b).
    loss_g = LSGAN(D_B(G(a))) + LSGAN(D_A(F(b)))                                   (adversarial, least squares)
           + λ_cyc (|F(G(a)) - a|₁ + |G(F(b)) - b|₁)                                (cycle consistency)
           + λ_idt (|G(b) - b|₁ + |F(a) - a|₁)                                      (identity; 0 switches it off)
    loss_d = ½ [(D(real) - 1)² + D(pooled fake)²] for each D
The paper's choices kept: ResNet generators (c7s1-w, one stride-2 down, residual blocks, one up, c7s1-C, tanh;
instance norm without affine or running statistics, reflection padding), PatchGAN discriminators (4×4 convs,
LeakyReLU 0.2, instance norm from the second layer), least-squares GAN loss (Mao et al. 2017: steadier than the
log loss), λ_cyc = 10, identity weight 0.5 λ_cyc (the paper's photo<->painting runs), weights ~ N(0, 0.02),
Adam lr 2e-4 with β1 = 0.5, and a history pool of 50 generated images per D (Shrivastava et al. 2017).
Adaptations to 28×28, and why:
- Down/up-sampling once (28 -> 14 -> 28) instead of twice: a 7×7 bottleneck leaves no room for 3×3 residual
  convolutions with reflection padding.
- D is a 3-layer PatchGAN whose 7×7 output map judges 18×18 patches (the paper: 70×70 of 256). A quarter of
  the side, as in the paper, would be a 7-pixel window, too small to tell a thick stroke from a blot.
- Update order: D first (on pooled fakes), then G through frozen Ds (genzoo.models.adversarial.frozen), the
  order every GAN here keeps; the paper's code steps G first. The fakes are computed once: D sees them detached
  (through the pool), G's adversarial term sees them through the just-updated, frozen D.
- The paper trains 100 epochs at constant lr then decays linearly to 0; here lr_schedule is constant or cosine.
The pool is CUDA-graph safe: buffers (images + fill count) and torch ops only, no .item(), no branching on
tensor values (see ImagePool).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.models import adversarial as adv
from genzoo.models.base import ZooModel
from genzoo.models.blocks import adam, normal_init, to_unit
from genzoo.params import TrainConfig, param


def norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)  # the paper's code: no buffers


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), norm(channels), nn.ReLU(),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), norm(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def generator(channels: int, width: int, residual_blocks: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ReflectionPad2d(3), nn.Conv2d(channels, width, 7), norm(width), nn.ReLU(),  # (B, w, 28, 28)
        nn.Conv2d(width, 2 * width, 3, 2, 1), norm(2 * width), nn.ReLU(),  # (B, 2w, 14, 14)
        *[ResidualBlock(2 * width) for _ in range(residual_blocks)],  # (B, 2w, 14, 14)
        nn.ConvTranspose2d(2 * width, width, 3, 2, 1, output_padding=1), norm(width), nn.ReLU(),  # (B, w, 28, 28)
        nn.ReflectionPad2d(3), nn.Conv2d(width, channels, 7), nn.Tanh(),  # (B, C, 28, 28) in [-1, 1]
    )


def discriminator(channels: int, width: int) -> nn.Sequential:
    """PatchGAN: one least-squares score per 18×18 patch."""
    return nn.Sequential(
        nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2),  # (B, w, 14, 14): no norm on the input layer
        nn.Conv2d(width, 2 * width, 4, 2, 1), norm(2 * width), nn.LeakyReLU(0.2),  # (B, 2w, 7, 7)
        nn.Conv2d(2 * width, 1, 3, 1, 1),  # (B, 1, 7, 7) patch scores
    )


class ImagePool(nn.Module):
    """The paper's history of generated images (Shrivastava et al. 2017), for one D.

    Per image, as in the paper's code: while the pool has room, the image is stored and returned as is; once it
    is full, with probability ½ the image is returned as is, otherwise it replaces a random stored image and the
    stored one is returned. Vectorized over chunks of at most `size` images (a chunk's swaps use distinct slots,
    drawn as a random permutation), so the only loop is over the static chunk count. The buffer has one extra
    row, a write-only sink that the rows which store nothing write to: index_copy then never writes one real
    slot twice, and the sink is never read. A pool of size 0 returns its input.
    """

    def __init__(self, size: int, image_shape: tuple[int, ...]):
        super().__init__()
        self.size = size
        self.register_buffer("images", torch.zeros(size + 1, *image_shape))  # (P + 1, C, H, W) in [-1, 1]
        self.register_buffer("count", torch.zeros((), dtype=torch.long))  # stored images, at most P

    @torch.no_grad()
    def forward(self, fakes: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return fakes
        return torch.cat([self._query(chunk.float()) for chunk in fakes.split(self.size)]).to(fakes.dtype)

    def _query(self, fakes: torch.Tensor) -> torch.Tensor:
        n, sink = len(fakes), self.size
        rows = torch.arange(n, device=fakes.device)
        fill = self.count + rows < self.size  # (n,) these rows find room: stored, returned as is
        self.images.index_copy_(0, torch.where(fill, self.count + rows, sink), fakes)
        self.count.copy_((self.count + n).clamp(max=self.size))
        swap = ~fill & (torch.rand(n, device=fakes.device) < 0.5)  # (n,) the coin flip, once full
        slots = torch.rand(self.size, device=fakes.device).argsort()[:n]  # (n,) distinct random slots
        stored = self.images[slots]  # (n, C, H, W) a copy, read before the swap writes
        self.images.index_copy_(0, torch.where(swap, slots, sink), fakes)
        return torch.where(swap.view(-1, 1, 1, 1), stored, fakes)


def lsgan_d(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """½ [E(D(real) - 1)² + E D(fake)²]: least-squares D loss with targets 1 (real) and 0 (fake)."""
    return 0.5 * ((real_scores.float() - 1).pow(2).mean() + fake_scores.float().pow(2).mean())


def lsgan_g(fake_scores: torch.Tensor) -> torch.Tensor:
    return (fake_scores.float() - 1).pow(2).mean()  # E (D(G(a)) - 1)²


@dataclass
class Config(TrainConfig):
    width: int = param(64, gt=0)  # channels at 28×28; the 14×14 residual trunk has twice as many
    residual_blocks: int = param(6, gt=0)  # the paper: 6 at 128×128, 9 at 256×256
    disc_width: int = param(64, gt=0)
    lambda_cycle: float = param(10.0, ge=0)
    lambda_idt: float = param(5.0, ge=0)  # 0.5 λ_cyc in the paper; 0 = no identity loss
    pool_size: int = param(50, ge=0)  # generated images remembered per D; 0 = D sees only the newest fakes
    beta1: float = param(0.5, ge=0, le=1)


class Model(ZooModel):
    Config = Config
    dataset = "unpaired"

    def __init__(self, config: Config, image_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10):
        super().__init__()
        self.config, self.image_shape, self.num_classes = config, image_shape, num_classes
        if tuple(image_shape[1:]) != (28, 28):
            raise ValueError(f"cyclegan is sized for 28×28 images, got {image_shape}")
        c = image_shape[0]
        self.gen_ab = generator(c, config.width, config.residual_blocks)  # G: A (thin) -> B (thick)
        self.gen_ba = generator(c, config.width, config.residual_blocks)  # F: B -> A
        self.disc_a = discriminator(c, config.disc_width)
        self.disc_b = discriminator(c, config.disc_width)
        self.pool_a = ImagePool(config.pool_size, image_shape)  # fakes F(b) for D_A
        self.pool_b = ImagePool(config.pool_size, image_shape)  # fakes G(a) for D_B
        normal_init(self)  # the paper's code: weights ~ N(0, 0.02)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        betas = (self.config.beta1, 0.999)
        return {"disc": adam([*self.disc_a.parameters(), *self.disc_b.parameters()], self.config.lr, betas),
                "gen": adam([*self.gen_ab.parameters(), *self.gen_ba.parameters()], self.config.lr, betas)}

    def generator_losses(self, real_a: torch.Tensor, real_b: torch.Tensor, fake_a: torch.Tensor,
                         fake_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """G's terms, all in [-1, 1] pixel space; the caller freezes the Ds."""
        cfg = self.config
        loss_g_adv = lsgan_g(self.disc_b(fake_b)) + lsgan_g(self.disc_a(fake_a))
        rec_a, rec_b = self.gen_ba(fake_b), self.gen_ab(fake_a)  # F(G(a)), G(F(b))
        loss_cycle = cfg.lambda_cycle * (F.l1_loss(rec_a.float(), real_a) + F.l1_loss(rec_b.float(), real_b))
        losses = {"loss_g_adv": loss_g_adv, "loss_cycle": loss_cycle}
        if cfg.lambda_idt > 0:  # a config value, not a tensor: fixed for the whole run
            idt_b, idt_a = self.gen_ab(real_b), self.gen_ba(real_a)  # G(b) should be b, F(a) should be a
            losses["loss_idt"] = cfg.lambda_idt * (F.l1_loss(idt_b.float(), real_b) + F.l1_loss(idt_a.float(), real_a))
        return losses

    def train_step(self, batch: dict[str, torch.Tensor], opt: dict) -> dict[str, torch.Tensor]:
        real_a, real_b = to_unit(batch["a"]) * 2 - 1, to_unit(batch["b"]) * 2 - 1  # (B, C, H, W) in [-1, 1]
        fake_b, fake_a = self.gen_ab(real_a), self.gen_ba(real_b)  # G(a), F(b), with G's graph
        # D_A and D_B: real images vs fakes from the history pools (G's output detached)
        real_scores_b, real_scores_a = self.disc_b(real_b), self.disc_a(real_a)
        fake_scores_b = self.disc_b(self.pool_b(fake_b.detach()))
        fake_scores_a = self.disc_a(self.pool_a(fake_a.detach()))
        loss_d_b, loss_d_a = lsgan_d(real_scores_b, fake_scores_b), lsgan_d(real_scores_a, fake_scores_a)
        opt["disc"].zero_grad(set_to_none=True)
        (loss_d_a + loss_d_b).backward()
        opt["disc"].step()
        # G and F through the frozen Ds: they pass gradients on and learn nothing
        with adv.frozen(self.disc_a), adv.frozen(self.disc_b):
            losses = self.generator_losses(real_a, real_b, fake_a, fake_b)
            loss_g = sum(losses.values())
            opt["gen"].zero_grad(set_to_none=True)
            loss_g.backward()
            opt["gen"].step()
        out = {"loss_d_a": loss_d_a.detach(), "loss_d_b": loss_d_b.detach(), "loss_g": loss_g.detach()}
        out.update({k: v.detach() for k, v in losses.items()})
        out["d_real_b"], out["d_fake_b"] = real_scores_b.detach().mean(), fake_scores_b.detach().mean()
        return out

    @torch.no_grad()
    def translate(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """G(a): thin -> thick, (B, C, H, W) in [0, 1]."""
        return (self.gen_ab(to_unit(batch["a"]) * 2 - 1).float() + 1) / 2

    def output(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.translate(batch)  # G(a): the direction the paper scores

    @torch.no_grad()
    def translate_back(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """F(b): thick -> thin, (B, C, H, W) in [0, 1]."""
        return (self.gen_ba(to_unit(batch["b"]) * 2 - 1).float() + 1) / 2

    @torch.no_grad()
    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """On the val split's hidden pairs: L1 (in [0, 1]) of G(a) to b and of F(b) to a; D's least squares."""
        a01, b01 = to_unit(batch["a"]), to_unit(batch["b"])
        fake_b, fake_a = self.translate(batch), self.translate_back(batch)
        return {"l1_ab": (fake_b - b01).abs().mean(), "l1_ba": (fake_a - a01).abs().mean(),
                "loss_d_b": lsgan_d(self.disc_b(b01 * 2 - 1), self.disc_b(fake_b * 2 - 1)),
                "loss_d_a": lsgan_d(self.disc_a(a01 * 2 - 1), self.disc_a(fake_a * 2 - 1))}

    @torch.no_grad()
    def pictures(self, data: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, int]]:
        """Rows of 10 test digits: a_to_b = x, G(x), F(G(x)), the hidden thick truth; b_to_a = y, F(y), G(F(y)),
        the hidden thin truth."""
        with adv.evaluating(self):
            a01, b01 = to_unit(data["a"][:10]), to_unit(data["b"][:10])
            fake_b, fake_a = self.translate({"a": data["a"][:10]}), self.translate_back({"b": data["b"][:10]})
            rec_a = (self.gen_ba(fake_b * 2 - 1).float() + 1) / 2
            rec_b = (self.gen_ab(fake_a * 2 - 1).float() + 1) / 2
        return {"a_to_b": (torch.cat([a01, fake_b, rec_a, b01]), 10),
                "b_to_a": (torch.cat([b01, fake_a, rec_b, a01]), 10)}

    @torch.no_grad()
    def extra_scores(self, data: dict[str, dict[str, torch.Tensor]], evaluator: nn.Module) -> dict[str, float]:
        """On the test split's hidden pairs, both directions: the evaluator's accuracy on the translations (the
        digit kept), L1 / PSNR / SSIM to the hidden truth, and FD-evaluator to the real digits of the target
        domain (the test split's own thick / thin images)."""
        from genzoo.metrics.translation import translate_all, translation_scores

        test = data["test"]
        a01, b01, y = to_unit(test["a"]), to_unit(test["b"]), test["y"]
        with adv.evaluating(self):
            fake_b = translate_all(self, test, 500)  # G(a)
            fake_a = translate_all(_Backward(self), test, 500)  # F(b)
        scores = {}
        for name, fake, truth in (("ab", fake_b, b01), ("ba", fake_a, a01)):
            got = translation_scores(fake, truth, evaluator, y)  # FD against the truth set's features
            scores.update({f"{k}_{name}": float(v) for k, v in got.items()})
        return scores


class _Backward(nn.Module):
    """Presents F: B -> A as `translate`, so the shared translate_all batches it too."""

    def __init__(self, model: Model):
        super().__init__()
        self.model = model

    def translate(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.translate_back(batch)
