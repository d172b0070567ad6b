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

/// The S3 client of `config`: the emulator answers on one host name, so
/// path-style addressing when an endpoint is set.
fn client(sdk: &SdkConfig, config: &Config) -> Client {
    let s3 = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(config.endpoint_url.is_some())
        .build();
    Client::from_conf(s3)
}

#[derive(Debug, Clone)]
pub struct AnchorBucket {
    client: Client,
    bucket: String,
}

impl AnchorBucket {
    pub fn new(sdk: &SdkConfig, config: &Config) -> Result<Self, ConfigError> {
        Ok(Self {
            client: client(sdk, config),
            bucket: config.require(Setting::AuditAnchorBucket)?.to_owned(),
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

/// The data bucket: access and portability bundles (`keys::bundle_prefix`),
/// encrypted with the data key (SSE-KMS), fetched through a presigned link.
#[derive(Debug, Clone)]
pub struct DataBucket {
    client: Client,
    bucket: String,
}

impl DataBucket {
    pub fn new(sdk: &SdkConfig, config: &Config) -> Result<Self, ConfigError> {
        Ok(Self {
            client: client(sdk, config),
            bucket: config.require(Setting::DataBucket)?.to_owned(),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Writes one object, encrypted with the bucket's KMS key.
    pub async fn put(
        &self,
        key: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failed("PutObject", e))
    }

    /// A GET link to one object, valid for `expires_in`.
    pub async fn link(
        &self,
        key: &str,
        expires_in: std::time::Duration,
    ) -> Result<String, StoreError> {
        let config =
            aws_sdk_s3::presigning::PresigningConfig::expires_in(expires_in).map_err(|e| {
                StoreError::failed(
                    "presign",
                    crate::ports::FailureKind::Permanent,
                    e.to_string(),
                )
            })?;
        self.client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(config)
            .await
            .map(|request| request.uri().to_owned())
            .map_err(|e| failed("GetObject", e))
    }

    /// Deletes every version of every object under `prefix` (the bucket is
    /// versioned: a plain delete would leave the data in a noncurrent version).
    /// Returns the number of objects (keys) that had versions.
    pub async fn delete_all_versions(&self, prefix: &str) -> Result<u64, StoreError> {
        let mut keys = std::collections::BTreeSet::new();
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(prefix)
                .send()
                .await
                .map_err(|e| failed("ListObjectVersions", e))?;
            let mut doomed = Vec::new();
            for version in page.versions() {
                if let Some(key) = version.key() {
                    keys.insert(key.to_owned());
                    doomed.push((key.to_owned(), version.version_id().map(str::to_owned)));
                }
            }
            for marker in page.delete_markers() {
                if let Some(key) = marker.key() {
                    doomed.push((key.to_owned(), marker.version_id().map(str::to_owned)));
                }
            }
            if doomed.is_empty() {
                return Ok(keys.len() as u64);
            }
            for (key, version) in doomed {
                self.client
                    .delete_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .set_version_id(version)
                    .send()
                    .await
                    .map_err(|e| failed("DeleteObject", e))?;
            }
        }
    }
}
