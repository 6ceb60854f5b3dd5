"""The storefront page (`GET /shop`): a small shop over the served model, to see the placements at work.

The page (shop.html: plain HTML and JavaScript, no build step, nothing loaded from elsewhere) asks `/recommend`
for the home, cart, product and search placements and sends every click, view, add-to-cart and search to
`/events`, then asks again, so each list follows what was just done. The server fills in a few of the
shoppers it knows, to pick from; "anonymous" browses with a fresh session.
"""

from __future__ import annotations

import json
from pathlib import Path

PAGE = Path(__file__).with_name("shop.html")
SHOPPERS = "/*SHOPPERS*/[]"  # where the page's shopper list goes


def render(shoppers: list[str]) -> str:
    """The page with `shoppers` to pick from (as a JavaScript literal that cannot close the script element)."""
    return PAGE.read_text().replace(SHOPPERS, json.dumps(shoppers).replace("<", "\\u003c"))
