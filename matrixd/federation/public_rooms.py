"""Other servers' published room directories, fetched over federation.

``FederationRoomDirectoryClient`` implements
``matrixd.handlers.rooms.directory.RemoteRoomDirectory``: a client's
``/publicRooms?server=other.example`` becomes ``GET`` (or, with a filter,
``POST``) ``/_matrix/federation/v1/publicRooms`` on that server. A remote
refusal is passed on as the remote's 4xx; an unreachable server is 502.
(Serving our own directory to other servers is
``matrixd.rest.federation.public_rooms`` on ``RoomDirectoryHandler``.)
"""

from __future__ import annotations

from typing import Any, Optional

from matrixd.api.errors import Codes, MatrixError
from matrixd.federation.transport.client import HttpResponseException, MatrixFederationClient, RequestSendFailed
from matrixd.storage.directory import DirectoryQuery

JsonDict = dict[str, Any]
PATH = "/_matrix/federation/v1/publicRooms"


class FederationRoomDirectoryClient:
    def __init__(self, client: MatrixFederationClient) -> None:
        self._client = client

    async def get_remote_public_rooms(
        self, server: str, *, limit: Optional[int], since: Optional[str], query: DirectoryQuery,
        third_party_instance_id: Optional[str], include_all_networks: bool,
    ) -> JsonDict:
        try:
            if query.search_term is not None or query.room_types is not None:
                body: JsonDict = {"include_all_networks": include_all_networks}
                flt: JsonDict = {}
                if query.search_term is not None:
                    flt["generic_search_term"] = query.search_term
                if query.room_types is not None:
                    flt["room_types"] = list(query.room_types)
                body["filter"] = flt
                if limit is not None:
                    body["limit"] = limit
                if since is not None:
                    body["since"] = since
                if third_party_instance_id is not None:
                    body["third_party_instance_id"] = third_party_instance_id
                return await self._client.post_json(server, PATH, body)
            args: dict[str, Any] = {"include_all_networks": include_all_networks}
            if limit is not None:
                args["limit"] = limit
            if since is not None:
                args["since"] = since
            if third_party_instance_id is not None:
                args["third_party_instance_id"] = third_party_instance_id
            return await self._client.get_json(server, PATH, args)
        except HttpResponseException as e:
            raise e.to_matrix_error() from None
        except RequestSendFailed as e:
            raise MatrixError(502, f"Could not fetch the room directory of {server}: {e.reason}",
                              Codes.UNKNOWN) from None
