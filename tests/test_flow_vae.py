"""The planar-flow VAE: the closed-form log-det equals autograd's Jacobian log-determinant, the û
reparameterization keeps every map invertible even for adversarial (u, w), with K = 0 the bound is the plain VAE's,
the KL estimate is unbiased, and the IWAE bound sits above the ELBO and tightens with k.
"""

from __future__ import annotations

import pytest
import torch
from helpers import SHAPE, images
from torch.autograd.functional import jacobian

from genzoo.models import blocks, flow_vae, vae
from genzoo.models.flow_vae import constrain, planar_flow


def tiny_flow_vae(seed=0, **changes):
    config = flow_vae.Config(**{"latent_dim": 3, "hidden": [16], "flows": 4, "kl_warmup_steps": 0, **changes})
    torch.manual_seed(seed)
    return flow_vae.Model(config, SHAPE, 10)


# --- planar flow -----------------------------------------------------------------------------------------------

def one_flow(u, w, b):
    """f(z) for a single z (L,) under one planar map with parameters u, w (L,), b ()."""
    u_hat, m = constrain(u[None], w[None])

    def f(z):
        return planar_flow(z[None], u_hat, w[None], b[None], m)[0][0]

    def log_det(z):
        return planar_flow(z[None], u_hat, w[None], b[None], m)[1][0]

    return f, log_det


@pytest.mark.parametrize("scale", [0.1, 1.0, 5.0])
def test_planar_log_det_matches_the_autograd_jacobian(scale):
    gen = torch.Generator().manual_seed(int(scale * 10))
    for _ in range(10):
        u, w, z = (torch.randn(5, generator=gen, dtype=torch.float64) * scale for _ in range(3))
        b = torch.randn((), generator=gen, dtype=torch.float64)
        f, log_det = one_flow(u, w, b)
        sign, log_abs = torch.linalg.slogdet(jacobian(f, z))
        assert sign == 1  # the constrained map is orientation-preserving: det > 0
        torch.testing.assert_close(log_det(z), log_abs, rtol=1e-9, atol=1e-9)


def test_invertibility_constraint_holds_for_adversarial_u_and_w():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(64, 6, generator=gen, dtype=torch.float64) * torch.logspace(-2, 2, 64, dtype=torch.float64)[:, None]
    for c in (-1e4, -100.0, -3.0, -1.0, 0.0, 1.0, 1e3):  # u anti-parallel to w makes wᵀu very negative
        u = c * w + torch.randn(64, 6, generator=gen, dtype=torch.float64)
        u_hat, m = constrain(u, w)
        wu_hat = (w * u_hat).sum(-1)
        assert (wu_hat >= -1 - 1e-6).all()
        torch.testing.assert_close(wu_hat, m, rtol=1e-6, atol=1e-6)
        # Along w the map must be monotone: wᵀf(z) is non-decreasing in wᵀz, so f is one-to-one.
        t = torch.linspace(-6, 6, 401, dtype=torch.float64)[:, None, None]
        z = t * w / w.pow(2).sum(-1, keepdim=True)  # (T, 64, 6) with wᵀz = t
        out, log_det = planar_flow(z, u_hat, w, torch.zeros(64, dtype=torch.float64), m)
        assert ((out * w).sum(-1).diff(dim=0) >= -1e-9).all()
        assert torch.isfinite(log_det).all()


def test_the_model_flow_is_the_composition_of_single_planar_flows():
    model = tiny_flow_vae(flows=5)
    x = images(n=6)["x"].float() / 255
    with torch.no_grad():
        _, _, params = model.encode(x)
        z0 = torch.randn(2, 6, 3)  # (k, B, L): the IWAE shape
        z_k, log_det = model.flow(z0, params)
        z, total = z0, torch.zeros(2, 6)
        u_hat, w, b, m = params
        for k in range(5):
            z, step = planar_flow(z, u_hat[:, k], w[:, k], b[:, k], m[:, k])
            total = total + step
    torch.testing.assert_close(z_k, z)
    torch.testing.assert_close(log_det, total)


def test_with_no_flows_the_bound_is_the_plain_vae_elbo():
    flow0 = tiny_flow_vae(flows=0)
    plain = vae.Model(vae.Config(latent_dim=3, hidden=[16]), SHAPE, 10)
    plain.load_state_dict(flow0.state_dict())  # K = 0: the same layers, the same parameter names
    xb = images()["xb"].float()
    torch.manual_seed(3)
    ours = flow0.elbo(xb)
    torch.manual_seed(3)
    theirs = plain.elbo(xb)
    for key in ("elbo", "rec", "kl"):
        torch.testing.assert_close(ours[key], theirs[key])
    assert (ours["log_det"] == 0).all()


def test_saturated_counts_the_maps_whose_tanh_is_flat():
    """`saturated` is the share of (image, map) pairs with |tanh(wᵀz + b)| > 0.99: a fresh net's maps are live,
    and pushing every b far out (the encoder's last bias) saturates all of them, with log det -> 0."""
    model = tiny_flow_vae(flows=4).eval()
    xb = images(n=16)["xb"].float()
    with torch.no_grad():
        live = model.validate({"xb": xb})
        last = model.encoder[-1]
        latent, flows = 3, 4
        b_index = 2 * latent + torch.arange(flows) * (2 * latent + 1) + 2 * latent  # each flow's b output
        last.bias[b_index] = 50.0
        dead = model.validate({"xb": xb})
    assert 0 <= live["saturated"] < 0.5
    assert dead["saturated"] == 1
    assert abs(dead["log_det"]) < 1e-3 < abs(live["log_det"])


def test_the_kl_estimate_is_unbiased_for_kl_of_the_flow_posterior():
    """Our estimate (closed-form KL(q0||p) + log p(z0) - log p(z_K) - Σ log det) against the direct
    Monte Carlo average of log q_K(z_K) - log p(z_K) = log q0(z0) - Σ log det - log p(z_K)."""
    model = tiny_flow_vae(flows=6).eval()
    x = images(n=1)["xb"].float()
    torch.manual_seed(0)
    with torch.no_grad():
        ours = model.elbo(x.expand(8000, *SHAPE))["kl"]
        mean, logvar, params = model.encode(x.flatten(1))
        eps = torch.randn(8000, 1, 3)
        z, log_det = model.flow(mean + eps * (0.5 * logvar).exp(), params)
        log_q = (-0.5 * (eps.pow(2) + blocks.LOG_2PI + logvar).sum(-1) - log_det).flatten()
        direct = log_q + 0.5 * (z.pow(2) + blocks.LOG_2PI).sum(-1).flatten()
    stderr = (ours.var() / len(ours) + direct.var() / len(direct)).sqrt()
    assert abs(ours.mean() - direct.mean()) < 4 * stderr


def test_iwae_bound_is_at_least_the_elbo_and_tightens_with_k():
    torch.manual_seed(0)
    model = tiny_flow_vae(flows=4).eval()
    xb = images(n=16)["xb"].float()
    elbo = model.elbo(xb.repeat(50, 1, 1, 1))["elbo"]
    iwae_1 = model.log_likelihood(xb.repeat(50, 1, 1, 1), k=1)
    stderr = ((elbo.var() + iwae_1.var()) / len(elbo)).sqrt()
    assert abs(iwae_1.mean() - elbo.mean()) < 4 * stderr  # k = 1 is the ELBO (the same expectation)
    elbo = elbo.mean()
    iwae_20 = model.log_likelihood(xb.repeat(5, 1, 1, 1), k=20).mean()
    iwae_300 = model.log_likelihood(xb, k=300).mean()
    assert elbo < iwae_20 < iwae_300


def test_iwae_chunking_does_not_change_the_bound(monkeypatch):
    """Fed the same k samples, one chunk or 43 chunks give the same estimate (a wrong log k would shift it)."""
    model = tiny_flow_vae(flows=3).eval()
    xb = images(n=4)["xb"].float()
    noise = torch.randn(300, 4, 3, generator=torch.Generator().manual_seed(0))

    def replay(n, *shape, device=None):  # torch.randn drawing consecutive rows of `noise`
        replay.used += n
        return noise[replay.used - n:replay.used]

    monkeypatch.setattr(torch, "randn", replay)
    replay.used = 0
    whole = model.log_likelihood(xb, k=300)
    monkeypatch.setattr(blocks, "CHUNK_ELEMENTS", 4 * 784 * 7)  # 7 samples per chunk
    replay.used = 0
    chunked = model.log_likelihood(xb, k=300)
    assert replay.used == 300
    torch.testing.assert_close(whole, chunked)


def test_flow_vae_kl_warmup_starts_at_its_floor_and_counts_on_the_device():
    model = tiny_flow_vae(kl_warmup_steps=100, kl_warmup_start=0.5)
    opt = model.configure_optimizers()
    for _ in range(3):
        losses = model.train_step(images(), opt)
    assert int(model.steps) == 3  # a buffer: saved, resumed and CUDA-graph safe
    assert losses["loss"] == pytest.approx((losses["kl"] + losses["rec"]).item())  # logged loss: -ELBO, unweighted


def test_log_q_is_the_flow_posteriors_log_density_at_the_drawn_z():
    """log q_K(z_K|x) = log N(z0; mean, σ²) − Σ log det, at the very z0 the step drew (the paper's annealing
    weights everything but this term)."""
    model = tiny_flow_vae()
    xb = images()["xb"]
    torch.manual_seed(3)
    terms = model.elbo(xb)
    torch.manual_seed(3)
    mean, logvar, params = model.encode(xb.flatten(1).float())
    z0 = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
    log_q0 = torch.distributions.Normal(mean, (0.5 * logvar).exp()).log_prob(z0).sum(-1)
    torch.testing.assert_close(terms["log_q"], log_q0 - model.flow(z0, params)[1])


def test_the_joint_annealing_weights_log_p_x_z_and_not_log_q():
    """anneal: joint minimises log q − β log p(x, z) = β (KL − rec) + (1 − β) log q: with terms linear in one
    weight θ, θ's gradient is exactly that mix at the step's β (0.01 + 0.99 / 10 at the first of 10 steps)."""
    theta = torch.nn.Parameter(torch.ones(()))
    holder = torch.nn.Module()
    holder.theta, holder.config = theta, flow_vae.Config(kl_warmup_steps=10, kl_warmup_start=0.01)
    holder.register_buffer("steps", torch.zeros((), dtype=torch.long))
    terms = {"rec": 2.0 * theta[None], "kl": 3.0 * theta[None]}
    opt = torch.optim.SGD([theta], lr=0.0)
    beta = 0.01 + 0.99 / 10
    blocks.elbo_step(holder, terms, opt, warmup_start=0.01, log_q=5.0 * theta[None])
    assert theta.grad.item() == pytest.approx(beta * (3.0 - 2.0) + (1 - beta) * 5.0)
    holder.steps.zero_()
    blocks.elbo_step(holder, {"rec": 2.0 * theta[None], "kl": 3.0 * theta[None]}, opt, warmup_start=0.01)
    assert theta.grad.item() == pytest.approx(beta * 3.0 - 2.0)  # ours: only the KL is weighted


def test_the_papers_pieces_maxout_rmsprop_and_joint_annealing_train():
    model = tiny_flow_vae(activation="maxout", pieces=3, optimizer="rmsprop", momentum=0.9, lr=1e-3,
                          anneal="joint", kl_warmup_steps=5)
    assert isinstance(model.encoder[0], blocks.Maxout) and model.encoder[0].linear.out_features == 16 * 3
    opt = model.configure_optimizers()
    assert isinstance(opt["model"], torch.optim.RMSprop) and opt["model"].defaults["momentum"] == 0.9
    before = [p.detach().clone() for p in model.parameters()]
    losses = model.train_step(images(), opt)
    assert torch.isfinite(losses["loss"]) and any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert model.log_likelihood(images()["xb"], k=4).shape == (len(images()["xb"]),)  # maxout over (k, B, L) too
