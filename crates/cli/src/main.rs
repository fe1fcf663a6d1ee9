//! `sediment`: the broker and the commands around it.
//!
//! `sediment serve` runs a broker; `topics` administers topics; `bench` measures a running
//! broker (and the disk under it) so performance claims come with numbers.

mod admin;
mod bench;
mod bench_tier;
mod groups;
mod serve;
mod settings;
mod topics;

use clap::{Parser, Subcommand};

/// Survives decoding of absurd array lengths from the network (see the module's docs).
#[global_allocator]
static ALLOCATOR: sediment_protocol::alloc::LazyHuge = sediment_protocol::alloc::LazyHuge;

#[derive(Parser)]
#[command(
    name = "sediment",
    version,
    about = "A Kafka-compatible broker on object storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker. With no flags: a complete single-node broker on 127.0.0.1:9092 storing
    /// under ./sediment-data.
    Serve(Box<settings::ServeArgs>),
    /// List, create, describe and delete topics on a running broker.
    Topics(topics::TopicsArgs),
    /// List, describe, delete consumer groups and reset their offsets.
    Groups(groups::GroupsArgs),
    /// Measure produce and consume throughput and produce latency against a running broker.
    Bench(bench::BenchArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(*args).await,
            Command::Topics(args) => topics::run(args).await,
            Command::Groups(args) => groups::run(args).await,
            Command::Bench(args) => bench::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
