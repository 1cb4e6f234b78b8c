"""SimGAN — Shrivastava, Pfister, Tuzel, Susskind, Wang & Webb 2017, "Learning from Simulated and Unsupervised
Images through Adversarial Training" (CVPR 2017), on digits: font-rendered synthetic digits -> MNIST.

A refiner R makes a synthetic image x look real while keeping what the simulator knows about it (the label):
    loss_g = loss_g_adv(D(R(x))) + λ_reg · ‖ψ(R(x)) − ψ(x)‖₁,   ψ = identity (self-regularization, eq. 4)
    R: (1, 28, 28) -> conv 3×3 (w) -> n ResNet blocks at full resolution -> conv 1×1 -> (1, 28, 28), tanh
Three choices of the paper, all kept:
- Local adversarial loss (§2.2): D is fully convolutional and outputs a map of patch logits (7×7 here; each
  logit sees a 23×23 window, the paper's D unchanged - on 28×28 digits that is most of the digit, so "local"
  is weaker than on the paper's 55×35 eyes); the loss is the cross-entropy of every patch, averaged. Every
  patch must look real, so R cannot drift into artifacts that one patch would give away.
- History of refined images (§2.3): half of each D minibatch of refined images comes from a buffer of images R
  refined earlier, after which random buffer slots are overwritten with current refinements; D keeps rejecting
  old artifacts and R cannot reintroduce them.  The buffer is a registered tensor: slots from torch.randint,
  writes with index_copy_, an unfilled slot is replaced by a current image with torch.where - no host sync,
  no branching on tensor values, so the step is CUDA-graph safe, and the buffer lives in the state_dict.
- Pretraining (§3.1): R first learns with self-regularization only (R ≈ identity), D trains all along, so
  after `pretrain_steps` the adversarial term switches on against an already-trained D.  The switch is a
  weight (steps >= pretrain_steps).float() on loss_g_adv, from a registered step counter.
Then each training step is K_d D updates followed by K_g R updates (the paper's Algorithm 1 with D first, as
every GAN here; Kg = 2, Kd = 1 for the eyes). The paper trains with SGD, lr 0.001; `optimizer` offers Adam.
No BatchNorm anywhere: eval mode equals train mode and R refines each image independently of its batch-mates.
Score (extra_scores): one fixed small CNN recipe trained on raw synthetic digits and on refined ones, tested on
real MNIST test digits - the paper's gaze-estimation experiment in digit form (its claim: src/genzoo/targets.yaml).
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


class ResBlock(nn.Module):
    """x + conv(relu(conv(x))), then ReLU: the paper's ResNet block (two 3×3 convolutions, w feature maps)."""

    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.relu(h + self.body(h))  # (B, w, H, W)


def refiner(width: int, blocks: int, channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),  # (B, w, 28, 28)
        *[ResBlock(width) for _ in range(blocks)],  # (B, w, 28, 28): no downsampling, R edits pixels locally
        nn.Conv2d(width, channels, 1), nn.Tanh(),  # (B, C, 28, 28) in [-1, 1]
    )


def local_discriminator(width: int, channels: int) -> nn.Sequential:
    """The paper's eye D (conv3×3/2, conv3×3/2, maxpool 3×3/1, conv3×3, conv1×1, conv1×1), one logit per patch."""
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, 2, 1), nn.LeakyReLU(0.2),  # (B, w, 14, 14)
        nn.Conv2d(width, width, 3, 2, 1), nn.LeakyReLU(0.2),  # (B, w, 7, 7)
        nn.MaxPool2d(3, 1, 1),  # (B, w, 7, 7)
        nn.Conv2d(width, width // 2, 3, 1, 1), nn.LeakyReLU(0.2),  # (B, w/2, 7, 7)
        nn.Conv2d(width // 2, width // 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(width // 2, 1, 1),  # (B, 1, 7, 7) patch logits: "this patch is real"
    )


def self_regularization(refined01: torch.Tensor, synthetic01: torch.Tensor) -> torch.Tensor:
    """‖ψ(R(x)) − ψ(x)‖₁ with ψ = identity, as the mean absolute pixel difference (the sum / pixels)."""
    return (refined01 - synthetic01).abs().mean()


@dataclass
class Config(TrainConfig):
    width: int = param(64, gt=0)  # refiner feature maps (the paper's 64)
    blocks: int = param(4, gt=0)  # ResNet blocks of the refiner (the paper's 4 for the eyes)
    disc_width: int = param(64, gt=1)  # D's first two layers; its 3×3 and 1×1 layers have half as many
    reg_weight: float = param(1.0, ge=0)  # λ_reg on the mean per-pixel L1 (the paper sums; it does not print λ)
    pretrain_steps: int = param(1000, ge=0)  # steps with the adversarial term off (the paper: R 1000, D 200)
    g_steps: int = param(2, gt=0)  # K_g: refiner updates per step
    d_steps: int = param(1, gt=0)  # K_d: discriminator updates per step
    history_size: int = param(6400, gt=0)  # refined images kept for D (the paper gives no size)
    optimizer: str = param("sgd", choices=("sgd", "adam"))  # the paper: SGD, lr 0.001
    beta1: float = param(0.5, ge=0, le=1)  # Adam's β1 when optimizer = adam
    eval_images: int = param(10000, gt=0)  # synthetic training digits the score classifier learns from
    eval_steps: int = param(2000, gt=0)  # its SGD steps (batch CLASSIFIER_BATCH) on raw and on refined digits


class Model(ZooModel):
    Config = Config
    dataset = "synthetic"

    def __init__(self, config: Config, image_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10):
        super().__init__()
        self.config, self.image_shape, self.num_classes = config, image_shape, num_classes
        self.batches_per_step = config.d_steps + config.g_steps  # every update gets its own minibatch
        self.gen = refiner(config.width, config.blocks, image_shape[0])
        self.disc = local_discriminator(config.disc_width, image_shape[0])
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("history", torch.zeros(config.history_size, *image_shape))  # refined, in [0, 1]
        self.register_buffer("history_filled", torch.zeros((), dtype=torch.long))  # slots holding an image

    # --- the two networks, on [0, 1] images -------------------------------------------------------------
    def refine(self, synthetic01: torch.Tensor) -> torch.Tensor:
        return (self.gen(synthetic01 * 2 - 1) + 1) / 2  # (B, C, H, W) in [0, 1]

    def criticize(self, x01: torch.Tensor) -> torch.Tensor:
        return self.disc(x01 * 2 - 1)  # (B, 1, h, w) patch logits

    # --- history buffer -------------------------------------------------------------------------------------
    def mix_history(self, fake_b: torch.Tensor) -> torch.Tensor:
        """D's refined minibatch: the first half current, the second half drawn from the buffer (a slot not yet
        filled gives the current image instead, so this is exact from step one and half/half once full); then
        half a batch of current images is written into the buffer (slots in order while filling, random after)."""
        half = len(fake_b) // 2
        size = self.config.history_size
        slots = torch.randint(0, size, (len(fake_b) - half,), device=fake_b.device)
        stored = (slots < self.history_filled).view(-1, *[1] * (fake_b.dim() - 1))
        old = torch.where(stored, self.history[slots], fake_b[half:])
        mixed = torch.cat([fake_b[:half].to(old.dtype), old])  # (B, C, H, W)
        n_new = min(max(half, 1), size)
        in_order = (self.history_filled + torch.arange(n_new, device=fake_b.device)) % size
        at_random = torch.randint(0, size, (n_new,), device=fake_b.device)
        targets = torch.where(self.history_filled < size, in_order, at_random)
        self.history.index_copy_(0, targets, fake_b[:n_new].detach().to(self.history.dtype))
        self.history_filled.copy_((self.history_filled + n_new).clamp(max=size))
        return mixed

    # --- training -------------------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        if self.config.optimizer == "sgd":
            return {"disc": torch.optim.SGD(self.disc.parameters(), lr=self.config.lr),
                    "gen": torch.optim.SGD(self.gen.parameters(), lr=self.config.lr)}
        betas = (self.config.beta1, 0.999)
        return {"disc": adam(self.disc.parameters(), self.config.lr, betas),
                "gen": adam(self.gen.parameters(), self.config.lr, betas)}

    def adversarial_weight(self) -> torch.Tensor:
        return (self.steps >= self.config.pretrain_steps).float()  # 0 while pretraining, then 1; on the device

    def train_step(self, batch: dict[str, torch.Tensor], opt: dict) -> dict[str, torch.Tensor]:
        k_d, k_g = self.config.d_steps, self.config.g_steps
        # K_d minibatches for D, then K_g for R (reused in turn should a tiny batch have fewer rows than updates)
        chunks_a, chunks_b = to_unit(batch["a"]).chunk(k_d + k_g), to_unit(batch["b"]).chunk(k_d + k_g)
        real_a = [chunks_a[i % len(chunks_a)] for i in range(k_d + k_g)]  # synthetic digits
        real_b = [chunks_b[i % len(chunks_b)] for i in range(k_d)]  # real digits, for D only
        for synthetic, real in zip(real_a[:k_d], real_b):
            with torch.no_grad():
                fake_b = self.mix_history(self.refine(synthetic))
            real_logits, fake_logits = self.criticize(real), self.criticize(fake_b)
            loss_d = adv.d_loss(real_logits, fake_logits)  # mean over patches and images
            opt["disc"].zero_grad(set_to_none=True)
            loss_d.backward()
            opt["disc"].step()
        weight = self.adversarial_weight()
        with adv.frozen(self.disc):
            for synthetic in real_a[k_d:]:
                fake_b = self.refine(synthetic)
                loss_g_adv = adv.g_loss(self.criticize(fake_b), "non_saturating")  # -log D per patch
                loss_reg = self_regularization(fake_b, synthetic)
                opt["gen"].zero_grad(set_to_none=True)
                (weight * loss_g_adv + self.config.reg_weight * loss_reg).backward()
                opt["gen"].step()
        self.steps += 1
        return {"loss_d": loss_d.detach(), "loss_g_adv": loss_g_adv.detach(), "loss_reg": loss_reg.detach(),
                "d_real": torch.sigmoid(real_logits).mean().detach(),
                "d_fake": torch.sigmoid(fake_logits).mean().detach(), "adv_on": weight}

    @torch.no_grad()
    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        synthetic = to_unit(batch["a"])
        fake_b = self.refine(synthetic)
        real_logits, fake_logits = self.criticize(to_unit(batch["b"])), self.criticize(fake_b)
        return {"loss_reg": self_regularization(fake_b, synthetic), "loss_d": adv.d_loss(real_logits, fake_logits),
                "d_real": torch.sigmoid(real_logits).mean(), "d_fake": torch.sigmoid(fake_logits).mean()}

    @torch.no_grad()
    def translate(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.refine(to_unit(batch["a"]))  # (B, C, H, W) in [0, 1]

    def output(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.translate(batch)  # the refined synthetic digits

    @torch.no_grad()
    def refine_all(self, a_uint8: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        with adv.evaluating(self):
            return torch.cat([self.translate({"a": a_uint8[i:i + batch_size]})
                              for i in range(0, len(a_uint8), batch_size)])

    # --- report -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def pictures(self, data: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, int]]:
        """Rows alternate: 10 synthetic digits, then R of them (5 such pairs of rows); and 50 real digits."""
        per_row = min(10, len(data["a"]))
        rows = max(1, min(50, len(data["a"])) // per_row)
        a = data["a"][:rows * per_row]
        synthetic, refined = to_unit(a), self.refine_all(a)  # (rows * per_row, C, H, W) each
        pairs = torch.stack([synthetic.view(rows, per_row, *self.image_shape),
                             refined.view(rows, per_row, *self.image_shape)], 1)  # (rows, 2, per_row, C, H, W)
        return {"refined": (pairs.flatten(0, 2), per_row), "real": (to_unit(data["b"][:50]), 10)}

    @torch.no_grad()
    def extra_scores(self, data: dict, evaluator: nn.Module) -> dict[str, float]:
        from genzoo.metrics.frechet import features, features_and_classes, frechet_distance

        train, test = data["train"], data["test"]
        n = min(self.config.eval_images, len(train["a"]))
        raw = to_unit(train["a"][:n])
        refined = self.refine_all(train["a"][:n])
        real_x, real_y = to_unit(test["b"]), test["y"]
        err_raw = classifier_error(raw, train["y_a"][:n], real_x, real_y, self.config.eval_steps)
        err_refined = classifier_error(refined, train["y_a"][:n], real_x, real_y, self.config.eval_steps)
        test_raw, test_refined = to_unit(test["a"]), self.refine_all(test["a"])
        real_feats = features(evaluator, real_x)
        scores = {"real_test_error_raw": err_raw, "real_test_error_refined": err_refined,
                  "error_reduction": 1.0 - err_refined / max(err_raw, 1e-12)}
        for kind, images in (("raw", test_raw), ("refined", test_refined)):
            feats, classes = features_and_classes(evaluator, images)  # one evaluator pass: the accuracy and the FD
            scores[f"evaluator_accuracy_{kind}"] = float((classes == test["y_a"]).float().mean())
            scores[f"fd_{kind}"] = frechet_distance(real_feats, feats)
        scores["self_regularization"] = float(self_regularization(test_refined, test_raw))
        return scores


# --- the score's classifier: one fixed recipe, trained the same way on raw and on refined digits -------------
CLASSIFIER_SEED, CLASSIFIER_BATCH, CLASSIFIER_LR = 0, 64, 1e-3


def classifier(channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 14, 14)
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, 7, 7)
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, num_classes),
    )


def train_classifier(x01: torch.Tensor, y: torch.Tensor, steps: int, num_classes: int = 10) -> nn.Sequential:
    """The fixed recipe: this CNN, Adam lr 1e-3, batch 64, `steps` steps, init and batch order from
    CLASSIFIER_SEED alone (own generator; the global RNG is left as it was), so the two runs differ only in data."""
    with torch.random.fork_rng(devices=[x01.device] if x01.device.type == "cuda" else []), torch.enable_grad():
        torch.manual_seed(CLASSIFIER_SEED)
        net = classifier(x01.shape[1], num_classes).to(x01.device)
        opt = adam(net.parameters(), CLASSIFIER_LR)
        order = torch.Generator().manual_seed(CLASSIFIER_SEED)
        for _ in range(steps):
            idx = torch.randint(0, len(x01), (min(CLASSIFIER_BATCH, len(x01)),), generator=order).to(x01.device)
            loss = F.cross_entropy(net(x01[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def classifier_error(train_x01: torch.Tensor, train_y: torch.Tensor, test_x01: torch.Tensor, test_y: torch.Tensor,
                     steps: int) -> float:
    """Error rate on (test_x01, test_y) of the recipe trained on (train_x01, train_y)."""
    net = train_classifier(train_x01, train_y, steps)
    pred = torch.cat([net(test_x01[i:i + 1000]).argmax(1) for i in range(0, len(test_x01), 1000)])
    return float((pred != test_y).float().mean())
