//! Delivery into a JSON-lines outbox file (tests, local tooling).

use std::path::PathBuf;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::{SmsError, SmsMessage, SmsSender};

pub struct FileSender {
    path: PathBuf,
    /// Serializes appends so concurrent lines never interleave.
    lock: Mutex<()>,
}

impl FileSender {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            lock: Mutex::new(()),
        }
    }
}

#[async_trait]
impl SmsSender for FileSender {
    async fn send(&self, message: &SmsMessage) -> Result<(), SmsError> {
        let fail = |e: std::io::Error| SmsError(format!("{}: {e}", self.path.display()));
        let mut line = serde_json::to_vec(message).map_err(|e| SmsError(e.to_string()))?;
        line.push(b'\n');
        let _guard = self.lock.lock().await;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(fail)?;
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await
            .map_err(fail)?;
        file.write_all(&line).await.map_err(fail)?;
        file.flush().await.map_err(fail)
    }
}
