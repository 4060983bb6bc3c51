"""Errors a use case raises when a rule forbids the request; callers show `str(error)` to people."""


class DomainError(Exception):
    """A request the domain refuses; the message is safe to show to an agent or a customer."""

    code: str = "domain_error"


class NotFound(DomainError):
    code = "not_found"


class InvalidTransition(DomainError):
    code = "invalid_transition"


class InsufficientPoints(DomainError):
    code = "insufficient_points"


class OutOfStock(DomainError):
    code = "out_of_stock"


class RewardUnavailable(DomainError):
    code = "reward_unavailable"


class ConflictError(DomainError):
    code = "conflict"


class LinkTokenError(DomainError):
    """A one-time link code that cannot link this chat."""

    code = "link_token"


class LinkTokenUnknown(LinkTokenError):
    code = "link_token_unknown"


class LinkTokenUsed(LinkTokenError):
    code = "link_token_used"


class LinkTokenExpired(LinkTokenError):
    code = "link_token_expired"


class InvalidSegment(DomainError):
    """A segment's rules (or name) that cannot be evaluated; the message names the field and what is allowed."""

    code = "invalid_segment"
