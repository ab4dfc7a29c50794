//! What the image tests add to `cloister-test-support`: the crypto
//! provider, and client options matching a test registry.

use std::time::Duration;

use cloister_image::{Auth, RegistryOptions, RetryPolicy};
use cloister_test_support::{tools, Registry};

/// True if the registry tools are there (and installs the crypto
/// provider); otherwise the test is skipped, or fails under CI=true.
pub fn tools_present() -> bool {
    if !tools::registry_tools_present() {
        return false;
    }
    cloister_image::install_crypto_provider();
    true
}

/// Client options matching `reg`'s setup.
pub fn registry_options(reg: &Registry) -> RegistryOptions {
    RegistryOptions {
        auth: match &reg.creds {
            Some((u, p)) => Auth::Basic {
                username: u.clone(),
                password: p.clone(),
            },
            None => Auth::Anonymous,
        },
        extra_ca_pem: reg.ca_pem.iter().cloned().collect(),
        insecure_http: !reg.setup.tls,
        retry: RetryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
        },
        ..RegistryOptions::default()
    }
}
