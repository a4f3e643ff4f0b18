"""Room deletion and history purges: background jobs in batches, statuses, resumption after a restart."""

from __future__ import annotations

from matrixd.app.background import BackgroundJobRunner
from matrixd.handlers.admin.deletion import RoomDeletionHandler
from matrixd.handlers.admin.jobs import StepResult
from matrixd.storage.admin import AdminJob
from matrixd.storage.database import DatabaseClosedError
from tests.admin.base import V3, AdminTestCase


class RoomDeletionTests(AdminTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.room = self.create_room(self.user_tok, name="Doomed", preset="public_chat",
                                     room_alias_name="doomed")
        self.assertEqual(self.join(self.admin_tok, self.room).code, 200)
        for i in range(5):
            self.send(self.user_tok, self.room, f"msg {i}", f"t{i}")

    def count(self, table: str) -> int:
        rows = self.hs.run(self.hs.components.db.execute(
            "count", f"SELECT COUNT(*) FROM {table} WHERE room_id = ?", self.room))
        return int(rows[0][0])

    def test_delete_room_with_new_room(self) -> None:
        """DELETE v2 kicks local members, moves them to a new room with the message, blocks and purges."""
        carol, _ = self.hs.create_user("carol")
        body = self.admin("DELETE", f"/v2/rooms/{self.room}", {
            "new_room_user_id": carol, "room_name": "Moved", "message": "Bye", "block": True})
        delete_id = body["delete_id"]
        self.run_jobs()
        status = self.admin("GET", f"/v2/rooms/delete_status/{delete_id}")
        self.assertEqual(status["status"], "complete", status)
        shutdown = status["shutdown_room"]
        self.assertEqual(sorted(shutdown["kicked_users"]), sorted([self.user_id, self.admin_id]))
        self.assertEqual(shutdown["local_aliases"], ["#doomed:test"])
        new_room = shutdown["new_room_id"]
        self.assertIn(self.user_id, self.admin("GET", f"/v1/rooms/{new_room}/members")["members"])
        by_room = self.admin("GET", f"/v2/rooms/{self.room}/delete_status")
        self.assertEqual(by_room["results"][0]["delete_id"], delete_id)
        for table in ("events", "event_json", "state_groups", "current_state_events", "rooms", "room_aliases",
                      "event_push_actions", "push_room_joins"):
            self.assertEqual(self.count(table), 0, table)
        self.admin("GET", f"/v1/rooms/{self.room}", code=404)
        self.assertEqual(self.admin("GET", f"/v1/rooms/{self.room}/block")["block"], True)
        ch = self.join(self.user_tok, self.room)
        self.assertEqual((ch.code, ch.json_body["errcode"]), (403, "M_FORBIDDEN"))  # blocked, not just unknown
        self.assertNotIn(self.room, self.admin("GET", "/v1/users/@bob:test/joined_rooms")["joined_rooms"])
        ch = self.req("GET", f"{V3}/rooms/{self.room}/messages?dir=b", None, self.user_tok)
        self.assertIn(ch.code, (403, 404), ch.json_body)

    def test_delete_unknown_room_and_twice(self) -> None:
        """Deleting an unknown room is 404; a second delete while one runs is 400; bad bodies are 400."""
        self.admin("DELETE", "/v2/rooms/!nope:test", {}, code=404)
        self.admin("DELETE", f"/v2/rooms/{self.room}", {"purge": "yes"}, code=400)
        self.admin("DELETE", f"/v2/rooms/{self.room}", {"new_room_user_id": "@x:elsewhere"}, code=400)
        self.admin("DELETE", f"/v2/rooms/{self.room}", {})
        self.admin("DELETE", f"/v2/rooms/{self.room}", {}, code=400)
        self.run_jobs()
        self.admin("GET", "/v2/rooms/delete_status/unknown", code=404)

    def test_without_purge_keeps_events(self) -> None:
        """purge=false shuts the room down (members leave) but keeps its history."""
        body = self.admin("DELETE", f"/v2/rooms/{self.room}", {"purge": False})
        self.run_jobs()
        self.assertEqual(self.admin("GET", f"/v2/rooms/delete_status/{body['delete_id']}")["status"], "complete")
        self.assertGreater(self.count("events"), 0)
        self.assertEqual(self.admin("GET", f"/v1/rooms/{self.room}/members")["members"], [])

    def test_resumes_after_restart(self) -> None:
        """A deletion interrupted mid-purge is resumed by a new runner from its committed progress."""
        comps = self.hs.components
        body = self.admin("DELETE", f"/v2/rooms/{self.room}", {})
        delete_id = body["delete_id"]
        # The first step (shut down) ran inline; the job is now in "purging" with batches left.
        job = self.hs.run(comps.admin.store.get_job(delete_id))
        self.assertEqual(job.status, "purging")
        # Simulate a crash: a fresh runner and handler over the same database (batch size 2).
        runner = BackgroundJobRunner(comps.clock, comps.admin.store, pause_s=0.1)
        st = comps.core.stores
        RoomDeletionHandler(server_name="test", store=comps.admin.store, runner=runner, rooms=st.rooms,
                            aliases=st.aliases, events=st.events, current_state=st.current_state,
                            membership=comps.core.membership, room_creation=comps.core.room_creation,
                            send=comps.core.send, batch_size=2)
        self.assertEqual(self.hs.run(runner.resume_unfinished()), 1)
        for _ in range(400):
            if not runner.running_job_ids() and not comps.admin.runner.running_job_ids():
                break
            self.hs.advance(0.1)
        self.assertEqual(self.hs.run(comps.admin.store.get_job(delete_id)).status, "complete")
        self.assertEqual(self.count("events"), 0)

    def test_unknown_kind_fails_clearly(self) -> None:
        """A job whose kind has no handler after a restart is marked failed with a clear error."""
        store = self.hs.components.admin.store
        self.hs.run(store.create_job("j1", "mystery", None, {}, "active"))
        runner = BackgroundJobRunner(self.hs.components.clock, store)
        self.hs.run(runner.resume_unfinished())
        job = self.hs.run(store.get_job("j1"))
        self.assertEqual(job.status, "failed")
        self.assertIn("mystery", job.error)


class PurgeHistoryTests(AdminTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.room = self.create_room(self.user_tok, name="Chatty", preset="public_chat")
        self.assertEqual(self.join(self.admin_tok, self.room).code, 200)
        self.other, self.other_tok = self.hs.create_user("remoteish")
        self.old = [self.send(self.user_tok, self.room, f"old {i}", f"o{i}") for i in range(4)]
        self.cut = self.send(self.user_tok, self.room, "cut", "cut")
        self.new = [self.send(self.user_tok, self.room, f"new {i}", f"n{i}") for i in range(2)]

    def event_exists(self, event_id: str) -> bool:
        rows = self.hs.run(self.hs.components.db.execute(
            "exists", "SELECT 1 FROM events WHERE event_id = ?", event_id))
        return bool(rows)

    def test_purge_up_to_event(self) -> None:
        """Purging up to an event deletes earlier messages (local ones with delete_local_events) and keeps state."""
        body = self.admin("POST", f"/v1/purge_history/{self.room}/{self.cut}", {"delete_local_events": True})
        self.run_jobs()
        self.assertEqual(self.admin("GET", f"/v1/purge_history_status/{body['purge_id']}"), {"status": "complete"})
        for event_id in self.old:
            self.assertFalse(self.event_exists(event_id))
        for event_id in [self.cut, *self.new]:
            self.assertTrue(self.event_exists(event_id))
        # The room still works: state reads, new messages, pagination.
        self.assertEqual(self.admin("GET", f"/v1/rooms/{self.room}")["name"], "Chatty")
        self.send(self.user_tok, self.room, "after", "after")
        ch = self.req("GET", f"{V3}/rooms/{self.room}/messages?dir=b&limit=50", None, self.user_tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        bodies = [e["content"].get("body") for e in ch.json_body["chunk"] if e["type"] == "m.room.message"]
        self.assertEqual(bodies, ["after", "new 1", "new 0", "cut"])

    def test_purge_removes_notification_rows(self) -> None:
        """Purged events stop counting as unread: their push action rows go with them."""
        def rows(event_ids: list[str]) -> int:
            found = self.hs.run(self.hs.components.db.execute(
                "push_rows", "SELECT event_id FROM event_push_actions"))
            return sum(1 for (event_id,) in found if event_id in event_ids)

        self.assertGreater(rows(self.old), 0)  # the admin, a member, was notified of them
        kept = rows(self.new)
        self.admin("POST", f"/v1/purge_history/{self.room}/{self.cut}", {"delete_local_events": True})
        self.run_jobs()
        self.assertEqual(rows(self.old), 0)
        self.assertEqual(rows(self.new), kept)

    def test_local_events_kept_by_default(self) -> None:
        """Without delete_local_events, local users' messages survive a purge."""
        self.admin("POST", f"/v1/purge_history/{self.room}", {"purge_up_to_event_id": self.cut})
        self.run_jobs()
        for event_id in self.old:
            self.assertTrue(self.event_exists(event_id))

    def test_purge_by_timestamp_and_errors(self) -> None:
        """purge_up_to_ts purges by time; missing point, bad types and unknown rooms/events are 4xx."""
        self.hs.advance(10)
        now = self.hs.components.clock.time_msec()
        self.admin("POST", f"/v1/purge_history/{self.room}", {"purge_up_to_ts": now, "delete_local_events": True})
        self.run_jobs()
        self.assertFalse(self.event_exists(self.new[0]))
        # The newest message is the room's forward extremity: never purged.
        self.assertTrue(self.event_exists(self.new[1]))
        self.admin("POST", f"/v1/purge_history/{self.room}", {}, code=400)
        self.admin("POST", f"/v1/purge_history/{self.room}", {"purge_up_to_ts": "x"}, code=400)
        self.admin("POST", f"/v1/purge_history/{self.room}/$nope", {}, code=404)
        self.admin("POST", "/v1/purge_history/!nope:test", {"purge_up_to_ts": 1}, code=404)
        self.admin("GET", "/v1/purge_history_status/nope", code=404)
        self.assertEqual(self.admin("GET", f"/v1/rooms/{self.room}")["name"], "Chatty")


class RunnerShutdownTests(AdminTestCase):
    def test_database_closed_pauses_job(self) -> None:
        """A step interrupted by the database closing leaves the job unfinished (resumed later), not failed."""
        store = self.hs.components.admin.store
        runner = BackgroundJobRunner(self.hs.components.clock, store)

        async def closing_step(job: AdminJob) -> StepResult:
            raise DatabaseClosedError("closed")

        runner.register("closing", closing_step)
        job_id = self.hs.run(runner.start("closing", None, {}, "active"))
        self.assertEqual(self.hs.run(store.get_job(job_id)).status, "active")
        self.assertEqual(runner.running_job_ids(), [])

    def test_raising_step_fails_job(self) -> None:
        """A step raising any other error marks the job failed with the error text."""
        store = self.hs.components.admin.store
        runner = BackgroundJobRunner(self.hs.components.clock, store)

        async def broken_step(job: AdminJob) -> StepResult:
            raise ValueError("boom")

        runner.register("broken", broken_step)
        job_id = self.hs.run(runner.start("broken", None, {}, "active"))
        job = self.hs.run(store.get_job(job_id))
        self.assertEqual((job.status, job.error), ("failed", "ValueError: boom"))
