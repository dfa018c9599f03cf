"""An owner's store settings checked against the ISO tables (``store_settings._IsoCodes``):
any case taken and kept as ISO writes it, and only a whole code found."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from woostore_shared.store_settings import StoreSettings, StoreSettingsIn, _IsoCodes


def test_codes_in_any_case_are_kept_as_iso_writes_them() -> None:
    chosen = StoreSettingsIn(currency="eur", country="in", state="ka", language="DE_de_Formal")

    assert (chosen.currency, chosen.country, chosen.state) == ("EUR", "IN", "KA")
    assert chosen.language == "de_DE_formal"


def test_a_three_letter_language_is_known_too() -> None:
    assert StoreSettingsIn(language="fil_PH").language == "fil_PH"  # Filipino: ISO 639-3 only


@pytest.mark.parametrize(
    "choice",
    [
        {"country": "IN", "state": "K"},  # the start of IN-KA: a code is found whole
        {"country": "IN", "state": "-KA"},
        {"currency": "EU "},
        {"currency": "XAU"},  # in ISO 4217, but no money a shop sells in
        {"country": "ZZ"},
        {"language": "qq_DE"},
        {"language": "de_ZZ"},
        # Letters that upper-case to ASCII ones: the dotless i, the long s, the Kelvin sign.
        {"country": "\u0131N"},
        {"currency": "U\u017fD"},
        {"country": "IN", "state": "\u212aA"},
    ],
)
def test_what_is_no_whole_code_of_its_table_is_refused(choice: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        StoreSettingsIn.model_validate(choice)


def test_two_codes_of_a_table_together_are_no_code_of_it() -> None:
    """The table is kept as one string of codes between spaces: a space in what is looked
    up must not find two of them side by side."""
    rows = [SimpleNamespace(code="AA-1"), SimpleNamespace(code="AA-2")]
    codes = _IsoCodes(lambda: rows, "code")  # type: ignore[arg-type,return-value]

    assert codes.canonical("aa-2") == "AA-2"
    assert codes.canonical("AA-1 AA-2") is None


@pytest.mark.parametrize("given", ["yes", "off", "true", 1, 0])
def test_sample_products_is_a_json_boolean_only(given: object) -> None:
    """'yes' and 1 were taken for true, where the API's other booleans refuse them."""
    with pytest.raises(ValidationError):
        StoreSettingsIn.model_validate({"sample_products": given})
    assert (
        StoreSettingsIn.model_validate_json('{"sample_products": false}').sample_products is False
    )


def test_a_state_goes_with_another_country_only() -> None:
    """Named again on a Bavarian store, its country took its state away (a user's review):
    those left out stay as they are; a state belongs to its country."""
    bavarian = StoreSettings(currency="EUR", country="DE", state="BY", language="de_DE",
                             sample_products=True)  # fmt: skip

    assert bavarian.with_choices(StoreSettingsIn(country="de")).state == "BY"
    assert bavarian.with_choices(StoreSettingsIn(country="AT")).state is None
    assert bavarian.with_choices(StoreSettingsIn(country="AT", state="9")).state == "9"
