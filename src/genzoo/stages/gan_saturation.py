"""The `gan_saturation` stage: why Goodfellow et al. 2014 (§3) train G on -log D(G(z)) instead of log(1 - D(G(z))).

Early in training D rejects the samples confidently, D(G(z)) ≈ 0, where log(1 - D(G(z))) is flat: the minimax
generator gets almost no gradient while the non-saturating one, with the same fixed point, gets a strong one.
Two copies of the same GAN (same seed, same data order, same initial weights) are trained for a few hundred
steps, one per generator loss, and the gradient norm of G's loss is recorded at every step.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from genzoo.data.loading import load_meta, load_split
from genzoo.engine.tracking import StageRun, provenance, write_metrics, write_plot
from genzoo.engine.training import describe_device, resolve_device
from genzoo.models.adversarial import G_LOSSES
from genzoo.models.registry import build_model
from genzoo.params import Params


def models_used(raw: dict, target: str | None = None) -> list[str]:
    """The registry models this stage may run: `saturation.model` picks one; both sections are checked."""
    return ["gan", "dcgan"]

EARLY_STEPS = 50  # the window the summary averages over: D has already learned to reject the first samples


def gradient_norms(name: str, params: Params, train: dict, image_shape, num_classes: int, g_loss: str,
                   steps: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Per-step ‖∇_G loss_G‖ and mean D(G(z)) for `steps` steps of `name` trained with generator loss `g_loss`."""
    config = dataclasses.replace(params.model(name), g_loss=g_loss)
    model = build_model(name, config, image_shape, num_classes, params.run.seed).to(device).train()
    opt = model.configure_optimizers()
    rows = config.batch_size * config.d_steps
    generator = torch.Generator().manual_seed(params.run.seed)  # the same batches for both losses
    order = torch.randperm(len(train["x"]), generator=generator)
    torch.manual_seed(params.run.seed)  # the same noise stream for both losses
    norms, d_fake = [], []
    for step in range(steps):
        idx = order[(step * rows) % len(order):][:rows]
        out = model.train_step({"x": train["x"][idx].to(device)}, opt)
        norms.append(out["grad_norm_g"])
        d_fake.append(out["d_fake"])
    return {"grad_norm_g": torch.stack(norms).cpu(), "d_fake": torch.stack(d_fake).cpu()}


def gan_saturation_stage(params: Params, data: Path, metrics: Path) -> dict:
    cfg = params.saturation
    device = resolve_device(params.engine.device)
    meta = load_meta(data)
    train = load_split(data, "train")
    info = provenance("gan_saturation", params, describe_device(device), data)
    with StageRun("gan_saturation", params, ["run", "saturation", cfg.model],
                  {k: info[k] for k in ("profile", "device", "commit")}) as run:
        curves = {loss: gradient_norms(cfg.model, params, train, tuple(meta["image_shape"]), len(meta["classes"]),
                                       loss, cfg.steps, device) for loss in G_LOSSES}
        history = [{"step": step + 1, **{f"grad_norm_g/{loss}": float(c["grad_norm_g"][step]) for loss, c in
                                         curves.items()},
                    **{f"d_fake/{loss}": float(c["d_fake"][step]) for loss, c in curves.items()}}
                   for step in range(cfg.steps)]
        window = min(EARLY_STEPS, cfg.steps)
        early = {loss: float(c["grad_norm_g"][:window].mean()) for loss, c in curves.items()}
        summary = {"model": cfg.model, "steps": cfg.steps, "early_window": window,
                   "early_grad_norm_g": early,
                   "ratio_non_saturating_to_minimax": early["non_saturating"] / max(early["minimax"], 1e-12),
                   "final_d_fake": {loss: float(c["d_fake"][-1]) for loss, c in curves.items()},
                   "provenance": info}
        for row in history:
            run.log_metrics(row["step"], {k: v for k, v in row.items() if k != "step"})
        write_metrics(metrics / "gan_saturation.json", summary)
        write_plot(metrics / "plots" / "gan_saturation.csv", history, "grad_norm_g/")
    print(f"{cfg.model}: mean |grad G| over the first {window} steps: "
          + ", ".join(f"{k} {v:.3g}" for k, v in early.items()))
    return summary
