//! `evoctl iam-policy [--read-only]`: the IAM policy document to paste, exactly the actions
//! evoctl calls (docs/iam/operator.json: every command; docs/iam/read-only.json: `status`,
//! `audit`, `doctor`, `logs` and `conflicts`). The document is the same with `--output json`:
//! it is JSON already, and what IAM takes as is.

use super::Context;
use crate::cli::IamPolicyArgs;
use crate::error::Result;
use crate::exit;

/// Every command's actions.
pub const OPERATOR: &str = include_str!("../../docs/iam/operator.json");
/// The actions of `status`, `audit`, `doctor`, `logs` and `conflicts`.
pub const READ_ONLY: &str = include_str!("../../docs/iam/read-only.json");

pub fn run(context: &Context, args: &IamPolicyArgs) -> Result<u8> {
    context.printer.text(if args.read_only { READ_ONLY } else { OPERATOR });
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::BTreeSet;

    fn actions(document: &str) -> BTreeSet<String> {
        let document: Value = serde_json::from_str(document).expect("a JSON policy");
        assert_eq!(document["Version"], "2012-10-17");
        let mut found = BTreeSet::new();
        for statement in document["Statement"].as_array().expect("a statement list") {
            assert_eq!(statement["Effect"], "Allow");
            assert!(statement["Resource"].is_string() || statement["Resource"].is_array());
            match &statement["Action"] {
                Value::String(one) => assert!(found.insert(one.clone()), "{one} twice"),
                Value::Array(many) => {
                    for action in many {
                        let action = action.as_str().expect("an action name").to_owned();
                        assert!(found.insert(action.clone()), "{action} twice");
                    }
                }
                other => panic!("Action {other}"),
            }
        }
        found
    }

    #[test]
    fn the_read_only_policy_is_a_subset_of_the_operators_without_the_changes() {
        let (read_only, operator) = (actions(READ_ONLY), actions(OPERATOR));
        assert!(read_only.is_subset(&operator));
        let only_operator: Vec<&str> = operator.difference(&read_only).map(String::as_str).collect();
        assert_eq!(
            only_operator,
            [
                "application-autoscaling:RegisterScalableTarget",
                "ecs:ListClusters",
                "ecs:ListServices",
                "ecs:StopTask",
                "ecs:UpdateService",
                "lambda:ListFunctions",
                "lambda:ListTags",
                "ssm:StartSession",
            ]
        );
        assert!(read_only.iter().all(|a| !a.contains('*')), "exact actions, no wildcards");
    }
}
