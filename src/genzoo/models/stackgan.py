"""StackGAN — Zhang, Xu, Li, Zhang, Wang, Huang & Metaxas 2017, "StackGAN: Text to Photo-realistic Image
Synthesis with Stacked Generative Adversarial Networks" (ICCV 2017), at MNIST scale on the `captions` set
(coloured digits with captions such as "a red seven with thick strokes"; genzoo.data.captions).

    text encoder  tokens (B, T) -> word embeddings -> bidirectional GRU -> mean over the non-pad words -> phi_t
    CA (§3.1)     (mu, log sigma) = FC(phi_t); c = mu + sigma * eps; loss + lambda KL(N(mu, sigma^2) || N(0, I))
    Stage I       G1(z, c1): FC -> (4g, 7, 7) -> up x2 + conv3 -> (2g, 14, 14) -> conv3 -> (3, 14, 14), tanh
                  D1: (3, 14, 14) -> convs -> (2d, 4, 4) ++ compressed phi_t (Md = 4x4 replicated) -> 1x1 conv
                  -> conv4 -> one logit
    Stage II      G2(s1, c2): s1 -> conv3, conv4/2 -> (2g, 7, 7) ++ c2 replicated -> conv3 -> residual blocks
                  -> up x2 -> (g, 14, 14) -> up x2 -> (g/2, 28, 28) -> conv3 -> (3, 28, 28), tanh (no z: the
                  randomness is s1's, as in the paper); D2 as D1 on 28x28 (one more down-sampling conv)
Matching-aware D (§3.2, after Reed et al. 2016): real image + right caption = real; real image + mismatched
caption = fake; fake image + right caption = fake; the loss is real + (wrong + fake) / 2, as in the released
code. The mismatched caption is another row's (the batch rolled by one; the paper's choice); a rolled row that
happens to have the same digit, colour and stroke is a true match and is left out of the "wrong" term. With
`swap_fraction` > 0 that share of rows instead gets its own caption with one word swapped within its attribute
(another digit, colour or stroke; see captions.VOCAB's blocks): a hard negative that differs in exactly one
attribute. Why it exists: a random other row nearly always differs in its digit, so D can reject it by the
digit alone and barely learns to check the stroke (same digit and colour, other stroke: 2 % of random rows).

Auxiliary attribute classifier (`aux_weight` > 0; not in StackGAN, from TAC-GAN, Dash et al. 2017, which adds
AC-GAN's classifier to a text-conditioned GAN): each D also reads the image's digit, colour and stroke with a
head on its image features (three softmaxes), trained on real images with their labels; G's loss adds the same
cross-entropy on its fakes against the caption's attributes. Why: the matching loss tells D only "this pair is
wrong", and D learns the digit from that last (above); the stroke's middle value ("regular", the digit as
drawn) overlaps thin and thick, and G read it right only half the time (the side runs: docs/notes/
model-history.md). The head learns from real images only: a fake's attributes are what G got wrong.

The text encoder. The paper uses a fixed char-CNN-RNN pretrained by Reed et al. 2016 as a joint image-text
embedding; none exists here, so one is learnt the same way, beside the GANs, with its own optimizer: a text
encoder and a small image encoder trained so that each image picks its caption among the batch's captions and
each caption its image (a symmetric softmax over cosine scores; rows saying the same thing are all right
answers). G and D get phi_t without gradients: neither can reshape the text space. Why: the joint embedding must
tell digits apart to pair images with captions, so the digit is in phi_t from the first few hundred steps (an
encoder trained by D's matching loss learnt the colour words only: docs/notes/model-history.md). phi_t is the
caption's direction in that space (its length means nothing to cosine scores), scaled to about unit size per
dimension.

Training, in one train_step (the paper trains stage I for 600 epochs, then stage II with stage I fixed): the
joint embedding first, then D1 and D2 on fakes made without gradients, then G1 and G2 (each with its CA)
through frozen D's. Stage II's input is G1's output detached: stage II's loss never reaches stage I, so stage I learns
exactly as if it trained alone, and stage II always refines the current stage I. Non-saturating G loss, Adam
lr 2e-4, beta1 0.5, batch 64 (the paper's). Real images enter D2 at 28x28 and D1 area-downsampled to 14x14.
D's BatchNorm keeps no running statistics (batch statistics in train and eval mode): D has no buffers, so G's
step leaves D bit-identical.

KL weight: the paper writes lambda = 1 (§4) for the full KL (the sum over c's dimensions); the released code
takes the mean over elements with coefficient 2.0, i.e. 2 / c_dim per nat. The weight bounds how much of the
caption G can use: naming digit, colour and stroke takes log 90 = 4.5 nats, so the profiles set it below the
paper's (the KL-weight and learning-rate probes behind them: docs/notes/model-history.md).
Sizes: the paper's z 100, c 128, phi_t 1024, N_g 128, N_d 128, M_d 4, D width 64 and 4 residual blocks (released
code) are the defaults; the profiles scale them down (90 conditions, 28x28 digits).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.data.captions import COLOUR_IDS, DIGIT_IDS, PAD, STROKE_IDS, VOCAB, caption_text, vocabulary
from genzoo.models import adversarial as adv
from genzoo.models.base import ZooModel
from genzoo.models.blocks import adam, to_unit
from genzoo.params import TrainConfig, param

BLOCKS = (DIGIT_IDS, COLOUR_IDS, STROKE_IDS)  # the attribute words of captions, contiguous in VOCAB


def kl_loss(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) summed over dimensions, mean over rows. (B, c) each -> scalar."""
    return 0.5 * (mu.pow(2) + (2 * log_sigma).exp() - 1 - 2 * log_sigma).sum(1).mean()


def matching_d_loss(real: torch.Tensor, wrong: torch.Tensor, fake: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """real + (wrong + fake) / 2 of BCE losses on (B,) logits; `valid` (B,) 0/1 drops wrong pairs that match."""
    loss_real = F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
    loss_fake = F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
    per_row = F.binary_cross_entropy_with_logits(wrong, torch.zeros_like(wrong), reduction="none")
    loss_wrong = (per_row * valid).sum() / valid.sum().clamp(min=1)
    return loss_real + 0.5 * (loss_wrong + loss_fake)


def attributes(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """What a caption says of its row: (B, 3) digit, colour, stroke."""
    return torch.stack([batch["y"], batch["colour"], batch["stroke"]], 1)


def swap_attribute(tokens: torch.Tensor, which: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Shift the word of attribute which[b] (0 digit, 1 colour, 2 stroke) by shift[b] within its block (mod the
    block's size): another value of that attribute, everything else the same. (B, T) -> (B, T)."""
    out = tokens
    for k, ids in enumerate(BLOCKS):
        lo, n = ids[0], len(ids)
        hit = (tokens >= lo) & (tokens < lo + n) & (which == k)[:, None]  # (B, T)
        out = torch.where(hit, lo + (tokens - lo + shift[:, None]) % n, out)
    return out


def mismatch(batch: dict[str, torch.Tensor], swap_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mismatched captions for the batch's real images, and which of them truly mismatch: (B, T), (B,) 0/1."""
    tokens = batch["tokens"]
    b, device = len(tokens), tokens.device
    attrs = attributes(batch)  # (B, 3)
    rolled = tokens.roll(1, 0)  # another row's caption (the paper's wrong pairs)
    differs = (attrs != attrs.roll(1, 0)).any(1).float()  # (B,)
    if swap_fraction <= 0:  # a config value, not a tensor: no host sync
        return rolled, differs
    which = torch.randint(0, 3, (b,), device=device)
    sizes = torch.zeros_like(which)  # (B,) the size of each row's block (no host-to-device copy: graph safe)
    for k, ids in enumerate(BLOCKS):
        sizes = torch.where(which == k, len(ids), sizes)
    shift = 1 + (torch.rand(b, device=device) * (sizes - 1)).long().clamp(max=sizes - 2)  # 1 .. size-1
    use_swap = torch.rand(b, device=device) < swap_fraction
    wrong = torch.where(use_swap[:, None], swap_attribute(tokens, which, shift), rolled)
    return wrong, torch.where(use_swap, torch.ones_like(differs), differs)


class TextEncoder(nn.Module):
    def __init__(self, word_dim: int, text_dim: int):
        super().__init__()
        self.embed = nn.Embedding(len(VOCAB), word_dim, padding_idx=PAD)
        self.rnn = nn.GRU(word_dim, word_dim, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * word_dim, text_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = (tokens != PAD).float()[..., None]  # (B, T, 1)
        h, _ = self.rnn(self.embed(tokens))  # (B, T, 2w); fixed length T: no packing, no data-dependent shapes
        pooled = (h * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, 2w) mean over the words
        return self.out(pooled)  # (B, text_dim) phi_t


class ImageEncoder(nn.Module):
    """The joint embedding's image side: (B, 3, 28, 28) in [-1, 1] -> (B, text_dim). Used only to train the text
    encoder (Reed et al. 2016's image-text embedding); neither G nor D sees it."""

    def __init__(self, text_dim: int, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2),  # (B, w, 14, 14)
                                 nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),  # (B, 2w, 7, 7)
                                 nn.Flatten(), nn.Linear(2 * width * 49, text_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def joint_embedding_loss(image: torch.Tensor, text: torch.Tensor, attrs: torch.Tensor,
                         temperature: float) -> torch.Tensor:
    """Symmetric softmax matching loss of a batch: each image must pick its caption among the batch's captions
    and each caption its image (cosine scores / temperature). Rows with the same digit, colour and stroke share
    a caption's meaning, so all of them are right answers (soft targets). (B, e), (B, e), (B, 3) -> scalar."""
    scores = F.normalize(image, dim=1) @ F.normalize(text, dim=1).T / temperature  # (B, B)
    same = (attrs[:, None, :] == attrs[None, :, :]).all(-1).float()  # (B, B), symmetric, diagonal 1
    target = same / same.sum(1, keepdim=True)
    return 0.5 * (F.cross_entropy(scores, target) + F.cross_entropy(scores.T, target))


class CondAugment(nn.Module):
    def __init__(self, text_dim: int, c_dim: int):
        super().__init__()
        self.fc = nn.Linear(text_dim, 2 * c_dim)

    def forward(self, phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, log_sigma = self.fc(phi).chunk(2, 1)  # (B, c) each
        return mu + log_sigma.exp() * torch.randn_like(mu), mu, log_sigma


def conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def up_block(c_in: int, c_out: int) -> list[nn.Module]:  # the paper's: nearest x2, conv3, BN, ReLU
    return [nn.Upsample(scale_factor=2, mode="nearest"), *conv_bn_relu(c_in, c_out)]


class Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(*conv_bn_relu(c, c), nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class Stage1Generator(nn.Module):
    def __init__(self, z_dim: int, c_dim: int, g: int):
        super().__init__()
        self.g = g
        self.fc = nn.Sequential(nn.Linear(z_dim + c_dim, 4 * g * 49, bias=False), nn.BatchNorm1d(4 * g * 49), nn.ReLU())
        self.net = nn.Sequential(*up_block(4 * g, 2 * g), *conv_bn_relu(2 * g, g),  # (B, g, 14, 14)
                                 nn.Conv2d(g, 3, 3, 1, 1), nn.Tanh())

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, c], 1)).view(-1, 4 * self.g, 7, 7)  # (B, 4g, 7, 7)
        return self.net(h)  # (B, 3, 14, 14) in [-1, 1]


class Stage2Generator(nn.Module):
    def __init__(self, c_dim: int, g: int, res_blocks: int):
        super().__init__()
        self.encode = nn.Sequential(nn.Conv2d(3, g, 3, 1, 1), nn.ReLU(),
                                    nn.Conv2d(g, 2 * g, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * g), nn.ReLU())
        self.joint = nn.Sequential(*conv_bn_relu(2 * g + c_dim, 2 * g), *[Residual(2 * g) for _ in range(res_blocks)])
        self.decode = nn.Sequential(*up_block(2 * g, g), *up_block(g, max(g // 2, 1)),  # (B, g/2, 28, 28)
                                    nn.Conv2d(max(g // 2, 1), 3, 3, 1, 1), nn.Tanh())

    def forward(self, s1: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.encode(s1)  # (B, 2g, 7, 7)
        h = self.joint(torch.cat([h, c[:, :, None, None].expand(-1, -1, 7, 7)], 1))  # (B, 2g, 7, 7)
        return self.decode(h)  # (B, 3, 28, 28) in [-1, 1]


def d_block(c_in: int, c_out: int, kernel: int, norm: bool = True) -> list[nn.Module]:
    bn = [nn.BatchNorm2d(c_out, track_running_stats=False)] if norm else []  # no buffers (see the docstring)
    return [nn.Conv2d(c_in, c_out, kernel, 2, 1, bias=not norm), *bn, nn.LeakyReLU(0.2)]


ATTRIBUTE_SIZES = tuple(len(ids) for ids in BLOCKS)  # digit, colour, stroke: the auxiliary head's three softmaxes


class MatchingDiscriminator(nn.Module):
    """(B, 3, S, S) image and (B, text_dim) phi_t -> (B,) logit of "a real image that matches the caption";
    with `classify`, also an auxiliary head that reads the image's digit, colour and stroke from the image alone
    (B, sum(ATTRIBUTE_SIZES)) logits: TAC-GAN's classifier, built only when its loss is on."""

    def __init__(self, size: int, text_dim: int, d: int, d_text: int, classify: bool = False):
        super().__init__()
        if size == 14:
            layers, c = [*d_block(3, d, 4, False), *d_block(d, 2 * d, 3)], 2 * d  # 14 -> 7 -> 4
        else:
            layers, c = [*d_block(3, d, 4, False), *d_block(d, 2 * d, 4), *d_block(2 * d, 4 * d, 3)], 4 * d  # 28 -> 4
        self.image = nn.Sequential(*layers)
        self.text = nn.Sequential(nn.Linear(text_dim, d_text), nn.LeakyReLU(0.2))  # compress phi_t to Nd
        self.joint = nn.Sequential(nn.Conv2d(c + d_text, c, 1, bias=False),
                                   nn.BatchNorm2d(c, track_running_stats=False), nn.LeakyReLU(0.2),
                                   nn.Conv2d(c, 1, 4))  # (B, 1, 1, 1)
        self.classify = nn.Conv2d(c, sum(ATTRIBUTE_SIZES), 4) if classify else None  # after the rest: same init

    def forward(self, x: torch.Tensor, phi: torch.Tensor, with_attributes: bool = False):
        """(B,) logits, or ((B,) logits, (B, 16) attribute logits) with `with_attributes`."""
        h = self.image(x)  # (B, c, 4, 4)
        t = self.text(phi)[:, :, None, None].expand(-1, -1, 4, 4)  # (B, Nd, 4, 4) replicated spatially
        logit = self.joint(torch.cat([h, t], 1)).flatten()  # (B,)
        return (logit, self.classify(h).flatten(1)) if with_attributes else logit


def attribute_loss(logits: torch.Tensor, attrs: torch.Tensor) -> torch.Tensor:
    """Sum over digit, colour and stroke of the cross-entropy of (B, 16) logits against (B, 3) labels."""
    parts = logits.split(ATTRIBUTE_SIZES, 1)
    return sum(F.cross_entropy(part, attrs[:, k]) for k, part in enumerate(parts))


@dataclass
class Config(TrainConfig):
    epochs: int = param(600, gt=0)  # the paper: 600 epochs per stage (lr halved every 100: not modelled)
    batch_size: int = param(64, gt=0)
    lr: float = param(2e-4, gt=0)  # G and D alike
    beta1: float = param(0.5, ge=0, le=1)
    beta2: float = param(0.999, ge=0, le=1)
    z_dim: int = param(100, gt=0)  # N_z
    c_dim: int = param(128, gt=0)  # N_c: the conditioning augmentation's output
    text_dim: int = param(1024, gt=0)  # phi_t (the paper's char-CNN-RNN embedding size)
    word_dim: int = param(64, gt=0)  # word embeddings and GRU state per direction (no paper value)
    g_width: int = param(128, gt=0)  # N_g
    d_width: int = param(64, gt=0)  # D's first conv (released code DF_DIM)
    d_text: int = param(128, gt=0)  # N_d: phi_t compressed in D, replicated M_d x M_d = 4 x 4
    res_blocks: int = param(4, ge=0)  # stage II (released code R_NUM)
    kl_weight: float = param(1.0, ge=0)  # lambda, on the full KL (see the docstring)
    swap_fraction: float = param(0.0, ge=0, le=1)  # share of hard-negative wrong captions (0 = the paper's)
    aux_weight: float = param(0.0, ge=0)  # TAC-GAN's auxiliary attribute loss on D and G (0 = the paper's)
    embed_width: int = param(32, gt=0)  # the joint embedding's image encoder (first conv's channels)
    embed_temperature: float = param(0.1, gt=0)  # the joint embedding's softmax temperature on cosine scores
    embed_lr: float = param(1e-3, gt=0)  # the joint embedding's Adam (its own optimizer; no paper value)
    score_rows: int = param(0, ge=0)  # test captions extra_scores generates from; 0 = all
    attribute_steps: int = param(1000, ge=1)  # the scoring attribute classifier's training steps (a tiny run: fewer)


class Model(ZooModel):
    Config = Config
    dataset = "captions"

    def __init__(self, config: Config, image_shape: tuple[int, ...] = (3, 28, 28), num_classes: int = 10):
        super().__init__()
        self.config, self.image_shape, self.num_classes = config, image_shape, num_classes
        if tuple(image_shape[1:]) != (28, 28):
            raise ValueError(f"stackgan is sized for 28x28 images, got {image_shape}")
        cfg = config
        self.gen = nn.ModuleDict({"ca1": CondAugment(cfg.text_dim, cfg.c_dim),
                                  "g1": Stage1Generator(cfg.z_dim, cfg.c_dim, cfg.g_width),
                                  "ca2": CondAugment(cfg.text_dim, cfg.c_dim),
                                  "g2": Stage2Generator(cfg.c_dim, cfg.g_width, cfg.res_blocks)})
        self.text = nn.ModuleDict({"encoder": TextEncoder(cfg.word_dim, cfg.text_dim),
                                   "image": ImageEncoder(cfg.text_dim, cfg.embed_width)})
        aux = cfg.aux_weight > 0
        self.disc = nn.ModuleDict({"d1": MatchingDiscriminator(14, cfg.text_dim, cfg.d_width, cfg.d_text, aux),
                                   "d2": MatchingDiscriminator(28, cfg.text_dim, cfg.d_width, cfg.d_text, aux)})

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        betas = (self.config.beta1, self.config.beta2)
        return {"text": adam(self.text.parameters(), self.config.embed_lr, betas),
                "disc": adam(self.disc.parameters(), self.config.lr, betas),
                "gen": adam(self.gen.parameters(), self.config.lr, betas)}

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """phi_t: the caption's direction in the joint embedding (its length means nothing there), scaled to
        about unit size per dimension. (B, T) -> (B, text_dim)."""
        return F.normalize(self.text["encoder"](tokens), dim=1) * self.config.text_dim ** 0.5

    def stages(self, phi: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both stages from a (detached) phi_t: images in [-1, 1] and the CA statistics."""
        c1, mu1, ls1 = self.gen["ca1"](phi)
        s1 = self.gen["g1"](z, c1)  # (B, 3, 14, 14)
        c2, mu2, ls2 = self.gen["ca2"](phi)
        s2 = self.gen["g2"](s1.detach(), c2)  # (B, 3, 28, 28): stage II never changes stage I
        return {"s1": s1, "s2": s2, "kl1": kl_loss(mu1, ls1), "kl2": kl_loss(mu2, ls2)}

    def noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.config.z_dim, device=next(self.parameters()).device)

    def embedding_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        image = self.text["image"](to_unit(batch["x"]) * 2 - 1)
        return joint_embedding_loss(image, self.encode(batch["tokens"]), attributes(batch),
                                    self.config.embed_temperature)

    def text_step(self, batch: dict[str, torch.Tensor], opt: dict) -> dict[str, torch.Tensor]:
        loss = self.embedding_loss(batch)
        opt["text"].zero_grad(set_to_none=True)
        loss.backward()
        opt["text"].step()
        return {"loss_embed": loss.detach()}

    def judge(self, d: MatchingDiscriminator, image: torch.Tensor, phi: torch.Tensor,
              attrs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """D's (B,) logits on (image, phi) and, when the auxiliary classifier is on, its attribute loss against
        `attrs` (B, 3) from the same pass through D's image path (None when off)."""
        if not self.config.aux_weight:
            return d(image, phi), None
        logit, attr_logits = d(image, phi, with_attributes=True)
        return logit, attribute_loss(attr_logits, attrs)

    def d_step(self, batch: dict[str, torch.Tensor], opt: dict) -> dict[str, torch.Tensor]:
        real2 = to_unit(batch["x"]) * 2 - 1  # (B, 3, 28, 28) in [-1, 1]
        real1 = F.avg_pool2d(real2, 2)  # (B, 3, 14, 14)
        wrong_tokens, valid = mismatch(batch, self.config.swap_fraction)
        with torch.no_grad():  # the text space is the joint embedding's, not D's
            phi, phi_wrong = self.encode(batch["tokens"]), self.encode(wrong_tokens)
            fakes = self.stages(phi, self.noise(len(real2)))
        out, attrs = {}, attributes(batch)
        for k, real, fake in (("1", real1, fakes["s1"]), ("2", real2, fakes["s2"])):
            d = self.disc["d" + k]
            real_logit, aux_loss = self.judge(d, real, phi, attrs)
            logits = real_logit, d(real, phi_wrong), d(fake, phi)
            out["loss_d" + k] = matching_d_loss(*logits, valid)
            if aux_loss is not None:  # the classifier learns from real images only: a fake's attributes are G's errors
                out["loss_aux_d" + k] = aux_loss
                out["loss_d" + k] = out["loss_d" + k] + self.config.aux_weight * aux_loss
            for name, logit in zip(("real", "wrong", "fake"), logits):
                out[f"d{k}_{name}"] = torch.sigmoid(logit).mean().detach()
        opt["disc"].zero_grad(set_to_none=True)
        (out["loss_d1"] + out["loss_d2"]).backward()
        opt["disc"].step()
        return {k: v.detach() for k, v in out.items()}

    def g_losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        phi = self.encode(batch["tokens"]).detach()  # neither G nor D reshapes the text space
        out = self.stages(phi, self.noise(len(phi)))
        attrs = attributes(batch)
        for k in ("1", "2"):
            logit, aux_loss = self.judge(self.disc["d" + k], out["s" + k], phi, attrs)
            out["loss_g" + k] = adv.g_loss(logit, "non_saturating") + self.config.kl_weight * out["kl" + k]
            if aux_loss is not None:  # G is also asked to make D's classifier read the caption's attributes
                out["loss_aux_g" + k] = aux_loss
                out["loss_g" + k] = out["loss_g" + k] + self.config.aux_weight * aux_loss
        return out

    def g_step(self, batch: dict[str, torch.Tensor], opt: dict) -> dict[str, torch.Tensor]:
        with adv.frozen(self.disc):  # D passes gradients on and learns nothing
            out = self.g_losses(batch)
            opt["gen"].zero_grad(set_to_none=True)
            (out["loss_g1"] + out["loss_g2"]).backward()
            opt["gen"].step()
        return {k: v.detach() for k, v in out.items() if k.startswith(("loss_", "kl"))}

    def train_step(self, batch: dict[str, torch.Tensor], opt: dict) -> dict[str, torch.Tensor]:
        return {**self.text_step(batch, opt), **self.d_step(batch, opt), **self.g_step(batch, opt)}

    @torch.no_grad()
    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """D's mean verdicts on right / mismatched (rolled) / generated pairs at both stages, and the CA KLs."""
        real2 = to_unit(batch["x"]) * 2 - 1
        wrong_tokens, _ = mismatch(batch, 0.0)
        phi, phi_wrong = self.encode(batch["tokens"]), self.encode(wrong_tokens)
        fakes = self.stages(phi, self.noise(len(real2)))
        out = {"kl1": fakes["kl1"], "kl2": fakes["kl2"], "loss_embed": self.embedding_loss(batch)}
        for k, real, fake in (("1", F.avg_pool2d(real2, 2), fakes["s1"]), ("2", real2, fakes["s2"])):
            d = self.disc["d" + k]
            for name, logit in (("real", d(real, phi)), ("wrong", d(real, phi_wrong)), ("fake", d(fake, phi))):
                out[f"d{k}_{name}"] = torch.sigmoid(logit).mean()
        return out

    @torch.no_grad()
    def generate(self, tokens: torch.Tensor, z: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Captions (B, T) -> (stage I (B, 3, 14, 14), stage II (B, 3, 28, 28)) in [0, 1]; CA samples c too."""
        z = self.noise(len(tokens)) if z is None else z
        out = self.stages(self.encode(tokens), z)
        return (out["s1"] + 1) / 2, (out["s2"] + 1) / 2

    @torch.no_grad()
    def output(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Stage II images for the batch's captions (B, 3, 28, 28) in [0, 1] (stage II is drawn from stage I)."""
        return self.generate(batch["tokens"])[1]

    @torch.no_grad()
    def pictures(self, data: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, int]]:
        """"captions": 6 test captions (row titles) x 8 z each (stage II); "stages": 20 test captions, stage I
        (nearest-upsampled: its real resolution) | stage II side by side; "real": those 20 captions' digits.
        Captions read in the words of the data set's classes (data["classes"], when given)."""
        import matplotlib.pyplot as plt
        from torchvision.utils import make_grid

        from genzoo.engine.pictures import figure_to_image

        rows, per = min(6, len(data["tokens"])), 8
        words = vocabulary(data.get("classes"))
        with adv.evaluating(self):
            _, s2 = self.generate(data["tokens"][:rows].repeat_interleave(per, 0))  # (rows*per, 3, 28, 28)
            s1_pair, s2_pair = self.generate(data["tokens"][:20])
        fig, axes = plt.subplots(rows, 1, figsize=(6, 1.05 * rows), squeeze=False)
        for r in range(rows):
            strip = make_grid(s2[r * per:(r + 1) * per].cpu().clamp(0, 1), nrow=per, padding=2, pad_value=0.5)
            axes[r, 0].imshow(strip.permute(1, 2, 0).numpy())
            axes[r, 0].set_title(caption_text(data["tokens"][r].cpu(), words), fontsize=9)
            axes[r, 0].axis("off")
        fig.tight_layout()
        up1 = F.interpolate(s1_pair, scale_factor=2, mode="nearest")
        return {"captions": (figure_to_image(fig), 1),
                "stages": (torch.stack([up1, s2_pair], 1).flatten(0, 1), 10),
                "real": (to_unit(data["x"][:20]), 5)}

    @torch.no_grad()
    def extra_scores(self, data: dict[str, dict[str, torch.Tensor]], evaluator) -> dict[str, float]:
        """Fidelity of images generated from the test captions: the digit (MNIST evaluator on the grey image),
        colour and stroke (attribute classifier fitted on the captions val split) read back, per stage (stage I
        bilinearly upsampled to 28), with the real test digits as the floor; FD-evaluator (grey) of each stage
        against the real test digits, and of real val against real test as the floor."""
        from genzoo.metrics.attributes import digit_predictions, fit_attribute_classifier, predict_attributes, to_grey
        from genzoo.metrics.frechet import features, frechet_distance

        val, test = data["val"], data["test"]
        if self.config.score_rows:
            test = {k: v[:self.config.score_rows] for k, v in test.items()}
        classifier = fit_attribute_classifier(val["x"], val["colour"], val["stroke"], seed=0,
                                              steps=self.config.attribute_steps)
        device = test["tokens"].device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), adv.evaluating(self):
            torch.manual_seed(0)
            parts = [self.generate(test["tokens"][i:i + 1000]) for i in range(0, len(test["tokens"]), 1000)]
        s1 = torch.cat([p[0] for p in parts])
        up1 = F.interpolate(s1, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1)
        images = {"real": to_unit(test["x"]), "stage1": up1, "stage2": torch.cat([p[1] for p in parts])}
        scores = {"scored_images": float(len(test["tokens"]))}
        for name, x01 in images.items():
            colour, stroke = predict_attributes(classifier, x01)
            digit = digit_predictions(evaluator, x01)
            hits = {"digit": digit == test["y"], "colour": colour == test["colour"], "stroke": stroke == test["stroke"]}
            hits["all"] = hits["digit"] & hits["colour"] & hits["stroke"]
            scores.update({f"{name}_{k}_accuracy": v.float().mean().item() for k, v in hits.items()})
        real_feats = features(evaluator, to_grey(images["real"]))
        for name in ("stage1", "stage2"):
            scores[f"fd_{name}"] = frechet_distance(real_feats, features(evaluator, to_grey(images[name])))
        scores["fd_real_val"] = frechet_distance(real_feats, features(evaluator, to_grey(to_unit(val["x"]))))
        return scores
