//! `vigil-local`: the local stack (started by `infra/run`), and a client of it.
//!
//! - `vigil-local serve`: binds the API port first (a busy port fails at once,
//!   named, before anything is created or written), creates template.yaml's
//!   resources in the emulator, hosts the functions, writes the state file, and
//!   serves until SIGINT, SIGTERM or SIGHUP. `--schedules` fires `rate(...)` schedules.
//! - `vigil-local invoke <Function> [--event FILE]`: runs one function of the
//!   running stack with an event (a scheduled job, say) and prints its output.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vigil_local::{bind, provision_from, serve, LocalApi, Registry};
use vigil_shared::stack_state::{read_event, StackState};

#[derive(Debug, Parser)]
#[command(
    name = "vigil-local",
    about = "vigil's local stack: emulator resources, functions, routes, schedules"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Creates the stack in the emulator and serves it until stopped.
    Serve {
        #[arg(long, default_value = "http://127.0.0.1:4566")]
        emulator: String,
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: SocketAddr,
        #[arg(long, default_value = "vigil-local")]
        stack: String,
        #[arg(long, default_value = "template.yaml")]
        template: PathBuf,
        /// Written once the stack is up; removed when it stops.
        #[arg(long, default_value = ".local/stack.json")]
        state_file: PathBuf,
        /// Fire the template's rate(...) schedules on a timer.
        #[arg(long)]
        schedules: bool,
    },
    /// Invokes a function of the running stack with an event and prints its output.
    Invoke {
        /// The function's logical id in template.yaml, e.g. IngestFunction.
        function: String,
        /// A JSON file holding the event ("-" for standard input; default {}).
        #[arg(long)]
        event: Option<PathBuf>,
        #[arg(long, default_value = ".local/stack.json")]
        state_file: PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve {
            emulator,
            listen,
            stack,
            template,
            state_file,
            schedules,
        } => run_stack(emulator, listen, stack, template, state_file, schedules).await,
        Command::Invoke {
            function,
            event,
            state_file,
        } => invoke(&function, event, &state_file).await,
    };
    match outcome {
        Ok(code) => code,
        Err(message) => {
            eprintln!("vigil-local: {message}");
            ExitCode::FAILURE
        }
    }
}

type Outcome = Result<ExitCode, Box<dyn std::error::Error>>;

async fn run_stack(
    emulator: String,
    listen: SocketAddr,
    stack_name: String,
    template: PathBuf,
    state_file: PathBuf,
    run_schedules: bool,
) -> Outcome {
    // First: a busy port must fail before anything is created or written.
    let listener = bind(listen).await?;
    let metrics = state_file.with_file_name("metrics.jsonl");
    if let Some(dir) = metrics.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    vigil_shared::telemetry::init_local_logging(&metrics)?;
    let stack = provision_from(&template, &emulator, &stack_name).await?;
    let api = LocalApi::build(&stack, &emulator, &Registry::standard()).await?;
    let server = serve(api, listener)?;
    let timers = if run_schedules {
        vigil_local::schedule::start(server.api.clone(), 1)
    } else {
        Vec::new()
    };
    let config = stack.config(&emulator);
    let demo = vigil_shared::app::keys::KeySpec {
        name: "local demo".into(),
        scopes: vigil_shared::domain::access::Scope::ALL.to_vec(),
        // An admin key's default lifetime; keys it issues cannot outlive it.
        expires_at: time::OffsetDateTime::now_utc() + time::Duration::days(30),
    };
    let demo_key = vigil_local::issue_key(&config, "demo", demo)
        .await
        .map_err(|e| e.to_string())?;
    let state = StackState {
        api_url: format!("http://{}", server.addr),
        emulator: emulator.clone(),
        region: stack.region.clone(),
        stack: stack.stack_name.clone(),
        resources: stack
            .resources
            .iter()
            .map(|(id, physical)| (id.clone(), physical.reference.clone()))
            .collect(),
        routes: server
            .api
            .routes()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect(),
        functions: server.api.function_names().map(str::to_owned).collect(),
        schedules: server
            .api
            .schedules
            .iter()
            .map(|s| format!("{}: {}", s.function, s.schedule.expression))
            .collect(),
    };
    state.write(&state_file)?;
    print_banner(&state, &state_file, &demo_key, run_schedules);

    stopped().await?;
    println!("\nstopping");
    for timer in timers {
        timer.abort();
    }
    server.shutdown().await;
    // The emulator's state is gone with it: a stale file would mislead `--local`.
    let _ = std::fs::remove_file(&state_file);
    Ok(ExitCode::SUCCESS)
}

/// Waits for SIGINT (Ctrl-C), SIGTERM or SIGHUP.
async fn stopped() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = terminate.recv() => Ok(()),
        _ = hangup.recv() => Ok(()),
    }
}

fn print_banner(state: &StackState, state_file: &std::path::Path, demo_key: &str, schedules: bool) {
    let api = &state.api_url;
    println!("\nvigil local stack is up");
    println!("  API:       {api}");
    println!(
        "  emulator:  {} (region {}; its state lives in memory and ends with it)",
        state.emulator, state.region
    );
    for route in &state.routes {
        println!("  route:     {route}");
    }
    for function in &state.functions {
        println!("  function:  {function}");
    }
    for schedule in &state.schedules {
        let how = if schedules {
            "fired on a timer"
        } else {
            "not fired (start with --schedules, or invoke by hand)"
        };
        println!("  schedule:  {schedule} ({how})");
    }
    for (id, name) in &state.resources {
        if id.ends_with("Table") || id.ends_with("Bucket") {
            println!("  {id:<16} {name}");
        }
    }
    println!("  state:     {}", state_file.display());
    println!(
        "  metrics:   {} (EMF lines, kept apart from the log)",
        state_file.with_file_name("metrics.jsonl").display()
    );
    println!(
        "\nDemo tenant \"demo\", key with every scope (local only, shown once):\n  {demo_key}"
    );
    println!("More keys: ./infra/vigil-ops --local key issue --tenant demo --scopes ingest");
    println!("\nTry it:\n");
    println!("  curl -s -X POST {api}/v1/events \\");
    println!("    -H 'content-type: application/json' -H 'authorization: Bearer {demo_key}' \\");
    println!("    -d '{{\"events\": [{{\"id\": \"e-1\", \"time\": \"{}\", \"source\": \"api_call\", \"account\": \"acme\", \"user\": \"u-42\", \"data\": {{\"endpoint\": \"/v1/pay\", \"method\": \"POST\", \"status\": 201, \"latency_ms\": 83, \"units\": 1}}}}]}}'",
        sample_time());
    println!("\n  curl -s {api}/v1/accounts/acme/usage -H 'authorization: Bearer {demo_key}'");
    println!("  curl -s {api}/v1/audit/verify -H 'authorization: Bearer {demo_key}'");
    println!("  ./infra/vigil-ops --local job invoke AuditAnchorFunction   # anchor the audit chain heads now");
    println!("  curl -s '{api}/v1/accounts?sort=health' -H 'authorization: Bearer {demo_key}'");
    println!("  curl -s -X POST {api}/v1/privacy/requests -H 'content-type: application/json' \\");
    println!("    -H 'authorization: Bearer {demo_key}' -d '{{\"type\": \"access\", \"subject\": \"u-42\"}}'   # a data subject's rights");
    println!("  curl -s {api}/v1/alerts/rules -H 'authorization: Bearer {demo_key}'   # the alert rules in force");
    println!("  ./infra/vigil-ops --local job invoke AlertsFunction        # evaluate alerts now (then GET /v1/alerts)");
    println!("\nThe API's contract (no key needed): {api}/openapi.yaml, {api}/openapi.json");
    println!("The dashboard: {api}/dashboard (give it a key with the read scope; ./infra/run --demo fills it with demo customers)");
    println!("\nCtrl-C stops the server and the emulator.");
}

/// An hour ago, on the hour: inside the accepted time window whenever the stack starts.
fn sample_time() -> String {
    let t = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    format!(
        "{:04}-{:02}-{:02}T{:02}:00:00Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour()
    )
}

async fn invoke(function: &str, event: Option<PathBuf>, state_file: &std::path::Path) -> Outcome {
    let state = StackState::read(state_file)?;
    let event = read_event(event.as_deref())?;
    let invocation = state.invoke(function, &event).await?;
    println!("{}", invocation.output);
    Ok(if invocation.succeeded() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "vigil-local: {function} failed (HTTP {})",
            invocation.status
        );
        ExitCode::FAILURE
    })
}
