"""The one transfer matcher (transforms/transfer_matching.py): by tx hash first, then asset, amount less the
withdrawal fee within the tolerance, and the time window; the closest in time wins; the result does not depend on
the order of the legs."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from transforms.transfer_matching import TransferLeg, TransferMatch, TransferPolicy, amount_fits, match_transfers
from warehouse.numbers import D

T0 = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)
ETH = 1
EXCHANGE, WALLET, CUSTODIAN = 1, 2, 3


def leg(id_: int, kind: str, quantity: str, account: int, minutes: float = 0, tx: str | None = None,
        fee: str = "0", asset: int = ETH) -> TransferLeg:
    return TransferLeg(id_, account, asset, kind, T0 + timedelta(minutes=minutes), D(quantity), tx, D(fee))


def test_the_hand_worked_example_an_exchange_withdrawal_reaches_the_wallet_two_hours_later_without_hash():
    # the exchange sends 0.995 ETH of the 1 ETH withdrawn (fee 0.005, its own leg); the wallet receives 0.995 at +2h
    result = match_transfers([leg(10, "withdrawal", "-0.995", EXCHANGE, fee="0.005"),
                              leg(20, "transfer_in", "0.995", WALLET, minutes=120)])
    assert result.matches == (TransferMatch(10, 20, "amount_time"),)
    assert result.unmatched_out == () and result.unmatched_in == ()


def test_a_withdrawal_booked_gross_matches_what_arrived_less_its_fee():
    # a source that books the full 1 ETH as the withdrawal and the 0.005 fee beside it: 0.995 arrives (the fee is
    # beyond the 0.1 % tolerance, so only the fee makes it fit)
    policy = TransferPolicy(7200, D("0.001"))
    assert match_transfers([leg(10, "withdrawal", "-1", EXCHANGE, fee="0.005"),
                            leg(20, "transfer_in", "0.995", WALLET, minutes=30)], policy).matches != ()
    assert match_transfers([leg(10, "withdrawal", "-1", EXCHANGE),
                            leg(20, "transfer_in", "0.995", WALLET, minutes=30)], policy).matches == ()


@pytest.mark.parametrize("received, fits", [("1", True), ("0.99", True), ("0.989999", False), ("1.000001", False)])
def test_the_received_amount_is_at_most_what_was_sent_and_at_least_sent_less_the_tolerance(received, fits):
    assert amount_fits(D("1"), D("0"), D(received), D("0.01")) is fits
    # the matcher applies the same bounds
    found = match_transfers([leg(1, "transfer_out", "-1", EXCHANGE), leg(2, "transfer_in", received, WALLET, 10)])
    assert bool(found.matches) is fits


@pytest.mark.parametrize("minutes, matched", [(120, True), (-120, True), (120 + 1 / 60, False), (-121, False)])
def test_the_window_is_inclusive_either_side(minutes, matched):
    result = match_transfers([leg(1, "transfer_out", "-2", EXCHANGE), leg(2, "deposit", "2", CUSTODIAN, minutes)])
    assert bool(result.matches) is matched
    if not matched:
        assert (result.unmatched_out, result.unmatched_in) == ((1,), (2,))


def test_the_tx_hash_matches_first_whatever_the_amount_and_time():
    legs = [leg(1, "withdrawal", "-5", EXCHANGE, tx="0xa"), leg(2, "deposit", "4", CUSTODIAN, minutes=600, tx="0xa"),
            leg(3, "transfer_in", "5", WALLET, minutes=1)]  # an amount-and-time look-alike, closer in time
    assert match_transfers(legs).matches == (TransferMatch(1, 2, "tx_hash"),)
    assert match_transfers(legs).unmatched_in == (3,)


def test_different_hashes_never_match_and_one_account_never_transfers_to_itself():
    assert match_transfers([leg(1, "withdrawal", "-1", EXCHANGE, tx="0xa"),
                            leg(2, "transfer_in", "1", WALLET, minutes=5, tx="0xb")]).matches == ()
    assert match_transfers([leg(1, "transfer_out", "-1", WALLET), leg(2, "transfer_in", "1", WALLET, 5)]).matches == ()
    assert match_transfers([leg(1, "withdrawal", "-1", EXCHANGE, tx="0xa"),
                            leg(2, "deposit", "1", EXCHANGE, minutes=5, tx="0xa")]).matches == ()
    assert match_transfers([leg(1, "transfer_out", "-1", WALLET), leg(2, "transfer_in", "1", EXCHANGE, 5, asset=2)
                            ]).matches == ()


def test_the_closest_in_time_wins_and_the_order_of_the_legs_does_not_matter():
    legs = [leg(1, "transfer_out", "-10", EXCHANGE, 0), leg(2, "transfer_out", "-10", EXCHANGE, 30),
            leg(3, "transfer_in", "9.99", WALLET, 50), leg(4, "deposit", "10", CUSTODIAN, 55)]
    expected = match_transfers(legs)
    # 2 -> 3 is the closest pair (20 min); 1 -> 4 (55 min) comes next
    assert expected.matches == (TransferMatch(1, 4, "amount_time"), TransferMatch(2, 3, "amount_time"))
    rng = random.Random(12)
    for _ in range(20):
        rng.shuffle(legs)
        assert match_transfers(legs) == expected


def test_every_leg_left_is_unmatched_and_other_kinds_are_ignored():
    result = match_transfers([leg(1, "withdrawal", "-1", EXCHANGE), leg(2, "deposit", "3", CUSTODIAN),
                              leg(3, "buy", "1", WALLET), leg(4, "fee", "-0.1", EXCHANGE)])
    assert result.status_of() == {1: ("unmatched_out", None), 2: ("unmatched_in", None)}


def test_a_policy_outside_its_bounds_is_refused():
    with pytest.raises(ValueError, match="window"):
        TransferPolicy(-1)
    with pytest.raises(ValueError, match="tolerance"):
        TransferPolicy(60, D("1"))
