//! Builds the typed model from definition JSON.
//!
//! The loader assumes nothing about its input: every problem becomes a [`LoadError`] with a JSON
//! pointer. Full AWS-style diagnostics (all problems at once, AWS codes) come from the validator;
//! the loader's errors are the backstop for anything that slips past it.

use crate::choice::{compile_rule, Rule};
use crate::jsonata::JsonataExpr;
use crate::jsonpath::JsonPath;
use crate::model::*;
use crate::template::{Lang, Template, ValueExpr};
use serde_json::{Map, Value};
use std::collections::HashMap;

mod distributed_map;
pub use distributed_map::{MAX_INPUT_BYTES_PER_BATCH, READER_RESOURCES, WRITER_RESOURCES};

/// The definition could not be loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} at {location}")]
pub struct LoadError {
    /// What is wrong, in AWS's words where known.
    pub message: String,
    /// JSON pointer to the offending field.
    pub location: String,
}

type R<T> = Result<T, LoadError>;

fn err<T>(message: impl Into<String>, location: &str) -> R<T> {
    Err(LoadError {
        message: message.into(),
        location: if location.is_empty() {
            "/".into()
        } else {
            location.into()
        },
    })
}

/// Parses definition text and loads it.
pub fn load_str(text: &str) -> R<StateMachine> {
    crate::depth::with_stack(|| {
        let value =
            crate::json::parse_whole(text).or_else(|e| err(format!("Invalid JSON: {e}"), "/"))?;
        load(&value)
    })
}

/// Loads a parsed definition.
pub fn load(def: &Value) -> R<StateMachine> {
    let Value::Object(top) = def else {
        return err("The definition must be a JSON object", "/");
    };
    let query_language = match top.get("QueryLanguage") {
        None => QueryLanguage::JsonPath,
        Some(v) => parse_ql(v, "/QueryLanguage")?,
    };
    let timeout_seconds = match top.get("TimeoutSeconds") {
        None => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| LoadError {
            message: "TimeoutSeconds must be a positive integer".into(),
            location: "/TimeoutSeconds".into(),
        })?),
    };
    let mut counter = 0usize;
    let graph = load_graph(top, "", query_language, &mut counter)?;
    Ok(StateMachine {
        comment: top
            .get("Comment")
            .and_then(Value::as_str)
            .map(str::to_string),
        timeout_seconds,
        query_language,
        graph,
        total_states: counter,
    })
}

fn parse_ql(v: &Value, loc: &str) -> R<QueryLanguage> {
    match v.as_str() {
        Some("JSONPath") => Ok(QueryLanguage::JsonPath),
        Some("JSONata") => Ok(QueryLanguage::Jsonata),
        _ => err("QueryLanguage must be 'JSONPath' or 'JSONata'", loc),
    }
}

fn load_graph(
    obj: &Map<String, Value>,
    loc: &str,
    ql: QueryLanguage,
    counter: &mut usize,
) -> R<Graph> {
    let start_name = match obj.get("StartAt") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            return err(
                "These fields are required: [StartAt]",
                if loc.is_empty() { "/" } else { loc },
            )
        }
    };
    let Some(Value::Object(states)) = obj.get("States") else {
        return err(
            "These fields are required: [States]",
            if loc.is_empty() { "/" } else { loc },
        );
    };
    let index: HashMap<String, usize> = states
        .keys()
        .enumerate()
        .map(|(i, k)| (k.clone(), i))
        .collect();
    let Some(&start) = index.get(&start_name) else {
        return err(
            format!("Missing 'Next' target: {start_name}"),
            &format!("{loc}/StartAt"),
        );
    };
    let mut out = Vec::with_capacity(states.len());
    for (name, body) in states {
        let sloc = format!("{loc}/States/{name}");
        let Value::Object(body) = body else {
            return err("A state must be a JSON object", &sloc);
        };
        out.push(load_state(name, body, &sloc, ql, &index, counter)?);
    }
    Ok(Graph {
        start,
        states: out,
        index,
    })
}

struct Ctx<'a> {
    body: &'a Map<String, Value>,
    loc: &'a str,
    index: &'a HashMap<String, usize>,
    lang: Lang,
}

impl Ctx<'_> {
    fn at(&self, field: &str) -> String {
        format!("{}/{}", self.loc, field)
    }
    fn get(&self, field: &str) -> Option<&Value> {
        self.body.get(field)
    }
    fn string(&self, field: &str) -> R<Option<String>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => err(format!("Field '{field}' must be a string"), &self.at(field)),
        }
    }
    fn target(&self, name: &str, field_loc: &str) -> R<usize> {
        self.index.get(name).copied().ok_or_else(|| LoadError {
            message: format!("Missing 'Next' target: {name}"),
            location: field_loc.to_string(),
        })
    }
    fn transition(&self) -> R<Transition> {
        match (self.get("Next"), self.get("End")) {
            (Some(Value::String(n)), None | Some(Value::Bool(false))) => {
                Ok(Transition::Next(self.target(n, &self.at("Next"))?))
            }
            (None, Some(Value::Bool(true))) => Ok(Transition::End),
            (Some(_), Some(Value::Bool(true))) => {
                err("Only one of 'Next' or 'End' may be set", self.loc)
            }
            _ => err("These fields are required: [Next | End]", self.loc),
        }
    }
    fn path(&self, field: &str) -> R<Option<JsonPath>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => JsonPath::parse(s).map(Some).or_else(|e| {
                err(
                    format!(
                        "The value for the field '{field}' must be a valid JSONPath ({})",
                        e.reason
                    ),
                    &self.at(field),
                )
            }),
            Some(_) => err(
                format!("The value for the field '{field}' must be a valid JSONPath"),
                &self.at(field),
            ),
        }
    }
    fn io_path(&self, field: &str) -> R<IoPath> {
        match self.get(field) {
            None => Ok(IoPath::Identity),
            Some(Value::Null) => Ok(IoPath::Discard),
            Some(_) => {
                let p = self.path(field)?.ok_or_else(|| LoadError {
                    message: "unreachable".into(),
                    location: self.at(field),
                })?;
                Ok(
                    if p.is_root() && *p.root() == crate::jsonpath::Root::Input {
                        IoPath::Identity
                    } else {
                        IoPath::Path(p)
                    },
                )
            }
        }
    }
    fn result_path(&self, body: &Map<String, Value>, loc: &str) -> R<ResultPath> {
        match body.get("ResultPath") {
            None => Ok(ResultPath::Replace),
            Some(Value::Null) => Ok(ResultPath::Discard),
            Some(Value::String(s)) => {
                let p = JsonPath::parse(s).or_else(|e| {
                    err(
                        format!(
                            "The value for the field 'ResultPath' must be a valid JSONPath ({})",
                            e.reason
                        ),
                        &format!("{loc}/ResultPath"),
                    )
                })?;
                if !p.is_reference_path() {
                    return err(
                        "The value for the field 'ResultPath' must be a valid reference path",
                        &format!("{loc}/ResultPath"),
                    );
                }
                Ok(if p.is_root() {
                    ResultPath::Replace
                } else {
                    ResultPath::At(p)
                })
            }
            Some(_) => err(
                "The value for the field 'ResultPath' must be a valid JSONPath",
                &format!("{loc}/ResultPath"),
            ),
        }
    }
    fn template(&self, field: &str) -> R<Option<Template>> {
        self.template_in(self.body, field, self.loc)
    }
    fn template_in(
        &self,
        body: &Map<String, Value>,
        field: &str,
        loc: &str,
    ) -> R<Option<Template>> {
        match body.get(field) {
            None => Ok(None),
            Some(v) => Template::compile(v, self.lang)
                .map(Some)
                .or_else(|e| err(e, &format!("{loc}/{field}"))),
        }
    }
    fn jsonata_or<T>(
        &self,
        field: &str,
        fixed: impl Fn(&Value) -> Option<T>,
        what: &str,
    ) -> R<Option<Dynamic<T>>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s))
                if self.lang == Lang::Jsonata && JsonataExpr::is_expression(s) =>
            {
                Ok(Some(Dynamic::Expr(ValueExpr::Jsonata(
                    JsonataExpr::parse(s).or_else(|e| err(e, &self.at(field)))?,
                ))))
            }
            Some(v) => match fixed(v) {
                Some(t) => Ok(Some(Dynamic::Fixed(t))),
                None => err(format!("Field '{field}' must be {what}"), &self.at(field)),
            },
        }
    }
    fn dynamic_u64(&self, field: &str, path_field: &str) -> R<Option<Dynamic<u64>>> {
        if let Some(p) = self.path(path_field)? {
            return Ok(Some(Dynamic::Expr(ValueExpr::Path(p))));
        }
        self.jsonata_or(field, |v| v.as_u64(), "a non-negative integer")
    }
    fn dynamic_f64(&self, field: &str, path_field: &str) -> R<Option<Dynamic<f64>>> {
        if let Some(p) = self.path(path_field)? {
            return Ok(Some(Dynamic::Expr(ValueExpr::Path(p))));
        }
        self.jsonata_or(field, |v| v.as_f64(), "a number")
    }
    fn dynamic_string(&self, field: &str, path_field: &str) -> R<Option<Dynamic<String>>> {
        match self.get(path_field) {
            Some(Value::String(s)) => {
                let e = ValueExpr::parse_jsonpath_mode(s).or_else(|e| err(format!("The value for the field '{path_field}' must be a valid JSONPath or a valid intrinsic function call ({e})"), &self.at(path_field)))?;
                return Ok(Some(Dynamic::Expr(e)));
            }
            Some(_) => {
                return err(
                    format!("Field '{path_field}' must be a string"),
                    &self.at(path_field),
                )
            }
            None => {}
        }
        self.jsonata_or(field, |v| v.as_str().map(str::to_string), "a string")
    }
    fn retriers(&self) -> R<Vec<Retrier>> {
        let Some(v) = self.get("Retry") else {
            return Ok(Vec::new());
        };
        let Value::Array(items) = v else {
            return err("Retry must be an array", &self.at("Retry"));
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let loc = format!("{}/Retry/{i}", self.loc);
            let Value::Object(r) = item else {
                return err("A retrier must be an object", &loc);
            };
            let num = |k: &str, d: f64| -> R<f64> {
                match r.get(k) {
                    None => Ok(d),
                    Some(v) => v.as_f64().ok_or_else(|| LoadError {
                        message: format!("Field '{k}' must be a number"),
                        location: format!("{loc}/{k}"),
                    }),
                }
            };
            out.push(Retrier {
                error_equals: error_equals(r, &loc)?,
                interval_seconds: num("IntervalSeconds", 1.0)?,
                max_attempts: num("MaxAttempts", 3.0)?.max(0.0) as u32,
                backoff_rate: num("BackoffRate", 2.0)?,
                max_delay_seconds: match r.get("MaxDelaySeconds") {
                    None => None,
                    Some(_) => Some(num("MaxDelaySeconds", 0.0)?),
                },
                jitter_full: r.get("JitterStrategy").and_then(Value::as_str) == Some("FULL"),
            });
        }
        Ok(out)
    }
    fn catchers(&self) -> R<Vec<Catcher>> {
        let Some(v) = self.get("Catch") else {
            return Ok(Vec::new());
        };
        let Value::Array(items) = v else {
            return err("Catch must be an array", &self.at("Catch"));
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let loc = format!("{}/Catch/{i}", self.loc);
            let Value::Object(c) = item else {
                return err("A catcher must be an object", &loc);
            };
            let next = match c.get("Next") {
                Some(Value::String(n)) => self.target(n, &format!("{loc}/Next"))?,
                _ => return err("These fields are required: [Next]", &loc),
            };
            out.push(Catcher {
                error_equals: error_equals(c, &loc)?,
                next,
                result_path: self.result_path(c, &loc)?,
                output: self.template_in(c, "Output", &loc)?,
                assign: self.template_in(c, "Assign", &loc)?,
            });
        }
        Ok(out)
    }
    fn work(&self, parameters_field: &str) -> R<Work> {
        let params_field = if self.lang == Lang::Jsonata {
            "Arguments"
        } else {
            parameters_field
        };
        Ok(Work {
            parameters: self.template(params_field)?,
            result_selector: self.template("ResultSelector")?,
            result_path: self.result_path(self.body, self.loc)?,
            retry: self.retriers()?,
            catch: self.catchers()?,
            transition: self.transition()?,
        })
    }
}

fn error_equals(obj: &Map<String, Value>, loc: &str) -> R<Vec<String>> {
    match obj.get("ErrorEquals") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| LoadError {
                    message: "ErrorEquals must hold strings".into(),
                    location: format!("{loc}/ErrorEquals"),
                })
            })
            .collect(),
        _ => err("These fields are required: [ErrorEquals]", loc),
    }
}

fn load_state(
    name: &str,
    body: &Map<String, Value>,
    loc: &str,
    parent_ql: QueryLanguage,
    index: &HashMap<String, usize>,
    counter: &mut usize,
) -> R<State> {
    *counter += 1;
    let query_language = match body.get("QueryLanguage") {
        None => parent_ql,
        Some(v) => parse_ql(v, &format!("{loc}/QueryLanguage"))?,
    };
    let lang = match query_language {
        QueryLanguage::JsonPath => Lang::JsonPath,
        QueryLanguage::Jsonata => Lang::Jsonata,
    };
    let cx = Ctx {
        body,
        loc,
        index,
        lang,
    };
    let ty = match body.get("Type") {
        Some(Value::String(t)) => t.as_str(),
        _ => return err("These fields are required: [Type]", loc),
    };
    let kind = match ty {
        "Pass" => Kind::Pass(Pass {
            parameters: cx.template(if lang == Lang::Jsonata {
                "Arguments"
            } else {
                "Parameters"
            })?,
            result: body.get("Result").cloned(),
            result_path: cx.result_path(body, loc)?,
            transition: cx.transition()?,
        }),
        "Succeed" => Kind::Succeed,
        "Fail" => Kind::Fail(Fail {
            error: cx.dynamic_string("Error", "ErrorPath")?,
            cause: cx.dynamic_string("Cause", "CausePath")?,
        }),
        "Wait" => {
            let wait_for = if let Some(p) = cx.path("SecondsPath")? {
                WaitFor::SecondsPath(p)
            } else if let Some(p) = cx.path("TimestampPath")? {
                WaitFor::TimestampPath(p)
            } else {
                match (body.get("Seconds"), body.get("Timestamp")) {
                    (Some(Value::String(s)), None) if lang == Lang::Jsonata && JsonataExpr::is_expression(s) => {
                        WaitFor::SecondsExpr(ValueExpr::Jsonata(JsonataExpr::parse(s).or_else(|e| err(e, &cx.at("Seconds")))?))
                    }
                    (None, Some(Value::String(s))) if lang == Lang::Jsonata && JsonataExpr::is_expression(s) => {
                        WaitFor::TimestampExpr(ValueExpr::Jsonata(JsonataExpr::parse(s).or_else(|e| err(e, &cx.at("Timestamp")))?))
                    }
                    (Some(v), None) => WaitFor::Seconds(v.as_u64().ok_or_else(|| LoadError { message: "Seconds must be a non-negative integer".into(), location: cx.at("Seconds") })?),
                    (None, Some(Value::String(s))) => {
                        if crate::timestamp::parse_timestamp(s).is_none() {
                            return err("String does not match RFC3339 timestamp", &cx.at("Timestamp"));
                        }
                        WaitFor::Timestamp(s.clone())
                    }
                    _ => return err("A Wait state needs exactly one of Seconds, Timestamp, SecondsPath, TimestampPath", loc),
                }
            };
            Kind::Wait(Wait {
                wait_for,
                transition: cx.transition()?,
            })
        }
        "Choice" => {
            let Some(Value::Array(rules)) = body.get("Choices") else {
                return err("These fields are required: [Choices]", loc);
            };
            let mut choices = Vec::with_capacity(rules.len());
            for (i, r) in rules.iter().enumerate() {
                let rloc = format!("{loc}/Choices/{i}");
                let Value::Object(r) = r else {
                    return err("A choice rule must be an object", &rloc);
                };
                let rule = if let Some(c) = r.get("Condition") {
                    match c {
                        Value::String(s) if JsonataExpr::is_expression(s) => {
                            Rule::Condition(ValueExpr::Jsonata(
                                JsonataExpr::parse(s)
                                    .or_else(|e| err(e, &format!("{rloc}/Condition")))?,
                            ))
                        }
                        Value::Bool(b) => Rule::Condition(ValueExpr::Jsonata(
                            JsonataExpr::parse(&format!("{{% {b} %}}"))
                                .or_else(|e| err(e, &rloc))?,
                        )),
                        _ => {
                            return err(
                                "Condition must be a JSONata expression",
                                &format!("{rloc}/Condition"),
                            )
                        }
                    }
                } else {
                    compile_rule(r).or_else(|e| err(e, &rloc))?
                };
                let next = match r.get("Next") {
                    Some(Value::String(n)) => cx.target(n, &format!("{rloc}/Next"))?,
                    _ => return err("These fields are required: [Next]", &rloc),
                };
                choices.push(crate::model::ChoiceBranch {
                    rule,
                    next,
                    assign: cx.template_in(r, "Assign", &rloc)?,
                    output: cx.template_in(r, "Output", &rloc)?,
                });
            }
            let default = match body.get("Default") {
                Some(Value::String(d)) => Some(cx.target(d, &cx.at("Default"))?),
                _ => None,
            };
            Kind::Choice(Choice { choices, default })
        }
        "Task" => {
            let resource = cx.string("Resource")?.ok_or_else(|| LoadError {
                message: "These fields are required: [Resource]".into(),
                location: loc.to_string(),
            })?;
            Kind::Task(Box::new(Task {
                resource,
                work: cx.work("Parameters")?,
                timeout_seconds: cx.dynamic_u64("TimeoutSeconds", "TimeoutSecondsPath")?,
                heartbeat_seconds: cx.dynamic_u64("HeartbeatSeconds", "HeartbeatSecondsPath")?,
                credentials: body.get("Credentials").cloned(),
            }))
        }
        "Parallel" => {
            let Some(Value::Array(branches)) = body.get("Branches") else {
                return err("These fields are required: [Branches]", loc);
            };
            let mut gs = Vec::with_capacity(branches.len());
            for (i, b) in branches.iter().enumerate() {
                let bloc = format!("{loc}/Branches/{i}");
                let Value::Object(b) = b else {
                    return err("A branch must be an object", &bloc);
                };
                let bql = match b.get("QueryLanguage") {
                    Some(v) => parse_ql(v, &format!("{bloc}/QueryLanguage"))?,
                    None => query_language,
                };
                gs.push(load_graph(b, &bloc, bql, counter)?);
            }
            Kind::Parallel(Box::new(Parallel {
                branches: gs,
                work: cx.work("Parameters")?,
            }))
        }
        "Map" => {
            let (proc_field, proc) = match (body.get("ItemProcessor"), body.get("Iterator")) {
                (Some(Value::Object(p)), _) => ("ItemProcessor", p),
                (None, Some(Value::Object(p))) => ("Iterator", p),
                _ => return err("These fields are required: [ItemProcessor]", loc),
            };
            let ploc = format!("{loc}/{proc_field}");
            let distributed = proc
                .get("ProcessorConfig")
                .and_then(|c| c.get("Mode"))
                .and_then(Value::as_str)
                == Some("DISTRIBUTED");
            let pql = match proc.get("QueryLanguage") {
                Some(v) => parse_ql(v, &format!("{ploc}/QueryLanguage"))?,
                None => query_language,
            };
            let processor = load_graph(proc, &ploc, pql, counter)?;
            let dmap = distributed_map::load(&cx, proc, &ploc, distributed)?;
            let item_selector = match cx.template("ItemSelector")? {
                Some(t) => Some(t),
                None if lang == Lang::JsonPath => cx.template("Parameters")?,
                None => None,
            };
            let max_concurrency = cx
                .dynamic_u64("MaxConcurrency", "MaxConcurrencyPath")?
                .unwrap_or(Dynamic::Fixed(0));
            let mut work = cx.work("Parameters")?;
            work.parameters = None;
            let items = if lang == Lang::Jsonata {
                cx.template("Items")?
            } else {
                None
            };
            Kind::Map(Box::new(MapState {
                processor,
                items_path: cx.path("ItemsPath")?,
                items,
                item_selector,
                max_concurrency,
                tolerated_failure_count: cx
                    .dynamic_f64("ToleratedFailureCount", "ToleratedFailureCountPath")?,
                tolerated_failure_percentage: cx.dynamic_f64(
                    "ToleratedFailurePercentage",
                    "ToleratedFailurePercentagePath",
                )?,
                label: cx.string("Label")?,
                distributed,
                dmap,
                work,
            }))
        }
        other => return err(format!("Unknown state type '{other}'"), &cx.at("Type")),
    };
    let (input_path, output_path) = if lang == Lang::JsonPath {
        (cx.io_path("InputPath")?, cx.io_path("OutputPath")?)
    } else {
        (IoPath::Identity, IoPath::Identity)
    };
    Ok(State {
        name: name.to_string(),
        query_language,
        input_path,
        output_path,
        output: if lang == Lang::Jsonata {
            cx.template("Output")?
        } else {
            None
        },
        assign: cx.template("Assign")?,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_transitions_and_defaults() {
        let m = load_str(r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"B"},"B":{"Type":"Task","Resource":"r","Retry":[{"ErrorEquals":["States.ALL"]}],"End":true}}}"#).expect("loads");
        assert_eq!(m.graph.start, 0);
        let Kind::Pass(p) = &m.graph.states[0].kind else {
            panic!("pass")
        };
        assert_eq!(p.transition, Transition::Next(1));
        let Kind::Task(t) = &m.graph.states[1].kind else {
            panic!("task")
        };
        assert_eq!(t.work.retry[0].max_attempts, 3);
        assert_eq!(t.work.retry[0].backoff_rate, 2.0);
    }

    #[test]
    fn reports_missing_target_with_pointer() {
        let e = load_str(r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"Nope"}}}"#)
            .expect_err("fails");
        assert_eq!(e.location, "/States/A/Next");
        assert_eq!(e.message, "Missing 'Next' target: Nope");
    }
}
