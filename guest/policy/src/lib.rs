//! Agent policy evaluation, shared by `cloister-agent` (which enforces it)
//! and the `cloister policy` CLI (which lets policy authors run the very same
//! evaluation on their desk).
//!
//! The module is deliberately as thin as regorus' own API: load Rego (and an
//! optional data document), evaluate `data.agent_policy.<RequestName>` with
//! the request as JSON input, and answer allow or deny with the policy's own
//! reason. Anything that is not exactly `true` is a denial.
//!
//! * [`engine`]: [`Policy`] and [`Decision`].
//! * [`testing`]: runs a policy's `test_*` rules (OPA's convention).
//! * `generate`, `explain` (feature `authoring`): policies from Kubernetes
//!   manifests, and readable explanations of denials.
pub mod engine;
pub mod testing;

#[cfg(feature = "authoring")]
pub mod bench;
#[cfg(feature = "authoring")]
pub mod explain;
#[cfg(feature = "authoring")]
pub mod generate;
#[cfg(feature = "authoring")]
pub mod samples;

pub use engine::{Decision, Policy, PolicyError, PACKAGE};
pub use testing::{run_tests, TestOutcome};
