"""Knowledge-base articles over the REST API: list, read, write, publish and unpublish. A published article's
change reaches the bot's search through the knowledge base's revision (`KnowledgeBaseChanged`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from console.api import schemas as s
from console.api.auth import CONFLICT, NOT_FOUND, acting_agent, area_router, entity_id, require_scope
from console.context import ConsoleDep
from console.permissions import ApiScope
from crm_store.dto import ApiTokenView
from crm_store.enums import ArticleStatus

router = area_router("/articles")

Reader = Annotated[ApiTokenView, require_scope(ApiScope.KB_READ)]
Writer = Annotated[ApiTokenView, require_scope(ApiScope.KB_WRITE)]
ArticleId = Annotated[int, entity_id("The article's id.")]


@router.get("", response_model=s.ArticlePage, summary="List articles, by id")
async def list_articles(
    console: ConsoleDep, _: Reader,
    status: ArticleStatus | None = None,
    language: Annotated[s.ArticleLanguage | None, Query()] = None,
    q: Annotated[s.text(200, required=False), Query(description="A piece of the question (any case).")] = "",  # type: ignore[valid-type]
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,6}$", description="`next_cursor` of the previous page.")]
    = None,
) -> s.ArticlePage:
    offset = int(cursor or 0)
    found = await console.crm.knowledge.list_articles(status=status, language=language, query=q or None,
                                                      limit=limit + 1, offset=offset)
    more, found = len(found) > limit, found[:limit]
    return s.ArticlePage(items=[s.Article.model_validate(a) for a in found],
                         next_cursor=str(offset + limit) if more else None)


@router.get("/{article_id}", response_model=s.Article, responses=NOT_FOUND, summary="An article")
async def get_article(console: ConsoleDep, _: Reader, article_id: ArticleId) -> s.Article:
    return s.Article.model_validate(await console.crm.knowledge.get(article_id=article_id))


@router.post("", response_model=s.Article, status_code=201, responses=CONFLICT, summary="Create an article")
async def create_article(console: ConsoleDep, token: Writer, body: s.NewArticle) -> s.Article:
    """An `external_id` already used is a 409."""
    article = await console.crm.knowledge.create_article(**body.model_dump(), agent_id=acting_agent(token))
    return s.Article.model_validate(article)


@router.patch("/{article_id}", response_model=s.Article, responses=NOT_FOUND, summary="Edit an article")
async def change_article(console: ConsoleDep, token: Writer, article_id: ArticleId,
                         body: s.ArticleChange) -> s.Article:
    article = await console.crm.knowledge.update_article(
        article_id=article_id, agent_id=acting_agent(token), **body.model_dump(include=body.model_fields_set)
    )
    return s.Article.model_validate(article)


@router.post("/{article_id}/publish", response_model=s.Article, responses=NOT_FOUND,
             summary="Publish an article (searchable by the bot)")
async def publish(console: ConsoleDep, token: Writer, article_id: ArticleId) -> s.Article:
    article = await console.crm.knowledge.publish(article_id=article_id, agent_id=acting_agent(token))
    return s.Article.model_validate(article)


@router.post("/{article_id}/unpublish", response_model=s.Article, responses=NOT_FOUND,
             summary="Take an article back to draft (out of search)")
async def unpublish(console: ConsoleDep, token: Writer, article_id: ArticleId) -> s.Article:
    article = await console.crm.knowledge.unpublish(article_id=article_id, agent_id=acting_agent(token))
    return s.Article.model_validate(article)
