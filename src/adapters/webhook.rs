//! The `webhook` adapter: one signed JSON event per operation, for apps with
//! a custom API or an automation platform.
//!
//! Signatures follow the Standard Webhooks scheme: headers `webhook-id`,
//! `webhook-timestamp` (Unix seconds) and `webhook-signature`, which holds
//! `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` once per active
//! secret, separated by spaces, so a receiver can rotate its secret without
//! missing an event. The event id is derived from the operation (app,
//! identity, account revision, content): a retry carries the same id, so
//! receivers can drop duplicates.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::http::{client, read_secret, status_error, transport_error};
use super::{Adapter, AdapterError, Applied, OpContext};
use crate::config::WebhookSettings;
use crate::domain::Kind;

/// A webhook endpoint with its signing secrets.
pub struct WebhookAdapter {
    url: String,
    secrets: Vec<Vec<u8>>,
    http: reqwest::Client,
}

/// The key bytes of a secret: `whsec_<base64>` decodes, anything else is used as is.
pub fn secret_bytes(secret: &str) -> anyhow::Result<Vec<u8>> {
    match secret.strip_prefix("whsec_") {
        Some(b64) => B64
            .decode(b64)
            .map_err(|_| anyhow::anyhow!("a whsec_ webhook secret is not valid base64")),
        None => Ok(secret.as_bytes().to_vec()),
    }
}

/// The `webhook-signature` header value for a message.
pub fn sign(secrets: &[Vec<u8>], id: &str, timestamp: i64, body: &str) -> String {
    secrets
        .iter()
        .filter_map(|key| {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
            mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
            Some(format!("v1,{}", B64.encode(mac.finalize().into_bytes())))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl WebhookAdapter {
    /// Builds the adapter; reads the secrets now.
    pub fn new(s: &WebhookSettings, timeout: Duration) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(&s.url)
            .map_err(|e| anyhow::anyhow!("webhook url {:?}: {e}", s.url))?;
        anyhow::ensure!(
            url.scheme() == "https" || (url.scheme() == "http" && loopback(&url)),
            "webhook url must be https:// (http:// only for a loopback host)"
        );
        let mut secrets = Vec::new();
        for var in &s.secrets_env {
            if let Some(v) = read_secret(Some(var), None, "webhook secret")? {
                secrets.push(secret_bytes(v.trim())?);
            }
        }
        for file in &s.secret_files {
            if let Some(v) = read_secret(None, Some(file), "webhook secret")? {
                secrets.push(secret_bytes(&v)?);
            }
        }
        anyhow::ensure!(
            !secrets.is_empty(),
            "a webhook needs at least one signing secret (secrets_env or secret_files)"
        );
        anyhow::ensure!(
            secrets.iter().all(|s| s.len() >= 16),
            "webhook secrets must be at least 16 bytes"
        );
        Ok(Self {
            url: url.to_string(),
            secrets,
            http: client(timeout)?,
        })
    }

    async fn send(
        &self,
        ctx: &OpContext,
        event_type: &str,
        data: Value,
    ) -> Result<Applied, AdapterError> {
        let body = json!({ "type": event_type, "data": data }).to_string();
        let mut h = Sha256::new();
        for part in [
            ctx.app.as_str(),
            ctx.identity.as_str(),
            &ctx.revision.to_string(),
            &body,
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let id = format!("evt_{}", &hex::encode(h.finalize())[..32]);
        let ts = chrono::Utc::now().timestamp();
        let res = self
            .http
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sign(&self.secrets, &id, ts, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = res.status();
        if status.is_success() {
            return Ok(Applied {
                remote_id: None,
                adopted: false,
                status: Some(status.as_u16()),
            });
        }
        let headers = res.headers().clone();
        let text = res.text().await.unwrap_or_default();
        Err(status_error(status, &headers, &text))
    }
}

fn noun(kind: Kind) -> &'static str {
    match kind {
        Kind::User => "user",
        Kind::Group => "group",
    }
}

fn active(v: &Value) -> bool {
    v.get("active").and_then(Value::as_bool).unwrap_or(true)
}

#[async_trait::async_trait]
impl Adapter for WebhookAdapter {
    async fn create(&self, ctx: &OpContext, account: &Value) -> Result<Applied, AdapterError> {
        let data = json!({ "app": ctx.app, "id": ctx.identity, "account": account });
        let mut applied = self
            .send(ctx, &format!("{}.created", noun(ctx.kind)), data)
            .await?;
        applied.remote_id = Some(ctx.identity.clone());
        Ok(applied)
    }

    async fn locate(
        &self,
        ctx: &OpContext,
        _account: &Value,
    ) -> Result<Option<String>, AdapterError> {
        // A receiver cannot be asked; it knows accounts by the gateway id.
        Ok(Some(ctx.identity.clone()))
    }

    async fn update(
        &self,
        ctx: &OpContext,
        _remote_id: &str,
        before: &Value,
        after: &Value,
    ) -> Result<Applied, AdapterError> {
        let mut changed: Vec<&String> = Vec::new();
        if let (Some(b), Some(a)) = (before.as_object(), after.as_object()) {
            changed.extend(
                a.iter()
                    .filter(|(k, v)| b.get(*k) != Some(v))
                    .map(|(k, _)| k),
            );
            changed.extend(b.keys().filter(|k| !a.contains_key(*k)));
        }
        let verb = match (active(before), active(after)) {
            (true, false) => "disabled",
            (false, true) => "enabled",
            _ => "updated",
        };
        let data = json!({
            "app": ctx.app, "id": ctx.identity, "account": after,
            "previous": before, "changed": changed,
        });
        self.send(ctx, &format!("{}.{verb}", noun(ctx.kind)), data)
            .await
    }

    async fn delete(
        &self,
        ctx: &OpContext,
        _remote_id: &str,
        last: &Value,
    ) -> Result<Applied, AdapterError> {
        let data = json!({ "app": ctx.app, "id": ctx.identity, "previous": last });
        self.send(ctx, &format!("{}.deleted", noun(ctx.kind)), data)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example from the Standard Webhooks specification.
        let key = secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(
            &[key],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn every_active_secret_signs() {
        let sig = sign(
            &[b"0123456789abcdef".to_vec(), b"fedcba9876543210".to_vec()],
            "i",
            1,
            "{}",
        );
        assert_eq!(sig.split(' ').count(), 2);
        assert!(sig.split(' ').all(|s| s.starts_with("v1,")));
    }
}
