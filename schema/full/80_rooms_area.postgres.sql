-- Report ids; SQLite (a single process) counts from MAX(id) instead.
CREATE SEQUENCE content_report_id_seq;
