"""A store's settings, chosen by its owner at creation: currency, country and state,
language, the admin's email address, and whether it starts with sample products.

The operator sets the defaults (``WOOSTORE_STORE_*``); what the owner leaves out is filled in
from them when the store is requested, so a later change of the defaults never changes a
store that exists. Codes are checked against ISO 4217 (currency), ISO 3166-1 and 3166-2
(country, state: WooCommerce uses the 3166-2 suffix, ``KA`` for Karnataka) and ISO 639
(the language of a WordPress locale such as ``de_DE``), from ``pycountry``.
"""

from __future__ import annotations

import re

import pycountry
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
        default=None, description="The store admin's email address (default: admin@<host>)."
    )
    sample_products: bool | None = Field(
        default=None, description="Start with three sample products (default: on)."
    )

    # Codes are kept as ISO writes them, whatever case they came in: WooCommerce and the
    # store image take "EUR" and "DE", and refuse "eur" (pycountry finds either).
    @field_validator("currency")
    @classmethod
    def _known_currency(cls, code: str | None) -> str | None:
        if code is None:
            return None
        found = pycountry.currencies.get(alpha_3=code)
        if found is None or found.alpha_3 in _NOT_MONEY:
            raise ValueError(
                f"{code!r} is not the ISO 4217 code of a currency a shop sells in "
                "(e.g. EUR, USD, INR)"
            )
        return str(found.alpha_3)

    @field_validator("country")
    @classmethod
    def _known_country(cls, code: str | None) -> str | None:
        if code is None:
            return None
        found = pycountry.countries.get(alpha_2=code)
        if found is None:
            raise ValueError(f"{code!r} is not an ISO 3166-1 alpha-2 country code (e.g. DE)")
        return str(found.alpha_2)

    @field_validator("language")
    @classmethod
    def _wordpress_locale(cls, locale: str | None) -> str | None:
        if locale is None:
            return None
        parts = _LOCALE.match(locale)
        language = parts and parts["language"].lower()
        known = language and (
            pycountry.languages.get(alpha_2=language) or pycountry.languages.get(alpha_3=language)
        )
        region = parts and parts["country"]
        if not parts or not known or (region and pycountry.countries.get(alpha_2=region) is None):
            raise ValueError(f"{locale!r} is not a WordPress locale (e.g. en_US, de_DE, pt_BR)")
        # Written as WordPress names its locales: "de_de" installed no language on a cluster.
        country, variant = parts["country"], parts["variant"]
        return "_".join(
            filter(None, [language, country and country.upper(), variant and variant.lower()])
        )

    @model_validator(mode="after")
    def _state_of_the_country(self) -> StoreSettingsIn:
        if self.state is None:
            return self
        if self.country is None:
            raise ValueError("state needs country: a state is one of a country's")
        subdivision = pycountry.subdivisions.get(  # type: ignore[no-untyped-call]  # untyped
            code=f"{self.country}-{self.state}"
        )
        if subdivision is None:
            raise ValueError(f"{self.state!r} is not a state of {self.country} (ISO 3166-2)")
        self.state = str(subdivision.code).split("-", 1)[1]  # "ka" given: "KA"
        return self


class StoreSettings(BaseModel):
    """A store's settings as it keeps them: every one of them set."""

    currency: str
    country: str
    language: str
    sample_products: bool
    state: str | None = None
    admin_email: str | None = None  # None: admin@<the store's host>

    def with_choices(self, chosen: StoreSettingsIn | None) -> StoreSettings:
        """These (the platform's defaults) with what the owner chose laid over them. A country
        chosen without a state drops the default's state, which belongs to another country."""
        if chosen is None:
            return self
        picked = chosen.model_dump(exclude_none=True)
        if "country" in picked and "state" not in picked:
            picked["state"] = None
        return self.model_copy(update=picked)

    @property
    def woocommerce_country(self) -> str:
        """WooCommerce's ``woocommerce_default_country``: ``IN:KA``, or ``DE``."""
        return f"{self.country}:{self.state}" if self.state else self.country
