//! The guest's GetMetrics text, checked and relabelled for the node's
//! endpoint. The text comes from inside a VM the host does not control, so
//! it is parsed, not pasted: only `cloister_agent_*` and `cloister_guest_*`
//! families pass (a guest cannot forge the host's `cloister_vmm_*`), the
//! labels the monitor sets (`pod`) cannot be set by the guest, and the size
//! is capped. A text that breaks a rule is refused whole, naming the line.
//!
//! Written by hand: the Prometheus crates encode, but none parses the
//! OpenMetrics text format.
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Longest GetMetrics text accepted.
pub const MAX_TEXT: usize = 1 << 20;
/// Most samples accepted from one pod.
pub const MAX_SAMPLES: usize = 10_000;
const MAX_LABEL_VALUE: usize = 1024;
const PREFIXES: &[&str] = &["cloister_agent_", "cloister_guest_"];
const SUFFIXES: &[&str] = &[
    "", "_total", "_created", "_bucket", "_count", "_sum", "_info",
];
/// Labels only the monitor sets.
pub const RESERVED_LABELS: &[&str] = &["pod"];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ExpositionError {
    #[error("the metrics text is {0} bytes, more than the {MAX_TEXT} accepted")]
    TooLong(usize),
    #[error("more than {MAX_SAMPLES} samples")]
    TooManySamples,
    #[error("line {line}: {problem}")]
    Line { line: usize, problem: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Family {
    pub help: Option<String>,
    pub kind: Option<String>,
    pub unit: Option<String>,
    pub samples: Vec<Sample>,
}

fn is_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

fn is_label_name(s: &str) -> bool {
    !s.contains(':') && is_name(s)
}

/// Parses `{a="x",b="y"}` at the start of `s`; returns the labels and the rest.
type Labels = Vec<(String, String)>;

fn labels(s: &str) -> Result<(Labels, &str), String> {
    let mut out = Vec::new();
    let mut rest = s.strip_prefix('{').ok_or("expected `{`")?;
    loop {
        rest = rest.trim_start_matches(' ');
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((out, r));
        }
        let eq = rest.find('=').ok_or("a label without `=`")?;
        let name = rest[..eq].trim();
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        if RESERVED_LABELS.contains(&name) {
            return Err(format!("label `{name}` is the monitor's to set"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("a label value must be quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err("a bad escape in a label value".into()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("an unterminated label value".into()),
            }
        };
        if value.len() > MAX_LABEL_VALUE {
            return Err(format!(
                "label `{name}` is longer than {MAX_LABEL_VALUE} bytes"
            ));
        }
        out.push((name.to_string(), value));
        rest = &rest[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

fn value_ok(v: &str) -> bool {
    matches!(v, "+Inf" | "-Inf" | "NaN") || v.parse::<f64>().is_ok_and(f64::is_finite)
}

/// The family a sample name belongs to, among those declared so far.
fn family_of<'a>(name: &str, families: &'a BTreeMap<String, Family>) -> Option<&'a str> {
    SUFFIXES.iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        families.get_key_value(base).map(|(k, _)| k.as_str())
    })
}

/// Parses one pod's GetMetrics text.
pub fn parse(text: &str) -> Result<BTreeMap<String, Family>, ExpositionError> {
    if text.len() > MAX_TEXT {
        return Err(ExpositionError::TooLong(text.len()));
    }
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut count = 0usize;
    for (i, line) in text.lines().enumerate() {
        let bad = |problem: String| ExpositionError::Line {
            line: i + 1,
            problem,
        };
        if line.is_empty() {
            continue;
        }
        if line == "# EOF" {
            break;
        }
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let (what, name, rest) = (
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or("").to_string(),
            );
            if !is_name(name) || !PREFIXES.iter().any(|p| name.starts_with(p)) {
                return Err(bad(format!(
                    "family {name:?} is not a cloister_agent_ or cloister_guest_ name"
                )));
            }
            let f = families.entry(name.to_string()).or_default();
            match what {
                "HELP" => f.help = Some(rest),
                "TYPE" => f.kind = Some(rest),
                "UNIT" => f.unit = Some(rest),
                other => return Err(bad(format!("unknown `# {other}` line"))),
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        let Some(family) = family_of(name, &families).map(str::to_string) else {
            return Err(bad(format!("sample {name:?} of no declared family")));
        };
        let (labels, rest) = if line[name_end..].starts_with('{') {
            labels(&line[name_end..]).map_err(bad)?
        } else {
            (Vec::new(), &line[name_end..])
        };
        let mut fields = rest.split_whitespace();
        let value = fields.next().unwrap_or("");
        if !value_ok(value) {
            return Err(bad(format!("{value:?} is not a sample value")));
        }
        if fields.next().is_some() {
            return Err(bad("timestamps and exemplars are not accepted".into()));
        }
        count += 1;
        if count > MAX_SAMPLES {
            return Err(ExpositionError::TooManySamples);
        }
        families
            .get_mut(&family)
            .expect("found above")
            .samples
            .push(Sample {
                name: name.to_string(),
                labels,
                value: value.to_string(),
            });
    }
    Ok(families)
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Families of several pods, each sample labelled with its pod.
#[derive(Debug, Default)]
pub struct Merged {
    families: BTreeMap<String, Family>,
}

impl Merged {
    /// Adds one pod's families. A family another pod declared with another
    /// type is left out for this pod (returned, for the log).
    pub fn add(&mut self, pod: &str, families: BTreeMap<String, Family>) -> Vec<String> {
        let mut clashes = Vec::new();
        for (name, mut f) in families {
            for s in &mut f.samples {
                s.labels.insert(0, ("pod".to_string(), pod.to_string()));
            }
            match self.families.get_mut(&name) {
                Some(have) if have.kind != f.kind => clashes.push(name),
                Some(have) => have.samples.append(&mut f.samples),
                None => {
                    self.families.insert(name, f);
                }
            }
        }
        clashes
    }

    /// OpenMetrics text of every family, without `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (name, f) in &self.families {
            if let Some(h) = &f.help {
                let _ = writeln!(out, "# HELP {name} {h}");
            }
            if let Some(t) = &f.kind {
                let _ = writeln!(out, "# TYPE {name} {t}");
            }
            if let Some(u) = &f.unit {
                let _ = writeln!(out, "# UNIT {name} {u}");
            }
            for s in &f.samples {
                let labels: Vec<String> = s
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                let _ = writeln!(out, "{}{{{}}} {}", s.name, labels.join(","), s.value);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENT: &str = "# HELP cloister_agent_policy_decisions Agent policy decisions.\n# TYPE cloister_agent_policy_decisions counter\ncloister_agent_policy_decisions_total{request=\"CreateSandboxRequest\",decision=\"allow\"} 1\n# HELP cloister_guest_load Load.\n# TYPE cloister_guest_load gauge\ncloister_guest_load{kind=\"1m\"} 0.25\n# EOF\n";

    #[test]
    fn two_pods_merge_into_one_family_each_labelled_by_pod() {
        let mut m = Merged::default();
        assert!(m.add("a", parse(AGENT).unwrap()).is_empty());
        assert!(m.add("b", parse(AGENT).unwrap()).is_empty());
        let out = m.encode();
        assert_eq!(
            out.matches("# TYPE cloister_agent_policy_decisions counter")
                .count(),
            1,
            "{out}"
        );
        assert!(out.contains("cloister_agent_policy_decisions_total{pod=\"a\",request=\"CreateSandboxRequest\",decision=\"allow\"} 1\n"), "{out}");
        assert!(
            out.contains("cloister_guest_load{pod=\"b\",kind=\"1m\"} 0.25\n"),
            "{out}"
        );
    }

    #[test]
    fn a_guest_cannot_forge_host_series_or_the_pod_label() {
        let forged = "# TYPE cloister_vmm_rss_bytes gauge\ncloister_vmm_rss_bytes{pod=\"x\"} 1\n";
        assert!(matches!(
            parse(forged),
            Err(ExpositionError::Line { line: 1, .. })
        ));
        let pod = "# TYPE cloister_guest_load gauge\ncloister_guest_load{pod=\"other\"} 1\n";
        let e = parse(pod).unwrap_err().to_string();
        assert!(
            e.contains("line 2: label `pod` is the monitor's to set"),
            "{e}"
        );
        let undeclared = "cloister_guest_load 1\n";
        assert!(parse(undeclared)
            .unwrap_err()
            .to_string()
            .contains("of no declared family"));
    }

    #[test]
    fn malformed_text_is_refused_naming_the_line() {
        for (text, want) in [
            (
                "# TYPE cloister_guest_x gauge\ncloister_guest_x{a=\"1} 2\n",
                "line 2: an unterminated label value",
            ),
            (
                "# TYPE cloister_guest_x gauge\ncloister_guest_x{a=1} 2\n",
                "line 2: a label value must be quoted",
            ),
            (
                "# TYPE cloister_guest_x gauge\ncloister_guest_x{a=\"\\q\"} 2\n",
                "line 2: a bad escape",
            ),
            (
                "# TYPE cloister_guest_x gauge\ncloister_guest_x lots\n",
                "line 2: \"lots\" is not a sample value",
            ),
            (
                "# TYPE cloister_guest_x gauge\ncloister_guest_x 1 1700000000\n",
                "line 2: timestamps",
            ),
            (
                "# TYPE cloister_guest_x gauge\ncloister_guest_x{1a=\"v\"} 1\n",
                "line 2: bad label name",
            ),
            (
                "# WHAT cloister_guest_x gauge\n",
                "line 1: unknown `# WHAT` line",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let long = "x".repeat(MAX_TEXT + 1);
        assert_eq!(parse(&long), Err(ExpositionError::TooLong(MAX_TEXT + 1)));
        let mut many = String::from("# TYPE cloister_guest_x gauge\n");
        for i in 0..=MAX_SAMPLES {
            many.push_str(&format!("cloister_guest_x{{i=\"{i}\"}} 1\n"));
        }
        assert_eq!(parse(&many), Err(ExpositionError::TooManySamples));
    }

    #[test]
    fn label_values_are_escaped_again_on_the_way_out() {
        let text = "# TYPE cloister_guest_x gauge\ncloister_guest_x{c=\"a\\\"b\\\\c\\nd\"} 1\n";
        let mut m = Merged::default();
        m.add("p", parse(text).unwrap());
        assert!(
            m.encode()
                .contains("cloister_guest_x{pod=\"p\",c=\"a\\\"b\\\\c\\nd\"} 1"),
            "{}",
            m.encode()
        );
    }

    #[test]
    fn a_family_typed_differently_by_two_pods_is_kept_once() {
        let a = "# TYPE cloister_guest_x gauge\ncloister_guest_x 1\n";
        let b = "# TYPE cloister_guest_x counter\ncloister_guest_x_total 1\n";
        let mut m = Merged::default();
        m.add("a", parse(a).unwrap());
        assert_eq!(
            m.add("b", parse(b).unwrap()),
            vec!["cloister_guest_x".to_string()]
        );
        assert!(!m.encode().contains("pod=\"b\""));
    }
}
