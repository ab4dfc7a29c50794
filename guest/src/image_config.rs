//! What the verified image contributes to the container's process, the way
//! container engines do it: the entrypoint and command when the spec has no
//! args, and the image's environment (PATH first of all) under the spec's.
//! The host cannot supply these: they come from the config blob whose
//! digest the signed manifest pins.
use serde_json::Value;

/// Fills `spec.process` from the image `config` (its JSON). Returns what was
/// taken from the image, for the log.
/// containerd's `defaultUnixEnv`.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub fn apply(spec: &mut Value, config: &[u8]) -> Result<Vec<&'static str>, String> {
    let cfg: Value = serde_json::from_slice(config).map_err(|e| format!("image config: {e}"))?;
    let image = cfg.get("config").cloned().unwrap_or(Value::Null);
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let Some(process) = spec.get_mut("process").and_then(Value::as_object_mut) else {
        return Ok(Vec::new());
    };
    let mut took = Vec::new();
    let args_empty = process
        .get("args")
        .and_then(Value::as_array)
        .is_none_or(|a| a.is_empty());
    if args_empty {
        let mut args = strings(image.get("Entrypoint"));
        args.extend(strings(image.get("Cmd")));
        if !args.is_empty() {
            process.insert("args".into(), Value::from(args));
            took.push("entrypoint/cmd");
        }
    }
    let mut env = strings(process.get("env"));
    let set: std::collections::HashSet<String> = env
        .iter()
        .map(|e| e.split('=').next().unwrap_or_default().to_string())
        .collect();
    let mut added = false;
    for e in strings(image.get("Env")) {
        let name = e.split('=').next().unwrap_or_default().to_string();
        if !name.is_empty() && !set.contains(&name) {
            env.push(e);
            added = true;
        }
    }
    // Neither the spec nor the image sets PATH (`ctr run --rootfs`, an
    // image built FROM scratch): the default containerd and Docker use.
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(DEFAULT_PATH.into());
        added = true;
    }
    if added {
        process.insert("env".into(), Value::from(env));
        took.push("env");
    }
    let cwd_unset = process
        .get("cwd")
        .and_then(Value::as_str)
        .is_none_or(|c| c.is_empty());
    if cwd_unset {
        let wd = image
            .get("WorkingDir")
            .and_then(Value::as_str)
            .filter(|w| w.starts_with('/'))
            .unwrap_or("/");
        process.insert("cwd".into(), Value::from(wd));
        took.push("cwd");
    }
    Ok(took)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CONFIG: &str = r#"{"architecture": "amd64", "os": "linux", "config": {
        "Entrypoint": ["/bin/app"], "Cmd": ["--serve"],
        "Env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8", "MODE=image"], "WorkingDir": "/srv"}}"#;

    #[test]
    fn empty_args_take_the_image_entrypoint_and_the_spec_env_wins() {
        let mut spec = json!({"process": {"args": [], "env": ["MODE=pod"], "cwd": ""}});
        let took = apply(&mut spec, CONFIG.as_bytes()).unwrap();
        assert_eq!(took, ["entrypoint/cmd", "env", "cwd"]);
        assert_eq!(spec["process"]["args"], json!(["/bin/app", "--serve"]));
        assert_eq!(
            spec["process"]["env"],
            json!(["MODE=pod", "PATH=/usr/bin:/bin", "LANG=C.UTF-8"])
        );
        assert_eq!(spec["process"]["cwd"], "/srv");
    }

    #[test]
    fn explicit_args_and_cwd_stay() {
        let mut spec = json!({"process": {"args": ["/bin/sh"], "cwd": "/", "env": ["PATH=/x"]}});
        let took = apply(&mut spec, CONFIG.as_bytes()).unwrap();
        assert_eq!(took, ["env"]);
        assert_eq!(spec["process"]["args"], json!(["/bin/sh"]));
        assert_eq!(spec["process"]["env"][0], "PATH=/x");
        assert_eq!(spec["process"]["cwd"], "/");
    }

    #[test]
    fn a_bad_config_is_an_error() {
        let mut spec = json!({"process": {"args": []}});
        assert!(apply(&mut spec, b"not json").is_err());
        let mut spec = json!({"process": {"args": []}});
        apply(&mut spec, b"{}").unwrap();
        assert_eq!(
            spec["process"]["args"],
            json!([]),
            "nothing to take: still empty (refused later)"
        );
        assert_eq!(
            spec["process"]["env"],
            json!([DEFAULT_PATH]),
            "PATH defaults"
        );
    }
}
