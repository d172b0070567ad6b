//! S3: the audit anchor bucket (chain heads, each an object no function role
//! can rewrite: S3 Object Lock in compliance mode, docs/decisions/0013) and
//! the data bucket (rights bundles; the monthly export's files, written in
//! parts by `ObjectUpload`, docs/decisions/0018).
//!
//! An anchor's key holds its sequence and hash (`keys::anchor_key`), so one
//! listing tells a verification every anchor since the last verified one; the
//! time of an anchor is S3's `LastModified`, which no caller sets.

use aws_config::SdkConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use time::OffsetDateTime;

use super::dynamo::{failed, unbuildable};
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
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(expires_in)
            .map_err(|e| unbuildable("presign", e))?;
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
        Ok(self.purge_versions(prefix, None, false).await?.objects)
    }

    /// Deletes every version and delete marker under `prefix` written before
    /// `before` (None: all), 1,000 a DeleteObjects request; with `dry_run`,
    /// counts them only. S3's own `LastModified` tells the age.
    pub async fn purge_versions(
        &self,
        prefix: &str,
        before: Option<OffsetDateTime>,
        dry_run: bool,
    ) -> Result<PurgedObjects, StoreError> {
        use aws_sdk_s3::types::ObjectIdentifier;
        let old = |modified: Option<&aws_sdk_s3::primitives::DateTime>| match before {
            None => true,
            Some(before) => modified.is_some_and(|m| m.secs() < before.unix_timestamp()),
        };
        let mut keys = std::collections::BTreeSet::new();
        let mut versions = 0;
        let (mut key_marker, mut version_marker) = (None, None);
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.clone())
                .set_version_id_marker(version_marker.clone())
                .send()
                .await
                .map_err(|e| failed("ListObjectVersions", e))?;
            let mut doomed = Vec::new();
            let listed = page
                .versions()
                .iter()
                .map(|v| (v.key(), v.version_id(), v.last_modified()))
                .chain(
                    page.delete_markers()
                        .iter()
                        .map(|m| (m.key(), m.version_id(), m.last_modified())),
                );
            for (key, version, modified) in listed {
                if let (Some(key), true) = (key, old(modified)) {
                    keys.insert(key.to_owned());
                    let id = ObjectIdentifier::builder()
                        .key(key)
                        .set_version_id(version.map(str::to_owned))
                        .build()
                        .map_err(|e| unbuildable("DeleteObjects", e))?;
                    doomed.push(id);
                }
            }
            versions += doomed.len() as u64;
            if !dry_run {
                for chunk in doomed.chunks(MAX_DELETE_OBJECTS) {
                    self.delete_objects(chunk.to_vec()).await?;
                }
            }
            if !page.is_truncated().unwrap_or(false) {
                return Ok(PurgedObjects {
                    objects: keys.len() as u64,
                    versions,
                });
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            version_marker = page.next_version_id_marker().map(str::to_owned);
        }
    }
}

/// What a purge of versions deleted (or would delete): keys and versions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgedObjects {
    pub objects: u64,
    pub versions: u64,
}

/// AWS's DeleteObjects limit.
pub const MAX_DELETE_OBJECTS: usize = 1000;

/// An object written in parts (S3 multipart upload) with its SHA-256 computed on
/// the way: memory holds one part at most. A small object (one part's worth or
/// less) is sent as one PutObject instead: one request rather than three.
#[derive(Debug)]
pub struct ObjectUpload {
    client: Client,
    bucket: String,
    key: String,
    upload_id: Option<String>,
    parts: Vec<aws_sdk_s3::types::CompletedPart>,
    buffer: Vec<u8>,
    hasher: sha2::Sha256,
    bytes: u64,
}

/// An object as written: where, which version, its digest and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenObject {
    pub key: String,
    pub version_id: Option<String>,
    pub sha256: String,
    pub bytes: u64,
}

/// S3's smallest part but the last (5 MiB).
pub const PART_BYTES: usize = 5 * 1024 * 1024;

impl ObjectUpload {
    /// Appends bytes; a full part is uploaded before this returns.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        use sha2::Digest;
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        self.buffer.extend_from_slice(bytes);
        while self.buffer.len() >= PART_BYTES {
            let rest = self.buffer.split_off(PART_BYTES);
            let part = std::mem::replace(&mut self.buffer, rest);
            self.upload_part(part).await?;
        }
        Ok(())
    }

    async fn upload_part(&mut self, part: Vec<u8>) -> Result<(), StoreError> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let created = self
                    .client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&self.key)
                    .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
                    .send()
                    .await
                    .map_err(|e| failed("CreateMultipartUpload", e))?;
                let id = created.upload_id.unwrap_or_default();
                self.upload_id = Some(id.clone());
                id
            }
        };
        let number = self.parts.len() as i32 + 1;
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(part))
            .send()
            .await
            .map_err(|e| failed("UploadPart", e))?;
        self.parts.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag)
                .build(),
        );
        Ok(())
    }

    /// Sends what is left and makes the object visible.
    pub async fn complete(mut self) -> Result<WrittenObject, StoreError> {
        use sha2::Digest;
        let last = std::mem::take(&mut self.buffer);
        let version_id = if self.upload_id.is_none() {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
                .body(ByteStream::from(last))
                .send()
                .await
                .map_err(|e| failed("PutObject", e))?
                .version_id
        } else {
            if !last.is_empty() {
                self.upload_part(last).await?;
            }
            let parts = aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .set_parts(Some(std::mem::take(&mut self.parts)))
                .build();
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .set_upload_id(self.upload_id.take())
                .multipart_upload(parts)
                .send()
                .await
                .map_err(|e| failed("CompleteMultipartUpload", e))?
                .version_id
        };
        Ok(WrittenObject {
            key: std::mem::take(&mut self.key),
            version_id,
            sha256: hex::encode(std::mem::take(&mut self.hasher).finalize()),
            bytes: self.bytes,
        })
    }

    /// Gives up: the parts already sent are discarded (and a lifecycle rule
    /// removes any upload this could not abort, after a day).
    pub async fn abort(mut self) {
        if let Some(upload_id) = self.upload_id.take() {
            let aborted = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(upload_id)
                .send()
                .await;
            if let Err(e) = aborted {
                tracing::warn!(error = %failed("AbortMultipartUpload", e), "multipart upload left for the lifecycle rule");
            }
        }
    }
}

impl DataBucket {
    /// Starts an object written in parts (nothing is sent before the first part).
    pub fn upload(&self, key: &str) -> ObjectUpload {
        ObjectUpload {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            upload_id: None,
            parts: Vec::new(),
            buffer: Vec::new(),
            hasher: sha2::Digest::new(),
            bytes: 0,
        }
    }

    /// One object's content, or None if there is none.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(failed("GetObject", e)),
        };
        let body = out.body.collect().await.map_err(|e| {
            StoreError::failed(
                "GetObject",
                crate::ports::FailureKind::Retryable,
                e.to_string(),
            )
        })?;
        Ok(Some(body.into_bytes().to_vec()))
    }

    /// Deletes the current version of every object under `prefix` (a delete
    /// marker each, 1,000 keys a request): the versions stay noncurrent, so a
    /// reader holding a version id can finish, until the lifecycle rule expires
    /// them. Returns the number of objects deleted.
    pub async fn delete_current(&self, prefix: &str) -> Result<u64, StoreError> {
        use aws_sdk_s3::types::ObjectIdentifier;
        let mut deleted = 0;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .send()
                .await
                .map_err(|e| failed("ListObjectsV2", e))?;
            let objects: Vec<ObjectIdentifier> = page
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .filter_map(|key| ObjectIdentifier::builder().key(key).build().ok())
                .collect();
            if objects.is_empty() {
                return Ok(deleted);
            }
            deleted += objects.len() as u64;
            self.delete_objects(objects).await?;
        }
    }

    /// One DeleteObjects request (at most `MAX_DELETE_OBJECTS`); any key it
    /// could not delete fails it (retryable: the caller's next run tries again).
    async fn delete_objects(
        &self,
        objects: Vec<aws_sdk_s3::types::ObjectIdentifier>,
    ) -> Result<(), StoreError> {
        let delete = aws_sdk_s3::types::Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| unbuildable("DeleteObjects", e))?;
        let out = self
            .client
            .delete_objects()
            .bucket(&self.bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| failed("DeleteObjects", e))?;
        if out.errors().is_empty() {
            Ok(())
        } else {
            Err(StoreError::failed(
                "DeleteObjects",
                crate::ports::FailureKind::Retryable,
                format!("{} objects not deleted", out.errors().len()),
            ))
        }
    }
}
