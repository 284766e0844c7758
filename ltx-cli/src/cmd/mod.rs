//! One module per subcommand: `Args` (clap) and `run(args, out)`.

pub mod apply;
pub mod checksum;
pub mod compact;
pub mod diff;
pub mod dump;
pub mod encode_db;
pub mod list;
pub mod page;
pub mod quickstart;
pub mod restore;
pub mod sql;
pub mod verify;
pub mod wal;
