//! What the signature tests add to `cloister-test-support`: the
//! independent cosign implementation in `cosign_tool.py`.

use std::path::Path;
use std::process::Command;

use cloister_test_support::tools::{self, Tool, REGISTRY_TOOLS};

/// Why the test cannot run, if it cannot (`cosign_tool.py` needs python3
/// with `cryptography`; `needs_registry` adds the registry tools): prints
/// `SKIPPED:` and the reason, or under CI=true panics.
pub fn skip_reason(needs_registry: bool) -> Option<String> {
    let mut needs = vec![];
    if needs_registry {
        needs.extend(REGISTRY_TOOLS);
    }
    needs.push(Tool::PythonCryptography);
    tools::skip_reason(&needs)
}

/// `python3 tests/cosign_tool.py ARGS`.
pub fn cosign_tool() -> Command {
    let mut c = Command::new("python3");
    c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cosign_tool.py"));
    c
}
