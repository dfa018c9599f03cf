"""A store's settings, chosen by its owner at creation: currency, country and state,
language, the admin's email address, and whether it starts with sample products.

The operator sets the defaults (``WOOSTORE_STORE_*``); what the owner leaves out is filled in
from them when the store is requested, so a later change of the defaults never changes a
store that exists. Codes are checked against ISO 4217 (currency), ISO 3166-1 and 3166-2
(country, state: WooCommerce uses the 3166-2 suffix, ``KA`` for Karnataka) and ISO 639
(the language of a WordPress locale such as ``de_DE``), from ``pycountry``'s tables.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any, ClassVar

import pycountry
import pycountry.db
from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator, model_validator

# ISO 4217 codes that are no money a shop prices in: precious metals, bond-market and
# accounting units, special drawing rights, testing, "no currency", and funds codes.
_NOT_MONEY = frozenset({
    "XAD", "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS",
    "XUA", "XXX", "BOV", "CHE", "CHW", "CLF", "COU", "MXV", "USN", "UYI", "UYW",
})  # fmt: skip
# A language, then perhaps a country, then perhaps a variant (de_DE_formal, pt_PT_ao90,
# art_xemoji). Two letters after the language are a country in any case: as a variant,
# "de_de" was taken whole, and WordPress installs no such language.
_LOCALE = re.compile(
    r"^(?P<language>[a-z]{2,3})(?:_(?P<country>[a-z]{2}))?(?:_(?P<variant>[a-z0-9]{3,}))?$",
    re.IGNORECASE | re.ASCII,  # else [a-z] takes the Kelvin sign and a long s for letters
)
_CODE = re.compile(r"[A-Z0-9-]+", re.ASCII)  # what an ISO code is made of, upper-cased


class _IsoCodes:
    """The codes of one of pycountry's tables, looked up whatever their case. Read on first
    use: of the services, only the API and the reaper check settings.

    Kept as one string (" AA AB ... "), not as the table's objects, which pycountry keeps
    for good once read: about 12 MB a process, most of it languages (8,000) and
    subdivisions (5,000), to say whether a code exists. A set of the codes kept 8.6 MB (its
    thousands of small strings hold on to the memory the objects were read into); one string
    keeps about 4 MB, the parser's memory, which the process uses again."""

    def __init__(self, table: Callable[[], pycountry.db.Database[Any]], *fields: str) -> None:
        self._table = table
        self._fields = fields
        self._codes: str | None = None

    def canonical(self, code: str) -> str | None:
        """``code`` as the table writes it (upper-cased); None if it is not in it."""
        if not code.isascii():  # else a dotless i or a long s upper-case to I or S, ASCII
            return None
        if self._codes is None:
            values = (getattr(row, name, "") for row in self._table() for name in self._fields)
            self._codes = " " + " ".join(value.upper() for value in values if value) + " "
        upper = code.upper()
        return upper if _CODE.fullmatch(upper) and f" {upper} " in self._codes else None


def _read(
    database: type[pycountry.db.Database[Any]], file: str
) -> Callable[[], pycountry.db.Database[Any]]:
    """The table read afresh: pycountry's own instances keep what they read."""
    return lambda: database(os.path.join(pycountry.DATABASE_DIR, file))


_CURRENCIES = _IsoCodes(_read(pycountry.Currencies, "iso4217.json"), "alpha_3")
_COUNTRIES = _IsoCodes(_read(pycountry.ExistingCountries, "iso3166-1.json"), "alpha_2")
_LANGUAGES = _IsoCodes(_read(pycountry.Languages, "iso639-3.json"), "alpha_2", "alpha_3")
_SUBDIVISIONS = _IsoCodes(_read(pycountry.Subdivisions, "iso3166-2.json"), "code")


class StoreSettingsIn(BaseModel):
    """What an owner may choose; each field left out takes the platform's default."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"currency": "EUR", "country": "DE", "state": None, "language": "de_DE"},
            ]
        },
    )

    currency: str | None = Field(
        default=None, description="ISO 4217 code, e.g. EUR.", min_length=3, max_length=3
    )
    country: str | None = Field(
        default=None, description="ISO 3166-1 alpha-2 code, e.g. DE.", min_length=2, max_length=2
    )
    state: str | None = Field(
        default=None,
        description="The state or province within the country: its ISO 3166-2 code after the "
        "country's, e.g. KA for IN-KA (Karnataka). Needs country.",
        min_length=1,
        max_length=3,
    )
    language: str | None = Field(
        default=None, description="A WordPress locale, e.g. en_US, de_DE, pt_BR.", max_length=20
    )
    admin_email: EmailStr | None = Field(
        default=None,
        description="The store admin's email address (default: admin@<host>); given as null, "
        "that default (a store's changed back to it).",
    )
    # Strict: "yes", "off" and 1 were taken for booleans here, where the API's other
    # booleans (a tenant's suspension) refuse them.
    sample_products: bool | None = Field(
        default=None, strict=True, description="Start with three sample products (default: on)."
    )

    # Codes are kept as ISO writes them, whatever case they came in: WooCommerce and the
    # store image take "EUR" and "DE", and refuse "eur" (pycountry finds either).
    @field_validator("currency")
    @classmethod
    def _known_currency(cls, code: str | None) -> str | None:
        if code is None:
            return None
        found = _CURRENCIES.canonical(code)
        if found is None or found in _NOT_MONEY:
            raise ValueError(
                f"{code!r} is not the ISO 4217 code of a currency a shop sells in "
                "(e.g. EUR, USD, INR)"
            )
        return found

    @field_validator("country")
    @classmethod
    def _known_country(cls, code: str | None) -> str | None:
        if code is None:
            return None
        found = _COUNTRIES.canonical(code)
        if found is None:
            raise ValueError(f"{code!r} is not an ISO 3166-1 alpha-2 country code (e.g. DE)")
        return found

    @field_validator("language")
    @classmethod
    def _wordpress_locale(cls, locale: str | None) -> str | None:
        if locale is None:
            return None
        parts = _LOCALE.match(locale)
        language = parts and parts["language"].lower()
        known = language and _LANGUAGES.canonical(language)
        region = parts and parts["country"]
        if not parts or not known or (region and _COUNTRIES.canonical(region) is None):
            raise ValueError(f"{locale!r} is not a WordPress locale (e.g. en_US, de_DE, pt_BR)")
        # Written as WordPress names its locales: "de_de" installed no language on a cluster.
        country, variant = parts["country"], parts["variant"]
        return "_".join(
            filter(None, [language, country and country.upper(), variant and variant.lower()])
        )

    def chosen(self) -> dict[str, Any]:
        """The settings these choose, by name: those given a value, and the admin's email
        given as null, its default (admin@<host>), which a store changed from it returns to.
        Any other null is as if left out."""
        chosen = self.model_dump(exclude_none=True)
        if "admin_email" in self.model_fields_set and self.admin_email is None:
            chosen["admin_email"] = None
        return chosen

    def named(self) -> list[str]:
        """The settings these name: a settings change sets these alone in the shop, and a
        country its state too (chosen without one, it is dropped)."""
        given = set(self.chosen())
        return sorted(given | {"state"} if "country" in given else given)

    # A state named without its country: refused, or (a store's settings changed) found in
    # the country the store has, once it is read (StoreSettings.with_choices).
    STATE_ALONE: ClassVar[bool] = False

    @model_validator(mode="after")
    def _state_of_the_country(self) -> StoreSettingsIn:
        if self.state is None:
            return self
        if self.country is None:
            if self.STATE_ALONE:
                return self
            raise ValueError("state needs country: a state is one of a country's")
        self.state = state_of(self.country, self.state)
        return self


def state_of(country: str, state: str) -> str:
    """``state`` as ISO 3166-2 writes it within ``country`` ("ka" given: "KA")."""
    subdivision = _SUBDIVISIONS.canonical(f"{country}-{state}")
    if subdivision is None:
        raise StateOfNoCountry(f"{state!r} is not a state of {country} (ISO 3166-2)")
    return subdivision.split("-", 1)[1]


class StateOfNoCountry(ValueError):
    """A state that is not one of its country's: the one named with it, or the store's."""


class StoreSettings(BaseModel):
    """A store's settings as it keeps them: every one of them set."""

    currency: str
    country: str
    language: str
    sample_products: bool
    state: str | None = None
    admin_email: str | None = None  # None: admin@<the store's host>

    def with_choices(self, chosen: StoreSettingsIn | None) -> StoreSettings:
        """These (the platform's defaults, or a store's) with what the owner chose laid over
        them. Another country chosen without a state drops the state, which is this one's
        (the same country named again keeps it); a state chosen without a country is one of
        this country's, or ``StateOfNoCountry``."""
        if chosen is None:
            return self
        picked = chosen.chosen()
        if picked.get("country", self.country) != self.country and "state" not in picked:
            picked["state"] = None
        if "state" in picked and "country" not in picked:  # one of this country's
            picked["state"] = state_of(self.country, picked["state"])
        return self.model_copy(update=picked)

    @property
    def woocommerce_country(self) -> str:
        """WooCommerce's ``woocommerce_default_country``: ``IN:KA``, or ``DE``."""
        return f"{self.country}:{self.state}" if self.state else self.country
