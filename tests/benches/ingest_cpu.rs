//! CPU time of the ingest handler for a 500-event batch: parse, validate,
//! minimise, pseudonymise, encode DynamoDB items and the response. Storage is
//! excluded (EncodeOnlyStore does no I/O). `./infra/bench`.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use vigil_ingest::{handle, Deps};
use vigil_shared::crypto::SubjectLookup;
use vigil_shared::domain::Limits;
use vigil_shared::mocks::EncodeOnlyStore;

const BATCH: usize = 500;

fn request() -> ApiGatewayV2httpRequest {
    let events: Vec<_> = (0..BATCH)
        .map(|i| {
            json!({"id": format!("evt-{i:06}"), "time": "2026-11-01T10:15:00Z", "source": "api_call",
                   "account": format!("account-{}", i % 20), "user": format!("user-{}", i % 150),
                   "data": {"endpoint": "/v1/payments/authorize?trace=1", "method": "POST",
                            "status": if i % 17 == 0 { 503 } else { 201 }, "latency_ms": 40 + i % 400,
                            "units": 1, "client_ip": "203.0.113.7", "sdk": "rust"}})
        })
        .collect();
    vigil_shared::mocks::json_request_as("bench", "ingest", json!({ "events": events }).to_string())
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let deps = Deps {
        store: EncodeOnlyStore,
        subject_lookup: SubjectLookup::new([9; 32]),
        limits: Limits::default(),
        clock: || time::macros::datetime!(2026-11-01 12:00 UTC),
        emit_metrics: false,
        retention: Default::default(),
    };
    let request = request();
    let response = runtime.block_on(handle(&request, &deps));
    assert_eq!(
        response.status_code, 200,
        "the benchmark batch must be accepted"
    );
    println!(
        "request body: {} bytes for {BATCH} events",
        request.body.as_ref().map_or(0, String::len)
    );

    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("handler_500_events_no_storage", |b| {
        b.iter(|| runtime.block_on(handle(&request, &deps)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
