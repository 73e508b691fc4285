//! The `expressway` binary.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use expressway_cli::local::{machine_name_from_path, run_definition, Identity};
use expressway_engine::runtime::{OsEntropy, TokioClock};
use expressway_engine::tasks::Registry;
use expressway_engine::{Entropy, LogConfig, LogLevel, Runtime};
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Exit codes (sysexits.h).
const EX_USAGE: u8 = 64;
const EX_DATAERR: u8 = 65;
const EX_NOINPUT: u8 = 66;

#[derive(Parser)]
#[command(name = "expressway", version, about = "AWS Step Functions Express workflows on Kafka")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one execution locally (no broker) and print its result object.
    Run(RunArgs),
    /// Validate a definition statically (AWS ValidateStateMachineDefinition shape).
    Validate(ValidateArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// The definition file (ASL JSON).
    definition: PathBuf,
    /// Execution input (JSON text).
    #[arg(long, conflicts_with = "input_file")]
    input: Option<String>,
    /// Read the execution input from a file.
    #[arg(long)]
    input_file: Option<PathBuf>,
    /// Execution name (default: a random UUID).
    #[arg(long)]
    name: Option<String>,
    /// Log level of the execution's log record: ALL, ERROR, FATAL or OFF.
    #[arg(long, default_value = "OFF", value_parser = parse_level)]
    log_level: LogLevel,
    /// Keep inputs and outputs in log events.
    #[arg(long)]
    include_execution_data: bool,
    /// Where to write the log record (`-` is stderr, so stdout stays one line).
    #[arg(long)]
    logs: Option<String>,
}

#[derive(clap::Args)]
struct ValidateArgs {
    /// The definition file.
    definition: PathBuf,
    /// EXPRESS or STANDARD.
    #[arg(long = "type", default_value = "EXPRESS")]
    machine_type: String,
}

fn parse_level(s: &str) -> Result<LogLevel, String> {
    LogLevel::parse(s).ok_or_else(|| format!("unknown log level '{s}' (ALL, ERROR, FATAL, OFF)"))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EX_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Run(args) => cmd_run(args),
        Command::Validate(args) => cmd_validate(args),
    }
}

fn read_file(path: &PathBuf) -> Result<String, ExitCode> {
    std::fs::read_to_string(path).map_err(|e| {
        eprintln!("expressway: cannot read {}: {e}", path.display());
        ExitCode::from(EX_NOINPUT)
    })
}

fn print_diagnostics(err: &expressway_asl::LoadError) {
    let report = serde_json::json!({
        "result": "FAIL",
        "diagnostics": [{"severity": "ERROR", "code": "SCHEMA_VALIDATION_FAILED", "message": err.message, "location": err.location}],
        "truncated": false
    });
    eprintln!("{report}");
}

fn cmd_validate(args: ValidateArgs) -> ExitCode {
    let text = match read_file(&args.definition) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let _ = args.machine_type;
    match expressway_asl::load_str(&text) {
        Ok(_) => {
            println!("{}", serde_json::json!({"result": "OK", "diagnostics": [], "truncated": false}));
            ExitCode::SUCCESS
        }
        Err(e) => {
            let report = serde_json::json!({
                "result": "FAIL",
                "diagnostics": [{"severity": "ERROR", "code": "SCHEMA_VALIDATION_FAILED", "message": e.message, "location": e.location}],
                "truncated": false
            });
            println!("{report}");
            ExitCode::from(1)
        }
    }
}

fn cmd_run(args: RunArgs) -> ExitCode {
    let text = match read_file(&args.definition) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let machine = match expressway_asl::load_str(&text) {
        Ok(m) => m,
        Err(e) => {
            print_diagnostics(&e);
            return ExitCode::from(EX_DATAERR);
        }
    };
    let input_text = match (&args.input, &args.input_file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => match read_file(f) {
            Ok(t) => t,
            Err(code) => return code,
        },
        (None, None) => "{}".to_string(),
    };
    let input: Value = match serde_json::from_str(&input_text) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("expressway: the input is not valid JSON: {e}");
            return ExitCode::from(EX_DATAERR);
        }
    };
    match run_and_print(&args, &machine, input) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("expressway: {e:#}");
            ExitCode::from(70)
        }
    }
}

fn run_and_print(args: &RunArgs, machine: &expressway_asl::StateMachine, input: Value) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().context("starting the async runtime")?;
    let result = rt.block_on(async {
        let clock = Arc::new(TokioClock::new());
        let entropy = Arc::new(OsEntropy);
        let runtime = Runtime { clock: clock.clone(), entropy: entropy.clone(), tasks: Arc::new(Registry::new(clock)) };
        let mut uuid = [0u8; 16];
        uuid[..8].copy_from_slice(&entropy.next_u64().to_be_bytes());
        uuid[8..].copy_from_slice(&entropy.next_u64().to_be_bytes());
        let name = args.name.clone().unwrap_or_else(|| expressway_engine::runtime::uuid_v4(entropy.as_ref()));
        let identity = Identity { machine: machine_name_from_path(&args.definition), name, uuid };
        let log = LogConfig { level: args.log_level, include_execution_data: args.include_execution_data };
        run_definition(machine, &identity, input, log, &runtime).await
    });
    let (req, outcome) = result;
    if let Some(dest) = &args.logs {
        let record = outcome.log_record(&req).to_string();
        if dest == "-" {
            eprintln!("{record}");
        } else {
            std::fs::write(dest, format!("{record}\n")).with_context(|| format!("writing logs to {dest}"))?;
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", outcome.result_object(&req)).context("writing the result")?;
    Ok(())
}
