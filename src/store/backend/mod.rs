//! The connections a backend opens once and every store of it shares: one
//! SQLite database, one MySQL pool, one Redis connection.

pub mod memory;
pub mod mysql;
pub mod redis;
pub mod sqlite;
