CREATE SEQUENCE access_token_id_seq;
CREATE SEQUENCE refresh_token_id_seq;
