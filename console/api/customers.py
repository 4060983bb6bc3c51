"""Customers over the REST API: search, one customer with their chat identities, create, update, the timeline."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request

from console.api import schemas as s
from console.api.auth import CONFLICT, NOT_FOUND, area_router, entity_id, require_scope
from console.context import ConsoleDep
from console.permissions import ApiScope
from console.security import client_ip
from crm_store.dto import ApiTokenView
from crm_store.enums import Actor, AuditAction

router = area_router("/customers")

Reader = Annotated[ApiTokenView, require_scope(ApiScope.CUSTOMERS_READ)]
Writer = Annotated[ApiTokenView, require_scope(ApiScope.CUSTOMERS_WRITE)]
CustomerId = Annotated[int, entity_id("The customer's id.")]


@router.get("", response_model=s.CustomerPage,
            summary="Search customers (merged ones left out), newest first")
async def list_customers(
    console: ConsoleDep, _: Reader,
    q: Annotated[s.text(100, required=False), Query(  # type: ignore[valid-type]
        description="A piece of the name; or exactly an e-mail, phone, chat id or customer number.")] = "",
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    cursor: Annotated[str | None, Query(pattern=r"^[1-9][0-9]{0,8}$",
                                        description="`next_cursor` of the previous page.")] = None,
) -> s.CustomerPage:
    page = await console.crm.customers.search_page(query=q, limit=limit, before=int(cursor) if cursor else None)
    return s.CustomerPage(items=[s.Customer.model_validate(c) for c in page.customers],
                          next_cursor=str(page.next_before) if page.next_before else None)


@router.get("/{customer_id}", response_model=s.CustomerDetail, responses=NOT_FOUND,
            summary="A customer and their chat identities")
async def get_customer(request: Request, console: ConsoleDep, token: Reader,
                       customer_id: CustomerId) -> s.CustomerDetail:
    customer = await console.crm.customers.get(customer_id=customer_id)
    identities = await console.crm.customers.identities(customer_id=customer_id)
    await console.crm.audit.record(action=AuditAction.CUSTOMER_VIEWED, actor=Actor.API,
                                   actor_label=f"API token {token.name} ({token.prefix}…)", subject_type="customer",
                                   subject_id=customer_id, ip=client_ip(request))
    return s.CustomerDetail(**s.Customer.model_validate(customer).model_dump(),
                            identities=[s.Identity.model_validate(i) for i in identities])


@router.post("", response_model=s.Customer, status_code=201, responses=CONFLICT, summary="Create a customer")
async def create_customer(console: ConsoleDep, _: Writer, body: s.NewCustomer) -> s.Customer:
    """An e-mail or phone that is not one is a 422; an `external_ref` already used is a 409."""
    customer = await console.crm.customers.create(**body.model_dump())
    return s.Customer.model_validate(customer)


@router.patch("/{customer_id}", response_model=s.Customer, responses=NOT_FOUND, summary="Update a customer")
async def change_customer(console: ConsoleDep, _: Writer, customer_id: CustomerId,
                          body: s.CustomerChange) -> s.Customer:
    customer = await console.crm.customers.update_profile(customer_id=customer_id,
                                                          **body.model_dump(include=body.model_fields_set))
    return s.Customer.model_validate(customer)


@router.get("/{customer_id}/timeline", response_model=list[s.TimelineEntry], responses=NOT_FOUND,
            summary="Everything that happened with the customer, oldest first")
async def timeline(console: ConsoleDep, _: Reader, customer_id: CustomerId,
                   limit: Annotated[int, Query(ge=1, le=200, description="The newest entries kept.")] = 100,
                   ) -> list[s.TimelineEntry]:
    entries = await console.crm.timeline.timeline(customer_id=customer_id, limit=limit)
    return [s.TimelineEntry.model_validate(e) for e in entries]
