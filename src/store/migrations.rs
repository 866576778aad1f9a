//! The schemas, compiled into the binary: MySQL's from `migrations/NNNN_name.sql`,
//! SQLite's from `migrations/sqlite/NNNN_name.sql`. A deployed binary needs
//! nothing but its config. Each backend records what it applied in
//! `otpgate_migrations`.

pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// In order. Adding a file under `migrations/` means adding it here; a test
/// checks the two agree.
pub const MYSQL: &[Migration] = &[
    Migration {
        version: 1,
        name: "create_users",
        sql: include_str!("../../migrations/0001_create_users.sql"),
    },
    Migration {
        version: 2,
        name: "email_byte_equality",
        sql: include_str!("../../migrations/0002_email_byte_equality.sql"),
    },
    Migration {
        version: 3,
        name: "sessions",
        sql: include_str!("../../migrations/0003_sessions.sql"),
    },
    Migration {
        version: 4,
        name: "refresh_tokens",
        sql: include_str!("../../migrations/0004_refresh_tokens.sql"),
    },
    Migration {
        version: 5,
        name: "revoked_sessions",
        sql: include_str!("../../migrations/0005_revoked_sessions.sql"),
    },
];

/// In order, like `MYSQL`, from `migrations/sqlite/`.
pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "create_users",
        sql: include_str!("../../migrations/sqlite/0001_create_users.sql"),
    },
    Migration {
        version: 2,
        name: "sessions",
        sql: include_str!("../../migrations/sqlite/0002_sessions.sql"),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &str) -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        files.sort();
        files
    }

    fn names(migrations: &[Migration]) -> Vec<String> {
        migrations
            .iter()
            .map(|m| format!("{:04}_{}.sql", m.version, m.name))
            .collect()
    }

    #[test]
    fn every_migration_file_is_compiled_in_and_in_order() {
        assert_eq!(names(MYSQL), files("migrations"));
        assert_eq!(names(SQLITE), files("migrations/sqlite"));
        for list in [MYSQL, SQLITE] {
            for (i, m) in list.iter().enumerate() {
                assert_eq!(m.version as usize, i + 1, "versions count up from 1");
            }
        }
    }
}
