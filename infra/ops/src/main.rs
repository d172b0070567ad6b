//! `vigil-ops`: see `lib.rs`.

use clap::Parser;
use vigil_ops::{connect, load_config, run, Cli};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let outcome = async {
        let config = load_config(cli.local.then_some(&cli.state_file))?;
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
