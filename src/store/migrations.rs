//! The MySQL schema, compiled into the binary from `migrations/NNNN_name.sql`.
//! A deployed binary needs nothing but its config.

pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// In order. Adding a file under `migrations/` means adding it here; a test
/// checks the two agree.
pub const MIGRATIONS: &[Migration] = &[
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
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_compiled_in_and_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS
            .iter()
            .map(|m| format!("{:04}_{}.sql", m.version, m.name))
            .collect();
        assert_eq!(files, listed);
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
    }
}
