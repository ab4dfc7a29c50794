//! Which requirements apply to an image: the most specific `docker`
//! transport scope that the policy names, else the transport default, else
//! the global default (the order of containers/image's
//! `PolicyConfigurationIdentity` and `PolicyConfigurationNamespaces`).

use std::fmt;

use super::{PolicyFile, Requirement};
use crate::reference::DockerRef;

/// The transport the agent pulls over.
pub const DOCKER_TRANSPORT: &str = "docker";

/// Where the applicable requirements were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The global `default`.
    Default,
    /// `transports.docker[""]`.
    TransportDefault,
    /// `transports.docker[<scope>]`.
    Docker(String),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Default => f.write_str("default"),
            Scope::TransportDefault => write!(f, "{DOCKER_TRANSPORT}:\"\""),
            Scope::Docker(s) => write!(f, "{DOCKER_TRANSPORT}:{s}"),
        }
    }
}

/// The scopes that can name `image`, most specific first.
pub fn candidate_scopes(image: &DockerRef) -> Vec<String> {
    let mut out = vec![image.to_string()];
    // The repository, then each parent namespace, down to the host.
    let mut name = image.name();
    loop {
        out.push(name.to_string());
        match name.rfind('/') {
            Some(i) => name = &name[..i],
            None => break,
        }
    }
    // `*.b.example.com`, `*.example.com`, `*.com` for host a.b.example.com
    // (the port is not part of a wildcard match).
    let host = image.registry();
    let host = host.split(':').next().unwrap_or(host);
    let mut domain = if host.parse::<std::net::IpAddr>().is_ok() {
        "" // an IP address has no parent domains
    } else {
        host
    };
    while let Some(i) = domain.find('.') {
        domain = &domain[i + 1..];
        out.push(format!("*.{domain}"));
    }
    out
}

pub(super) fn lookup<'a>(policy: &'a PolicyFile, image: &DockerRef) -> (Scope, &'a [Requirement]) {
    if let Some(scopes) = policy.transports.get(DOCKER_TRANSPORT) {
        for candidate in candidate_scopes(image) {
            if let Some(reqs) = scopes.get(&candidate) {
                return (Scope::Docker(candidate), reqs);
            }
        }
        if let Some(reqs) = scopes.get("") {
            return (Scope::TransportDefault, reqs);
        }
    }
    (Scope::Default, &policy.default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_most_specific_first() {
        let image = DockerRef::parse("reg.a.example.com:5000/ns/sub/app:v1").unwrap();
        assert_eq!(
            candidate_scopes(&image),
            [
                "reg.a.example.com:5000/ns/sub/app:v1",
                "reg.a.example.com:5000/ns/sub/app",
                "reg.a.example.com:5000/ns/sub",
                "reg.a.example.com:5000/ns",
                "reg.a.example.com:5000",
                "*.a.example.com",
                "*.example.com",
                "*.com",
            ]
        );
    }

    #[test]
    fn candidates_for_a_digest_reference() {
        let d = format!("sha256:{}", "c".repeat(64));
        let image = DockerRef::parse(&format!("localhost/app@{d}")).unwrap();
        assert_eq!(
            candidate_scopes(&image),
            [
                format!("localhost/app@{d}"),
                "localhost/app".into(),
                "localhost".into()
            ]
        );
    }
}
