//! Development delivery: one JSON line on stdout per OTP.

use std::io::Write;

use async_trait::async_trait;

use super::{SmsError, SmsMessage, SmsSender};

pub struct ConsoleSender;

#[async_trait]
impl SmsSender for ConsoleSender {
    async fn send(&self, message: &SmsMessage) -> Result<(), SmsError> {
        let line = serde_json::to_string(message).map_err(|e| SmsError(e.to_string()))?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| SmsError(format!("stdout: {e}")))
    }
}
