"""GAN, feature-matching and KL losses of Bert-VITS2 v2.3 training (LSGAN formulation)."""

from __future__ import annotations

from typing import Sequence

import torch


def feature_loss(fmap_r: Sequence[Sequence[torch.Tensor]], fmap_g: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """2 * sum over discriminators and layers of mean |real - generated| (real features detached)."""
    loss = 0
    for dr, dg in zip(fmap_r, fmap_g):
        for rl, gl in zip(dr, dg):
            loss = loss + torch.mean(torch.abs(rl.float().detach() - gl.float()))
    return loss * 2


def discriminator_loss(
    disc_real_outputs: Sequence[torch.Tensor], disc_generated_outputs: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, list[float], list[float]]:
    """LSGAN discriminator loss: sum of mean((1 - D(y))^2) + mean(D(y_hat)^2); per-discriminator parts as floats."""
    loss = 0
    r_losses, g_losses = [], []
    for dr, dg in zip(disc_real_outputs, disc_generated_outputs):
        r_loss = torch.mean((1 - dr.float()) ** 2)
        g_loss = torch.mean(dg.float() ** 2)
        loss = loss + (r_loss + g_loss)
        r_losses.append(r_loss.item())
        g_losses.append(g_loss.item())
    return loss, r_losses, g_losses


def generator_loss(disc_outputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """LSGAN generator loss: sum of mean((1 - D(y_hat))^2); also the per-discriminator tensors."""
    loss = 0
    gen_losses = []
    for dg in disc_outputs:
        part = torch.mean((1 - dg.float()) ** 2)
        gen_losses.append(part)
        loss = loss + part
    return loss, gen_losses


def kl_loss(
    z_p: torch.Tensor, logs_q: torch.Tensor, m_p: torch.Tensor, logs_p: torch.Tensor, z_mask: torch.Tensor
) -> torch.Tensor:
    """KL(q || p) estimated at the flowed posterior sample z_p, averaged over valid frames (all [B, C, T])."""
    z_p, logs_q, m_p, logs_p, z_mask = (t.float() for t in (z_p, logs_q, m_p, logs_p, z_mask))
    kl = logs_p - logs_q - 0.5
    kl = kl + 0.5 * ((z_p - m_p) ** 2) * torch.exp(-2.0 * logs_p)
    return torch.sum(kl * z_mask) / torch.sum(z_mask)


def slm_feature_loss(hidden_real: Sequence[torch.Tensor], hidden_generated: Sequence[torch.Tensor]) -> torch.Tensor:
    """WavLM feature loss (v2.3 ``loss_lm``): sum over hidden states of mean |h(y) - h(y_hat)|.

    The caller runs the frozen WavLM (eval mode, 16 kHz input) on real (no grad) and generated audio.
    """
    loss = 0
    for hr, hg in zip(hidden_real, hidden_generated):
        loss = loss + torch.mean(torch.abs(hr.float().detach() - hg.float()))
    return loss


def slm_input(hidden_states: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack WavLM hidden states [B, T, H] x L into the WavLM discriminator input [B, L*H, T]."""
    return torch.stack(list(hidden_states), dim=1).transpose(-1, -2).flatten(start_dim=1, end_dim=2)
