"""The ``KeyStore``: one named, detached Ray actor that holds the API keys'
rate-limit counters and their spend, so a key's turns-per-minute limit, its
credit and its budget hold across every ingress replica.

A thin shell over ``router.keys.SlidingWindowLimiter`` and
``router.keys.SpendLedger``. Rate-limited keys call ``admit`` once per turn;
metered keys' turns are charged (``charge``) when they end, by the ingress
replica that served them, which keeps the reply (``router.keys.allowance``).
Its methods are synchronous, so the actor runs them one at a time: counts
and balances are exact.

Spend is durable: on start (and on every restart by Ray) the ledger is
rebuilt from the turn log (every priced turn of a metered key: all of it if
any key has a credit, else from the earliest current budget period) and the
top-ups stored beside it (``nemo_turnlog.ledger``). Rate-limit windows start
empty.

Spend alerts (``metrics.spend_alerts``, ``nemo_turnlog.spend_alerts``) are
evaluated for a key each time it is charged or topped up, and posted to the
webhook named by ``metrics.webhook_url_env`` (read from the actor's
environment at start-up), or only logged when it is not set.

A redeploy reconfigures it in place (``reconfigure``, with the constructor's
arguments): keys' limits, spend alert rules, webhook and turn-log location
change, and every key's spend so far is kept.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

import ray

from nemo_turnlog.alerts import WebhookNotifier, log_transition
from nemo_turnlog.ledger import LedgerEntry, LedgerStore, read_spend
from nemo_turnlog.spend_alerts import SpendAlertEvaluator, SpendAlertRule, SpendAlertTransition
from router.config import RouterConfig
from router.config_observability import TurnLogConfig
from router.keys import Allowance, AuthConfig, Charge, SlidingWindowLimiter, SpendLedger, period_bounds
from deployments.named_actor import configured_actor

__all__ = ["KeyStore", "KEYSTORE_NAME", "get_or_create_keystore", "keystore_needed"]

log = logging.getLogger(__name__)

KEYSTORE_NAME = "nemo-keystore"


class KeyStore:
    def __init__(
        self,
        auth: AuthConfig | None = None,
        turn_log: TurnLogConfig | None = None,
        spend_alerts: Sequence[SpendAlertRule] = (),
        webhook_url_env: str | None = None,
        notify: Callable[[SpendAlertTransition], None] | None = None,
    ) -> None:
        self._arguments = (auth, turn_log, tuple(spend_alerts), webhook_url_env)
        self._alerts = SpendAlertEvaluator(spend_alerts)
        self._notify_given = notify is not None
        self._notify = notify or _notifier(webhook_url_env)
        self._limiter = SlidingWindowLimiter()
        self._ledger = SpendLedger(auth.keys if auth is not None else ())
        self._store = _ledger_store(turn_log) if turn_log is not None else None
        self._source = _turn_log_source(turn_log) if turn_log is not None else None
        if self._ledger.key_ids and turn_log is not None:
            self._recover(auth, turn_log)

    def configure(self, auth: AuthConfig, spend_alerts: Sequence[SpendAlertRule] = ()) -> None:
        """New keys' limits and alert rules (a redeploy); spend so far is kept."""
        self._ledger.configure(auth.keys)
        if tuple(spend_alerts) != self._alerts.rules:
            self._alerts = SpendAlertEvaluator(spend_alerts)

    def reconfigure(
        self,
        auth: AuthConfig | None = None,
        turn_log: TurnLogConfig | None = None,
        spend_alerts: Sequence[SpendAlertRule] = (),
        webhook_url_env: str | None = None,
    ) -> None:
        """A redeploy (the constructor's arguments): new limits, rules,
        webhook and turn-log location; spend so far is kept."""
        arguments = (auth, turn_log, tuple(spend_alerts), webhook_url_env)
        if arguments == self._arguments:
            return
        self._arguments = arguments
        self.configure(auth or AuthConfig(), spend_alerts)
        if not self._notify_given:
            self._notify = _notifier(webhook_url_env)
        self._store = _ledger_store(turn_log) if turn_log is not None else None
        self._source = _turn_log_source(turn_log) if turn_log is not None else None

    # -- rate limits --------------------------------------------------------

    def admit(self, key_id: str, limit_per_min: int) -> tuple[bool, float]:
        """``(ok, retry_after_s)``; an admitted turn counts against the window."""
        ok, retry_after_s = self._limiter.admit(key_id, limit_per_min)
        return ok, retry_after_s

    def in_window(self, key_id: str) -> int:
        return self._limiter.in_window(key_id)

    # -- spend ----------------------------------------------------------------

    def allowance(self, key_id: str) -> Allowance | None:
        return self._ledger.allowance(key_id)

    def charge(self, key_id: str, usd: float, at_s: float, request_id: str, timestamp_us: int) -> Allowance | None:
        """Charge a finished turn (plain arguments: cheaper to send than a dataclass)."""
        return self._alerted(self._ledger.charge(Charge(key_id, usd, at_s, (request_id, timestamp_us))))

    def top_up(self, key_id: str, amount_usd: float) -> Allowance | None:
        """Add to a key's credit: stored beside the turn log first, then
        applied. None for a key with no credit. Raises if it cannot be stored."""
        standing = self._ledger.allowance(key_id)
        if standing is None or standing.credit_usd is None:
            return None
        if self._store is not None:
            self._store.append(LedgerEntry.top_up(key_id, amount_usd))
        else:
            log.warning("turn_log.sink is none: the top-up of key %s is not stored and will not survive a restart", key_id)
        return self._alerted(self._ledger.top_up(key_id, amount_usd))

    def _alerted(self, allowance: Allowance | None) -> Allowance | None:
        if allowance is not None and self._alerts.rules:
            for transition in self._alerts.observe(allowance.key_id, _shares_used(allowance)):
                self._notify(transition)
        return allowance

    def ping(self) -> bool:
        return True

    def _recover(self, auth: AuthConfig, turn_log: TurnLogConfig) -> None:
        started = time.perf_counter()
        since = _recovery_start(auth)
        try:
            rows = read_spend(self._source, since=since, **_s3_options(turn_log))
            top_ups = [(e.key_id, e.amount_usd) for e in self._store.read() if e.kind == "top_up"]
        except Exception:  # a ledger that cannot be read must not stop the router: start empty, say so
            log.exception("could not rebuild keys' spend from the turn log at %s; starting from zero", self._source)
            return
        self._ledger.recover(
            (Charge(r.key_id, r.cost_usd, r.at_s, (r.request_id, r.timestamp_us)) for r in rows), top_ups
        )
        log.info("keys' spend rebuilt from %d turns and %d top-ups in %.2f s", len(rows), len(top_ups), time.perf_counter() - started)


def keystore_needed(config: RouterConfig) -> bool:
    """Whether any key has a rate limit, a credit or a budget."""
    return any(key.rate_limit_per_min or key.metered for key in config.auth.keys)


def get_or_create_keystore(config: RouterConfig) -> "ray.actor.ActorHandle":
    """The keystore ``deployments.keystore_name``: created once, found by
    name afterwards and reconfigured with this config (``configured_actor``)."""
    options = config.deployments
    rules = tuple(SpendAlertRule(**rule.model_dump()) for rule in config.metrics.spend_alerts)
    return configured_actor(
        KeyStore, options.keystore_name, options.tracker_namespace,
        config.auth, config.turn_log, rules, config.metrics.webhook_url_env, resources=options.actor_resources,
    )


def _recovery_start(auth: AuthConfig) -> datetime | None:
    """From when the turn log must be read: all of it for credits (never reset),
    else the start of the earliest current budget period."""
    metered = [key for key in auth.keys if key.metered]
    if any(key.credit_usd is not None for key in metered):
        return None
    now = time.time()
    return datetime.fromtimestamp(min(period_bounds(k.budget_period, now)[0] for k in metered), tz=timezone.utc)


def _turn_log_source(turn_log: TurnLogConfig) -> str | None:
    if turn_log.sink == "s3" and turn_log.s3 is not None:
        return f"s3://{turn_log.s3.bucket}/{turn_log.s3.prefix}".rstrip("/")
    if turn_log.sink == "local":
        return turn_log.path
    return None


def _s3_options(turn_log: TurnLogConfig) -> dict:
    if turn_log.sink == "s3" and turn_log.s3 is not None:
        return {"region": turn_log.s3.region, "endpoint_url": turn_log.s3.endpoint_url}
    return {}


def _ledger_store(turn_log: TurnLogConfig) -> LedgerStore | None:
    source = _turn_log_source(turn_log)
    return None if source is None else LedgerStore(source, **_s3_options(turn_log))


def _shares_used(allowance: Allowance) -> dict[str, float | None]:
    """What ``budget_used`` and ``credit_used`` measure (None: no such limit)."""
    budget = allowance.budget_usd
    credit = allowance.credit_usd
    return {
        "budget_used": allowance.period_spend_usd / budget if budget else None,
        "credit_used": (credit - allowance.credit_remaining_usd) / credit if credit else None,
    }


def _notifier(webhook_url_env: str | None) -> Callable[[SpendAlertTransition], None]:
    url = os.environ.get(webhook_url_env) if webhook_url_env else None
    return WebhookNotifier(url, source="nemo-router keystore").notify if url else log_transition
