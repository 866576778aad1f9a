-- Refresh tokens by their HMAC (never the token itself). A spent token stays,
-- with spent_at, so that presenting it again is recognised as reuse.
CREATE TABLE IF NOT EXISTS refresh_tokens (
    hash       BINARY(32) NOT NULL,
    session_id CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    expires_at BIGINT NOT NULL,
    spent_at   BIGINT NULL,
    PRIMARY KEY (hash),
    KEY refresh_tokens_session (session_id),
    CONSTRAINT refresh_tokens_session_fk FOREIGN KEY (session_id) REFERENCES sessions (id) ON DELETE CASCADE
) ENGINE=InnoDB;
