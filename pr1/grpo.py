"""The GRPO math as pure tensor functions (the step that uses them lives in pr1/module.py).

Shapes: N = B*G completions (B prompts, G generations each, grouped contiguously: rows g*G..g*G+G-1 share
a prompt), T = completion length, `mask` is 1 on real completion tokens (up to and including EOS).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
SCALE_REWARDS = ("group", "batch", "none")


def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    scale: str = "group",
    eps: float = 1e-4,
    batch_std: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """A_i = (r_i - mean(group)) / (std + eps).

    scale="group": std of the completion's own group (GRPO); "batch": std over the whole batch (more robust
    when a group is nearly constant); "none": no division (Dr. GRPO's unbiased advantage). The std is the
    unbiased (n-1) sample std, as in the GRPO reference implementations. A group whose rewards are all equal
    gets advantage 0 and hence no policy gradient. `batch_std` overrides the local batch std: data-parallel
    runs pass the std over all processes, so that "batch" means the global batch.
    """
    if scale not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards must be one of {SCALE_REWARDS}, got {scale!r}")
    if rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards of shape {tuple(rewards.shape)} do not split into groups of {group_size}")
    grouped = rewards.view(-1, group_size)
    centred = (grouped - grouped.mean(dim=1, keepdim=True)).view(-1)
    if scale == "none":
        return centred
    if scale == "group":
        std = grouped.std(dim=1, keepdim=True).expand_as(grouped).reshape(-1)
    else:
        std = torch.as_tensor(rewards.std() if batch_std is None else batch_std).expand_as(rewards)
    return centred / (std + eps)


def selective_log_softmax(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[index] without materialising the full log-prob tensor twice."""
    return torch.gather(logits.log_softmax(dim=-1), -1, index.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-token entropy H = -sum p log p of the sampling distribution."""
    logp = logits.log_softmax(dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def token_logps(
    logits: torch.Tensor, index: torch.Tensor, temperature: float, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log pi(index) under logits / temperature in float32 (the sampling distribution), and its
    entropy (no grad: it is logged, never optimised) when asked."""
    logits = logits.float() / temperature
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = entropy_from_logits(logits)
    return selective_log_softmax(logits, index), entropy


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator of KL(pi || ref), per token: exp(ref - logp) - (ref - logp) - 1 >= 0.

    Unbiased for tokens sampled from pi, always non-negative, and its gradient w.r.t. logp is 1 - ref/pi.
    """
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


def clipped_surrogate(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    epsilon_low: float,
    epsilon_high: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped objective, negated as a per-token loss, and the mask of tokens where clipping bound.

    loss_t = -min(ratio_t * A, clip(ratio_t, 1 - eps_low, 1 + eps_high) * A) with ratio_t = pi/pi_old.
    With one update per rollout (old == current) the ratio is 1 and this is the plain policy gradient.
    """
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(-1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high) * adv
    loss = -torch.min(unclipped, clipped)
    is_clipped = (clipped < unclipped).float()
    return loss, is_clipped


def token_weights(
    mask: torch.Tensor,
    loss_type: str,
    max_completion_length: int,
    num_items_in_batch: float | None = None,
) -> torch.Tensor:
    """Weights w_t such that loss = sum_t w_t * loss_t implements each aggregation; computed over the full
    batch so that splitting the sum into micro-batches gives the same loss.

    grpo:    mean over a sequence's tokens, then mean over sequences: w = mask / (|o_i| * N).
             Long completions get less weight per token (the length bias Dr. GRPO points out).
    bnpo:    mean over all tokens of the local batch: w = mask / sum(mask).
    dr_grpo: sum over tokens divided by a constant N * L_max: w = mask / (N * max_completion_length).
    dapo:    token-level mean over the global batch (all processes and accumulation steps):
             w = mask / num_items_in_batch (defaults to the local token count, i.e. bnpo, on one process).
    """
    mask = mask.float()
    if loss_type == "grpo":
        return mask / (mask.sum(dim=1, keepdim=True).clamp(min=1.0) * mask.shape[0])
    if loss_type == "bnpo":
        return mask / mask.sum().clamp(min=1.0)
    if loss_type == "dr_grpo":
        return mask / (mask.shape[0] * max_completion_length)
    if loss_type == "dapo":
        total = mask.sum() if num_items_in_batch is None else torch.as_tensor(num_items_in_batch)
        return mask / total.clamp(min=1.0)
    raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")


class LossParts(NamedTuple):
    """One micro-batch's GRPO loss and the token sums its stats are made of."""

    loss: torch.Tensor  # () sum_t w_t * (surrogate_t + beta * kl_t), differentiable
    kl_sum: torch.Tensor  # () sum of the k3 KL over real tokens (detached; 0 without a reference)
    clipped_sum: torch.Tensor  # () number of real tokens where the clip bound


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    weights: torch.Tensor,
    mask: torch.Tensor,
    epsilon: float,
    epsilon_high: float,
    beta: float = 0.0,
    ref_logp: torch.Tensor | None = None,
) -> LossParts:
    """The GRPO objective of rows (n, T): clipped surrogate plus beta * k3 KL, aggregated by `token_weights`.

    `weights` come from `token_weights` over the whole rollout batch (so micro-batches sum to its loss), the
    advantages are per row (n,). Without `ref_logp` there is no KL term (beta is then ignored).
    """
    per_token, clipped = clipped_surrogate(logp, old_logp, advantages, epsilon, epsilon_high)
    kl_sum = torch.zeros((), device=logp.device)
    if ref_logp is not None:
        kl = kl_k3(logp, ref_logp)
        per_token = per_token + beta * kl
        kl_sum = (kl.detach() * mask).sum()
    return LossParts((per_token * weights).sum(), kl_sum, (clipped * mask).sum())
