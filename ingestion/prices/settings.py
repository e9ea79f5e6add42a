"""Price service settings, validated at start-up (environment variables prefixed ``COINFRS_``).

Nothing is configured by default: with no ``COINFRS_COINGECKO_URL`` and no ``COINFRS_PRICE_EXCHANGE`` the
price service makes no network call at all (the close and the tests run offline). Manual prices
(``coinfrs prices import``) need no settings.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from transforms.price_order import DEFAULT_ORDER, parse_order

# CoinGecko coin ids of the assets every deployment sees; the asset registry (``asset_aliases`` with
# source 'coingecko') holds them, and ``COINFRS_COINGECKO_IDS`` adds or overrides entries.
DEFAULT_COINGECKO_IDS: dict[str, str] = {
    "BTC": "bitcoin",
    "ETH": "ethereum",
    "SOL": "solana",
    "USDC": "usd-coin",
    "USDT": "tether",
    "BNB": "binancecoin",
}


class PriceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COINFRS_", extra="ignore")

    coingecko_url: str | None = Field(
        default=None, description="CoinGecko base URL, e.g. https://api.coingecko.com (public/demo) or "
                                  "https://pro-api.coingecko.com. Unset: CoinGecko is not used.")
    coingecko_api_key: SecretStr | None = Field(default=None, description="Sent as a header; never logged.")
    coingecko_api_key_header: str = Field(default="x-cg-demo-api-key",
                                          description="x-cg-demo-api-key (demo plan) or x-cg-pro-api-key (paid plans).")
    coingecko_min_interval_seconds: float = Field(
        default=2.5, ge=0, description="Rate limit: at least this long between two CoinGecko requests (2.5 s = 24/min).")
    coingecko_ids: str = Field(default="", description="Extra or overriding coin ids: 'ARB=arbitrum,LINK=chainlink'.")

    price_exchange: str | None = Field(default=None, description="ccxt exchange id for candles (e.g. binance). Unset: not used.")
    price_exchange_url: str | None = Field(
        default=None, description="Replaces every entry of the exchange's urls['api'] host (a mirror or a local test server).")
    price_exchange_quote: str = Field(default="USDT", description="Quote currency of the candle pairs, taken as USD.")

    price_pegs: str = Field(
        default="USDT,USDC,DAI,FDUSD,TUSD,USDP,PYUSD,BUSD",
        description="Stablecoins priced at 1 USD (source 'peg', below manual and trade-implied prices, above "
                    "CoinGecko and exchanges; flagged when a market source disagrees beyond the threshold). "
                    "Empty: no peg.")
    price_disagreement_threshold: Decimal = Field(
        default=Decimal("0.02"), ge=0, description="Relative spread between sources above which a price is flagged.")
    price_source_order: str = Field(
        default=",".join(DEFAULT_ORDER),
        description="The order in which price sources value an asset (best first; transforms/price_order.py): "
                    "manual, trade, peg, coingecko, exchange. Sources left out follow in that default order; the "
                    "ledger's own trade prices always come last. Changing it changes closed figures: close the "
                    "affected days again.")
    price_currencies: str = Field(default="EUR,GBP", description="Reporting currencies whose USD rates are fetched.")
    price_timeout_seconds: float = Field(default=20.0, gt=0)
    price_retry_attempts: int = Field(default=5, ge=1, description="Attempts per request on transient errors (429, 5xx, network).")
    price_retry_initial_wait: float = Field(default=1.0, ge=0, description="First backoff in seconds (doubles, plus jitter).")
    price_retry_max_wait: float = Field(default=60.0, ge=0)

    @field_validator("price_disagreement_threshold", mode="before")
    @classmethod
    def _no_float_threshold(cls, value: object) -> object:
        return str(value) if isinstance(value, float) else value

    @field_validator("price_source_order")
    @classmethod
    def _known_sources(cls, value: str) -> str:
        parse_order(value)  # a one-line error naming the bad entry, at start-up
        return value

    def source_order(self) -> tuple[str, ...]:
        return parse_order(self.price_source_order)

    @property
    def coingecko_enabled(self) -> bool:
        return bool(self.coingecko_url)

    @property
    def exchange_enabled(self) -> bool:
        return bool(self.price_exchange)

    @property
    def any_source(self) -> bool:
        return self.coingecko_enabled or self.exchange_enabled

    def currencies(self) -> list[str]:
        return [c.strip().upper() for c in self.price_currencies.split(",") if c.strip() and c.strip().upper() != "USD"]

    def pegs(self) -> list[str]:
        return sorted({c.strip().upper() for c in self.price_pegs.split(",") if c.strip()})

    def coingecko_id_overrides(self) -> dict[str, str]:
        result: dict[str, str] = {}
        for item in self.coingecko_ids.split(","):
            if not item.strip():
                continue
            symbol, sep, coin_id = item.partition("=")
            if not sep or not symbol.strip() or not coin_id.strip():
                raise ValueError(f"COINFRS_COINGECKO_IDS: expected SYMBOL=coin-id, got {item.strip()!r}")
            result[symbol.strip().upper()] = coin_id.strip()
        return result


@lru_cache(maxsize=1)
def get_price_settings() -> PriceSettings:
    return PriceSettings()
