//! `vigil-local`: creates template.yaml's resources in the emulator and serves the
//! API with the real handlers until Ctrl-C. Started by `infra/run`.

use std::net::SocketAddr;
use std::path::PathBuf;

use vigil_local::{provision_from, start, LocalApi};

struct Args {
    emulator: String,
    listen: SocketAddr,
    stack: String,
    template: PathBuf,
    state_file: PathBuf,
}

const USAGE: &str = "usage: vigil-local [--emulator URL] [--listen ADDR] [--stack NAME] [--template PATH] [--state-file PATH]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        emulator: "http://127.0.0.1:4566".into(),
        listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
        stack: "vigil-local".into(),
        template: PathBuf::from("template.yaml"),
        state_file: PathBuf::from(".local/stack.json"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--emulator" => args.emulator = value()?,
            "--listen" => {
                args.listen = value()?
                    .parse()
                    .map_err(|_| format!("--listen: expected HOST:PORT\n{USAGE}"))?
            }
            "--stack" => args.stack = value()?,
            "--template" => args.template = PathBuf::from(value()?),
            "--state-file" => args.state_file = PathBuf::from(value()?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    vigil_shared::telemetry::init_logging();
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("vigil-local: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let stack = provision_from(&args.template, &args.emulator, &args.stack).await?;
    let api = LocalApi::build(&stack, &args.emulator).await?;
    let routes: Vec<String> = api
        .routes()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let server = start(api, args.listen).await?;
    let store = vigil_local::access_store(&stack, &args.emulator).await;
    let demo_key = vigil_local::issue_local_key(
        &store,
        "demo",
        &vigil_shared::domain::access::Scope::ALL,
        "local demo",
        None,
    )
    .await
    .map_err(|e| e.to_string())?;

    let mut resources: Vec<(String, String)> = stack
        .resources
        .iter()
        .map(|(id, physical)| (id.clone(), physical.reference.clone()))
        .collect();
    resources.sort();
    if let Some(dir) = args.state_file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let state = serde_json::json!({
        "api_url": format!("http://{}", server.addr),
        "emulator": args.emulator,
        "region": stack.region,
        "stack": stack.stack_name,
        "resources": resources.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "routes": routes,
    });
    std::fs::write(&args.state_file, serde_json::to_string_pretty(&state)?)?;

    println!("\nvigil local stack is up");
    println!("  API:       http://{}", server.addr);
    println!("  emulator:  {} (region {})", args.emulator, stack.region);
    for route in &routes {
        println!("  route:     {route}");
    }
    for (id, name) in &resources {
        if id.ends_with("Table") || id.ends_with("Bucket") {
            println!("  {id:<16} {name}");
        }
    }
    println!("  state:     {}", args.state_file.display());
    println!(
        "\nDemo tenant \"demo\", key with every scope (local only, shown once):\n  {demo_key}"
    );
    println!(
        "More keys: cargo run -q -p vigil-ops -- --local key issue --tenant demo --scopes ingest"
    );
    println!("\nTry it:\n");
    println!("  curl -s -X POST http://{}/v1/events \\", server.addr);
    println!("    -H 'content-type: application/json' -H 'authorization: Bearer {demo_key}' \\");
    println!("    -d '{{\"events\": [{{\"id\": \"e-1\", \"time\": \"{}\", \"source\": \"api_call\", \"account\": \"acme\", \"user\": \"u-42\", \"data\": {{\"endpoint\": \"/v1/pay\", \"method\": \"POST\", \"status\": 201, \"latency_ms\": 83, \"units\": 1}}}}]}}'",
        sample_time());
    println!(
        "\n  curl -s http://{}/v1/accounts/acme/usage -H 'authorization: Bearer {demo_key}'",
        server.addr
    );
    println!(
        "  curl -s http://{}/v1/audit/verify -H 'authorization: Bearer {demo_key}'",
        server.addr
    );
    println!("\nCtrl-C stops the server and the emulator.");

    tokio::signal::ctrl_c().await?;
    println!("\nstopping");
    server.shutdown().await;
    Ok(())
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
