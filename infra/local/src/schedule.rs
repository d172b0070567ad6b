//! Fires the template's `rate(...)` schedules on a timer, when asked
//! (`vigil-local --schedules`): the emulator stores schedules but never fires
//! them. `cron(...)` schedules are not run on a timer; run them by hand with
//! `vigil-local invoke <Function>`.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::server::{LocalApi, ScheduleEntry};

/// The period of a `rate(N unit)` expression.
pub fn rate_period(expression: &str) -> Option<Duration> {
    let inner = expression.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let (count, unit) = inner.trim().split_once(' ')?;
    let count: u64 = count.parse().ok().filter(|n| *n > 0)?;
    let seconds = match unit.trim() {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(count * seconds))
}

/// Starts one timer per enabled `rate` schedule; each tick invokes the function
/// with what the schedule sends. `speedup` divides the periods (1 in real use).
pub fn start(api: Arc<LocalApi>, speedup: u32) -> Vec<JoinHandle<()>> {
    let mut timers = Vec::new();
    for entry in api.schedules.clone() {
        let label = format!("{}.{}", entry.function, entry.schedule.name);
        let Some(period) = rate_period(&entry.schedule.expression) else {
            tracing::info!(
                schedule = label,
                expression = entry.schedule.expression,
                "not run on a timer: invoke it by hand"
            );
            continue;
        };
        if !entry.schedule.enabled {
            tracing::info!(schedule = label, "disabled in the template");
            continue;
        }
        let period = period / speedup.max(1);
        tracing::info!(
            schedule = label,
            period_ms = period.as_millis() as u64,
            "schedule armed"
        );
        let api = api.clone();
        timers.push(tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                ticks.tick().await;
                fire(&api, &entry, &label).await;
            }
        }));
    }
    timers
}

async fn fire(api: &LocalApi, entry: &ScheduleEntry, label: &str) {
    let event = api.scheduled_event(entry, time::OffsetDateTime::now_utc());
    match api.invoke(&entry.function, event).await {
        Ok(_) => tracing::info!(schedule = label, "scheduled run done"),
        Err(error) => tracing::warn!(schedule = label, error = %error, "scheduled run failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_read_like_eventbridge() {
        assert_eq!(rate_period("rate(1 minute)"), Some(Duration::from_secs(60)));
        assert_eq!(
            rate_period("rate(5 minutes)"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            rate_period("rate(2 hours)"),
            Some(Duration::from_secs(7200))
        );
        assert_eq!(rate_period("rate(0 minutes)"), None);
        assert_eq!(rate_period("cron(0 3 1 * ? *)"), None);
    }
}
