"""Bluesky PDS stand-in: app-password sessions with short-lived access JWTs (``ExpiredToken``
as HTTP 400, as the PDS sends it), createRecord with client-chosen TID rkeys (an existing rkey
is a generic 500), putRecord no-op on identical records, getRecord ``RecordNotFound``."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from typing import Any

from starlette.responses import Response

from ..textlen import graphemes
from .base import Call, Provider

TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
TID = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")
POST = "app.bsky.feed.post"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_tid(micros: int, clock_id: int) -> str:
    n, out = (micros << 10) | (clock_id & 0x3FF), []
    for _ in range(13):
        out.append(TID_ALPHABET[n & 31])
        n >>= 5
    return "".join(reversed(out))


def cid_of(value: Any) -> str:
    digest = hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).digest()
    return "bafyrei" + base64.b32encode(digest).decode().rstrip("=").lower()[:52]


class Bluesky(Provider):
    name = "bluesky"
    limit, window = 3000, 300.0

    def defaults(self) -> dict[str, Any]:
        return {"access_ttl": 300.0, "refresh_ttl": 90 * 86400.0, "password": None}

    def reset(self) -> None:
        super().reset()
        self.tokens: dict[str, dict[str, Any]] = {}  # jwt → {did, handle, scope, exp}
        self.records: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.handles: dict[str, str] = {}  # handle → did

    def routes(self):
        x = "/xrpc/"
        return [
            self.route(x + "com.atproto.server.createSession", self.create_session, auth=False),
            self.route(x + "com.atproto.server.refreshSession", self.refresh_session, auth=False),
            self.route(x + "com.atproto.server.getSession", self.get_session, ("GET",), auth=False),
            self.route(x + "com.atproto.repo.createRecord", self.create_record, create=True, auth=False),
            self.route(x + "com.atproto.repo.putRecord", self.put_record, create=True, auth=False),
            self.route(x + "com.atproto.repo.deleteRecord", self.delete_record, auth=False),
            self.route(x + "com.atproto.repo.getRecord", self.get_record, ("GET",), auth=False),
        ]

    # -- dialect: XRPC errors are {error, message}

    def xrpc(self, status: int, name: str, message: str) -> Response:
        return self.json({"error": name, "message": message}, status)

    def unauthorized(self) -> Response:
        return self.xrpc(401, "AuthenticationRequired", "Invalid identifier or password")

    def expired_token(self) -> Response:
        return self.xrpc(400, "ExpiredToken", "Token has expired")

    def server_error(self, status: int) -> Response:
        names = {502: "UpstreamFailure", 503: "NotEnoughResources", 504: "UpstreamTimeout"}
        return self.xrpc(status, names.get(status, "InternalServerError"), "Internal Server Error")

    def client_error(self, status: int) -> Response:
        return self.xrpc(status, "InvalidRequest", "Invalid request")

    def duplicate(self) -> Response:
        return self.server_error(500)  # what an existing rkey produces

    def rate_limited(self, reset_at: float) -> Response:
        return self.xrpc(429, "RateLimitExceeded", "Rate Limit Exceeded")

    def rate_headers(self, limit: int, remaining: int, reset_at: float) -> dict[str, str]:
        return {"RateLimit-Limit": str(limit), "RateLimit-Remaining": str(remaining),
                "RateLimit-Reset": str(int(reset_at)), "RateLimit-Policy": f"{limit};w={int(self.window)}"}

    # -- sessions

    def _jwt(self, did: str, scope: str, ttl: float) -> str:
        now = self.state.clock()
        payload = {"scope": scope, "sub": did, "iat": int(now), "exp": int(now + ttl), "jti": secrets.token_hex(8)}
        return ".".join([b64url(b'{"alg":"HS256","typ":"JWT"}'), b64url(json.dumps(payload).encode()), b64url(secrets.token_bytes(32))])

    def _session(self, did: str, handle: str) -> dict[str, Any]:
        access = self._jwt(did, "com.atproto.access", float(self.settings["access_ttl"]))
        refresh = self._jwt(did, "com.atproto.refresh", float(self.settings["refresh_ttl"]))
        now = self.state.clock()
        with self.state.lock:
            self.tokens[access] = {"did": did, "handle": handle, "scope": "access", "exp": now + float(self.settings["access_ttl"])}
            self.tokens[refresh] = {"did": did, "handle": handle, "scope": "refresh", "exp": now + float(self.settings["refresh_ttl"])}
        return {"accessJwt": access, "refreshJwt": refresh, "handle": handle, "did": did, "active": True}

    def _check(self, call: Call, scope: str) -> dict[str, Any] | Response:
        if not call.token:
            return self.xrpc(401, "AuthMissing", "Authentication Required")
        info = self.tokens.get(call.token)
        if info is None:
            return self.xrpc(400, "InvalidToken", "Token could not be verified")
        if info["scope"] != scope:
            return self.xrpc(400, "InvalidToken", "Bad token scope")
        if info["exp"] <= self.state.clock():
            return self.expired_token()
        return info

    def expire_sessions(self) -> None:
        """Make every access token expired now (drills: the client must refresh)."""
        with self.state.lock:
            for info in self.tokens.values():
                if info["scope"] == "access":
                    info["exp"] = self.state.clock() - 1

    def create_session(self, call: Call) -> Response:
        ident, password = call.field("identifier"), call.field("password")
        if not ident or not password:
            return self.xrpc(400, "InvalidRequest", "Input must have the properties \"identifier\" and \"password\"")
        expected = self.settings.get("password")
        if expected and password != expected:
            return self.unauthorized()
        handle = ident if "." in ident and "@" not in ident and not ident.startswith("did:") else "sandbox.bsky.social"
        did = ident if ident.startswith("did:") else "did:plc:" + hashlib.sha256(handle.encode()).hexdigest()[:24]
        self.handles[handle] = did
        return self.json(self._session(did, handle))

    def refresh_session(self, call: Call) -> Response:
        info = self._check(call, "refresh")
        if isinstance(info, Response):
            return info
        with self.state.lock:
            if call.token:
                self.tokens.pop(call.token, None)  # refresh tokens rotate
        return self.json(self._session(info["did"], info["handle"]))

    def get_session(self, call: Call) -> Response:
        info = self._check(call, "access")
        if isinstance(info, Response):
            return info
        return self.json({"handle": info["handle"], "did": info["did"], "active": True})

    # -- records

    def _repo(self, repo: str | None, info: dict[str, Any]) -> str | None:
        return info["did"] if repo in (info["did"], info["handle"]) else None

    def _validate(self, collection: str, record: Any) -> str | None:
        if not isinstance(record, dict) or record.get("$type") != collection:
            return "Record/$type must be " + str(collection)
        if collection != POST:
            return None
        text = record.get("text")
        if not isinstance(text, str):
            return 'Record must have the property "text"'
        if not isinstance(record.get("createdAt"), str):
            return 'Record must have the property "createdAt"'
        if graphemes(text) > 300:
            return "Record/text must not be longer than 300 graphemes"
        if len(text.encode()) > 3000:
            return "Record/text must not be longer than 3000 characters"
        for facet in record.get("facets") or []:
            index = facet.get("index", {}) if isinstance(facet, dict) else {}
            if not isinstance(index.get("byteStart"), int) or not isinstance(index.get("byteEnd"), int):
                return "Record/facets/index must have byteStart and byteEnd"
        return None

    def _write(self, call: Call, *, put: bool) -> Response:
        info = self._check(call, "access")
        if isinstance(info, Response):
            return info
        did = self._repo(call.field("repo"), info)
        if did is None:
            return self.xrpc(400, "InvalidRequest", "Invalid repo")
        collection, record, rkey = call.field("collection"), call.field("record"), call.field("rkey")
        problem = self._validate(collection, record)
        if problem:
            return self.xrpc(400, "InvalidRequest", f"Invalid {collection} record: {problem}")
        if rkey is None:
            if put:
                return self.xrpc(400, "InvalidRequest", 'Input must have the property "rkey"')
            rkey = make_tid(int(self.state.clock() * 1_000_000), self.state.next_id())
        if collection == POST and not TID.match(str(rkey)):
            return self.xrpc(400, "InvalidRequest", "Invalid rkey: expected a TID")
        uri, cid = f"at://{did}/{collection}/{rkey}", cid_of(record)
        existing = self.records.get((did, collection, rkey))
        commit = {"cid": cid_of([uri, cid, self.state.next_id()]), "rev": make_tid(int(self.state.clock() * 1e6), 0)}
        out = {"uri": uri, "cid": cid, "commit": commit, "validationStatus": "valid"}
        if existing and not put:
            return self.server_error(500)  # "There is already a value at key" surfaces as a generic error
        if existing and existing["cid"] == cid:
            return self.json({"uri": uri, "cid": cid})  # putRecord no-op
        with self.state.lock:
            self.records[(did, collection, rkey)] = {"uri": uri, "cid": cid, "value": record}
        if not existing and collection == POST:
            reply = (record.get("reply") or {}).get("parent", {}).get("uri")
            self.state.add_post(self.name, id=uri, text=record.get("text", ""), key=rkey, reply_to=reply, cid=cid)
        return self.json(out)

    def create_record(self, call: Call) -> Response:
        return self._write(call, put=False)

    def put_record(self, call: Call) -> Response:
        return self._write(call, put=True)

    def delete_record(self, call: Call) -> Response:
        info = self._check(call, "access")
        if isinstance(info, Response):
            return info
        did = self._repo(call.field("repo"), info) or ""
        key = (did, call.field("collection"), call.field("rkey"))
        with self.state.lock:
            gone = self.records.pop(key, None)
        if gone:
            self.state.mark_deleted(self.name, gone["uri"])
        return self.json({"commit": {"cid": cid_of(list(map(str, key))), "rev": make_tid(int(self.state.clock() * 1e6), 1)}})

    def get_record(self, call: Call) -> Response:
        q = call.query
        repo = q.get("repo", "")
        did = self.handles.get(repo, repo)
        found = self.records.get((did, q.get("collection", ""), q.get("rkey", "")))
        if not found:
            return self.xrpc(400, "RecordNotFound", f"Could not locate record: at://{repo}/{q.get('collection')}/{q.get('rkey')}")
        return self.json(found)


def as_bluesky(provider: Provider) -> Bluesky:
    """The Bluesky stand-in behind a prefix (drills expire its sessions to test the refresh)."""
    if not isinstance(provider, Bluesky):
        raise TypeError(f"{provider.name} is not the Bluesky stand-in")
    return provider
