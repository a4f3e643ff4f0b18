-- Notification rows by room and position: purging a room's history or deleting
-- the room removes the rows of the events it deletes (unread counts must not
-- count purged events), which the (user_id, ...) keys cannot find.
CREATE INDEX event_push_actions_room_stream ON event_push_actions (room_id, stream_ordering);
