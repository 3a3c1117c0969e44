"""``/v1/search`` (query string or JSON body) and ``/v1/fiches/{id}``: decode, call the search service, encode."""

from __future__ import annotations

from litestar import get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, Parameter
from litestar.status_codes import HTTP_200_OK

from server.http.errors import documented
from server.runtime import Services
from server.schemas import Fiche, SearchRequest, SearchResponse

__all__ = ["ROUTES"]


@get(
    "/v1/search",
    summary="Search the fiches (query string)",
    tags=["search"],
    responses=documented(400, 422, 429, 503, 504),
)
async def search_get(
    services: NamedDependency[Services],
    q: str = Parameter(description="The advisor's question or the person's situation, 1-2,000 characters."),
    audience: str | None = Parameter(default=None, description="particuliers, professionnels or associations."),
    k: int | None = Parameter(default=None, description="Number of fiches to return, 1-50 (default 5)."),
) -> SearchResponse:
    return await services.search.search(SearchRequest(q=q, audience=audience, k=k))


@post(
    "/v1/search",
    summary="Search the fiches (JSON body)",
    tags=["search"],
    status_code=HTTP_200_OK,
    responses=documented(400, 422, 429, 503, 504),
)
async def search_post(services: NamedDependency[Services], data: JSONBody[SearchRequest]) -> SearchResponse:
    return await services.search.search(data)


@get("/v1/fiches/{fiche_id:str}", summary="One parsed fiche", tags=["fiches"], responses=documented(404, 503))
async def get_fiche(services: NamedDependency[Services], fiche_id: FromPath[str]) -> Fiche:
    return services.search.fiche(fiche_id)


ROUTES = [search_get, search_post, get_fiche]
