-- Users' own push rules, and their changes to the server-default rules: a row
-- whose rule_id starts with '.' replaces the actions of that default rule.
CREATE TABLE push_rules (
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,                      -- override, content, room, sender, underride
    rule_id TEXT NOT NULL,
    priority INTEGER NOT NULL,               -- order within the kind: higher first
    conditions TEXT,                         -- JSON list (override/underride)
    pattern TEXT,                            -- content rules
    actions TEXT NOT NULL,                   -- JSON list
    PRIMARY KEY (user_id, kind, rule_id)
);

-- Rules a user enabled or disabled (defaults included).
CREATE TABLE push_rules_enable (
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    PRIMARY KEY (user_id, kind, rule_id)
);

-- The push rules stream: one row per change of a user's rules.
CREATE TABLE push_rules_stream (
    stream_id BIGINT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL
);
CREATE INDEX push_rules_stream_user ON push_rules_stream (user_id, stream_id);
