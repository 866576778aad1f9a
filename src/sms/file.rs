//! Delivery into a JSON-lines outbox file (tests, local tooling).

use std::path::PathBuf;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::{SmsError, SmsMessage, SmsSender};

pub struct FileSender {
    path: PathBuf,
    /// The open outbox; the mutex serializes appends so lines never
    /// interleave. Opened on first use, and again after a failed write.
    file: Mutex<Option<tokio::fs::File>>,
}

impl FileSender {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            file: Mutex::new(None),
        }
    }
}

#[async_trait]
impl SmsSender for FileSender {
    async fn send(&self, message: &SmsMessage) -> Result<(), SmsError> {
        let fail = |e: std::io::Error| SmsError(format!("{}: {e}", self.path.display()));
        let mut line = serde_json::to_vec(message).map_err(|e| SmsError(e.to_string()))?;
        line.push(b'\n');
        let mut open = self.file.lock().await;
        let file = match &mut *open {
            Some(file) => file,
            None => {
                if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    tokio::fs::create_dir_all(dir).await.map_err(fail)?;
                }
                // The outbox holds live OTPs: readable by its owner only.
                let file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(&self.path)
                    .await
                    .map_err(fail)?;
                open.insert(file)
            }
        };
        let written = match file.write_all(&line).await {
            Ok(()) => file.flush().await,
            Err(e) => Err(e),
        };
        if written.is_err() {
            *open = None;
        }
        written.map_err(fail)
    }
}
