//! `trainer`: writes the synthetic set, trains, evaluates, exports and runs apparent-age streams.
//! The binary parses the command line and dispatches; the commands are in `trainer::cli`.

use clap::Parser;

fn main() {
    std::process::exit(trainer::cli::run(trainer::cli::Cli::parse()));
}
