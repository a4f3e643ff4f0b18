"""Serving part of a servlet: a worker exposes reads everywhere, writes only where they go to the master."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from matrixd.http.server import SERVLET_METHODS, JsonResource, RestServlet

READ_METHODS = frozenset({"GET"})


class ServletMethods(RestServlet):
    """Registers only ``methods`` of ``inner`` (same patterns, same callbacks, same metrics name).

    A path whose other methods are left out answers them 405, so a request
    that a proxy misroutes to a worker is refused instead of written locally.
    """

    def __init__(self, inner: RestServlet, methods: Iterable[str]) -> None:
        self.inner = inner
        self.methods = frozenset(m.upper() for m in methods)
        unknown = self.methods - set(SERVLET_METHODS)
        if unknown:
            raise ValueError(f"unknown methods {sorted(unknown)}")

    def register(self, resource: JsonResource) -> None:
        inner = self.inner
        for method in SERVLET_METHODS:
            if method not in self.methods:
                continue
            callback = getattr(inner, f"on_{method}", None)
            if callback is None:
                continue
            resource.register_paths(method, inner.PATTERNS, callback, type(inner).__name__,
                                    cancel_on_disconnect=method in inner.CANCEL_ON_DISCONNECT)

    def served_methods(self) -> frozenset[str]:
        return frozenset(m for m in self.methods if getattr(self.inner, f"on_{m}", None) is not None)


def select_methods(servlets: Iterable[RestServlet], writes: Mapping[type[RestServlet], Iterable[str]]
                   ) -> list[RestServlet]:
    """Each servlet's GET, plus the write methods ``writes`` grants its class; servlets left with none are dropped."""
    out: list[RestServlet] = []
    for servlet in servlets:
        allowed = READ_METHODS | frozenset(writes.get(type(servlet), ()))
        wrapped = ServletMethods(servlet, allowed)
        if wrapped.served_methods():
            out.append(wrapped)
    return out
