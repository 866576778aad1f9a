-- Sessions, refresh tokens (by HMAC) and the revocation log, as on MySQL
-- (migrations 0003-0005 there).
CREATE TABLE IF NOT EXISTS sessions (
    id                 TEXT    NOT NULL PRIMARY KEY,
    user_id            INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at         INTEGER NOT NULL,
    last_used_at       INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    refresh_expires_at INTEGER NOT NULL,
    revoked_at         INTEGER
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    hash       BLOB    NOT NULL PRIMARY KEY,
    session_id TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL,
    spent_at   INTEGER
);
CREATE INDEX IF NOT EXISTS refresh_tokens_session ON refresh_tokens (session_id);
CREATE TABLE IF NOT EXISTS revoked_sessions (
    session_id TEXT    NOT NULL PRIMARY KEY,
    revoked_at INTEGER NOT NULL,
    until_at   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS revoked_sessions_at ON revoked_sessions (revoked_at);
