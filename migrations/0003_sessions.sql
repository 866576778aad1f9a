-- One row per login. A session ends at expires_at (login + session.max_lifetime),
-- when its current refresh token lapses (refresh_expires_at), or when revoked.
CREATE TABLE IF NOT EXISTS sessions (
    id                 CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    user_id            BIGINT UNSIGNED NOT NULL,
    created_at         BIGINT NOT NULL,
    last_used_at       BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL,
    refresh_expires_at BIGINT NOT NULL,
    revoked_at         BIGINT NULL,
    PRIMARY KEY (id),
    KEY sessions_user (user_id),
    CONSTRAINT sessions_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB;
