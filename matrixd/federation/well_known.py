"""``/.well-known/matrix/server`` delegation lookups, cached as the spec recommends.

Step 3 of "Resolving server names": ``GET https://<hostname>/.well-known/matrix/server``,
following 30x redirects (https only, at most five, never revisiting a URL).
A 200 whose body is a JSON object with a valid ``m.server`` server name
delegates to it; anything else means "no delegation" and discovery goes on
with SRV records.

Caching:

* a delegation is kept for the response's ``Cache-Control: max-age`` (or
  ``Expires``), else 24 hours, at least 5 minutes and at most 48 hours;
* a failure (no delegation) is kept for 2 minutes, doubling on each
  consecutive failure up to an hour (the spec's "errors cached for up to an
  hour, with exponential backoff");
* a transient failure (connection error, timeout, 5xx, 429) while an earlier
  delegation is less than an hour past its expiry keeps using that
  delegation until the next attempt, so a flaky web server does not re-route
  a working federation link.

Concurrent lookups of one hostname share one request.
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
import urllib.parse
from typing import Optional

import attrs
from twisted.internet import defer
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IResponse

from matrixd.federation.transport.body import read_body_limited
from matrixd.storage.cache import LruCache
from matrixd.types import is_valid_server_name
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

WELL_KNOWN_PATH = "/.well-known/matrix/server"
DEFAULT_CACHE_S = 24 * 3600.0
MIN_CACHE_S = 300.0
MAX_CACHE_S = 48 * 3600.0
FIRST_FAILURE_CACHE_S = 120.0
MAX_FAILURE_CACHE_S = 3600.0
STALE_GRACE_S = 3600.0
MAX_REDIRECTS = 5
MAX_BODY_SIZE = 50 * 1024
REQUEST_TIMEOUT_S = 10.0

_MAX_AGE_RE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?([0-9]+)\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE_RE = re.compile(r"(?:^|,)\s*(?:no-cache|no-store)\s*(?:,|$)", re.IGNORECASE)


@attrs.define
class _Entry:
    delegated: Optional[str]
    expires_at: float
    consecutive_failures: int = 0
    # The last delegation that was really served, and when it expired.
    last_good: Optional[str] = None
    last_good_expiry: float = 0.0


@attrs.frozen(slots=True)
class _Outcome:
    delegated: Optional[str]
    transient: bool = False
    cache_s: float = DEFAULT_CACHE_S


class WellKnownResolver:
    """Looks up (and caches) where a hostname delegates its federation traffic.

    Args:
        agent: an HTTPS agent that filters IP ranges and applies the
            federation TLS policy (``matrixd.federation.transport.agent``).
    """

    def __init__(self, clock: Clock, agent: IAgent, *, user_agent: bytes = b"matrixd",
                 timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self._clock = clock
        self._agent = agent
        self._user_agent = user_agent
        self._timeout_s = timeout_s
        self._cache: LruCache[str, _Entry] = LruCache("well_known", 10_000)
        self._in_flight: dict[str, list[defer.Deferred[Optional[str]]]] = {}

    async def get_delegated_server(self, hostname: str) -> Optional[str]:
        """The ``m.server`` of ``hostname``'s well-known file, or None (no valid delegation)."""
        now = self._clock.time()
        entry = self._cache.get(hostname)
        if entry is not None and entry.expires_at > now:
            return entry.delegated
        waiters = self._in_flight.get(hostname)
        d: defer.Deferred[Optional[str]] = defer.Deferred()
        if waiters is not None:
            waiters.append(d)
            return await d
        self._in_flight[hostname] = [d]
        defer.ensureDeferred(self._refresh(hostname, entry))
        return await d

    async def _refresh(self, hostname: str, entry: Optional[_Entry]) -> None:
        result: Optional[str] = None
        try:
            outcome = await self._fetch(hostname)
            result = self._record(hostname, entry, outcome)
        except Exception:
            logger.exception("well-known lookup of %s failed unexpectedly", hostname)
        finally:
            for d in self._in_flight.pop(hostname, []):
                d.callback(result)

    def _record(self, hostname: str, entry: Optional[_Entry], outcome: _Outcome) -> Optional[str]:
        now = self._clock.time()
        if outcome.delegated is not None:
            expiry = now + outcome.cache_s
            self._cache.set(hostname, _Entry(outcome.delegated, expiry, 0, outcome.delegated, expiry))
            return outcome.delegated
        failures = (entry.consecutive_failures if entry is not None else 0) + 1
        backoff = min(MAX_FAILURE_CACHE_S, FIRST_FAILURE_CACHE_S * 2 ** (failures - 1))
        keep: Optional[str] = None
        last_good = entry.last_good if entry is not None else None
        last_good_expiry = entry.last_good_expiry if entry is not None else 0.0
        if outcome.transient and last_good is not None and now < last_good_expiry + STALE_GRACE_S:
            keep = last_good
            logger.info("well-known of %s unavailable; still using %s", hostname, keep)
        self._cache.set(hostname, _Entry(keep, now + backoff, failures, last_good, last_good_expiry))
        return keep

    async def _fetch(self, hostname: str) -> _Outcome:
        url = f"https://{hostname}{WELL_KNOWN_PATH}"
        seen = {url}
        for _ in range(MAX_REDIRECTS + 1):
            try:
                response = await self._get(url)
            except Exception as e:
                logger.info("no well-known for %s: %s: %s", hostname, type(e).__name__, e)
                return _Outcome(None, transient=True)
            if response.code in (301, 302, 303, 307, 308):
                location = (response.headers.getRawHeaders(b"location") or [b""])[0].decode("ascii", "replace")
                await self._discard(response)
                next_url = urllib.parse.urljoin(url, location)
                if not location or urllib.parse.urlsplit(next_url).scheme != "https" or next_url in seen:
                    logger.info("well-known of %s: unusable redirect to %r", hostname, location)
                    return _Outcome(None)
                seen.add(next_url)
                url = next_url
                continue
            return await self._parse(hostname, response)
        logger.info("well-known of %s: more than %d redirects", hostname, MAX_REDIRECTS)
        return _Outcome(None)

    async def _get(self, url: str) -> IResponse:
        headers = Headers({b"User-Agent": [self._user_agent]})
        d = self._agent.request(b"GET", url.encode("ascii"), headers, None)
        d.addTimeout(self._timeout_s, self._clock.reactor)
        return await d

    async def _discard(self, response: IResponse) -> None:
        try:
            await read_body_limited(response, MAX_BODY_SIZE)
        except Exception:
            pass

    async def _parse(self, hostname: str, response: IResponse) -> _Outcome:
        try:
            d = read_body_limited(response, MAX_BODY_SIZE)
            d.addTimeout(self._timeout_s, self._clock.reactor)
            body = await d
        except Exception as e:
            logger.info("well-known of %s: could not read the body: %s", hostname, e)
            return _Outcome(None, transient=True)
        if response.code != 200:
            logger.info("well-known of %s: HTTP %d", hostname, response.code)
            return _Outcome(None, transient=response.code >= 500 or response.code == 429)
        try:
            parsed = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            logger.info("well-known of %s: body is not JSON", hostname)
            return _Outcome(None)
        delegated = parsed.get("m.server") if isinstance(parsed, dict) else None
        if not isinstance(delegated, str) or not is_valid_server_name(delegated):
            logger.info("well-known of %s: no valid m.server", hostname)
            return _Outcome(None)
        return _Outcome(delegated, cache_s=self._cache_period(response))

    def _cache_period(self, response: IResponse) -> float:
        cache_control = b",".join(response.headers.getRawHeaders(b"cache-control") or []).decode("latin-1")
        period: Optional[float] = None
        if cache_control:
            if _NO_CACHE_RE.search(cache_control):
                period = 0.0
            else:
                m = _MAX_AGE_RE.search(cache_control)
                if m:
                    period = float(m.group(1))
        if period is None:
            expires = (response.headers.getRawHeaders(b"expires") or [b""])[0].decode("latin-1")
            if expires:
                try:
                    when = email.utils.parsedate_to_datetime(expires).timestamp()
                    period = when - self._clock.time()
                except (TypeError, ValueError, OverflowError):
                    period = 0.0
        if period is None:
            period = DEFAULT_CACHE_S
        return max(MIN_CACHE_S, min(MAX_CACHE_S, period))
