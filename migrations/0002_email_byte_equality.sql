-- Emails conflict exactly when their bytes are equal (they arrive trimmed and
-- lower-cased), as on SQLite. utf8mb4_unicode_ci made 'straße' equal
-- 'strasse' and full-width letters equal ASCII, so the two backends disagreed.
ALTER TABLE users MODIFY email VARBINARY(254) NOT NULL;
