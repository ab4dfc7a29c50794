//! Runs a policy's unit tests: every rule whose name starts with `test_`, in
//! any loaded package (OPA's convention). A test passes when its value is
//! exactly `true`.
use regorus::unstable::{Parser, Rule, RuleHead};
use regorus::Value;

use crate::Policy;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    /// `data.<package>.<rule>`.
    pub name: String,
    pub passed: bool,
    /// Why it failed (value or error); empty when it passed.
    pub detail: String,
}

/// Evaluates every `test_*` rule declared by the loaded modules, in source
/// order, each with an empty input.
pub fn run_tests(policy: &mut Policy) -> Vec<TestOutcome> {
    let names = test_rule_paths(policy);
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let engine = policy.engine_mut();
        engine.set_input(Value::new_object());
        let (passed, detail) = match engine.eval_rule(name.clone()) {
            Ok(Value::Bool(true)) => (true, String::new()),
            Ok(Value::Undefined) => (false, "undefined (a condition was false)".to_string()),
            Ok(v) => (
                false,
                format!("value {}", v.to_json_str().unwrap_or_default()),
            ),
            Err(e) => (false, format!("error: {e:#}")),
        };
        out.push(TestOutcome {
            name,
            passed,
            detail,
        });
    }
    out
}

/// `data.<pkg>.test_x` for every declared rule head named `test_*`, once
/// each (a rule may have several bodies).
fn test_rule_paths(policy: &mut Policy) -> Vec<String> {
    let mut paths: Vec<String> = Vec::new();
    for module in policy.engine_mut().get_modules().iter() {
        let Ok(pkg) = Parser::get_path_ref_components(&module.package.refr) else {
            continue;
        };
        let pkg: Vec<&str> = pkg.iter().map(|s| s.text()).collect();
        for rule in &module.policy {
            let refr = match rule.as_ref() {
                Rule::Spec { head, .. } => match head {
                    RuleHead::Compr { refr, .. }
                    | RuleHead::Set { refr, .. }
                    | RuleHead::Func { refr, .. } => refr,
                },
                Rule::Default { refr, .. } => refr,
            };
            let Ok(comps) = Parser::get_path_ref_components(refr) else {
                continue;
            };
            let [only] = comps.as_slice() else { continue };
            let name = only.text();
            if !name.starts_with("test_") {
                continue;
            }
            let path = format!("data.{}.{name}", pkg.join("."));
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passing_failing_and_erroring_tests_are_reported() {
        let policy = r#"
package agent_policy
ExecProcessRequest if input.process.args == ["date"]
"#;
        let tests = r#"
package agent_policy_test
import data.agent_policy

test_date_allowed if agent_policy.ExecProcessRequest with input as {"process": {"args": ["date"]}}
test_sh_denied if not agent_policy.ExecProcessRequest with input as {"process": {"args": ["sh"]}}
test_wrong if agent_policy.ExecProcessRequest with input as {"process": {"args": ["sh"]}}
helper := 1
"#;
        let mut p = Policy::from_modules(
            &[
                ("p.rego".into(), policy.into()),
                ("p_test.rego".into(), tests.into()),
            ],
            None,
        )
        .unwrap();
        let r = run_tests(&mut p);
        let summary: Vec<(&str, bool)> = r.iter().map(|t| (t.name.as_str(), t.passed)).collect();
        assert_eq!(
            summary,
            vec![
                ("data.agent_policy_test.test_date_allowed", true),
                ("data.agent_policy_test.test_sh_denied", true),
                ("data.agent_policy_test.test_wrong", false),
            ]
        );
        assert!(r[2].detail.contains("undefined"), "{}", r[2].detail);
    }
}
