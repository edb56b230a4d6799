"""Carriers staff may name when shipping, their 17track keys and their public tracking pages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True)
class Carrier:
    name: str
    #: 17track's carrier key; None lets the provider detect the carrier from the number.
    provider_key: int | None
    #: The carrier's own tracking page, ``{number}`` filled in.
    tracking_page: str | None


KNOWN: dict[str, Carrier] = {
    "ups": Carrier("UPS", 100002, "https://www.ups.com/track?tracknum={number}"),
    "fedex": Carrier("FedEx", 100003, "https://www.fedex.com/fedextrack/?trknbr={number}"),
    "usps": Carrier("USPS", 21051, "https://tools.usps.com/go/TrackConfirmAction?tLabels={number}"),
    "dhl": Carrier(
        "DHL",
        100001,
        "https://www.dhl.com/global-en/home/tracking/tracking-express.html?tracking-id={number}",
    ),
    "royalmail": Carrier(
        "Royal Mail", 11031, "https://www.royalmail.com/track-your-item#/tracking-results/{number}"
    ),
    "canadapost": Carrier(
        "Canada Post",
        3041,
        "https://www.canadapost-postescanada.ca/track-reperage/en#/details/{number}",
    ),
    "australiapost": Carrier(
        "Australia Post", 1151, "https://auspost.com.au/mypost/track/details/{number}"
    ),
    "chinapost": Carrier("China Post", 3011, None),
}

_ALIASES = {"dhlexpress": "dhl", "unitedstatespostalservice": "usps", "federalexpress": "fedex"}


def _key(name: str) -> str:
    compact = re.sub(r"[^a-z0-9]", "", name.lower())
    return _ALIASES.get(compact, compact)


def carrier_for(name: str) -> Carrier:
    """The known carrier a staff-typed name means, or an unknown one under that name."""
    return KNOWN.get(_key(name)) or Carrier(name.strip(), None, None)


def canonical_name(name: str) -> str:
    return carrier_for(name).name


def normalize_number(number: str) -> str:
    """Carriers print numbers with spaces and dashes in varying case; the number is the rest."""
    return re.sub(r"[\s-]", "", number).upper()


def tracking_url(carrier: str, number: str, template: str, *, forced: bool = False) -> str:
    """A page where the shopper can follow the parcel: the carrier's own, else ``template``."""
    page = template if forced else (carrier_for(carrier).tracking_page or template)
    return page.replace("{number}", quote(number, safe=""))
