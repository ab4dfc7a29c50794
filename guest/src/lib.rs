//! The cloister agent as a library: everything PID 1 runs, so that the
//! binary (`main.rs`) stays a thin entry point and the fuzz targets in
//! `fuzz/` drive the same parsers and the same policy gate the agent uses
//! (initdata, ttrpc requests through [`policy::PolicyGate`]).
pub mod config;
pub mod guest_stats;
pub mod image_config;
pub mod images;
pub mod init;
pub mod initdata;
pub mod keys;
pub mod metrics;
pub mod net;
pub mod policy;
pub mod reaper;
pub mod rpc;
pub mod sandbox;
pub mod server;
pub mod switch_root;
pub mod tee;
