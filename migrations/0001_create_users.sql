-- Accounts: one per mobile number; email unique too. Times are unix seconds.
CREATE TABLE IF NOT EXISTS users (
    id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    mobile     VARCHAR(16)     NOT NULL,
    first_name VARCHAR(100)    NOT NULL,
    last_name  VARCHAR(100)    NOT NULL,
    email      VARCHAR(254)    NOT NULL,
    verified   BOOLEAN         NOT NULL DEFAULT FALSE,
    created_at BIGINT          NOT NULL,
    updated_at BIGINT          NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY users_mobile (mobile),
    UNIQUE KEY users_email (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
