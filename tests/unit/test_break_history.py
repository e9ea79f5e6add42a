"""The break lifecycle's pure rules: which event a close records, and why a break went away."""

from __future__ import annotations

from datetime import date

import pytest

from reconciliation.break_history import BreakState, ResolutionEvidence, resolution_of, transition
from warehouse.numbers import D

DAY = date(2026, 1, 2)


def _state(status: str = "open", difference: str = "-20") -> BreakState:
    return BreakState(7, DAY, 1, 2, status, D(difference))


def test_a_break_found_for_the_first_time_is_opened() -> None:
    event, reason = transition(None, "open", D("-20"))
    assert event == "opened" and "-20" in reason


def test_a_break_found_again_unchanged_records_nothing() -> None:
    assert transition(_state(), "open", D("-20.000")) is None  # the same exact value, whatever its scale
    assert transition(_state("acknowledged"), "acknowledged", D("-20")) is None


@pytest.mark.parametrize(("previous", "status", "difference", "event"), [
    ("open", "open", "-25", "changed"),  # the difference moved
    ("acknowledged", "open", "-25", "changed"),  # ... so the acknowledgement no longer holds
    ("resolved", "open", "-20", "reopened"),  # gone, then back
    ("adjusted", "open", "-20", "reopened"),  # the adjustment did not close it
    ("open", "acknowledged", "-20", "changed"),  # an acknowledgement of this difference is on record
])
def test_transitions(previous: str, status: str, difference: str, event: str) -> None:
    found = transition(_state(previous), status, D(difference))
    assert found is not None and found[0] == event


def test_resolution_reasons_in_order_of_precedence() -> None:
    everything = ResolutionEvidence(adjustment="an adjustment of -45 USD entered by bob: fee missing",
                                    new_leg_record="raw record 9 (csv/ledger S1)", new_leg_restated=True,
                                    restated_record="raw record 9 (csv/ledger S1)", new_snapshot="balance snapshot 3")
    assert resolution_of(everything) == ("adjustment", "an adjustment of -45 USD entered by bob: fee missing")
    assert resolution_of(ResolutionEvidence(new_leg_record="raw record 9 (csv/ledger S1)", new_leg_restated=True)) == (
        "corrected_record", "raw record 9 (csv/ledger S1) was restated by the source")
    assert resolution_of(ResolutionEvidence(new_leg_record="raw record 10 (csv/ledger R1)")) == (
        "late_data", "raw record 10 (csv/ledger R1) arrived after the break was found")
    # a restated record that no longer has a leg in the window (a duplicate withdrawn, a time corrected)
    assert resolution_of(ResolutionEvidence(restated_record="raw record 4 (csv/ledger X)"))[0] == "corrected_record"
    assert resolution_of(ResolutionEvidence(new_snapshot="balance snapshot 3 (kraken Kraken, 2026-01-03T00:00:00Z)")) == (
        "corrected_record", "balance snapshot 3 (kraken Kraken, 2026-01-03T00:00:00Z) restated the reported balance")
    assert resolution_of(ResolutionEvidence())[0] == "recomputed"
