//! The `looptree` command: run, serve, bench.

mod bench_offline;
mod cli;
mod device;
mod device_check;
mod run_cmd;
mod serve;
mod setup;
mod size;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    setup::init_logging(cli.verbose);
    let result = match cli.command {
        cli::Command::Run(args) => run_cmd::run(args),
        cli::Command::Serve(args) => serve::serve(args),
        cli::Command::DeviceCheck(args) => device_check::run(args),
        cli::Command::Bench(args) if args.offline.offline => {
            bench_offline::run(&args.model, &args.offline)
        }
        cli::Command::Bench(args) => {
            looptree_benches::run(&args.online, args.offline.json.as_deref()).map(|_| ())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, no backtrace: these are the user's mistakes or missing files.
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            std::process::ExitCode::FAILURE
        }
    }
}
