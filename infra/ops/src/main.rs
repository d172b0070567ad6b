//! `vigil-ops`: see `lib.rs`.

use clap::Parser;
use vigil_ops::{connect, load_config, run, run_job, Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let local = cli.local.then_some(&cli.state_file);
    let outcome = async {
        if let Command::Job { action } = cli.command {
            return run_job(action, local, &mut std::io::stdout()).await;
        }
        let config = load_config(local)?;
        let tables = connect(&config).await?;
        run(cli.command, &tables, &mut std::io::stdout()).await
    }
    .await;
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vigil-ops: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
