//! The audit anchor bucket: chain heads, each an object no function role can
//! rewrite (S3 Object Lock in compliance mode, docs/decisions/0013).
//!
//! An anchor's key holds its sequence and hash (`keys::anchor_key`), so one
//! listing tells a verification every anchor since the last verified one; the
//! time of an anchor is S3's `LastModified`, which no caller sets.

use aws_config::SdkConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use time::OffsetDateTime;

use super::dynamo::failed;
use crate::config::{Config, ConfigError, Setting};
use crate::domain::audit::Anchor;
use crate::domain::TenantId;
use crate::keys;
use crate::ports::{AnchorStore, StoreError};

#[derive(Debug, Clone)]
pub struct AnchorBucket {
    client: Client,
    bucket: String,
}

impl AnchorBucket {
    pub fn new(sdk: &SdkConfig, config: &Config) -> Result<Self, ConfigError> {
        let bucket = config.require(Setting::AuditAnchorBucket)?.to_owned();
        // The emulator answers on one host name: path-style addressing.
        let s3 = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(config.endpoint_url.is_some())
            .build();
        Ok(Self {
            client: Client::from_conf(s3),
            bucket,
        })
    }
}

impl AnchorStore for AnchorBucket {
    /// One conditional PutObject (`If-None-Match: *`): an anchor is written
    /// once, even by two runs at once; an existing one answers 412.
    async fn anchor(&self, tenant: &TenantId, anchor: &Anchor) -> Result<bool, StoreError> {
        let key = keys::anchor_key(tenant, anchor.seq, &anchor.hash);
        let body = serde_json::json!({
            "tenant": tenant.as_str(),
            "seq": anchor.seq,
            "hash": anchor.hash,
        });
        // The bucket's default retention (compliance mode) locks the object;
        // Object Lock needs a checksum on the request, which the SDK adds.
        let put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .if_none_match("*")
            .content_type("application/json")
            .body(ByteStream::from(body.to_string().into_bytes()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            // 412: it exists. 409: another run is writing it right now (the same bytes).
            Err(error)
                if error
                    .raw_response()
                    .is_some_and(|r| matches!(r.status().as_u16(), 409 | 412)) =>
            {
                Ok(false)
            }
            Err(error) => Err(failed("PutObject", error)),
        }
    }

    async fn anchors_from(
        &self,
        tenant: &TenantId,
        from_seq: u64,
    ) -> Result<Vec<Anchor>, StoreError> {
        let prefix = keys::anchor_prefix(tenant);
        let mut anchors = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .start_after(keys::anchor_list_start(tenant, from_seq))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failed("ListObjectsV2", e))?;
            for object in page.contents() {
                let Some((seq, hash)) = object
                    .key()
                    .and_then(|key| keys::anchor_of_key(&prefix, key))
                else {
                    // Not an anchor's name: nothing a verification can use.
                    tracing::warn!("unexpected object in the anchor bucket");
                    continue;
                };
                let anchored_at = object
                    .last_modified()
                    .and_then(|t| OffsetDateTime::from_unix_timestamp(t.secs()).ok())
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH);
                anchors.push(Anchor {
                    seq,
                    hash: hash.to_owned(),
                    anchored_at,
                });
            }
        }
        Ok(anchors)
    }
}
