"""The `gan_toy` stage: the theory of Goodfellow et al. 2014, "Generative Adversarial Nets" (§4), on a 1-D toy.

A small MLP GAN learns a 1-D mixture of Gaussians. Everything the theory talks about is computed numerically on
a grid of bins, so no number here is an estimate from a few samples:
  - p_data: each bin's exact mass (normal CDF differences) / bin width;
  - p_g: z is one-dimensional (N(0, 1) or U(-1, 1)), so G's distribution is the push-forward of z's; pushing
    the midpoints of many equal-probability slices of z (quantiles) through G and histogramming them gives each
    bin's mass up to the slice width (deterministic, no sampling noise); mass that lands outside the grid counts
    in the end bins;
  - D*(x) = p_data / (p_data + p_g), the optimal discriminator for a fixed G (Proposition 1);
  - V(D, G) = E_data log D + E_g log(1 − D) = Σ bins Δx [p_data log D + p_g log(1 − D)];
  - C(G) = max_D V(D, G) = V(D*, G) = −log 4 + 2·JSD(p_data ‖ p_g) (Theorem 1), reaching −log 4 iff p_g = p_data.
The stage draws the paper's Figure 1 (p_data, p_g, D and D* at several steps), tracks V(D, G), C(G) and the JSD
over training, checks that training D alone for a fixed G drives V(D, G) up to C(G) (and no further), and
compares the gradient the minimax generator loss log(1 − D(G(z))) and the non-saturating one −log D(G(z)) give
G early in training, when D rejects G's samples confidently (§3).
"""

from __future__ import annotations

import copy
import io
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.engine.io import write_bytes
from genzoo.engine.tracking import StageRun, git_state, write_metrics, write_plot
from genzoo.models.adversarial import frozen
from genzoo.models.blocks import mlp
from genzoo.params import ToyParams

MINUS_LOG4 = -math.log(4.0)
PUSH_SLICES = 20_000  # equal-probability slices of z pushed through G for p_g
EPS = 1e-12



# ---------------------------------------------------------------------------------------------- numerics on the grid

def grid(cfg: ToyParams) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(bin centres (P,), bin edges (P + 1,), bin width), float64."""
    edges = torch.linspace(cfg.grid_min, cfg.grid_max, cfg.grid_points + 1, dtype=torch.float64)
    return (edges[:-1] + edges[1:]) / 2, edges, float(edges[1] - edges[0])


def mixture_density(x: torch.Tensor, means, stds, weights) -> torch.Tensor:
    """p(x) = Σ_k w_k N(x; μ_k, σ_k²), weights normalized."""
    m, s, w = (torch.as_tensor(v, dtype=torch.float64) for v in (means, stds, weights))
    w = w / w.sum()
    z = (x.double().unsqueeze(-1) - m) / s  # (..., K)
    return (w * torch.exp(-0.5 * z.pow(2)) / (s * math.sqrt(2 * math.pi))).sum(-1)


def mixture_bins(edges: torch.Tensor, means, stds, weights) -> torch.Tensor:
    """Each bin's exact probability mass / bin width (P,): the density as the grid sees it."""
    m, s, w = (torch.as_tensor(v, dtype=torch.float64) for v in (means, stds, weights))
    w = w / w.sum()
    cdf = (w * 0.5 * (1 + torch.erf((edges.unsqueeze(-1) - m) / (s * math.sqrt(2))))).sum(-1)  # (P + 1,)
    return (cdf[1:] - cdf[:-1]) / (edges[1:] - edges[:-1])


def histogram_density(samples: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Samples -> density per bin (P,), integrating to 1; samples off the grid are counted in the end bins."""
    p = len(edges) - 1
    width = float(edges[1] - edges[0])
    idx = ((samples.double().flatten() - edges[0]) / width).floor().long().clamp(0, p - 1)
    counts = torch.bincount(idx, minlength=p).double()
    return counts / (counts.sum() * width)


def optimal_d(p_data: torch.Tensor, p_g: torch.Tensor) -> torch.Tensor:
    """D*(x) = p_data / (p_data + p_g) (Proposition 1); 1/2 where both vanish (any value is optimal there)."""
    total = p_data + p_g
    return torch.where(total > 0, p_data / total.clamp_min(EPS), torch.full_like(total, 0.5))


def xlogy(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.special.xlogy(x, y)  # 0 · log 0 = 0


def value(d: torch.Tensor, p_data: torch.Tensor, p_g: torch.Tensor, dx: float) -> torch.Tensor:
    """V(D, G) = ∫ p_data log D + p_g log(1 − D) dx on the grid (terms with zero density contribute 0)."""
    return dx * (xlogy(p_data, d) + xlogy(p_g, 1 - d)).sum()


def jsd(p: torch.Tensor, q: torch.Tensor, dx: float) -> torch.Tensor:
    """JSD(p ‖ q) = ½ KL(p ‖ m) + ½ KL(q ‖ m), m = (p + q) / 2, in nats (in [0, log 2])."""
    m = (p + q) / 2
    kl_p = (xlogy(p, p) - xlogy(p, m)).sum() * dx
    kl_q = (xlogy(q, q) - xlogy(q, m)).sum() * dx
    return 0.5 * (kl_p + kl_q)


def c_of_g(p_data: torch.Tensor, p_g: torch.Tensor, dx: float) -> torch.Tensor:
    """C(G) = max_D V(D, G) = V(D*, G), computed from D* (the identity with −log 4 + 2·JSD is what tests check)."""
    return value(optimal_d(p_data, p_g), p_data, p_g, dx)


# ------------------------------------------------------------------------------------------------------ the GAN

class ToyGAN(nn.Module):
    """G: z (one number) -> x (a tanh MLP, 1 -> widths -> 1); D: x -> logit (an MLP, 1 -> widths -> 1)."""

    def __init__(self, cfg: ToyParams):
        super().__init__()
        self.gen = mlp([1, *cfg.gen_widths, 1], nn.Tanh)  # smooth G: a smooth p_g (ReLU kinks give spikes)
        self.disc = mlp([1, *cfg.disc_widths, 1], nn.LeakyReLU)

        self.noise_kind = cfg.noise

    def noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, 1) if self.noise_kind == "normal" else torch.rand(n, 1) * 2 - 1

    def sample(self, n: int) -> torch.Tensor:
        return self.gen(self.noise(n))

    @torch.no_grad()
    def density(self, edges: torch.Tensor) -> torch.Tensor:
        """p_g on the grid: the midpoints of PUSH_SLICES equal-probability slices of z (its quantiles), through G."""
        u = (torch.arange(PUSH_SLICES, dtype=torch.float64) + 0.5) / PUSH_SLICES  # slice midpoints in (0, 1)
        z = (math.sqrt(2) * torch.erfinv(2 * u - 1) if self.noise_kind == "normal" else 2 * u - 1).float()
        return histogram_density(self.gen(z.unsqueeze(1)), edges)

    @torch.no_grad()
    def d_on(self, centres: torch.Tensor) -> torch.Tensor:
        """D(x) = sigmoid(logit) at the bin centres, float64."""
        return torch.sigmoid(self.disc(centres.float().unsqueeze(1)).squeeze(1).double())


def data_sampler(cfg: ToyParams):
    m, s, w = (torch.as_tensor(v, dtype=torch.float32) for v in (cfg.means, cfg.stds, cfg.weights))

    def draw(n: int) -> torch.Tensor:
        k = torch.multinomial(w / w.sum(), n, replacement=True)
        return (m[k] + s[k] * torch.randn(n)).unsqueeze(1)  # (n, 1)
    return draw


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def g_losses(fake_logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """Minimax E log(1 − D(G(z))) = −BCE(logit, 0); non-saturating −E log D(G(z)) = BCE(logit, 1)."""
    return {"minimax": -F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)),
            "non_saturating": F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))}


def generator_gradients(model: ToyGAN, z: torch.Tensor) -> dict[str, float]:
    """‖∇_θG loss‖ for both generator losses on the same z, D frozen; G's .grad is left untouched."""
    params = list(model.gen.parameters())
    with frozen(model.disc):
        losses = g_losses(model.disc(model.gen(z)))
        return {k: float(torch.cat([g.flatten() for g in torch.autograd.grad(loss, params, retain_graph=True)])
                         .norm()) for k, loss in losses.items()}


def converge_d(model: ToyGAN, p_data: torch.Tensor, p_g: torch.Tensor, centres: torch.Tensor, dx: float,
               steps: int, lr: float) -> ToyGAN:
    """A copy of `model` whose D alone is trained (G fixed) to maximize V(D, G) on the grid: exact expectations,
    so what is left of the gap to C(G) is D's optimization and capacity, not sampling noise."""
    trained = copy.deepcopy(model)
    opt = torch.optim.Adam(trained.disc.parameters(), lr=lr)
    x = centres.float().unsqueeze(1)
    pd, pg = p_data.float(), p_g.float()
    for _ in range(steps):
        logit = trained.disc(x).squeeze(1)
        v = dx * (pd * F.logsigmoid(logit) + pg * F.logsigmoid(-logit)).sum()  # log(1 − σ(l)) = logsigmoid(−l)
        opt.zero_grad(set_to_none=True)
        (-v).backward()
        opt.step()
    return trained


# ---------------------------------------------------------------------------------------------------- drawing

def draw_snapshots(snaps: list[dict], centres: torch.Tensor) -> bytes:
    """One panel per snapshot, as in Figure 1 of Goodfellow et al. 2014."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = centres.numpy()
    fig, axes = plt.subplots(1, len(snaps), figsize=(4 * len(snaps), 3.4), sharey=True, squeeze=False)
    top = max(float(s["p_data"].max()) for s in snaps) * 1.15
    for ax, s in zip(axes[0], snaps):
        ax.plot(x, s["p_data"].numpy(), ":", color="black", lw=2, label="p_data")
        ax.plot(x, s["p_g"].clamp(max=top).numpy(), "-", color="green", lw=1.5, label="p_g")
        ax.plot(x, (s["d"] * top).numpy(), "--", color="blue", lw=1.5, label="D(x) (scaled)")
        shown = (s["p_data"] + s["p_g"]) > 1e-3 * top  # D* is arbitrary where both densities vanish
        d_star = torch.where(shown, s["d_star"], torch.full_like(s["d_star"], float("nan")))
        ax.plot(x, (d_star * top).numpy(), "-.", color="red", lw=1, label="D*(x) (scaled)")
        ax.set_title(f"step {s['step']}: JSD {s['jsd']:.3f}\nV {s['value']:.3f}, C(G) {s['c_g']:.3f}", fontsize=9)
        ax.set_ylim(0, top * 1.05)
        ax.set_xlabel("x")
    axes[0][0].set_ylabel(f"density (D scaled: 1 = {top:.2f})")
    axes[0][-1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def draw_curves(rows: list[dict], early: list[dict]) -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.4))
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["value"] for r in rows], label="V(D, G)")
    ax.plot(steps, [r["c_g"] for r in rows], label="C(G) = -log 4 + 2 JSD")
    ax.axhline(MINUS_LOG4, color="black", ls=":", label="-log 4")
    ax.set_xlabel("step")
    ax.set_title("value of the game")
    ax.legend(fontsize=8)
    bx.semilogy([r["step"] for r in early], [r["minimax"] for r in early], label="minimax log(1 - D(G(z)))")
    bx.semilogy([r["step"] for r in early], [r["non_saturating"] for r in early], label="non-saturating -log D(G(z))")
    bx.set_xlabel("step")
    bx.set_title("|grad_G| of the generator losses (same G, D)")
    bx.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------------ the stage

def check(cfg: ToyParams) -> None:
    from genzoo.engine.errors import ParamsError

    if not len(cfg.means) == len(cfg.stds) == len(cfg.weights) or not cfg.means:
        raise ParamsError("gan_toy: means, stds and weights must be non-empty lists of the same length")
    if cfg.grid_max <= cfg.grid_min:
        raise ParamsError("gan_toy.grid_max must be > gan_toy.grid_min")
    late = [s for s in cfg.snapshots if s > cfg.steps]
    if late:
        raise ParamsError(f"gan_toy.snapshots: {late} beyond gan_toy.steps = {cfg.steps}")


def measure(model: ToyGAN, p_data: torch.Tensor, edges: torch.Tensor, centres: torch.Tensor, dx: float) -> dict:
    p_g = model.density(edges)
    d = model.d_on(centres)
    return {"p_g": p_g, "d": d, "d_star": optimal_d(p_data, p_g), "value": float(value(d, p_data, p_g, dx)),
            "c_g": float(c_of_g(p_data, p_g, dx)), "jsd": float(jsd(p_data, p_g, dx))}


def train_toy(cfg: ToyParams) -> dict:
    """Train the toy GAN; returns the curve rows, the snapshots, the early gradient norms and the max-D checks."""
    check(cfg)
    centres, edges, dx = grid(cfg)
    p_data = mixture_bins(edges, cfg.means, cfg.stds, cfg.weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = ToyGAN(cfg)
        draw_real = data_sampler(cfg)
        betas = (0.5, 0.999)
        opt_d = torch.optim.Adam(model.disc.parameters(), lr=cfg.lr, betas=betas)
        opt_g = torch.optim.Adam(model.gen.parameters(), lr=cfg.lr, betas=betas)
        # the step size anneals to 0 (cosine): simultaneous gradient steps orbit the equilibrium rather than
        # settle in it, and a shrinking step lets the last snapshot sit near it instead of anywhere on the orbit
        scheds = [torch.optim.lr_scheduler.CosineAnnealingLR(o, cfg.steps) for o in (opt_d, opt_g)]
        rows, snaps, early = [], [], []
        first = None
        for step in range(cfg.steps + 1):
            if step % cfg.log_every == 0 or step == cfg.steps or step in cfg.snapshots:
                m = measure(model, p_data, edges, centres, dx)
                if step == 0:
                    first = (copy.deepcopy(model), m["p_g"])
                rows.append({"step": step, "value": m["value"], "c_g": m["c_g"], "jsd": m["jsd"],
                             "minus_log4": MINUS_LOG4})
                if step in cfg.snapshots:
                    snaps.append({"step": step, "p_data": p_data, **m})
            if step == cfg.steps:
                break
            for _ in range(cfg.d_steps):  # D first: real and fake minibatches (G's output detached)
                real_x, fake_x = draw_real(cfg.batch_size), model.sample(cfg.batch_size).detach()
                loss_d = d_loss(model.disc(real_x), model.disc(fake_x))
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()
            # then G through a frozen D, with the non-saturating loss; both losses' gradients recorded early on
            z = model.noise(cfg.batch_size)
            if step < cfg.early_steps:
                early.append({"step": step + 1, **generator_gradients(model, z)})
            with frozen(model.disc):
                loss_g = g_losses(model.disc(model.gen(z)))["non_saturating"]
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
            for sched in scheds:
                sched.step()
        final = measure(model, p_data, edges, centres, dx)
        checks = {}
        for name, (net, p_g) in {"initial": first, "final": (model, final["p_g"])}.items():
            trained = converge_d(net, p_data, p_g, centres, dx, cfg.d_converge_steps, cfg.lr)
            c = float(c_of_g(p_data, p_g, dx))
            checks[name] = {"c_g": c, "v_d_star": float(value(optimal_d(p_data, p_g), p_data, p_g, dx)),
                            "v_d_gan": float(value(net.d_on(centres), p_data, p_g, dx)),
                            "v_d_trained": float(value(trained.d_on(centres), p_data, p_g, dx))}
            if name == "initial":  # the saturation argument: G poor, D (near) optimal -> minimax grad vanishes
                checks[name]["grad_norm_g_at_trained_d"] = generator_gradients(trained, model.noise(4096))
    return {"rows": rows, "snapshots": snaps, "early": early, "final": final, "checks": checks,
            "centres": centres, "p_data": p_data, "dx": dx}


def gan_toy_stage(params, metrics: Path) -> dict:
    """`params`: the whole Params (its `gan_toy` section is used) or a ToyParams alone (tests, notebooks)."""
    cfg = params if isinstance(params, ToyParams) else params.gan_toy
    started = time.time()
    result = train_toy(cfg)
    seconds = time.time() - started
    info = {"stage": "gan_toy", "profile": getattr(getattr(params, "run", None), "profile", "any"),
            "device": "cpu", **git_state(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "torch": torch.__version__}
    rows, first, final, checks = result["rows"], result["rows"][0], result["final"], result["checks"]
    early = result["early"]
    mean_early = {k: sum(r[k] for r in early) / len(early) for k in ("minimax", "non_saturating")}
    summary = {
        "steps": cfg.steps, "seconds": round(seconds, 2),
        "minus_log4": MINUS_LOG4,
        "initial": {"jsd": first["jsd"], "c_g": first["c_g"], "value": first["value"]},
        "final": {"jsd": final["jsd"], "c_g": final["c_g"], "value": final["value"],
                  "c_g_minus_minus_log4": final["c_g"] - MINUS_LOG4},
        "max_d": {name: {**c, "gap_d_star": abs(c["v_d_star"] - c["c_g"]),
                         "gap_d_trained": abs(c["v_d_trained"] - c["c_g"]),
                         "gap_d_gan": abs(c["v_d_gan"] - c["c_g"])} for name, c in checks.items()},
        "early_grad_norm_g": {"window": len(early), **mean_early,
                              "ratio_non_saturating_to_minimax": mean_early["non_saturating"]
                              / max(mean_early["minimax"], 1e-30),
                              "at_initial_g_trained_d": checks["initial"]["grad_norm_g_at_trained_d"]},
        "provenance": info,
    }
    figures = metrics / "figures" / "gan_toy"
    write_bytes(figures / "figure1.png", draw_snapshots(result["snapshots"], result["centres"]))
    write_bytes(figures / "value.png", draw_curves(rows, early))
    raw = getattr(params, "raw", None) or {"gan_toy": asdict(cfg)}
    holder = params if getattr(params, "raw", None) else type("Raw", (), {"raw": raw})()
    with StageRun("gan_toy", holder, ["gan_toy"], {k: info[k] for k in ("profile", "device", "commit")}) as run:
        for row in rows:
            run.log_metrics(row["step"], {k: v for k, v in row.items() if k != "step"})
        write_metrics(metrics / "gan_toy.json", summary)
        write_plot(metrics / "plots" / "gan_toy.csv", [{"step": r["step"], **{f"toy/{k}": v for k, v in r.items()
                                                                                if k != "step"}} for r in rows], "toy/")
        run.log_artifacts(figures, "figures/gan_toy")
    print(f"gan_toy: JSD {first['jsd']:.3f} -> {final['jsd']:.4f}; C(G) {final['c_g']:.4f} vs -log 4 "
          f"{MINUS_LOG4:.4f}; early |grad G| minimax {mean_early['minimax']:.3g}, "
          f"non-saturating {mean_early['non_saturating']:.3g} (ratio "
          f"{summary['early_grad_norm_g']['ratio_non_saturating_to_minimax']:.2f}); against a converged D at the "
          f"initial G: minimax {checks['initial']['grad_norm_g_at_trained_d']['minimax']:.3g}, non-saturating "
          f"{checks['initial']['grad_norm_g_at_trained_d']['non_saturating']:.3g} ({seconds:.1f} s)")
    return summary
