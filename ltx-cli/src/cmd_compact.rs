//! `ltx compact` (to be implemented).

use std::io::Write;

use anyhow::{bail, Result};

/// Arguments of `ltx compact`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs the command.
pub fn run(_args: Args, _out: &mut dyn Write) -> Result<()> {
    bail!("ltx compact: not implemented yet")
}
