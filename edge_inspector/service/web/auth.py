"""The commissioning page's access token. With a token configured (service.http.token_*; required
when the page listens beyond loopback) every request must carry it: `Authorization: Bearer <token>`
(scripts, a reverse proxy) or the cookie that `/login?token=<token>` sets (a browser, whose <img>
and EventSource cannot send headers). Without one (loopback only) the page is open to local users."""

from __future__ import annotations

import hmac
import logging

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

log = logging.getLogger(__name__)
COOKIE = "edge_inspector_token"


def _valid(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


class TokenGate:
    """ASGI middleware: 401 for an HTTP request without the token; /login alone is let through."""

    def __init__(self, app, token: str | None):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.token is None:
            return await self.app(scope, receive, send)
        request = Request(scope)
        bearer = request.headers.get("authorization", "")
        given = bearer[7:] if bearer.lower().startswith("bearer ") else request.cookies.get(COOKIE)
        if scope["path"] == "/login" or _valid(given, self.token):
            scope.setdefault("state", {})["token"] = self.token
            return await self.app(scope, receive, send)
        response = PlainTextResponse("token required: open /login?token=<token>, or send Authorization: Bearer",
                                     status_code=401, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


async def login(request: Request) -> Response:
    token = request.scope.get("state", {}).get("token")
    if token is None:
        return RedirectResponse("/", status_code=303)
    if not _valid(request.query_params.get("token"), token):
        log.warning("commissioning page: wrong token from %s", request.client.host if request.client else "?")
        return PlainTextResponse("wrong token", status_code=401)
    response = RedirectResponse("/", status_code=303)
    # HttpOnly: page scripts never read it; SameSite=Strict: another site cannot ride on it
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response
