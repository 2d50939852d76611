"""Who may see the status page: the API's tokens, as a bearer header or in a login cookie.

A browser cannot send ``Authorization: Bearer`` from a link, so ``POST /ui/login`` takes the token from a form
(never from the URL), checks it like the API does (its sha256 against the registry's active tokens) and sets it
in a cookie that scripts cannot read (``HttpOnly``), that no other site's request carries (``SameSite=Strict``),
that only ``/ui`` receives, and that is ``Secure`` when the page is served over HTTPS. Every page request checks
the token again, so a revoked token is refused at once. ``POST`` requests whose ``Origin`` is another site are
refused (403). In local mode (``auth: none``) the pages are open, like the API.

Example:
    >>> safe_next("/ui/runs/r-1"), safe_next("https://evil.example/ui"), safe_next("//evil.example"), safe_next(None)
    ('/ui/runs/r-1', '/ui', '/ui', '/ui')
    >>> login_url("/ui/runs/r-1")
    '/ui/login?next=%2Fui%2Fruns%2Fr-1'
"""

from __future__ import annotations

import urllib.parse

from fastapi import HTTPException, Request
from starlette.responses import Response

from streamtune.api.auth import bearer, hash_token
from streamtune.registry.base import Registry

COOKIE = "streamtune_token"
COOKIE_PATH = "/ui"
MAX_AGE_S = 8 * 3600
MAX_TOKEN_CHARS = 200


class PageAuth:
    """Checks page requests against the registry's tokens; sets and clears the login cookie.

    Args:
        registry: Where the active tokens' hashes are.
        required: False in local mode: every request is let in as ``local``.
    """

    def __init__(self, registry: Registry, required: bool) -> None:
        self.registry = registry
        self.required = required

    def owner(self, token: str | None) -> str | None:
        """The name the token belongs to, or None (no token, unknown, revoked, or absurdly long)."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        found = self.registry.find_token(hash_token(token))
        return found.name if found else None

    def who(self, request: Request) -> str | None:
        """Who asks: the bearer header's owner if the request has one, else the login cookie's."""
        if not self.required:
            return "local"
        header = request.headers.get("authorization")
        return self.owner(bearer(header) if header else request.cookies.get(COOKIE))

    def require(self, request: Request) -> str:
        """A FastAPI dependency: who asks, or 401 (a bad bearer header) or 303 to the login page (a browser)."""
        who = self.who(request)
        if who is not None:
            request.state.page_user = who
            return who
        if request.headers.get("authorization"):
            raise HTTPException(401, "unauthorized", headers={"WWW-Authenticate": "Bearer"})
        raise HTTPException(303, "login required", headers={"Location": login_url(request.url.path)})

    def log_in(self, response: Response, token: str, request: Request) -> None:
        """Set the login cookie on ``response``."""
        response.set_cookie(COOKIE, token, max_age=MAX_AGE_S, path=COOKIE_PATH, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")

    def log_out(self, response: Response) -> None:
        """Clear the login cookie on ``response``."""
        response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")


def same_origin(request: Request) -> bool:
    """Whether a POST comes from this site's own pages (an absent ``Origin`` header is let through)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


async def form_token(request: Request) -> str:
    """The ``token`` field of a urlencoded form body ('' if absent)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return ""
    fields = urllib.parse.parse_qs((await request.body()).decode(errors="replace"), max_num_fields=10)
    return (fields.get("token") or [""])[0].strip()


def safe_next(path: str | None) -> str:
    """Where to go after logging in: a path under ``/ui`` on this site, else ``/ui`` (no open redirect)."""
    if not path or not path.startswith("/ui") or path.startswith("//") or "\\" in path:
        return "/ui"
    return path


def login_url(next_path: str) -> str:
    """The login page's URL that comes back to ``next_path``."""
    return "/ui/login?" + urllib.parse.urlencode({"next": safe_next(next_path)})
