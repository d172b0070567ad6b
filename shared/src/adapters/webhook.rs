//! Webhook deliveries: one signed POST (Standard Webhooks headers
//! `webhook-id`, `webhook-timestamp`, `webhook-signature`), with a timeout,
//! over the hyper and rustls stack the AWS SDK builds anyway. Only HTTPS,
//! except to loopback on the local stack.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::crypto::webhook_signature;

type Https = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

#[derive(Clone)]
pub struct WebhookClient {
    client: Client<Https, Full<Bytes>>,
    timeout: Duration,
}

/// Why a delivery failed: short and free of payload and URL (it is recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookFailure {
    Status(u16),
    Timeout,
    Unreachable,
    BadSecret,
}

impl WebhookFailure {
    pub fn describe(&self) -> String {
        match self {
            WebhookFailure::Status(code) => format!("HTTP {code}"),
            WebhookFailure::Timeout => "timeout".into(),
            WebhookFailure::Unreachable => "unreachable".into(),
            WebhookFailure::BadSecret => "signing secret unusable".into(),
        }
    }
}

impl WebhookClient {
    /// Fails (at cold start) if the system's root certificates cannot be loaded.
    pub fn new(timeout: Duration) -> Result<Self, std::io::Error> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            timeout,
        })
    }

    /// POSTs `body` signed with `secret`; Ok on any 2xx answer.
    pub async fn post(
        &self,
        url: &str,
        secret: &str,
        id: &str,
        timestamp: i64,
        body: &str,
    ) -> Result<(), WebhookFailure> {
        let signature = webhook_signature(secret, id, timestamp, body.as_bytes())
            .ok_or(WebhookFailure::BadSecret)?;
        let request = http::Request::post(url)
            .header("content-type", "application/json")
            .header("user-agent", "vigil-alerts/1")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .map_err(|_| WebhookFailure::Unreachable)?;
        let answer = tokio::time::timeout(self.timeout, async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|_| WebhookFailure::Unreachable)?;
            let status = response.status().as_u16();
            // Read (and drop) the answer so the connection can be reused.
            let _ = response.into_body().collect().await;
            Ok::<u16, WebhookFailure>(status)
        })
        .await
        .map_err(|_| WebhookFailure::Timeout)??;
        if (200..300).contains(&answer) {
            Ok(())
        } else {
            Err(WebhookFailure::Status(answer))
        }
    }
}

/// Whether `url` may receive webhooks: `https://` with a host, or, when the
/// local stack allows it, `http://127.0.0.1` / `http://localhost`.
pub fn acceptable_url(url: &str, allow_loopback: bool) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
        return false;
    };
    if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    // No credentials in the URL: they would be stored and shown.
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return false;
    }
    match uri.scheme_str() {
        Some("https") => true,
        Some("http") => allow_loopback && (host == "127.0.0.1" || host == "localhost"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_local_loopback() {
        assert!(acceptable_url("https://hooks.example.com/vigil", false));
        assert!(!acceptable_url("http://hooks.example.com/vigil", false));
        assert!(!acceptable_url("http://127.0.0.1:9000/h", false));
        assert!(acceptable_url("http://127.0.0.1:9000/h", true));
        assert!(!acceptable_url("http://10.0.0.1/h", true));
        assert!(!acceptable_url("https://user:pw@example.com/h", false));
        assert!(!acceptable_url("ftp://example.com/h", false));
        assert!(!acceptable_url("not a url", false));
    }

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The Standard Webhooks specification's own example.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            webhook_signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert_eq!(webhook_signature("nope", "id", 1, body), None);
    }
}
