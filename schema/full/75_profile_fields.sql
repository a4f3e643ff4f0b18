-- Extended profile fields (m.tz and namespaced custom keys); displayname and
-- avatar_url stay in profiles.
CREATE TABLE profile_fields (
    user_id TEXT NOT NULL,
    field_name TEXT NOT NULL,
    value TEXT NOT NULL,                      -- canonical JSON of the value
    PRIMARY KEY (user_id, field_name)
);

-- Users who asked for erasure when deactivating (served redacted to later joiners).
CREATE TABLE erased_users (
    user_id TEXT NOT NULL PRIMARY KEY
);
