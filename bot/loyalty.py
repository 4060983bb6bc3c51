"""The loyalty flow in the chat: link the chat to a CRM customer, then balance, tier, history, the rewards
catalogue and redemption with a confirm button (idempotent: a double tap redeems once).

A chat sees loyalty data only once it is linked (its channel identity has `linked_at`): by sharing its own
Telegram contact whose phone matches a customer's, or with a one-time code an agent made (bot/linking.py).
Until then nobody's data is shown.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from bot.messages import Button, Reply, payload_number
from crm_store.errors import DomainError, InsufficientPoints

if TYPE_CHECKING:
    from bot.engine import _Turn

LOYALTY_INTENTS = {"check_points", "check_tier", "points_history", "rewards_catalog", "redeem_reward",
                   "link_account"}
# Tiers whose tickets get at least this priority are VIPs: a person takes over after the bot's first miss.
VIP_PRIORITIES = {"high", "urgent"}


def _name(names: dict[str, str], default: str, language: str) -> str:
    return names.get(language) or default


async def linked(turn: _Turn) -> bool:
    identities = await turn.engine.crm.customers.identities(customer_id=turn.customer_id)
    return any(i.channel == turn.incoming.channel and i.external_id == turn.incoming.external_id
               and i.linked_at is not None for i in identities)


async def is_vip(turn: _Turn) -> bool:
    priority = await turn.engine.crm.loyalty.handoff_priority(customer_id=turn.customer_id)
    return priority in VIP_PRIORITIES


def ask_to_link(turn: _Turn, intent: str | None) -> list[Reply]:
    """How to link: Telegram shares the phone (or takes a code); the web chat takes a code typed as /link CODE."""
    if turn.incoming.channel == "telegram":
        return [Reply(turn.t("link_ask_telegram"), request_contact=turn.t("share_phone"), intent=intent)]
    return [Reply(turn.t("link_ask_webchat"), (Button(turn.t("talk_to_human"), "human:yes"),), intent=intent)]


async def on_intent(turn: _Turn, intent: str, entities: dict[str, list[Any]]) -> list[Reply]:
    if not await linked(turn):
        return ask_to_link(turn, intent)
    if intent == "link_account":
        customer = await turn.engine.crm.customers.get(customer_id=turn.customer_id)
        return [Reply(turn.t("already_linked", name=customer.name or "—"), intent=intent)]
    if intent in ("check_points", "check_tier"):
        return [Reply(await summary_text(turn), intent=intent)]
    if intent == "points_history":
        return [Reply(await history_text(turn), intent=intent)]
    wanted = [str(v).casefold() for v in entities.get("reward", [])]
    if intent == "redeem_reward" and wanted:
        for reward in await turn.engine.crm.loyalty.catalogue():
            if {reward.name.casefold(), *(n.casefold() for n in reward.names.values())} & set(wanted):
                return confirm(turn, reward, intent)
    return await catalogue(turn, intent)


async def summary_text(turn: _Turn) -> str:
    s = await turn.engine.crm.loyalty.summary(customer_id=turn.customer_id)
    lines = [turn.t("balance", points=s.balance)]
    if s.tier is not None:
        lines.append(turn.t("tier_line", tier=_name(s.tier.names, s.tier.name, turn.language)))
    if s.next_tier is not None and s.points_to_next_tier is not None:
        lines.append(turn.t("next_tier", points=s.points_to_next_tier,
                            tier=_name(s.next_tier.names, s.next_tier.name, turn.language)))
    elif s.tier is not None:
        lines.append(turn.t("top_tier"))
    return "\n".join(lines)


async def history_text(turn: _Turn) -> str:
    rows = await turn.engine.crm.loyalty.history(customer_id=turn.customer_id, limit=5)
    if not rows:
        return turn.t("history_empty")
    lines = [turn.t("history_header")]
    lines += [f"{r.created_at:%Y-%m-%d}  {r.points:+d}  {r.reason or r.kind}" for r in rows]
    return "\n".join(lines)


async def catalogue(turn: _Turn, intent: str | None) -> list[Reply]:
    rewards = [r for r in await turn.engine.crm.loyalty.catalogue() if r.active]
    if not rewards:
        return [Reply(turn.t("no_rewards"), intent=intent)]
    s = await turn.engine.crm.loyalty.summary(customer_id=turn.customer_id, recent=0)
    lines = [turn.t("catalogue_header", points=s.balance)]
    lines += [f"• {_name(r.names, r.name, turn.language)}: {r.cost}" for r in rewards]
    buttons = tuple(Button(f"{_name(r.names, r.name, turn.language)} ({r.cost})", f"redeem:{r.id}")
                    for r in rewards if r.cost <= s.balance)
    return [Reply("\n".join(lines), buttons, intent=intent)]


def confirm(turn: _Turn, reward: Any, intent: str | None) -> list[Reply]:
    nonce = secrets.token_hex(6)  # one confirm button, one redemption: a double tap sends the same nonce
    name = _name(reward.names, reward.name, turn.language)
    return [Reply(turn.t("confirm_redeem", reward=name, cost=reward.cost),
                  (Button(turn.t("confirm"), f"confirm:{reward.id}:{nonce}"), Button(turn.t("cancel"), "cancel")),
                  intent=intent)]


async def on_button(turn: _Turn, kind: str, rest: str) -> list[Reply]:
    if not await linked(turn):
        return ask_to_link(turn, None)
    loyalty = turn.engine.crm.loyalty
    if kind == "redeem":
        reward = next((r for r in await loyalty.catalogue() if str(r.id) == rest), None)
        return confirm(turn, reward, None) if reward else [Reply(turn.t("reward_unknown"))]
    if kind == "confirm":
        reward_id, _, nonce = rest.partition(":")
        key = f"{turn.incoming.channel}:{turn.incoming.external_id}:{reward_id}:{nonce}"
        try:
            redemption = await loyalty.redeem(customer_id=turn.customer_id, reward_id=payload_number(reward_id),
                                              idempotency_key=key)
        except InsufficientPoints:
            return [Reply(turn.t("insufficient"))]
        except (DomainError, ValueError):  # unknown, out of stock, not for this tier, a malformed button
            return [Reply(turn.t("reward_unknown"))]
        if redemption.duplicate:
            return [Reply(turn.t("already_redeemed", balance=redemption.balance_after))]
        return [Reply(turn.t("redeemed", points=redemption.points, balance=redemption.balance_after))]
    return [Reply(turn.t("cancelled"))]


async def link_by_phone(turn: _Turn, phone: str) -> list[Reply]:
    if phone == "other":  # someone else's contact card: never a way into their account
        return [Reply(turn.t("link_own_contact"), request_contact=turn.t("share_phone"))]
    crm = turn.engine.crm
    try:
        customer = await crm.customers.find_by_contact(phone=phone)
    except ValueError:  # a number that is no phone number (a short code, a forged payload)
        customer = None
    if customer is None:
        return [Reply(turn.t("link_not_found"), (Button(turn.t("talk_to_human"), "human:yes"),))]
    await crm.customers.link_identity(channel=turn.incoming.channel, external_id=turn.incoming.external_id,
                                      customer_id=customer.id)
    return await welcome_linked(turn, customer)


async def welcome_linked(turn: _Turn, customer: Any, *, intent: str | None = None) -> list[Reply]:
    """The chat now speaks for `customer`: greet them by name with their points."""
    turn.customer_id = customer.id
    return [Reply(turn.t("linked", name=customer.name or "") + "\n\n" + await summary_text(turn),
                  remove_keyboard=True, intent=intent)]
