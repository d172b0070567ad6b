//! The local stack builds what template.yaml declares: encrypted tables with TTL,
//! PITR and deletion protection, a versioned, encrypted, private bucket, and the routes.

use reqwest::Method;
use vigil_shared::domain::access::Scope;
use vigil_tests::{api_call, hours_ago, TestStack};

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
            "DELETE /v1/alerts/silences/{silence_id} true",
            "DELETE /v1/alerts/webhook true",
            "DELETE /v1/keys/{key_id} true",
            "GET /dashboard false",
            "GET /dashboard/{asset} false",
            "GET /v1/accounts true",
            "GET /v1/accounts/{account} true",
            "GET /v1/accounts/{account}/usage true",
            "GET /v1/alerts true",
            "GET /v1/alerts/notifications true",
            "GET /v1/alerts/rules true",
            "GET /v1/alerts/silences true",
            "GET /v1/alerts/webhook true",
            "GET /v1/audit true",
            "GET /v1/audit/verify true",
            "GET /v1/keys true",
            "GET /v1/privacy/register true",
            "GET /v1/privacy/requests true",
            "GET /v1/privacy/requests/{request_id} true",
            "GET /v1/retention/records true",
            "POST /v1/alerts/silences true",
            "POST /v1/events true",
            "POST /v1/keys true",
            "POST /v1/privacy/requests true",
            "PUT /v1/accounts/{account} true",
            "PUT /v1/alerts/rules true",
            "PUT /v1/alerts/webhook true",
            "PUT /v1/subjects/{user} true",
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
    // The emulator cannot evaluate the TLS-only statement (it would deny every
    // request), so the local stack leaves it out and the bucket takes writes,
    // encrypted with the stack's key, as the monthly export will need.
    let put = s3
        .put_object()
        .bucket(&bucket)
        .key("probe")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"x"))
        .send()
        .await
        .expect("the local bucket accepts writes");
    assert_eq!(
        put.server_side_encryption().map(|s| s.as_str()),
        Some("aws:kms")
    );
    let read = s3
        .get_object()
        .bucket(&bucket)
        .key("probe")
        .send()
        .await
        .expect("read back");
    let bytes = read.body.collect().await.expect("body").into_bytes();
    assert_eq!(&bytes[..], b"x");
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

/// The TLS-only statement is checked where it lives: in template.yaml (the
/// emulator cannot enforce it, see docs/decisions/0001).
#[test]
fn the_template_denies_every_request_without_tls() {
    let text = std::fs::read_to_string(vigil_local::repo_template()).expect("template");
    let template = vigil_local::Template::parse(&text).expect("template parses");
    let buckets: Vec<&str> = template
        .of_kind("AWS::S3::Bucket")
        .map(|r| r.logical_id.as_str())
        .collect();
    assert!(buckets.len() >= 3, "{buckets:?}");
    for bucket in buckets {
        let policy = template
            .of_kind("AWS::S3::BucketPolicy")
            .find(|r| format!("{:?}", r.properties["Bucket"]).contains(bucket))
            .unwrap_or_else(|| panic!("{bucket} has a bucket policy"));
        let statements = policy.properties["PolicyDocument"]["Statement"]
            .as_sequence()
            .expect("statements");
        let deny = statements
            .iter()
            .find(|s| s["Sid"].as_str() == Some("DenyInsecureTransport"))
            .expect("a TLS-only statement");
        assert_eq!(deny["Effect"].as_str(), Some("Deny"));
        assert_eq!(deny["Principal"].as_str(), Some("*"));
        assert_eq!(deny["Action"].as_str(), Some("s3:*"));
        assert_eq!(
            deny["Condition"]["Bool"]["aws:SecureTransport"].as_str(),
            Some("false")
        );
        // Both the bucket and every object in it.
        let resources = format!("{:?}", deny["Resource"]);
        assert!(resources.contains(&format!("{bucket}.Arn")), "{resources}");
        assert!(
            resources.contains(&format!("${{{bucket}.Arn}}/*")),
            "{resources}"
        );
    }
    // And it is the one statement the local stack leaves out.
    let document = serde_json::json!({"Statement": [
        {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        {"Sid": "Other", "Effect": "Deny", "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}}
    ]});
    let local = vigil_local::provision::local_bucket_policy(&document).expect("one left");
    assert_eq!(local["Statement"].as_array().map(Vec::len), Some(1));
    assert_eq!(local["Statement"][0]["Sid"], "Other");
}

/// API Gateway decodes the path before routing and hands parameters decoded.
#[tokio::test]
async fn percent_encoded_path_parameters_reach_the_handler_decoded() {
    let stack = TestStack::start().await;
    let time = hours_ago(1, 0);
    let (status, body) = stack
        .post_events(
            "decode",
            &serde_json::json!({"events": [api_call("d-1", "acme-corp", &time, 200)]}),
        )
        .await;
    assert_eq!(
        (status, &body["accepted"]),
        (200, &serde_json::json!(1)),
        "{body}"
    );
    let reader = stack.issue_key("decode", &[Scope::Read]).await;
    let (status, usage) = stack
        .call(
            Method::GET,
            "/v1/accounts/acme%2Dcorp/usage",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["account"], "acme-corp");
    assert_eq!(usage["hours"][0]["calls"], 1, "{usage}");
    // `%2F` is decoded before routing: no route has that many segments.
    let (status, _) = stack
        .call(
            Method::GET,
            "/v1/accounts/acme%2Fcorp/usage",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(status, 404);
    stack.shutdown().await;
}
