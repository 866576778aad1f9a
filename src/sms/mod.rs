//! Delivering OTPs. One trait, four providers; every provider is bounded by
//! the configured timeout, and a failure is reported, never swallowed.

mod console;
mod file;
mod twilio;
mod webhook;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::config::{SmsConfig, SmsProvider};
use crate::store::Purpose;

/// The record every provider delivers (file line, webhook body, console line).
#[derive(Clone, Serialize)]
pub struct SmsMessage {
    pub to: String,
    pub otp: String,
    pub purpose: Purpose,
    pub message: String,
    pub sent_at: i64,
}

impl SmsMessage {
    pub fn new(to: &str, otp: &str, purpose: Purpose, ttl: Duration, sent_at: i64) -> Self {
        let minutes = ttl.as_secs().div_ceil(60).max(1);
        let unit = if minutes == 1 { "minute" } else { "minutes" };
        let action = match purpose {
            Purpose::Register => "verify your account",
            Purpose::Login => "log in",
        };
        Self {
            to: to.to_owned(),
            otp: otp.to_owned(),
            purpose,
            message: format!(
                "Your otpgate code to {action} is {otp}. It expires in {minutes} {unit}. Never share it."
            ),
            sent_at,
        }
    }
}

impl fmt::Debug for SmsMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmsMessage")
            .field("to", &self.to)
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SmsError(pub String);

#[async_trait]
pub trait SmsSender: Send + Sync {
    async fn send(&self, message: &SmsMessage) -> Result<(), SmsError>;
}

/// The configured provider, each call bounded by `config.timeout`.
pub fn from_config(config: &SmsConfig) -> Result<Arc<dyn SmsSender>, String> {
    let sender: Arc<dyn SmsSender> = match &config.provider {
        SmsProvider::Console => Arc::new(console::ConsoleSender),
        SmsProvider::File { path } => Arc::new(file::FileSender::new(path.clone())),
        SmsProvider::Webhook { url } => Arc::new(webhook::WebhookSender::new(
            url.clone(),
            http_client(config.timeout)?,
        )),
        SmsProvider::Twilio(twilio) => Arc::new(twilio::TwilioSender::new(
            twilio,
            http_client(config.timeout)?,
        )),
    };
    Ok(Arc::new(Bounded {
        inner: sender,
        timeout: config.timeout,
    }))
}

fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("otpgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("sms http client: {e}"))
}

/// Puts a hard deadline on any provider, whatever it does inside.
struct Bounded {
    inner: Arc<dyn SmsSender>,
    timeout: Duration,
}

#[async_trait]
impl SmsSender for Bounded {
    async fn send(&self, message: &SmsMessage) -> Result<(), SmsError> {
        tokio::time::timeout(self.timeout, self.inner.send(message))
            .await
            .unwrap_or_else(|_| Err(SmsError(format!("no answer within {:?}", self.timeout))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_code_and_expiry_but_debug_hides_it() {
        let m = SmsMessage::new(
            "+15550001111",
            "123456",
            Purpose::Login,
            Duration::from_secs(300),
            1,
        );
        assert!(m.message.contains("123456"));
        assert!(m.message.contains("5 minutes"));
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["purpose"], "login");
        assert_eq!(json["to"], "+15550001111");
        assert_eq!(json["otp"], "123456");
        assert_eq!(json["sent_at"], 1);
        assert!(!format!("{m:?}").contains("123456"));
    }
}
