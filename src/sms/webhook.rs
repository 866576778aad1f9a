//! Delivery by POSTing the message record as JSON to an operator's endpoint.

use async_trait::async_trait;

use super::{SmsError, SmsMessage, SmsSender};

pub struct WebhookSender {
    url: url::Url,
    client: reqwest::Client,
}

impl WebhookSender {
    pub fn new(url: url::Url, client: reqwest::Client) -> Self {
        Self { url, client }
    }
}

#[async_trait]
impl SmsSender for WebhookSender {
    async fn send(&self, message: &SmsMessage) -> Result<(), SmsError> {
        let response = self
            .client
            .post(self.url.clone())
            .json(message)
            .send()
            .await
            .map_err(|e| SmsError(format!("webhook: {}", e.without_url())))?;
        let status = response.status();
        if !status.is_success() {
            return Err(SmsError(format!("webhook answered {status}")));
        }
        Ok(())
    }
}
