use clap::Subcommand;
use cloister_protocol::TeeType;

use super::{runtime, VmArgs};
use cloister_host::sandbox::Sandbox;

#[derive(Subcommand)]
pub enum VmCommand {
    /// Boot a VM, wait for the agent, print the guest details and the
    /// milliseconds from launch to agent-ready, then shut the VM down.
    Boot(VmArgs),
}

pub fn run(cmd: VmCommand) -> anyhow::Result<()> {
    match cmd {
        VmCommand::Boot(args) => boot(args),
    }
}

fn boot(args: VmArgs) -> anyhow::Result<()> {
    let opts = args.boot_options()?;
    runtime()?.block_on(async {
        let sb = Sandbox::boot(&opts).await?;
        let details = sb.details().await;
        let ready_ms = sb.ready_after.as_millis();
        let accel = sb.vm.accel;
        sb.shutdown();
        let d = details?;
        let tee = match d.tee.enum_value() {
            Ok(TeeType::TEE_TYPE_SNP) => "snp",
            Ok(TeeType::TEE_TYPE_TDX) => "tdx",
            Ok(TeeType::TEE_TYPE_SIM) => "sim (development only)",
            Ok(TeeType::TEE_TYPE_NONE) => "none",
            _ => "unknown",
        };
        println!("agent version:   {}", d.agent_version);
        println!("kernel version:  {}", d.kernel_version);
        println!("tee:             {tee}");
        println!("agent is init:   {}", d.is_init);
        println!("guest memory:    {} KiB", d.memory_total_kib);
        println!("guest cpus:      {}", d.online_cpus);
        println!("accelerator:     {}", accel.name());
        println!("agent ready in:  {ready_ms} ms (launch to Health reply)");
        Ok(())
    })
}
