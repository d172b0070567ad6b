//! The local stack builds what template.yaml declares: encrypted tables with TTL,
//! PITR and deletion protection, a versioned, encrypted, private bucket, and the routes.

use vigil_tests::TestStack;

#[tokio::test]
async fn tables_match_the_template() {
    let stack = TestStack::start().await;
    for table in [
        "EventsTable",
        "AggregatesTable",
        "SubjectsTable",
        "TenantsTable",
        "AuditTable",
    ] {
        let name = stack.table(table);
        let description = stack
            .dynamodb
            .describe_table()
            .table_name(&name)
            .send()
            .await
            .expect("describe")
            .table
            .expect("table");
        let sse = description.sse_description.expect("SSE is on");
        assert_eq!(
            sse.sse_type.map(|t| t.as_str().to_owned()).as_deref(),
            Some("KMS"),
            "{table}"
        );
        assert_eq!(
            description.deletion_protection_enabled,
            Some(true),
            "{table}"
        );
        let ttl = stack
            .dynamodb
            .describe_time_to_live()
            .table_name(&name)
            .send()
            .await
            .expect("ttl")
            .time_to_live_description
            .expect("ttl description");
        // Tenants and keys do not expire; everything else does.
        let expected = (table != "TenantsTable").then_some("expires_at");
        assert_eq!(ttl.attribute_name.as_deref(), expected, "{table}");
        let backups = stack
            .dynamodb
            .describe_continuous_backups()
            .table_name(&name)
            .send()
            .await
            .expect("backups")
            .continuous_backups_description
            .expect("backups description");
        let pitr = backups
            .point_in_time_recovery_description
            .and_then(|d| d.point_in_time_recovery_status)
            .map(|s| s.as_str().to_owned());
        assert_eq!(pitr.as_deref(), Some("ENABLED"), "{table}");
    }
    let mut routes: Vec<String> = stack
        .stack
        .functions
        .iter()
        .flat_map(|f| {
            f.routes
                .iter()
                .map(|r| format!("{} {} {}", r.method, r.path, r.authorized))
        })
        .collect();
    routes.sort();
    assert_eq!(
        routes,
        [
            "DELETE /v1/keys/{key_id} true",
            "GET /v1/accounts/{account}/usage true",
            "GET /v1/audit true",
            "GET /v1/audit/verify true",
            "GET /v1/keys true",
            "POST /v1/events true",
            "POST /v1/keys true",
        ]
    );
    let authorizer = stack.stack.authorizer.as_ref().expect("an authorizer");
    assert_eq!(authorizer.function_logical_id, "AuthorizerFunction");
    assert_eq!(authorizer.identity_headers, ["authorization"]);
    assert_eq!(authorizer.cache_seconds, 30);
    stack.shutdown().await;
}

#[tokio::test]
async fn the_bucket_is_versioned_encrypted_and_private() {
    let stack = TestStack::start().await;
    let sdk = vigil_local::emulator_config(&vigil_tests::emulator_url()).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let bucket = stack.table("DataBucket");
    // moto answers GetBucketVersioning with an XML root the SDK rejects: read it raw.
    let versioning = reqwest::get(format!(
        "{}/{bucket}?versioning",
        vigil_tests::emulator_url()
    ))
    .await
    .expect("versioning")
    .text()
    .await
    .expect("body");
    assert!(
        versioning.contains("<Status>Enabled</Status>"),
        "{versioning}"
    );
    // The TLS-only bucket policy is in force: a write over plain HTTP is refused.
    let put = s3
        .put_object()
        .bucket(&bucket)
        .key("probe")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"x"))
        .send()
        .await;
    let status = put
        .err()
        .and_then(|e| e.raw_response().map(|r| r.status().as_u16()));
    assert_eq!(status, Some(403));
    let encryption = s3
        .get_bucket_encryption()
        .bucket(&bucket)
        .send()
        .await
        .expect("encryption")
        .server_side_encryption_configuration
        .expect("configuration");
    let rule = &encryption.rules()[0];
    let default = rule
        .apply_server_side_encryption_by_default()
        .expect("default");
    assert_eq!(default.sse_algorithm().as_str(), "aws:kms");
    assert!(default
        .kms_master_key_id()
        .is_some_and(|key| key.contains(":key/")));
    let block = s3
        .get_public_access_block()
        .bucket(&bucket)
        .send()
        .await
        .expect("public access block")
        .public_access_block_configuration
        .expect("configuration");
    assert_eq!(
        (
            block.block_public_acls,
            block.block_public_policy,
            block.ignore_public_acls,
            block.restrict_public_buckets
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );
    stack.shutdown().await;
}
