//! Task `Resource`: AWS refuses a value that is not an ARN (`SCHEMA_VALIDATION_FAILED: Value is not a
//! valid resource ARN at /States/X/Resource`, measured through Step Functions Local, which shares
//! AWS's validator: aws/aws-sam-cli-app-templates#185).
//!
//! The shape checked is `arn:<partition>:<service>:<region>:<account>:<resource>`: partition `aws`
//! or `aws-<word>`, a service name, region and account in their character sets (both empty for
//! service integrations such as `arn:aws:states:::lambda:invoke`) and a non-empty resource without
//! blanks. Lambda function ARNs are checked to the end, as Lambda defines them:
//! `function:<name>` with an optional `:<version or alias>`; nothing may follow (a trailing `:` or a
//! second qualifier is refused).

/// True when `resource` is an ARN AWS accepts as a Task `Resource`.
pub(super) fn is_valid_resource_arn(resource: &str) -> bool {
    let mut parts = resource.splitn(6, ':');
    let (Some("arn"), Some(partition), Some(service), Some(region), Some(account), Some(rest)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let partition_ok = partition == "aws"
        || partition.strip_prefix("aws-").is_some_and(|p| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
        });
    let service_ok = !service.is_empty()
        && service
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let region_ok = region
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let account_ok = account.bytes().all(|b| b.is_ascii_digit());
    let rest_ok = !rest.is_empty() && !rest.chars().any(char::is_whitespace);
    if !(partition_ok && service_ok && region_ok && account_ok && rest_ok) {
        return false;
    }
    if service == "lambda" {
        return !region.is_empty() && !account.is_empty() && is_lambda_function(rest);
    }
    true
}

/// The `.waitForTaskToken` integrations Expressway runs for EXPRESS machines (AWS Express refuses
/// every one): `lambda:invoke`, `http:invoke`, `kafka:publish` and the `expressway:` resources (the
/// built-in test resource and native handlers). Other services keep AWS's error.
pub(super) fn expressway_waits_for_token(resource: &str) -> bool {
    let Some(base) = resource.strip_suffix(".waitForTaskToken") else {
        return false;
    };
    let Some(service) = service_integration(base) else {
        return false;
    };
    matches!(service, "lambda:invoke" | "http:invoke" | "kafka:publish")
        || service
            .strip_prefix("expressway:")
            .is_some_and(|name| !name.is_empty())
}

/// The `.sync` integrations Expressway runs for EXPRESS machines (AWS Express refuses every
/// `.sync`): `states:startExecution.sync` and `.sync:2`, whose child runs in the parent's pod.
/// Other services keep AWS's error.
pub(super) fn expressway_runs_sync(resource: &str) -> bool {
    service_integration(resource)
        .is_some_and(|s| s == "states:startExecution.sync" || s == "states:startExecution.sync:2")
}

/// The part after `arn:<partition>:states:::` of a service integration.
fn service_integration(resource: &str) -> Option<&str> {
    resource
        .strip_prefix("arn:aws:states:::")
        .or_else(|| resource.strip_prefix("arn:aws-us-gov:states:::"))
        .or_else(|| resource.strip_prefix("arn:aws-cn:states:::"))
}

/// `function:<name>[:<qualifier>]`: name of letters, digits, `-` and `_` (1..=64), qualifier
/// `$LATEST` or a version / alias of the same characters (1..=128).
fn is_lambda_function(rest: &str) -> bool {
    let word = |s: &str, max: usize| {
        (1..=max).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let Some(function) = rest.strip_prefix("function:") else {
        return false;
    };
    match function.split_once(':') {
        None => word(function, 64),
        Some((name, qualifier)) => {
            word(name, 64) && (qualifier == "$LATEST" || word(qualifier, 128))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{expressway_runs_sync, expressway_waits_for_token, is_valid_resource_arn};

    #[test]
    fn sync_integrations_expressway_runs() {
        for ok in [
            "arn:aws:states:::states:startExecution.sync",
            "arn:aws:states:::states:startExecution.sync:2",
            "arn:aws-cn:states:::states:startExecution.sync:2",
        ] {
            assert!(expressway_runs_sync(ok), "{ok}");
        }
        for refused in [
            "arn:aws:states:::states:startExecution",
            "arn:aws:states:::states:startExecution.sync:3",
            "arn:aws:states:::states:startExecution.waitForTaskToken",
            "arn:aws:states:::batch:submitJob.sync",
            "arn:aws:states:::ecs:runTask.sync",
            "arn:aws:states:::glue:startJobRun.sync",
        ] {
            assert!(!expressway_runs_sync(refused), "{refused}");
        }
    }

    #[test]
    fn callbacks_expressway_runs() {
        for ok in [
            "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "arn:aws:states:::http:invoke.waitForTaskToken",
            "arn:aws:states:::kafka:publish.waitForTaskToken",
            "arn:aws:states:::expressway:test.waitForTaskToken",
        ] {
            assert!(expressway_waits_for_token(ok), "{ok}");
        }
        for refused in [
            "arn:aws:states:::sns:publish.waitForTaskToken",
            "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "arn:aws:states:::lambda:invoke",
            "arn:aws:states:::expressway:.waitForTaskToken",
            "arn:aws:lambda:us-east-1:123456789012:function:f.waitForTaskToken",
        ] {
            assert!(!expressway_waits_for_token(refused), "{refused}");
        }
    }

    #[test]
    fn arns_aws_accepts() {
        for ok in [
            "arn:aws:states:::lambda:invoke",
            "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "arn:aws:states:::http:invoke",
            "arn:aws:states:::aws-sdk:s3:listObjectsV2",
            "arn:aws:states:::states:startExecution.sync:2",
            "arn:aws:states:::expressway:test",
            "arn:aws:states:us-east-1:123456789012:activity:my-activity",
            "arn:aws:lambda:us-east-1:123456789012:function:Echo",
            "arn:aws:lambda:us-east-1:123456789012:function:Echo:$LATEST",
            "arn:aws:lambda:us-east-1:123456789012:function:Echo:prod",
            "arn:aws:lambda:us-east-1:123456789012:function:Echo:7",
            "arn:aws-cn:lambda:cn-north-1:123456789012:function:my_fn",
            "arn:aws-us-gov:states:::sqs:sendMessage",
        ] {
            assert!(is_valid_resource_arn(ok), "{ok}");
        }
    }

    #[test]
    fn values_aws_refuses() {
        for bad in [
            "",
            "r",
            "foo:bar",
            "${lambdaArn",
            "${LambdaFunctionArn}",
            "arn:aws:states",
            "arn:aws:states:::",
            "arn::states:::lambda:invoke",
            "arn:azure:states:::lambda:invoke",
            "arn:aws:States:::lambda:invoke",
            "arn:aws:states:::lambda: invoke",
            "arn:aws:lambda:us-east-1:123456789012:function:FUNCTION_NAME:",
            "arn:aws:lambda:us-east-1:123456789012:function:FUNCTION_NAME:$*#$7485",
            "arn:aws:lambda:us-east-1:123456789012:function:fn:1:2",
            "arn:aws:lambda:us-east-1:123456789012:function:",
            "arn:aws:lambda:us-east-1:123456789012:layer:fn",
            "arn:aws:lambda:::function:fn",
            "arn:aws:lambda:us-east-1:account:function:fn",
        ] {
            assert!(!is_valid_resource_arn(bad), "{bad}");
        }
    }
}
