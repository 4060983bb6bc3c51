"""`/privacy`: the customer sees what Kefu stores about them and can ask for their data to be erased. The bot
never erases by itself: a request goes to the admins (the console's Privacy page), who carry it out; a chat
whose owner can be anyone holding the phone must not wipe an account with one tap."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.messages import Button, Reply

if TYPE_CHECKING:
    from bot.engine import _Turn

COUNTED = ("conversations", "messages", "tickets", "orders", "survey_answers", "courses")


async def show(turn: _Turn) -> list[Reply]:
    """What is stored: the profile, the chats, how many of each record, and the points; then the choices."""
    summary = await turn.engine.crm.privacy.summary(customer_id=turn.customer_id)
    none = turn.t("privacy_none")
    lines = [turn.t("privacy_intro"),
             turn.t("privacy_profile", name=summary.name or none, email=summary.email or none,
                    phone=summary.phone or none),
             turn.t("privacy_channels", channels=", ".join(summary.channels) or none),
             turn.t("privacy_counts", **{key: summary.counts.get(key, 0) for key in COUNTED})]
    if summary.points is not None:
        lines.append(turn.t("privacy_points", points=summary.points, tier=summary.tier or none))
    lines.append(turn.t("privacy_consent_yes" if summary.marketing_consent else "privacy_consent_no"))
    if summary.erasure_pending:
        lines.append(turn.t("privacy_pending"))
        return [Reply("\n".join(lines), intent="privacy")]
    return [Reply("\n".join(lines), (Button(turn.t("privacy_erase_button"), "pv:erase"),), intent="privacy")]


async def on_button(turn: _Turn, action: str) -> list[Reply]:
    if action == "erase":  # one more tap: erasure cannot be undone
        return [Reply(turn.t("privacy_confirm"), (Button(turn.t("privacy_confirm_button"), "pv:confirm"),
                                                  Button(turn.t("privacy_keep_button"), "pv:keep")))]
    if action == "confirm":
        request = await turn.engine.crm.privacy.request_erasure(customer_id=turn.customer_id,
                                                                channel=turn.incoming.channel)
        return [Reply(turn.t("privacy_requested", request=request.id), intent="privacy")]
    return [Reply(turn.t("privacy_kept"))]
