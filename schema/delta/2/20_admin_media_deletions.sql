-- What a media cleanup job ('delete_media') deleted.  A batch deletes the media rows and adds
-- them here in one transaction; the files go afterwards and file_deleted records it, so a
-- restart finishes the files of rows already gone, and the job's answer lists every item
-- (the rows of a job are dropped once a waiting request has answered with them).
CREATE TABLE admin_media_deletions (
    job_id TEXT NOT NULL,
    origin TEXT NOT NULL,                    -- '' for local media, else the remote server name
    media_id TEXT NOT NULL,
    file_deleted BOOLEAN NOT NULL,
    PRIMARY KEY (job_id, origin, media_id)
);
