"""Losses of training/: each is zero where it should be, and the trivial solutions the original
ClearNet recipe allowed score worse than the true solution."""

from __future__ import annotations

import pytest
import torch

from napari_clearnet.core import physics
from napari_clearnet.core.model import ClearNet, ClearNetConfig
from training.losses import (
    LossWeights,
    Objective,
    PseudoPairs,
    color_constancy_loss,
    dark_channel_loss,
    exposure_loss,
    make_pseudo_pairs,
    pseudo_pair_losses,
    tv_loss,
)


def _scene(seed: int = 0, h: int = 48, w: int = 64) -> torch.Tensor:
    """A colourful clear scene whose dark channel is ~0 (one channel dark in every pixel), as the
    prior assumes for haze-free images, with a grey-balanced mean."""
    g = torch.Generator().manual_seed(seed)
    j = 0.3 + 0.6 * torch.rand(1, 3, h, w, generator=g)
    which = torch.randint(0, 3, (1, 1, h // 8, w // 8), generator=g)
    which = which.repeat_interleave(8, -2).repeat_interleave(8, -1)
    for c in range(3):
        j[:, c : c + 1][which == c] = 0.02
    return j


def _true_hazy(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    j = _scene(seed)
    h, w = j.shape[-2:]
    t = torch.linspace(0.35, 0.85, h).reshape(1, 1, h, 1).expand(1, 1, h, w).contiguous()
    a = torch.tensor([[0.85, 0.85, 0.88]])
    return physics.haze(j, t, a), j, t, a


def test_dark_channel_loss_zero_for_zero_dark_channel() -> None:
    img = torch.rand(2, 3, 32, 32)
    img[:, 1] = 0.0
    assert dark_channel_loss(img) == 0.0
    assert dark_channel_loss(torch.full((1, 3, 32, 32), 0.5)) == pytest.approx(0.5)


def test_color_constancy_zero_for_grey_balance_positive_for_cast() -> None:
    x = torch.rand(2, 1, 16, 16).repeat(1, 3, 1, 1)
    assert color_constancy_loss(x) == pytest.approx(0.0, abs=1e-12)
    cast = x.clone()
    cast[:, 0] += 0.2
    # (0.2)² + (0.2)² + 0 for the red channel shifted by 0.2
    assert color_constancy_loss(cast) == pytest.approx(0.08, rel=1e-5)


def test_tv_zero_for_constant_t_and_weight_applied_once() -> None:
    assert tv_loss(torch.full((2, 1, 16, 16), 0.7)) == 0.0
    t = torch.rand(2, 1, 16, 16) * 0.8 + 0.2
    hazy = torch.rand(2, 3, 16, 16)
    a = torch.full((2, 3), 0.9)
    w = 1e-6  # the original applied 1e-6 twice (1e-12 in effect): TV did nothing
    obj = Objective(LossWeights(pseudo_depth=0, pseudo_airlight=0, tv=w))
    terms = obj.physics_terms(hazy, t, a)
    assert set(terms) == {"tv"}
    assert float(obj.total(terms)) == pytest.approx(w * float(tv_loss(t)), rel=1e-6)
    assert float(obj.total(terms)) > 1e3 * w * w * float(tv_loss(t))


def test_exposure_guard_is_one_sided() -> None:
    assert exposure_loss(torch.full((1, 3, 32, 32), 0.5)) == 0.0
    assert exposure_loss(torch.zeros(1, 3, 32, 32)) == pytest.approx(0.2**2)
    assert exposure_loss(torch.full((1, 3, 32, 32), -1.0)) > exposure_loss(torch.zeros(1, 3, 32, 32))


def test_pseudo_pair_loss_zero_when_prediction_is_target() -> None:
    depth = torch.rand(2, 1, 8, 8) * 2
    a = torch.rand(2, 3) * 0.4 + 0.6
    pairs = PseudoPairs(torch.rand(2, 3, 8, 8), depth, a, torch.exp(-depth).mean((1, 2, 3)))
    terms = pseudo_pair_losses(torch.exp(-depth), a.clone(), pairs)
    assert float(terms["pseudo_depth"]) == pytest.approx(0.0, abs=1e-6)
    assert float(terms["pseudo_airlight"]) == 0.0


def test_image_term_is_lowest_at_the_true_haze_amount_and_weighs_dense_haze_like_light() -> None:
    """pseudo_image is the pairs' mean ln MSE: lowest (the 40 dB floor) at the true t and A, and
    higher whichever way the haze amount is off; unlike the relative depth error it charges
    dense haze as much as light haze for the same error in optical depth."""
    j = _scene(1)
    a = torch.full((1, 3), 0.85)

    def pairs_at(beta: float) -> tuple[PseudoPairs, torch.Tensor]:
        depth = torch.full((1, 1, *j.shape[-2:]), beta)
        t = torch.exp(-depth)
        hazy = physics.haze(j, t, a)
        return PseudoPairs(hazy, depth, a, t.mean((1, 2, 3)), j), depth

    def image_term(pairs: PseudoPairs, depth: torch.Tensor) -> float:
        return float(pseudo_pair_losses(torch.exp(-depth), a, pairs, image_t0=0.1)["pseudo_image"])

    light, d_light = pairs_at(0.3)
    dense, d_dense = pairs_at(1.8)
    floor = torch.log(torch.tensor(1e-4)).item()
    assert image_term(light, d_light) == pytest.approx(floor, abs=1e-3)
    assert image_term(light, 0.8 * d_light) > floor + 0.5 and image_term(light, 1.2 * d_light) > floor + 0.5
    # the same 0.1 error in optical depth: the relative depth error charges dense haze ~5x less,
    # the image term about alike (the error in J is |J - A| x 0.1 at any density)
    def rel(pairs, d):
        return float(pseudo_pair_losses(torch.exp(-(d + 0.1)), a, pairs, relative=0.05)["pseudo_depth"])

    rel_light, rel_dense = rel(light, d_light), rel(dense, d_dense)
    assert rel_light > 4 * rel_dense
    assert abs(image_term(light, d_light + 0.1) - image_term(dense, d_dense + 0.1)) < 0.3
    with pytest.raises(ValueError, match="scenes"):
        no_scene = PseudoPairs(light.hazy, d_light, a, light.t_mean)
        pseudo_pair_losses(torch.exp(-d_light), a, no_scene, image_t0=0.1)


def test_image_term_can_count_the_clear_photo_pairs_only() -> None:
    """With image_exact_only the term ignores pairs whose scene is a J0 (the prior's dehazing,
    with its errors) and counts those made from clear photos, which make_pseudo_pairs marks."""
    hazy = torch.stack([_true_hazy(s)[0][0] for s in range(2)])
    prior = ClearNet(ClearNetConfig(widths=(4, 8), working_size=64)).prior
    clear = torch.cat([_scene(5), _scene(6)])
    pairs = make_pseudo_pairs(prior, hazy, torch.Generator().manual_seed(0), clear=clear)
    assert pairs.exact.tolist() == [False, False, True, True]
    assert torch.equal(pairs.scene[2:], clear)
    t = torch.exp(-pairs.depth)
    t_wrong = torch.cat([torch.ones_like(t[:2]), t[2:]])  # the J0 pairs wrong, the clear pairs right
    every = float(pseudo_pair_losses(t_wrong, pairs.airlight, pairs, image_t0=0.02)["pseudo_image"])
    exact = float(pseudo_pair_losses(t_wrong, pairs.airlight, pairs, image_t0=0.02,
                                     image_exact_only=True)["pseudo_image"])
    assert exact < -8.0 < every  # only the right pairs count: near the 40 dB floor (ln 1e-4 = -9.2)
    plain = make_pseudo_pairs(prior, hazy, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="clear photos"):
        pseudo_pair_losses(
            torch.exp(-plain.depth), plain.airlight, plain, image_t0=0.1, image_exact_only=True
        )


def test_centred_depth_loss_ignores_the_global_level_only() -> None:
    depth = torch.rand(3, 1, 8, 8) + 0.5
    pairs = PseudoPairs(torch.rand(3, 3, 8, 8), depth, torch.full((3, 3), 0.8), depth.mean((1, 2, 3)))
    a = pairs.airlight
    scaled = torch.exp(-1.7 * depth)  # every image 1.7× too hazy: a global level error
    assert float(pseudo_pair_losses(scaled, a, pairs)["pseudo_depth"]) > 0.3
    assert float(pseudo_pair_losses(scaled, a, pairs, centre=True)["pseudo_depth"]) < 1e-5
    per_image = torch.exp(-depth * torch.tensor([1.0, 1.7, 0.6]).reshape(3, 1, 1, 1))
    assert float(pseudo_pair_losses(per_image, a, pairs, centre=True)["pseudo_depth"]) > 0.1


def test_level_term_pins_the_batch_haze_level_and_leaves_single_images_free() -> None:
    prior_depth = torch.rand(3, 1, 8, 8) + 0.5
    t_prior = torch.exp(-prior_depth)
    pairs = PseudoPairs(torch.rand(3, 3, 8, 8), prior_depth, torch.full((3, 3), 0.8), torch.ones(3))
    a = pairs.airlight

    def level(scales: list[float]) -> float:
        t = torch.exp(-prior_depth * torch.tensor(scales).reshape(3, 1, 1, 1))
        return float(pseudo_pair_losses(t, a, pairs, centre=True, t_prior=t_prior)["level"])

    assert level([1.0, 1.0, 1.0]) < 1e-10  # the prior's level: free
    assert level([2.0, 0.5, 1.0]) < 1e-10  # images moved around the level: free
    assert level([1.5, 1.5, 1.5]) > 0.1  # the whole batch hazier: penalised
    assert level([0.6, 0.6, 0.6]) > 0.1  # ... or clearer
    assert "level" not in pseudo_pair_losses(t_prior, a, pairs)  # only with t_prior


def test_j0_gain_removes_more_of_the_prior_haze_for_j0() -> None:
    hazy = torch.stack([_true_hazy(s)[0][0] for s in range(2)])
    prior = ClearNet(ClearNetConfig(widths=(4, 8), working_size=64)).prior
    gain = 1 / 0.85
    p = make_pseudo_pairs(prior, hazy, torch.Generator().manual_seed(1), j0_gain=gain)
    _, t_p, a_p = prior(hazy)
    t_j0 = (1 - gain * (1 - t_p)).clamp(0.02, 1)
    j0 = physics.recover(hazy, t_j0, a_p)
    assert torch.allclose(p.hazy, physics.haze(j0, torch.exp(-p.depth), p.airlight).clamp(0, 1), atol=1e-5)
    plain = make_pseudo_pairs(prior, hazy, torch.Generator().manual_seed(1))
    assert not torch.allclose(plain.hazy, p.hazy)


def test_make_pseudo_pairs_obeys_the_scattering_model_and_ranges() -> None:
    hazy = torch.stack([_true_hazy(s)[0][0] for s in range(4)])
    prior = ClearNet(ClearNetConfig(widths=(4, 8), working_size=64)).prior
    p1 = make_pseudo_pairs(prior, hazy, torch.Generator().manual_seed(3), t_mean_range=(0.3, 0.8))
    p2 = make_pseudo_pairs(prior, hazy, torch.Generator().manual_seed(3), t_mean_range=(0.3, 0.8))
    assert torch.equal(p1.hazy, p2.hazy)  # deterministic given the generator
    t_new = torch.exp(-p1.depth)
    assert ((t_new.mean((1, 2, 3)) - p1.t_mean).abs() < 1e-3).all()
    assert ((p1.t_mean >= 0.3) & (p1.t_mean <= 0.8)).all()
    assert ((p1.airlight >= 0.55 - 1e-6) & (p1.airlight <= 1.0)).all()
    _, t_p, a_p = prior(hazy)
    j0 = physics.recover(hazy, t_p.clamp(0.02, 1), a_p)
    assert torch.allclose(p1.hazy, physics.haze(j0, t_new, p1.airlight).clamp(0, 1), atol=1e-5)
    assert torch.allclose(p1.scene, j0, atol=1e-6)  # what the pseudo_image term compares with


def test_trivial_solutions_score_worse_than_the_truth() -> None:
    hazy, j_true, t_true, a_true = _true_hazy()
    weights = LossWeights(dark_channel=0.05, color_constancy=0.1, tv=0.01, exposure=1.0)
    obj = Objective(weights)
    true_total = float(obj.total(obj.physics_terms(hazy, t_true, a_true)))
    # black attractor: t -> t_min with A -> 1 (the dark-channel loss alone prefers it ...)
    t_black, a_one = torch.full_like(t_true, 0.02), torch.ones(1, 3)
    j_black = physics.recover(hazy, t_black, a_one)
    assert dark_channel_loss(j_black) <= dark_channel_loss(j_true)
    # ... but the exposure guard makes the whole objective reject it
    black_total = float(obj.total(obj.physics_terms(hazy, t_black, a_one)))
    assert black_total > true_total
    # identity (t = 1, J = I) and over-dehazing lose against the truth on the pseudo-pair term
    pairs = PseudoPairs(hazy, -torch.log(t_true), a_true, t_true.mean((1, 2, 3)))
    true_pp = sum(pseudo_pair_losses(t_true, a_true, pairs).values())
    ident_pp = sum(pseudo_pair_losses(torch.ones_like(t_true), a_true, pairs).values())
    black_pp = sum(pseudo_pair_losses(t_black, a_one, pairs).values())
    assert float(true_pp) == pytest.approx(0.0, abs=1e-6)
    assert float(ident_pp) > 0.3 and float(black_pp) > 1.0


def test_airlight_is_global_and_bounded_so_it_cannot_copy_the_image() -> None:
    cfg = ClearNetConfig(widths=(4, 8), working_size=32)
    net = ClearNet(cfg)
    with torch.no_grad():
        net.global_head[-1].bias.fill_(50.0)  # push the airlight head as far as it goes
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = net(x)
    assert out["airlight"].shape == (2, 3)  # three numbers per image, never per pixel
    delta = (out["airlight"] - out["airlight_prior"]).abs()
    assert float(delta.max()) <= cfg.airlight_range + 1e-6
