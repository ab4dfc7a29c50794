//! A sample pod and the OCI spec the runtime sends for its `app` container,
//! for `cloister policy bench` and for tests.
pub const POD_YAML: &str = include_str!("../testdata/pod.yaml");
pub const APP_SPEC_JSON: &str = include_str!("../testdata/app-spec.json");
pub const APP_IMAGE: &str =
    "registry.example/web/app@sha256:4c3f2a1e5d6b7c8a9f0e1d2c3b4a5968778695a4b3c2d1e0f9e8d7c6b5a49382";
