-- The revocation log every instance loads at start and resyncs from: a revoked
-- session's access tokens are refused until until_at (the last moment one of
-- them could still be valid). It outlives the session rows themselves.
CREATE TABLE IF NOT EXISTS revoked_sessions (
    session_id CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    revoked_at BIGINT NOT NULL,
    until_at   BIGINT NOT NULL,
    PRIMARY KEY (session_id),
    KEY revoked_sessions_at (revoked_at)
) ENGINE=InnoDB;
