"""Sketch-RNN — Ha & Eck 2018, "A Neural Representation of Sketch Drawings" (ICLR 2018): a sequence-to-sequence
VAE over pen strokes with a mixture-density decoder, on the `strokes` set (stroke-5 rows in pixels).

    encoder: bidirectional LSTM over S_1..S_Ns (masked: each direction stops at the sketch's last real point, so
             padding never reaches the code) -> [h_fwd, h_bwd] -> mu, sigma_hat;  z = mu + exp(sigma_hat/2) eps
    decoder: LSTM, input [S_{i-1}, z] with S_0 = (0, 0, 1, 0, 0), (h0, c0) = tanh(W z + b); output -> M bivariate
             normals (pi, mu_x, mu_y, sigma_x, sigma_y, rho) over (dx, dy) and 3 pen-state logits (q1, q2, q3)
    loss:    L_R = L_s + L_p, L_s = -(1/N_max) sum_{i<Ns} log sum_j pi_j N(dx_i, dy_i | ...) (real points only),
             L_p = -(1/N_max) sum_{i<N_max} sum_k p_k log q_k (in training every step: the model learns when
             to stop; held out, the real points only, as the authors' code evaluates it);
             L_KL = -1/(2 N_z) sum(1 + sigma_hat - mu^2 - exp(sigma_hat));
             loss = L_R + w_KL eta_step max(L_KL, KL_min),  eta_step = 1 - (1 - eta_min) R^step  (§3.3, eq. 9)
Choices and where they differ from the paper:
- The decoder is a plain LSTM (the paper's baseline; its best runs use a HyperLSTM of 2048 units) and the
  encoder masks padding (as the authors' code does with `sequence_length`); the two directions are two LSTMs,
  the backward one over each sketch reversed within its own length, so no host-side packing is needed.
- Offsets are divided by a fixed `offset_scale` (pixels per unit) instead of the training set's std, so the
  model stays a function of its config; the default is the std measured on the MNIST strokes.
- Gradients are clipped by value at `grad_clip` (what the authors' code does; `clip_mode: norm` clips the norm).
- Random scale augmentation (the code's `random_scale_factor` 0.15) stretches dx and dy of each sketch
  independently. No recurrent dropout and no lr decay (`lr_schedule` covers the latter).
- Temperature tau divides the pi and pen logits and multiplies sigma^2 (§3.2); tau = 0 means greedy decoding
  (the most likely component's mean, the most likely pen state), which `extra_scores` uses for a
  deterministic reconstruction accuracy. `validate` draws z = mu + sigma eps as training does (the paper's
  L_R / L_KL are measured that way); reconstructions and interpolations use z = mu.
- The losses divide by N_max, the set's padded length (`strokes.max_len`), as the paper does: L_R values
  compare only between runs on the same N_max. A short run needs a faster eta_rate than R = 0.99995 (eta is
  still 0.04 after 1000 steps, so the KL term hardly acts and prior samples end at once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.models.base import ZooModel
from genzoo.models.blocks import adam, clip_gradients
from genzoo.params import TrainConfig, param

START = (0.0, 0.0, 1.0, 0.0, 0.0)  # S_0: pen down at the canvas centre
LOW_TAU = 0.1  # interpolations


def lengths_of(strokes: torch.Tensor) -> torch.Tensor:
    """(B, T, 5) -> (B,) real points: rows before the first end row (pen state by argmax of p1..p3)."""
    ended = strokes[..., 2:].argmax(-1).eq(2).long().cumsum(1) > 0  # (B, T)
    return (~ended).sum(1)


def reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, T, D): rows 0..L-1 of each sequence reversed in place, padding rows left where they are."""
    t = torch.arange(x.shape[1], device=x.device)[None]  # (1, T)
    idx = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # (B, T)
    return x.gather(1, idx[..., None].expand_as(x))


def mixture_log_prob(params: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """log sum_j pi_j N(x, y | mu_j, sigma_j, rho_j). params (..., 6M) raw head outputs, xy (..., 2) -> (...)."""
    logit_pi, mu_x, mu_y, log_sx, log_sy, raw_rho = params.chunk(6, -1)  # each (..., M)
    sx, sy, rho = log_sx.exp(), log_sy.exp(), torch.tanh(raw_rho).clamp(-0.9999, 0.9999)
    nx, ny = (xy[..., :1] - mu_x) / sx, (xy[..., 1:] - mu_y) / sy  # (..., M)
    one_minus = 1 - rho ** 2
    z = nx ** 2 + ny ** 2 - 2 * rho * nx * ny
    log_n = -z / (2 * one_minus) - math.log(2 * math.pi) - log_sx - log_sy - 0.5 * torch.log(one_minus)
    return torch.logsumexp(F.log_softmax(logit_pi, -1) + log_n, -1)


def kl_term(mu: torch.Tensor, sigma_hat: torch.Tensor) -> torch.Tensor:
    """L_KL per sketch (B,), averaged over the N_z latent dimensions as the paper writes it."""
    return -0.5 * (1 + sigma_hat - mu ** 2 - sigma_hat.exp()).mean(-1)


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (the paper's latent walks). z0, z1 (D,), t (K,) -> (K, D)."""
    omega = torch.acos((F.normalize(z0, dim=0) * F.normalize(z1, dim=0)).sum().clamp(-0.9999, 0.9999))
    t = t[:, None]
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


@dataclass
class Config(TrainConfig):
    epochs: int = param(50, gt=0)
    batch_size: int = param(100, gt=0)  # the paper's
    lr: float = param(1e-3, gt=0)
    enc_hidden: int = param(256, gt=0)  # per direction
    dec_hidden: int = param(512, gt=0)  # plain LSTM (the paper's HyperLSTM: 2048)
    latent_dim: int = param(128, gt=0)  # N_z
    mixtures: int = param(20, gt=0)  # M
    w_kl: float = param(0.5, ge=0)
    kl_min: float = param(0.2, ge=0)
    eta_min: float = param(0.01, ge=0, le=1)
    eta_rate: float = param(0.99995, gt=0, le=1)  # R
    grad_clip: float = param(1.0, gt=0)
    clip_mode: str = param("value", choices=("value", "norm"))
    random_scale: float = param(0.15, ge=0, le=0.9)  # augmentation: dx, dy × U(1 - s, 1 + s)
    offset_scale: float = param(5.0, gt=0)  # pixels per unit: the std of the MNIST strokes' offsets (5.01 px)
    temperature: float = param(0.4, ge=0)  # tau of samples, completions and pictured reconstructions
    score_rows: int = param(2000, ge=0)  # test rows extra_scores reconstructs (0 = all)


class Model(ZooModel):
    Config = Config
    dataset = "strokes"

    def __init__(self, config: Config, image_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10):
        super().__init__()
        self.config, self.image_shape, self.num_classes = config, image_shape, num_classes
        c = config
        self.enc_fwd = nn.LSTM(5, c.enc_hidden, batch_first=True)
        self.enc_bwd = nn.LSTM(5, c.enc_hidden, batch_first=True)
        self.to_latent = nn.Linear(2 * c.enc_hidden, 2 * c.latent_dim)  # -> mu, sigma_hat
        self.init_state = nn.Linear(c.latent_dim, 2 * c.dec_hidden)  # -> (h0, c0) through tanh
        self.dec = nn.LSTM(5 + c.latent_dim, c.dec_hidden, batch_first=True)
        self.head = nn.Linear(c.dec_hidden, 6 * c.mixtures + 3)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("start", torch.tensor(START), persistent=False)  # no host copy inside a CUDA graph

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": adam(self.parameters(), self.config.lr)}

    # -- pieces ------------------------------------------------------------------------------------------
    def normalize(self, strokes: torch.Tensor) -> torch.Tensor:
        return torch.cat([strokes[..., :2] / self.config.offset_scale, strokes[..., 2:]], -1)

    def encode(self, strokes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, 5) pixel strokes -> mu, sigma_hat (B, N_z)."""
        return self._encode(self.normalize(strokes), lengths_of(strokes))

    def _encode(self, s: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        last = (lengths - 1).clamp(min=0)[:, None, None].expand(-1, 1, self.config.enc_hidden)  # (B, 1, H)
        h_fwd = self.enc_fwd(s)[0].gather(1, last)[:, 0]  # (B, H) state after the last real point
        h_bwd = self.enc_bwd(reverse_within(s, lengths))[0].gather(1, last)[:, 0]  # after the first point
        return self.to_latent(torch.cat([h_fwd, h_bwd], -1)).float().chunk(2, -1)

    def initial_state(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h0, c0 = torch.tanh(self.init_state(z)).chunk(2, -1)  # (B, H) each
        return h0[None].contiguous(), c0[None].contiguous()

    def decoder_outputs(self, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: s (B, T, 5) normalized targets, z (B, N_z) -> (B, T, 6M + 3) head outputs."""
        start = self.start.to(s.dtype).expand(len(s), 1, 5)
        inputs = torch.cat([start, s[:, :-1]], 1)  # (B, T, 5): S_{i-1}
        inputs = torch.cat([inputs, z[:, None].expand(-1, s.shape[1], -1)], -1)  # (B, T, 5 + N_z)
        return self.head(self.dec(inputs, self.initial_state(z))[0]).float()

    def losses(self, strokes: torch.Tensor, train: bool = False) -> dict[str, torch.Tensor]:
        """Batch means of L_s, L_p, L_R and L_KL (the capped one is for the update). In training (`train`) the
        sketches are stretched at random and L_p counts every step; held out, L_p counts the real points only
        (the authors' code masks the end rows in eval mode), so held-out L_R is theirs."""
        lengths = lengths_of(strokes)
        s = self.normalize(strokes)  # (B, T, 5)
        if train and self.config.random_scale > 0:
            k = 1 + self.config.random_scale * (2 * torch.rand(len(s), 1, 2, device=s.device) - 1)  # (B, 1, 2)
            s = torch.cat([s[..., :2] * k, s[..., 2:]], -1)
        mu, sigma_hat = self._encode(s, lengths)
        z = mu + torch.exp(sigma_hat / 2) * torch.randn_like(mu)  # (B, N_z)
        out = self.decoder_outputs(s, z)  # (B, T, 6M + 3)
        n_max = s.shape[1]
        real = torch.arange(n_max, device=s.device)[None] < lengths[:, None]  # (B, T)
        log_p = mixture_log_prob(out[..., :-3], s[..., :2])  # (B, T)
        l_s = -(log_p * real).sum(1) / n_max  # (B,)
        l_p = F.cross_entropy(out[..., -3:].transpose(1, 2), s[..., 2:].argmax(-1), reduction="none")  # (B, T)
        l_p = (l_p if train else l_p * real).sum(1) / n_max
        l_kl = kl_term(mu, sigma_hat)
        return {"l_s": l_s.mean(), "l_p": l_p.mean(), "l_r": (l_s + l_p).mean(), "l_kl": l_kl.mean()}

    def eta(self) -> torch.Tensor:
        """eta_step = 1 - (1 - eta_min) R^step, from the step buffer (on the device)."""
        c = self.config
        return 1 - (1 - c.eta_min) * torch.exp(self.steps.float() * math.log(c.eta_rate))  # R^step, fp32-exact

    def train_step(self, batch: dict[str, torch.Tensor], opt: dict) -> dict[str, torch.Tensor]:
        c = self.config
        terms = self.losses(batch["strokes"], train=True)
        eta = self.eta()
        loss = terms["l_r"] + c.w_kl * eta * terms["l_kl"].clamp(min=c.kl_min)  # max(L_KL, KL_min): no gradient below
        opt["model"].zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(self.parameters(), c.grad_clip, c.clip_mode)
        opt["model"].step()
        self.steps += 1
        return {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}, "eta": eta.detach()}

    @torch.no_grad()
    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.losses(batch["strokes"])

    # -- sampling ----------------------------------------------------------------------------------------
    def sample_row(self, out: torch.Tensor, tau: float) -> torch.Tensor:
        """One step's head output (B, 6M + 3) -> a normalized stroke-5 row (B, 5) at temperature tau."""
        logit_pi, mu_x, mu_y, log_sx, log_sy, raw_rho = out[:, :-3].chunk(6, -1)  # (B, M) each
        pen_logits = out[:, -3:]
        if tau == 0:  # greedy: the most likely component's mean and pen state
            j = logit_pi.argmax(-1, keepdim=True)
            xy = torch.cat([mu_x.gather(1, j), mu_y.gather(1, j)], -1)
            return torch.cat([xy, F.one_hot(pen_logits.argmax(-1), 3).to(xy)], -1)
        j = torch.multinomial(F.softmax(logit_pi / tau, -1), 1)  # (B, 1)
        pick = lambda t: t.gather(1, j)[:, 0]  # (B,)
        sx, sy, rho = pick(log_sx).exp() * tau ** 0.5, pick(log_sy).exp() * tau ** 0.5, torch.tanh(pick(raw_rho))
        e1, e2 = torch.randn_like(sx), torch.randn_like(sx)
        x = pick(mu_x) + sx * e1
        y = pick(mu_y) + sy * (rho * e1 + torch.sqrt(1 - rho ** 2) * e2)
        pen = torch.multinomial(F.softmax(pen_logits / tau, -1), 1)[:, 0]
        return torch.cat([x[:, None], y[:, None], F.one_hot(pen, 3).to(x)], -1)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, steps: int, tau: float, prefix: torch.Tensor | None = None,
               prefix_len: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, N_z) -> (B, steps, 5) pixel stroke-5: pen one-hot, every row from the first end row on, and the
        last row always, (0, 0, 0, 0, 1). `prefix` (B, P, 5) pixel rows are copied instead of sampled for the
        first `prefix_len` (B,) steps (default P): the decoder continues the sketch from there."""
        b, device = len(z), z.device
        if prefix is not None:
            p = prefix.shape[1]
            prefix_len = torch.full((b,), p, device=device) if prefix_len is None else prefix_len.to(device)
            prefix = self.normalize(prefix[:, :steps].to(z))
        state = self.initial_state(z)
        row = z.new_tensor(START).expand(b, 5)
        rows = []
        for i in range(steps):
            h, state = self.dec(torch.cat([row, z], -1)[:, None], state)
            row = self.sample_row(self.head(h[:, 0]).float(), tau)  # (B, 5)
            if prefix is not None and i < prefix.shape[1]:
                row = torch.where((i < prefix_len)[:, None], prefix[:, i], row)
            rows.append(row)
        s = torch.stack(rows, 1)  # (B, T, 5)
        s = torch.cat([s[..., :2] * self.config.offset_scale, s[..., 2:]], -1)
        s[:, -1] = s.new_tensor((0, 0, 0, 0, 1))
        ended = (s[..., 4] > 0.5).long().cumsum(1) > 0  # (B, T)
        return torch.where(ended[..., None], s.new_tensor((0, 0, 0, 0, 1)), s)

    @torch.no_grad()
    def reconstruct(self, batch: dict[str, torch.Tensor], tau: float) -> torch.Tensor:
        """Encode (z = mu) and decode: (B, T, 5) -> (B, T, 5)."""
        strokes = batch["strokes"]
        return self.decode(self.encode(strokes)[0], strokes.shape[1], tau)

    def prior(self, n: int, device) -> torch.Tensor:
        return torch.randn(n, self.config.latent_dim, device=device)

    @torch.no_grad()
    def output(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Greedy reconstructions (z = mu, tau = 0) of the batch's sketches, rasterized: (B, 1, 28, 28) in [0, 1]."""
        from genzoo.data.strokes import rasterize

        return rasterize(self.reconstruct(batch, 0.0))

    # -- report ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def pictures(self, data: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, int]]:
        from genzoo.data.strokes import rasterize

        strokes, tau = data["strokes"], self.config.temperature
        n_max, device = strokes.shape[1], strokes.device
        end = strokes.new_tensor((0, 0, 0, 0, 1))
        # reconstructions: 8 sketches, each [original, 5 reconstructions at tau]
        orig = strokes[:8]
        recs = self.reconstruct({"strokes": orig.repeat_interleave(5, 0)}, tau).view(8, 5, n_max, 5)
        grid = torch.cat([orig[:, None], recs], 1).flatten(0, 1)
        pictures = {"reconstructions": (rasterize(grid), 6)}
        # interpolation: 4 pairs of test sketches, slerp between their mu in 10 steps, [A, walk, B]
        mu = self.encode(strokes[:8])[0]
        t = torch.linspace(0, 1, 10, device=device)
        walks = torch.cat([slerp(mu[2 * k], mu[2 * k + 1], t) for k in range(4)])  # (40, N_z)
        walk = self.decode(walks, n_max, LOW_TAU).view(4, 10, n_max, 5)
        grid = torch.cat([strokes[0:8:2, None], walk, strokes[1:8:2, None]], 1).flatten(0, 1)
        pictures["interpolation"] = (rasterize(grid), 12)
        # completions: the first 40 % of 6 sketches, 5 continuations each with z from the prior
        src = strokes[8:14]
        keep = (0.4 * lengths_of(src).float()).ceil().long().clamp(min=1)  # (6,)
        rows = torch.arange(n_max, device=device)[None, :, None]
        prefix = torch.where(rows < keep[:, None, None], src, end)  # (6, T, 5)
        cont = self.decode(self.prior(30, device), n_max, tau, prefix.repeat_interleave(5, 0),
                           keep.repeat_interleave(5)).view(6, 5, n_max, 5)
        grid = torch.cat([prefix[:, None], cont, src[:, None]], 1).flatten(0, 1)
        pictures["completions"] = (rasterize(grid), 7)
        pictures["samples"] = (rasterize(self.decode(self.prior(100, device), n_max, tau)), 10)
        return pictures

    @torch.no_grad()
    def extra_scores(self, data: dict[str, dict[str, torch.Tensor]], evaluator) -> dict[str, float]:
        """Test L_R, L_s, L_p, L_KL (z sampled, seed 0) and, on MNIST-traced rows, the evaluator's accuracy on
        greedy reconstructions (z = mu) against its accuracy on the rasterized originals (the floor)."""
        from genzoo.data.strokes import rasterize

        test = data["test"]
        n = len(test["strokes"]) if not self.config.score_rows else min(self.config.score_rows, len(test["strokes"]))
        device = test["strokes"].device
        totals: dict[str, float] = {}
        correct_rec = correct_orig = digits = 0
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(0)
            for start in range(0, n, 500):
                batch = {k: v[start:min(start + 500, n)] for k, v in test.items()}
                rows = len(batch["strokes"])
                for name, value in self.validate(batch).items():
                    totals[name] = totals.get(name, 0.0) + value.item() * rows
                keep = batch["digit"] >= 0
                if keep.any():
                    strokes, label = batch["strokes"][keep], batch["digit"][keep]
                    recs = self.reconstruct({"strokes": strokes}, 0.0)
                    correct_rec += (evaluator.predict(rasterize(recs)) == label).sum().item()
                    correct_orig += (evaluator.predict(rasterize(strokes)) == label).sum().item()
                    digits += len(label)
        scores = {f"test_{k}": v / n for k, v in totals.items()}
        if digits:
            scores["reconstruction_accuracy"] = correct_rec / digits
            scores["original_accuracy"] = correct_orig / digits  # the floor: what perfect reconstructions score
        return scores
