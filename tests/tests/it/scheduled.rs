//! Scheduled functions in the local stack: a test template declares a job with
//! `Schedule` and `ScheduleV2` events, the test registers the job's handler, and
//! the local stack invokes it through Lambda's Invoke API and on a timer. No
//! placeholder function goes into template.yaml.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vigil_local::{provision_from, LocalApi, Registry};
use vigil_shared::function::Function;
use vigil_shared::stack_state::invoke;
use vigil_tests::TestStack;

/// A job that records every event it is invoked with.
#[derive(Clone, Default)]
struct RecordingJob {
    events: Arc<Mutex<Vec<Value>>>,
}

impl RecordingJob {
    fn events(&self) -> Vec<Value> {
        self.events.lock().expect("lock").clone()
    }
}

impl Function for RecordingJob {
    type Event = Value;
    type Output = Value;
    type Error = Infallible;

    async fn call(&self, event: Value) -> Result<Value, Infallible> {
        let mut events = self.events.lock().expect("lock");
        events.push(event);
        Ok(json!({"runs": events.len()}))
    }
}

const TEMPLATE: &str = r#"
Transform: AWS::Serverless-2016-10-31
Resources:
  NightlyJob:
    Type: AWS::Serverless::Function
    Metadata:
      BuildMethod: rust-cargolambda
      BuildProperties:
        Binary: test-job
    Properties:
      CodeUri: .
      Events:
        EveryMinute:
          Type: Schedule
          Properties:
            Schedule: rate(1 minute)
            Input: '{"period": "2026-11", "dry_run": true}'
        Monthly:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: cron(0 3 1 * ? *)
"#;

fn write_template(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("{name}-{}.yaml", std::process::id()));
    std::fs::write(&path, text).expect("write the test template");
    path
}

fn registry(job: &RecordingJob) -> Registry {
    let mut registry = Registry::default();
    let job = job.clone();
    registry.register("test-job", move |_config| {
        let job = job.clone();
        async move { Ok::<_, Infallible>(job) }
    });
    registry
}

#[tokio::test]
async fn a_scheduled_function_is_invoked_through_the_local_stack() {
    let job = RecordingJob::default();
    let template = write_template("scheduled", TEMPLATE);
    let stack = TestStack::start_with(&template, &registry(&job)).await;
    let api = stack.local_api();
    let schedules: Vec<String> = api
        .schedules
        .iter()
        .map(|s| {
            format!(
                "{} {} {}",
                s.function, s.schedule.kind, s.schedule.expression
            )
        })
        .collect();
    assert_eq!(
        schedules,
        [
            "NightlyJob Schedule rate(1 minute)",
            "NightlyJob ScheduleV2 cron(0 3 1 * ? *)"
        ]
    );

    // Lambda's Invoke API, over HTTP, with a given event.
    let event = json!({"now": "2026-12-01T03:00:00Z", "tenant": "acme"});
    let invocation = invoke(&stack.api, "NightlyJob", &event)
        .await
        .expect("invoke");
    assert!(invocation.succeeded(), "{invocation:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&invocation.output).expect("json"),
        json!({"runs": 1})
    );
    assert_eq!(job.events(), [event]);
    let missing = invoke(&stack.api, "NoSuchJob", &json!({}))
        .await
        .expect("invoke");
    assert_eq!(missing.status, 404);

    // The schedule's timer (sped up 600 times: a minute is 100 ms) sends its Input;
    // the cron schedule is not run on a timer.
    let timers = vigil_local::schedule::start(api.clone(), 600);
    assert_eq!(timers.len(), 1);
    let started = Instant::now();
    while job.events().len() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the schedule did not fire"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for timer in timers {
        timer.abort();
    }
    let fired = &job.events()[1..];
    assert!(fired
        .iter()
        .all(|e| *e == json!({"period": "2026-11", "dry_run": true})));

    // Without an Input, a `Schedule` sends EventBridge's scheduled event.
    let monthly = api.scheduled_event(
        &api.schedules[0],
        time::macros::datetime!(2026-12-01 03:00 UTC),
    );
    assert_eq!(monthly["period"], "2026-11");
    let mut bare = api.schedules[0].clone();
    bare.schedule.input = None;
    let scheduled = api.scheduled_event(&bare, time::macros::datetime!(2026-12-01 03:00 UTC));
    assert_eq!(scheduled["detail-type"], "Scheduled Event");
    assert_eq!(scheduled["source"], "aws.events");
    assert_eq!(scheduled["time"], "2026-12-01T03:00:00Z");
    stack.shutdown().await;
}

#[tokio::test]
async fn unknown_event_types_and_unregistered_binaries_are_errors() {
    let queue = TEMPLATE.replace("Type: ScheduleV2", "Type: SQS");
    let template = write_template("unknown-event", &queue);
    let error = provision_from(&template, &vigil_tests::emulator_url(), "unknown-event")
        .await
        .expect_err("an SQS event is not silently dropped");
    assert!(
        error.to_string().contains("Events.Monthly.Type SQS"),
        "{error}"
    );

    let template = write_template("unregistered", TEMPLATE);
    let stack = provision_from(&template, &vigil_tests::emulator_url(), "unregistered")
        .await
        .expect("provision");
    let error = LocalApi::build(&stack, &vigil_tests::emulator_url(), &Registry::standard())
        .await
        .err()
        .expect("no handler for test-job");
    assert!(
        error
            .to_string()
            .contains("no local handler for binary test-job"),
        "{error}"
    );
}

#[tokio::test]
async fn a_missing_table_setting_fails_the_cold_start_naming_it() {
    let template = write_template(
        "missing-setting",
        &TEMPLATE.replace("Binary: test-job", "Binary: vigil-dashboard"),
    );
    let stack = provision_from(&template, &vigil_tests::emulator_url(), "missing-setting")
        .await
        .expect("provision");
    let error = LocalApi::build(&stack, &vigil_tests::emulator_url(), &Registry::standard())
        .await
        .err()
        .expect("the dashboard needs its table");
    assert_eq!(
        error.to_string(),
        "function NightlyJob: environment variable VIGIL_AGGREGATES_TABLE is not set"
    );
}
