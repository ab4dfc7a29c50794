//! The checks of what a genuine report must also say: the guest policy allows
//! nothing the requirement forbids, and the TCB is at least the minimum.
use super::claims::{Policy, Tcb};
use super::product::Product;
use super::report::SnpReport;
use crate::check::Checks;
use crate::reference::{MinTcb, PolicyRequirement};
use crate::VerifyError;

/// The report's VMPL must be the one the reference values require, if any.
pub(crate) fn check_vmpl(
    got: u32,
    want: Option<u32>,
    checks: &mut Checks,
) -> Result<(), VerifyError> {
    match want {
        None => checks.skip("vmpl", format!("report VMPL is {got}; no VMPL required")),
        Some(want) if want == got => checks.pass("vmpl", format!("{want}")),
        Some(expected) => return Err(VerifyError::Vmpl { expected, got }),
    }
    Ok(())
}

pub(crate) fn check_policy(
    raw: u64,
    req: &PolicyRequirement,
    checks: &mut Checks,
) -> Result<(), VerifyError> {
    let p = Policy::decode(raw);
    let forbidden = [
        (p.debug_allowed && !req.allow_debug, "debug is allowed by the guest policy but not permitted (pass --allow-debug, or policy.allow_debug in the reference values)"),
        (p.migrate_ma_allowed && !req.allow_migration_agent, "a migration agent is allowed by the guest policy but not permitted (policy.allow_migration_agent)"),
        (p.smt_allowed && !req.allow_smt, "SMT is allowed by the guest policy but not permitted (policy.allow_smt)"),
        (!p.single_socket_required && req.require_single_socket, "the guest policy does not require a single socket, but that is required (policy.require_single_socket)"),
    ];
    if let Some((_, why)) = forbidden.iter().find(|(bad, _)| *bad) {
        return Err(VerifyError::Policy(format!("{why}; policy {}", p.raw)));
    }
    let yn = |b: bool| if b { "yes" } else { "no" };
    checks.pass(
        "policy",
        format!(
            "{}: debug {}, migration agent {}, SMT {}, single socket {}, ABI >= {}.{}",
            p.raw,
            yn(p.debug_allowed),
            yn(p.migrate_ma_allowed),
            yn(p.smt_allowed),
            yn(p.single_socket_required),
            p.abi_major,
            p.abi_minor
        ),
    );
    Ok(())
}

pub(super) fn check_min_tcb(
    report: &SnpReport,
    product: Product,
    min: Option<&MinTcb>,
    checks: &mut Checks,
) -> Result<(), VerifyError> {
    let tcb = Tcb::decode(report.reported_tcb, product);
    let Some(min) = min else {
        checks.skip(
            "minimum tcb",
            format!("no minimum given; REPORTED_TCB is {}", tcb.raw),
        );
        return Ok(());
    };
    let mut pairs = vec![
        ("bootloader", min.bootloader, tcb.bootloader),
        ("tee", min.tee, tcb.tee),
        ("snp", min.snp, tcb.snp),
        ("microcode", min.microcode, tcb.microcode),
    ];
    if let (Some(want), Some(got)) = (min.fmc, tcb.fmc) {
        pairs.push(("fmc", want, got));
    }
    if let Some((component, min, got)) = pairs.iter().find(|(_, min, got)| got < min) {
        return Err(VerifyError::TcbBelowMinimum {
            component,
            min: *min,
            got: *got,
        });
    }
    let listed: Vec<String> = pairs
        .iter()
        .map(|(c, m, g)| format!("{c} {g} >= {m}"))
        .collect();
    checks.pass("minimum tcb", listed.join(", "));
    Ok(())
}
