"""An in-memory push gateway: records what the pusher pool posts, answers as scripted."""

from __future__ import annotations

from typing import Any

from matrixd.types import JsonDict


class FakeGateway:
    """Implements ``PushGatewayClient``; ``answers`` are popped per request (default 200 ``{}``)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, JsonDict]] = []
        self.answers: list[Any] = []

    async def post_json(self, url: str, body: JsonDict) -> tuple[int, Any]:
        self.requests.append((url, body))
        if self.answers:
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            code, payload = answer
            return int(code), payload
        return 200, {}

    def notifications(self) -> list[JsonDict]:
        return [body["notification"] for _, body in self.requests]
