"""API tokens in the web: a member creates named tokens for the ``market`` command and for
programs (each shown once, stored only as its SHA-256), sees when each was last used, and
revokes any of them; the XML-RPC face refuses a revoked token at once (``accounts.credentials_changed``)."""

from __future__ import annotations

import secrets
import shlex

from market import accounts
from market.accounts import credentials
from market.core.errors import MarketError, NotFound
from market.store import tokens as sql_tokens
from market.web.context import Pages, field


class TokenPages(Pages):
    """GET /tokens, POST /tokens (create), POST /tokens/ID/revoke."""

    async def _page(self, request, visitor, code=200, name="", error=None, new=None, notice=None):
        rows = await self.web.db.run(sql_tokens.list_api_tokens, visitor.account_id)
        return self.web.render(
            request, "tokens.html", visitor, code, tokens=rows, name=name, error=error, new=new, notice=notice
        )

    async def tokens(self, request, visitor):
        return await self._page(request, visitor)

    async def create(self, request, visitor):
        name = field(request, "name", limit=64).strip() or f"token-{secrets.token_hex(2)}"
        token, token_hash = credentials.new_token()
        try:
            await self.web.db.run(
                sql_tokens.create_api_token, visitor.account_id, name, token_hash, self.web.clock.seconds()
            )
        except MarketError as e:
            return await self._page(request, visitor, 400, name=name, error=str(e))
        shown = {
            "name": name,
            "token": token,
            # in the environment, not the arguments (which every user of the machine sees in ps)
            "command": " ".join(
                [
                    f"MARKET_SERVER={shlex.quote(self.web.rpc_url(request))}",
                    f"MARKET_ACCOUNT={shlex.quote(visitor.name or '')}",
                    f"MARKET_TOKEN={shlex.quote(token)}",
                    "market status",
                ]
            ),
        }
        return await self._page(request, visitor, new=shown)

    async def revoke(self, request, visitor, token_id):
        try:
            row = await self.web.db.run(
                sql_tokens.revoke_api_token, visitor.account_id, token_id, self.web.clock.seconds()
            )
        except NotFound as e:
            return await self._page(request, visitor, 404, error=str(e))
        accounts.credentials_changed()
        return await self._page(request, visitor, notice=f"The token “{row['name']}” is revoked.")
