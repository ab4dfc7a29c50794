//! `cargo run --release -p cloister-policy --features authoring --example bench [N]`:
//! the same measurement as `cloister policy bench`, in an optimized build.
fn main() {
    let n = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    for r in cloister_policy::bench::run(cloister_policy::samples::POD_YAML, n).expect("bench") {
        println!(
            "{:<24} {:<5} p50 {:>8.1} µs  p99 {:>8.1} µs  max {:>8.1} µs",
            r.request,
            if r.allowed { "allow" } else { "deny" },
            r.p50.as_secs_f64() * 1e6,
            r.p99.as_secs_f64() * 1e6,
            r.max.as_secs_f64() * 1e6
        );
    }
}
