//! containerd-shim-cloister-v2: containerd's shim (task API v2) for pods
//! that run in a measured cloister VM. The same binary serves the pod's
//! detached VMM process (`vmm-serve`), so that the VM outlives a shim
//! restart.
mod errors;
mod io;
mod logging;
mod service;
mod shim;
mod state;
mod task;

const RUNTIME_ID: &str = "io.containerd.cloister.v2";

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).and_then(|a| a.to_str()) == Some("vmm-serve") {
        let Some(spec) = args.get(2) else {
            eprintln!("usage: containerd-shim-cloister-v2 vmm-serve VMM.JSON");
            std::process::exit(2);
        };
        std::process::exit(cloister_host::hypervisor::vmm_process::serve(
            std::path::Path::new(spec),
        ));
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{RUNTIME_ID}: starting the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let config = containerd_shim::Config {
        no_setup_logger: true,
        default_log_level: "info".into(),
        no_reaper: true,
        no_sub_reaper: true,
    };
    rt.block_on(containerd_shim::asynchronous::run::<shim::CloisterShim>(
        RUNTIME_ID,
        Some(config),
    ));
}
