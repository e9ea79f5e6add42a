"""Point a ccxt client at another host: every entry of ``exchange.urls['api']`` keeps its path, its host is replaced.

Used for a mirror or proxy of an exchange's API, and by the tests and the demo to reach a local server that speaks
the exchange's protocol (``api_url`` / ``COINFRS_PRICE_EXCHANGE_URL``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


def rewrite_urls(urls: object, base: str) -> object:
    """``urls`` (a URL or a nested dict of them) with each host replaced by ``base``, each path kept."""
    if isinstance(urls, str):
        return base.rstrip("/") + urlsplit(urls).path
    if isinstance(urls, dict):
        return {key: rewrite_urls(value, base) for key, value in urls.items()}
    return urls


def point_api_at(exchange: Any, base: str | None) -> Any:
    """Send every API call of the ccxt ``exchange`` to ``base`` (nothing changes when ``base`` is empty)."""
    if base:
        exchange.urls["api"] = rewrite_urls(exchange.urls["api"], base)
    return exchange
