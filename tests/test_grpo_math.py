"""The GRPO math against hand-worked numbers and brute-force references."""

import math

import pytest
import torch

from pr1 import grpo


def test_group_advantage_hand_computed():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    adv = grpo.group_advantages(r, 4, "group", eps=0.0)
    # group 1: mean 0.5, sample std sqrt(1/3); group 2 constant -> 0/0 guarded by eps below
    s = math.sqrt(1 / 3)
    assert torch.allclose(adv[:4], torch.tensor([0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s]))
    adv_eps = grpo.group_advantages(r, 4, "group", eps=1e-4)
    assert torch.all(adv_eps[4:] == 0)


def test_advantage_scales():
    r = torch.tensor([0.0, 1.0, 3.0, 5.0])
    assert torch.allclose(grpo.group_advantages(r, 2, "none"), torch.tensor([-0.5, 0.5, -1.0, 1.0]))
    batch = grpo.group_advantages(r, 2, "batch", eps=0.0)
    assert torch.allclose(batch, torch.tensor([-0.5, 0.5, -1.0, 1.0]) / r.std())
    with pytest.raises(ValueError, match="scale_rewards"):
        grpo.group_advantages(r, 2, "rank")
    with pytest.raises(ValueError, match="groups of 3"):
        grpo.group_advantages(r, 3)


def test_advantage_depends_only_on_own_group():
    r = torch.tensor([0.1, 0.9, 0.4, 0.4, 5.0, -3.0])
    base = grpo.group_advantages(r, 2)
    r2 = r.clone()
    r2[4:] = torch.tensor([100.0, 7.0])
    assert torch.equal(grpo.group_advantages(r2, 2)[:4], base[:4])


def test_clipped_surrogate_ratio_e_clipped_to_one_plus_eps():
    logp, old = torch.tensor([[1.0]]), torch.tensor([[0.0]])  # ratio = e
    loss, clipped = grpo.clipped_surrogate(logp, old, torch.tensor([1.0]), 0.2, 0.2)
    assert loss.item() == pytest.approx(-1.2)
    assert clipped.item() == 1.0
    # negative advantage: min(e*-1, 1.2*-1) = -e  -> loss e, not clipped
    loss, clipped = grpo.clipped_surrogate(logp, old, torch.tensor([-1.0]), 0.2, 0.2)
    assert loss.item() == pytest.approx(math.e)
    assert clipped.item() == 0.0
    # clip-higher: eps_high=0.28
    loss, _ = grpo.clipped_surrogate(logp, old, torch.tensor([2.0]), 0.2, 0.28)
    assert loss.item() == pytest.approx(-2 * 1.28)
    # ratio below 1 - eps with negative advantage is clipped at 1 - eps
    loss, clipped = grpo.clipped_surrogate(torch.tensor([[-1.0]]), old, torch.tensor([-1.0]), 0.2, 0.2)
    assert loss.item() == pytest.approx(0.8)
    assert clipped.item() == 1.0


def test_kl_k3_hand_computed_and_nonnegative():
    logp = torch.tensor([0.0, -1.0, -2.0])
    ref = torch.tensor([0.0, -2.0, -1.0])
    d = ref - logp
    expected = torch.exp(d) - d - 1
    assert torch.allclose(grpo.kl_k3(logp, ref), expected)
    assert grpo.kl_k3(logp, ref)[0] == 0
    assert grpo.kl_k3(torch.tensor([-1.0]), torch.tensor([-2.0])).item() == pytest.approx(
        math.exp(-1) + 1 - 1
    )
    x = torch.randn(1000)
    assert (grpo.kl_k3(x, torch.randn(1000)) >= 0).all()


def test_k3_is_unbiased_kl_estimate():
    torch.manual_seed(0)
    p = torch.softmax(torch.randn(5), 0)
    q = torch.softmax(torch.randn(5), 0)
    samples = torch.multinomial(p, 200_000, replacement=True)
    est = grpo.kl_k3(p.log()[samples], q.log()[samples]).mean()
    exact = (p * (p.log() - q.log())).sum()
    assert est.item() == pytest.approx(exact.item(), rel=0.03)


MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.float32)
LOSS = torch.tensor([[1.0, 2.0, 3.0, 99.0], [4.0, 99.0, 99.0, 99.0]])


@pytest.mark.parametrize(
    "loss_type, expected",
    [
        ("grpo", ((1 + 2 + 3) / 3 + 4 / 1) / 2),
        ("bnpo", (1 + 2 + 3 + 4) / 4),
        ("dr_grpo", (1 + 2 + 3 + 4) / (2 * 4)),
        ("dapo", (1 + 2 + 3 + 4) / 4),
    ],
)
def test_loss_aggregation(loss_type, expected):
    w = grpo.token_weights(MASK, loss_type, max_completion_length=4)
    assert (LOSS * w).sum().item() == pytest.approx(expected)


def test_dapo_uses_global_token_count():
    w = grpo.token_weights(MASK, "dapo", 4, num_items_in_batch=8)
    assert (LOSS * w).sum().item() == pytest.approx(10 / 8)


def test_weights_split_over_micro_batches_sum_to_whole():
    torch.manual_seed(1)
    mask = (torch.rand(6, 5) > 0.3).float()
    loss = torch.randn(6, 5)
    for lt in grpo.LOSS_TYPES:
        w = grpo.token_weights(mask, lt, 5)
        whole = (loss * w).sum()
        parts = sum((loss[i : i + 2] * w[i : i + 2]).sum() for i in range(0, 6, 2))
        assert torch.allclose(whole, parts)
    with pytest.raises(ValueError, match="loss_type"):
        grpo.token_weights(mask, "ppo", 5)


def test_identical_rewards_give_no_policy_gradient():
    logp = torch.randn(4, 3, requires_grad=True)
    adv = grpo.group_advantages(torch.full((4,), 0.7), 4)
    loss, _ = grpo.clipped_surrogate(logp, logp.detach(), adv, 0.2, 0.2)
    (loss * grpo.token_weights(torch.ones(4, 3), "grpo", 3)).sum().backward()
    assert torch.all(logp.grad == 0)


def test_selective_log_softmax_matches_log_softmax():
    logits = torch.randn(2, 3, 7)
    idx = torch.randint(0, 7, (2, 3))
    ref = torch.log_softmax(logits, -1).gather(-1, idx.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(grpo.selective_log_softmax(logits, idx), ref)


def test_entropy_uniform():
    assert grpo.entropy_from_logits(torch.zeros(1, 8)).item() == pytest.approx(math.log(8))


def _loop_grpo_loss(logp, old, adv, weights, mask, eps_lo, eps_hi, beta, ref):
    """The GRPO loss token by token in plain Python floats (an independent computation)."""
    loss = kl_sum = clipped = 0.0
    for i in range(len(logp)):
        for t in range(len(logp[i])):
            ratio = math.exp(logp[i][t] - old[i][t])
            a = adv[i]
            surrogate = -min(ratio * a, min(max(ratio, 1 - eps_lo), 1 + eps_hi) * a)
            clipped += mask[i][t] * (min(max(ratio, 1 - eps_lo), 1 + eps_hi) * a < ratio * a)
            kl = 0.0
            if ref is not None:
                d = ref[i][t] - logp[i][t]
                kl = math.exp(d) - d - 1
                kl_sum += mask[i][t] * kl
            loss += weights[i][t] * (surrogate + beta * kl)
    return loss, kl_sum, clipped


@pytest.mark.parametrize("with_ref", [True, False])
def test_grpo_loss_matches_token_loop(with_ref):
    gen = torch.Generator().manual_seed(0)
    logp = -torch.rand(4, 5, generator=gen, dtype=torch.float64) * 3
    old = logp + (torch.rand(4, 5, generator=gen, dtype=torch.float64) - 0.5)
    ref = logp + (torch.rand(4, 5, generator=gen, dtype=torch.float64) - 0.5) if with_ref else None
    adv = torch.tensor([1.5, -0.5, 0.0, -2.0], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]])
    weights = grpo.token_weights(mask, "grpo", 5).double()
    parts = grpo.grpo_loss(logp, old, adv, weights, mask, 0.2, 0.28, beta=0.04, ref_logp=ref)
    expected = _loop_grpo_loss(
        logp.tolist(),
        old.tolist(),
        adv.tolist(),
        weights.tolist(),
        mask.tolist(),
        0.2,
        0.28,
        0.04,
        None if ref is None else ref.tolist(),
    )
    assert float(parts.loss) == pytest.approx(expected[0], rel=1e-9)
    assert float(parts.kl_sum) == pytest.approx(expected[1], rel=1e-9, abs=1e-12)
    assert float(parts.clipped_sum) == expected[2]


def test_grpo_loss_on_policy_is_minus_weighted_advantage():
    """Hand-worked: ratio 1 and no reference -> loss = -sum_t w_t A_i; gradient d/dlogp = -w_t A_i."""
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -0.5]], requires_grad=True)
    adv = torch.tensor([2.0, -1.0])
    mask = torch.tensor([[1, 1], [1, 0]])
    weights = grpo.token_weights(mask, "bnpo", 2)  # 1/3 on each real token
    parts = grpo.grpo_loss(logp, logp.detach(), adv, weights, mask, 0.2, 0.2)
    assert float(parts.loss) == pytest.approx(-(2.0 + 2.0 - 1.0) / 3)
    parts.loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-2 / 3, -2 / 3], [1 / 3, 0.0]]))
    assert float(parts.kl_sum) == 0.0 and float(parts.clipped_sum) == 0.0
