"""The cutout's symmetries as training augmentation (docs/design.md §4): the 8 moves of the
square grid that keep the host at the centre, applied to condition and target together,
drawn from (seed, step) alone. That an augmented run resumes bit-for-bit is in
test_training.py."""

from __future__ import annotations

import torch

from halocm.data.augment import N_SYMMETRIES, dihedral, symmetries_at_step
from halocm.training import Batches


def _moves(x: torch.Tensor) -> list[torch.Tensor]:
    return [dihedral(x, torch.full((len(x),), s)) for s in range(N_SYMMETRIES)]


def _centred_profile(n: int) -> torch.Tensor:
    """A map that depends on the distance to the cutout centre (the corner of the four
    central pixels) alone, as a host's profile does."""
    c = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
    return (1.0 / (0.3 + c[:, None] ** 2 + c[None, :] ** 2)).expand(1, 1, n, n)


def test_the_eight_moves_are_distinct_and_keep_every_pixel_value():
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    moved = _moves(x)
    assert len({tuple(m.flatten().tolist()) for m in moved}) == N_SYMMETRIES
    for m in moved:
        assert torch.equal(m.flatten(2).sort().values, x.flatten(2).sort().values)


def test_the_moves_form_the_square_group_acting_on_the_grid():
    x = torch.randn(1, 1, 5, 5, dtype=torch.float64)
    moved = {tuple(m.flatten().tolist()) for m in _moves(x)}
    for m in _moves(x):  # closed: a move of a moved map is one of the 8 moves of the map
        assert {tuple(mm.flatten().tolist()) for mm in _moves(m)} == moved
    turn = dihedral(x, torch.tensor([1]))
    for _ in range(3):
        turn = dihedral(turn, torch.tensor([1]))
    assert torch.equal(turn, x)  # four quarter turns
    flip = dihedral(x, torch.tensor([4]))
    assert torch.equal(dihedral(flip, torch.tensor([4])), x)  # a mirror is its own inverse


def test_a_profile_centred_on_the_host_is_left_as_it_is():
    for n in (8, 9):
        profile = _centred_profile(n)
        for m in _moves(profile):
            assert torch.equal(m, profile)


def test_each_map_of_a_batch_gets_its_own_move_and_condition_and_target_the_same_one():
    torch.manual_seed(0)
    condition = torch.randn(64, 1, 8, 8)
    target = torch.cat([2.0 * condition, condition**2], dim=1)  # a pixelwise law
    plain = Batches(target, condition, torch.zeros(64, 0), batch_size=32, seed=1)
    augmented = Batches(target, condition, torch.zeros(64, 0), batch_size=32, seed=1, augment=True)
    for step in range(4):
        y, c, _ = augmented.at_step(step)
        y0, c0, _ = plain.at_step(step)
        assert torch.equal(y, torch.cat([2.0 * c, c**2], dim=1))  # the law survives the move
        which = symmetries_at_step(1, step, 32)
        assert torch.equal(c, dihedral(c0, which))
        assert torch.equal(y, dihedral(y0, which))
        assert len(set(which.tolist())) > 1


def test_the_moves_depend_on_seed_and_step_only_and_are_uniform():
    assert torch.equal(symmetries_at_step(3, 17, 50), symmetries_at_step(3, 17, 50))
    assert not torch.equal(symmetries_at_step(3, 17, 50), symmetries_at_step(3, 18, 50))
    assert not torch.equal(symmetries_at_step(3, 17, 50), symmetries_at_step(4, 17, 50))
    draws = torch.cat([symmetries_at_step(0, step, 100) for step in range(80)])
    counts = torch.bincount(draws, minlength=N_SYMMETRIES).double()
    # 8,000 draws: each move's count is 1,000 ± 30 (binomial sd); 5 sd either way.
    assert ((counts - 1000).abs() < 150).all(), counts
