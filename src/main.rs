use clap::Parser;

/// mimalloc instead of the system allocator: a profile of `me` under load showed
/// glibc's malloc and free at 18% of the server's CPU; mimalloc's thread-local free
/// lists cut that (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
