-- State group ids; SQLite (a single process) counts from MAX(id) instead.
CREATE SEQUENCE state_group_id_seq;
