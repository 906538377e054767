//! The `tooz` command.

mod drivers;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Distributed coordination from the shell: locks, elections, groups, partitions.
#[derive(Parser)]
#[command(name = "tooz", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every driver: scheme, aliases, availability, characteristics, supported API.
    Drivers {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Drivers { json } => {
            let entries = tooz::drivers::registry();
            if json {
                println!("{}", drivers::json(&entries));
            } else {
                print!("{}", drivers::table(&entries));
            }
        }
    }
    ExitCode::SUCCESS
}
