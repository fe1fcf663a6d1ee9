//! `sediment`: the broker and the commands around it.
//!
//! `sediment serve` runs a broker; `topics` administers topics; `bench` measures a running
//! broker (and the disk under it) so performance claims come with numbers.

mod acls;
mod admin;
mod bench;
mod bench_tier;
mod cluster;
mod configs;
mod groups;
mod listeners;
mod records;
mod serve;
mod settings;
mod topics;
mod users;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

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
    /// A cluster's brokers, leaders per broker, under-replicated and offline partitions.
    Cluster(cluster::ClusterArgs),
    /// Measure produce and consume throughput and produce latency against a running broker.
    Bench(bench::BenchArgs),
    /// Describe or alter topic and broker configs (kafka-configs.sh).
    Configs(configs::ConfigsArgs),
    /// Manage ACLs (who may do what, with --authorizer acl; kafka-acls.sh).
    Acls(acls::AclsArgs),
    /// Manage SCRAM users (the credentials SASL listeners check).
    Users(users::UsersArgs),
    /// Produce records read from stdin, one per line (kcat -P).
    Produce(records::ProduceArgs),
    /// Print a topic's records as text or JSON lines (kcat -C).
    Consume(records::ConsumeArgs),
    /// Print a shell completion script: `sediment completion bash > /etc/bash_completion.d/sediment`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// The command line, with each `serve` flag's default added to its help.
fn command() -> clap::Command {
    Cli::command().mut_subcommand("serve", settings::with_defaults)
}

fn main() -> std::process::ExitCode {
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if !matches!(cli.command, Command::Serve(_)) {
        // Admin and record commands end quietly when their output pipe closes (`| head`), as
        // Unix tools do, instead of panicking in println!. Sockets are unaffected (Rust sends
        // with MSG_NOSIGNAL); `serve` keeps SIGPIPE ignored.
        // SAFETY: called before any thread is started; SIG_DFL is a valid disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let json = matches!(&cli.command, Command::Serve(a) if a.log_format == Some(settings::LogFormat::Json));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    if json {
        // One JSON object per line: timestamp, level, target, message and the event's fields.
        logs.json().with_current_span(false).init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
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
            Command::Cluster(args) => cluster::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Configs(args) => configs::run(args).await,
            Command::Users(args) => users::run(args).await,
            Command::Acls(args) => acls::run(args).await,
            Command::Produce(args) => records::produce(args).await,
            Command::Consume(args) => records::consume(args).await,
            Command::Completion { shell } => {
                clap_complete::generate(shell, &mut command(), "sediment", &mut std::io::stdout());
                Ok(())
            }
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

#[cfg(test)]
mod readme_tests {
    /// README's settings table and `sediment serve --help` agree: the same flags, the same
    /// environment variables, the same defaults (both come from one table of constants, so
    /// this fails when the README drifts).
    #[test]
    fn readme_settings_table_matches_serve_help() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
                .expect("README.md");
        let mut rows = std::collections::BTreeMap::new();
        for line in readme.lines().filter(|l| l.starts_with("| `--")) {
            let cells: Vec<&str> = line
                .split(" | ")
                .map(|c| c.trim_matches(['|', ' ']))
                .collect();
            assert!(cells.len() >= 4, "short row: {line}");
            let plain = |c: &str| c.replace('`', "");
            rows.insert(plain(cells[0]), (plain(cells[1]), plain(cells[2])));
        }
        let mut cmd = super::command();
        let serve = cmd.find_subcommand_mut("serve").expect("serve");
        let help = serve.render_long_help().to_string();
        let mut flags = Vec::new();
        for arg in serve.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "config" || long == "help" {
                continue;
            }
            let flag = format!("--{long}");
            let (env, default) = rows
                .get(&flag)
                .unwrap_or_else(|| panic!("{flag} is missing from README's settings table"));
            let want_env = arg.get_env().map(|e| e.to_string_lossy().to_string());
            assert_eq!(Some(env.clone()), want_env, "{flag}: environment variable");
            let arg_help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(
                arg_help.ends_with(&format!("[default: {default}]")),
                "{flag}: README says default {default:?}, --help says {arg_help:?}"
            );
            assert!(help.contains(&format!("[default: {default}]")));
            flags.push(flag);
        }
        for flag in rows.keys() {
            assert!(
                flags.contains(flag),
                "README lists {flag}, which serve does not take"
            );
        }
    }
}
