//! Delivery through Twilio's Messages API: form fields To, From, Body with
//! HTTP basic auth, POSTed to `{api_base}/2010-04-01/Accounts/{sid}/Messages.json`.

use async_trait::async_trait;

use super::{SmsError, SmsMessage, SmsSender};
use crate::config::{Secret, TwilioConfig};

pub struct TwilioSender {
    endpoint: String,
    account_sid: String,
    auth_token: Secret,
    from: String,
    client: reqwest::Client,
}

impl TwilioSender {
    pub fn new(config: &TwilioConfig, client: reqwest::Client) -> Self {
        let base = config.api_base.as_str().trim_end_matches('/');
        Self {
            endpoint: format!(
                "{base}/2010-04-01/Accounts/{}/Messages.json",
                config.account_sid
            ),
            account_sid: config.account_sid.clone(),
            auth_token: config.auth_token.clone(),
            from: config.from.clone(),
            client,
        }
    }
}

#[async_trait]
impl SmsSender for TwilioSender {
    async fn send(&self, message: &SmsMessage) -> Result<(), SmsError> {
        let response = self
            .client
            .post(&self.endpoint)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
            .form(&[
                ("To", message.to.as_str()),
                ("From", self.from.as_str()),
                ("Body", message.message.as_str()),
            ])
            .send()
            .await
            .map_err(|e| SmsError(format!("twilio: {}", e.without_url())))?;
        let status = response.status();
        if !status.is_success() {
            // Twilio's error body names the problem (code, message), never our token.
            let detail = response.text().await.unwrap_or_default();
            let detail: String = detail.chars().take(300).collect();
            return Err(SmsError(format!("twilio answered {status}: {detail}")));
        }
        Ok(())
    }
}
