"""Entity names: what a typo most likely meant, which names may be given, and the one-line refusals."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from warehouse.entities import (Entity, EntityArchived, EntityNameError, EntityNotFound, require_active, suggest_names,
                                validate_entity_name)

NAMES = ["acme", "Beta Fund", "northwind", "northwind-2", "Zurich Holdings"]


@pytest.mark.parametrize(("typed", "expected"), [
    ("acmee", ["acme"]),                      # one letter too many
    ("acm", ["acme"]),                        # one too few
    ("ACME", ["acme"]),                       # case alone is no typo, but it is the closest name
    ("beta fnd", ["Beta Fund"]),              # the suggestion keeps the stored spelling
    ("northwnd", ["northwind", "northwind-2"]),  # best first
    ("zurich holding", ["Zurich Holdings"]),
    ("  acmee  ", ["acme"]),                  # surrounding spaces do not count
    ("something else", []),                   # nothing close: no suggestion rather than a wild guess
    ("12", []),
])
def test_suggestions_are_the_close_names_best_first(typed: str, expected: list[str]) -> None:
    assert suggest_names(typed, NAMES) == expected


def test_suggestions_are_at_most_three_and_each_name_once() -> None:
    names = ["fund-1", "fund-2", "fund-3", "fund-4", "FUND-1"]
    found = suggest_names("fund-0", names)
    assert len(found) == 3 and len({n.casefold() for n in found}) == 3
    assert suggest_names("fund", []) == []


def test_not_found_names_its_suggestions_in_one_line() -> None:
    assert str(EntityNotFound("acmee", ["acme"])) == "no entity named or numbered 'acmee' (did you mean 'acme'?)"
    assert str(EntityNotFound("nrthwind", ["northwind", "northwind-2"])) == (
        "no entity named or numbered 'nrthwind' (did you mean 'northwind' or 'northwind-2'?)")
    assert str(EntityNotFound(7)) == "no entity named or numbered 7"
    assert isinstance(EntityNotFound("x"), LookupError)  # the API maps it to 404 as before


@pytest.mark.parametrize(("name", "problem"), [
    ("", "non-empty"), ("   ", "non-empty"), ("42", "bare number"),
    ("a,b", "','"), ("a/b", "'/'"), ("tab\there", "'\\t'"), ("x" * 201, "at most 200"),
    ("fund|2", "'|'"), ("fund...2", "partition range"),
])
def test_names_that_cannot_be_given(name: str, problem: str) -> None:
    with pytest.raises(EntityNameError, match=re.escape(problem)) as caught:
        validate_entity_name(name)
    assert "\n" not in str(caught.value)


def test_names_are_stripped_and_keep_their_case() -> None:
    assert validate_entity_name("  Acme Fund ") == "Acme Fund"
    assert validate_entity_name("fund 2026") == "fund 2026"
    assert validate_entity_name("Zürich AG") == "Zürich AG"


def test_an_archived_entity_is_refused_with_the_way_back() -> None:
    active = Entity(id=1, name="acme", timezone="UTC")
    assert not active.archived and require_active(active) is active
    archived = Entity(id=2, name="old-fund", timezone="UTC", archived_at=datetime(2026, 11, 30, 9, tzinfo=timezone.utc))
    with pytest.raises(EntityArchived) as caught:
        require_active(archived)
    assert str(caught.value) == ("entity 'old-fund' is archived (since 2026-11-30): it is not closed or imported into; "
                                 "`coinfrs entity unarchive --entity old-fund` makes it active again")
