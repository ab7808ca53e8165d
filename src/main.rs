use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // `.env` in the working directory, if any; real environment variables win.
    let _ = dotenvy::dotenv();
    let cli = authgraph::config::Cli::parse();
    match authgraph::server::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("authgraph: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
