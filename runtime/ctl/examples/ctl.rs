//! `dialtone ctl` on its own, for trying the client before (or without) the
//! `dialtone` binary: `cargo run -p dialtone-ctl --example ctl -- -x status`.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "dialtone-ctl",
    about = "An fs_cli-like client of the Dialtone event socket"
)]
struct Cli {
    #[command(flatten)]
    ctl: dialtone_ctl::CtlArgs,
}

fn main() {
    std::process::exit(dialtone_ctl::run(Cli::parse().ctl));
}
