//! The `expressway` binary.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use expressway_asl::validate::{MachineType, Validation};
use expressway_cli::local::{machine_name_from_path, run_definition, Identity};
use expressway_engine::runtime::{OsEntropy, TokioClock};
use expressway_engine::tasks::Registry;
use expressway_engine::{Entropy, LogConfig, LogLevel, Runtime};
use expressway_tasks::TaskConfig;
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// mimalloc: the engine allocates many small JSON nodes; glibc malloc spent ~30 % of a profile there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit codes (sysexits.h).
const EX_USAGE: u8 = 64;
const EX_DATAERR: u8 = 65;
const EX_NOINPUT: u8 = 66;

#[derive(Parser)]
#[command(
    name = "expressway",
    version,
    about = "AWS Step Functions Express workflows on Kafka"
)]
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
    /// Run a machine repeatedly in-process (parsed once, real engine, no broker) and report throughput.
    Bench(BenchArgs),
    /// The executor pod: consume start events, run executions, publish logs and results.
    Serve(expressway_cli::serve::ServeArgs),
    /// The Step Functions API (awsJson1_0, SigV4) for boto3, the AWS CLI and Terraform.
    Gateway(expressway_cli::gateway::GatewayArgs),
    /// Embedded mock Kafka cluster plus an executor and the gateway, for trying it out.
    Dev(expressway_cli::dev::DevArgs),
    /// Produce a start event.
    Start(expressway_cli::client::StartArgs),
    /// Follow results (or logs).
    Tail(expressway_cli::client::TailArgs),
    /// Complete a waiting `.waitForTaskToken` task with its output (a callback record).
    SendTaskSuccess(expressway_cli::send_task::SuccessArgs),
    /// Fail a waiting `.waitForTaskToken` task with an error and cause.
    SendTaskFailure(expressway_cli::send_task::FailureArgs),
    /// Restart a waiting task's HeartbeatSeconds timer.
    SendTaskHeartbeat(expressway_cli::send_task::HeartbeatArgs),
}

#[derive(clap::Args)]
struct BenchArgs {
    /// The definition file (ASL JSON).
    definition: PathBuf,
    /// Execution input (JSON text).
    #[arg(long, conflicts_with = "input_file")]
    input: Option<String>,
    /// Read the execution input from a file.
    #[arg(long)]
    input_file: Option<PathBuf>,
    /// How long to run.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Run exactly this many executions per thread instead of timing (for instruction counts
    /// under `valgrind --tool=callgrind`, which do not depend on machine noise).
    #[arg(long)]
    iterations: Option<u64>,
    /// Worker threads, each running executions back to back.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Log level of every execution: ALL, ERROR, FATAL or OFF (ALL includes execution data).
    #[arg(long, default_value = "OFF", value_parser = parse_level)]
    log_level: LogLevel,
    /// Also render every execution's result record and JSON log record as `expressway serve`
    /// does (`result_json`, `log_record_json`), to measure that path too.
    #[arg(long)]
    render_records: bool,
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
    /// Task configuration (JSON): connections, functions, egress allowlist (expressway-tasks).
    #[arg(long)]
    config: Option<PathBuf>,
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
        Command::Bench(args) => cmd_bench(args),
        Command::Serve(args) => exit_on_error(expressway_cli::serve::run(args)),
        Command::Gateway(args) => exit_on_error(expressway_cli::gateway::run(args)),
        Command::Dev(args) => exit_on_error(expressway_cli::dev::run(args)),
        Command::Start(args) => exit_on_error(expressway_cli::client::start(args)),
        Command::Tail(args) => exit_on_error(expressway_cli::client::tail(args)),
        Command::SendTaskSuccess(args) => exit_on_error(expressway_cli::send_task::success(args)),
        Command::SendTaskFailure(args) => exit_on_error(expressway_cli::send_task::failure(args)),
        Command::SendTaskHeartbeat(args) => {
            exit_on_error(expressway_cli::send_task::heartbeat(args))
        }
    }
}

/// Kafka commands: exit 0, or 1 with the error chain on stderr.
fn exit_on_error(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("expressway: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn read_file(path: &PathBuf) -> Result<String, ExitCode> {
    std::fs::read_to_string(path).map_err(|e| {
        eprintln!("expressway: cannot read {}: {e}", path.display());
        ExitCode::from(EX_NOINPUT)
    })
}

fn print_diagnostics(report: &Validation) {
    eprintln!("{}", serde_json::to_string(report).unwrap_or_default());
}

fn machine_type(s: &str) -> Result<MachineType, ExitCode> {
    match s {
        "EXPRESS" => Ok(MachineType::Express),
        "STANDARD" => Ok(MachineType::Standard),
        other => {
            eprintln!("expressway: unknown state machine type '{other}' (EXPRESS or STANDARD)");
            Err(ExitCode::from(EX_USAGE))
        }
    }
}

/// Reads, validates and loads a definition; exits 66 / 65 with diagnostics on stderr.
fn load_definition(path: &PathBuf) -> Result<expressway_asl::StateMachine, ExitCode> {
    let text = read_file(path)?;
    expressway_asl::load_validated(&text, MachineType::Express).map_err(|report| {
        print_diagnostics(&report);
        ExitCode::from(EX_DATAERR)
    })
}

fn cmd_validate(args: ValidateArgs) -> ExitCode {
    let text = match read_file(&args.definition) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let ty = match machine_type(&args.machine_type) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let report = match expressway_asl::load_validated(&text, ty) {
        Ok(_) => Validation {
            diagnostics: Vec::new(),
        },
        Err(report) => report,
    };
    println!("{}", serde_json::to_string(&report).unwrap_or_default());
    if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn read_input(input: &Option<String>, input_file: &Option<PathBuf>) -> Result<Value, ExitCode> {
    let text = match (input, input_file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => read_file(f)?,
        (None, None) => "{}".to_string(),
    };
    serde_json::from_str(&text).map_err(|e| {
        eprintln!("expressway: the input is not valid JSON: {e}");
        ExitCode::from(EX_DATAERR)
    })
}

fn cmd_bench(args: BenchArgs) -> ExitCode {
    let machine = match load_definition(&args.definition) {
        Ok(m) => Arc::new(m),
        Err(code) => return code,
    };
    let input = match read_input(&args.input, &args.input_file) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let machine_name = machine_name_from_path(&args.definition);
    let duration = std::time::Duration::from_secs_f64(args.seconds.max(0.1));
    let threads = args.threads.max(1);
    let iterations = args.iterations;
    let render = args.render_records;
    let log = LogConfig {
        level: args.log_level,
        include_execution_data: args.log_level == LogLevel::All,
    };
    let started = std::time::Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let machine = machine.clone();
            let input = input.clone();
            let machine_name = machine_name.clone();
            std::thread::spawn(move || -> anyhow::Result<(u64, u64)> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .context("starting the async runtime")?;
                rt.block_on(async move {
                    let clock = Arc::new(TokioClock::new());
                    let runtime = Runtime {
                        map_children: None,
                        clock: clock.clone(),
                        entropy: Arc::new(OsEntropy),
                        tasks: Arc::new(Registry::new(clock)),
                        callbacks: None,
                    };
                    let identity = Identity {
                        machine: machine_name,
                        name: format!("bench-{t}"),
                        uuid: [t as u8; 16],
                    };
                    let req = expressway_cli::local::request(&identity, input, log);
                    let (mut executions, mut transitions) = (0u64, 0u64);
                    if let Some(n) = iterations {
                        for _ in 0..n {
                            let outcome =
                                expressway_engine::execute(&machine, &req, &runtime).await;
                            transitions += outcome.state_transitions;
                            executions += 1;
                            if render {
                                render_records(&outcome, &req);
                            }
                        }
                        return Ok((executions, transitions));
                    }
                    let deadline = std::time::Instant::now() + duration;
                    while std::time::Instant::now() < deadline {
                        for _ in 0..64 {
                            let outcome =
                                expressway_engine::execute(&machine, &req, &runtime).await;
                            transitions += outcome.state_transitions;
                            executions += 1;
                            if render {
                                render_records(&outcome, &req);
                            }
                        }
                    }
                    Ok((executions, transitions))
                })
            })
        })
        .collect();
    let (mut executions, mut transitions) = (0u64, 0u64);
    for w in workers {
        match w.join() {
            Ok(Ok((e, t))) => {
                executions += e;
                transitions += t;
            }
            Ok(Err(e)) => {
                eprintln!("expressway: {e:#}");
                return ExitCode::from(70);
            }
            Err(_) => {
                eprintln!("expressway: a benchmark thread panicked");
                return ExitCode::from(70);
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "executions": executions,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "executions_per_second": (executions as f64 / seconds).round(),
            "transitions_per_second": (transitions as f64 / seconds).round(),
            "threads": threads,
        })
    );
    ExitCode::SUCCESS
}

/// The serve path's record rendering (result record text and JSON log record), kept from being
/// optimized away.
fn render_records(outcome: &expressway_engine::Outcome, req: &expressway_engine::ExecutionRequest) {
    let result = outcome.result_json(req, None);
    let log = outcome.log_record_json(req);
    std::hint::black_box((result, log));
}

fn cmd_run(args: RunArgs) -> ExitCode {
    let machine = match load_definition(&args.definition) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let input = match read_input(&args.input, &args.input_file) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let tasks = match load_task_config(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match run_and_print(&args, &machine, input, tasks) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("expressway: {e:#}");
            ExitCode::from(70)
        }
    }
}

/// Reads `--config`; exits 66 when unreadable, 65 when invalid.
fn load_task_config(path: &Option<PathBuf>) -> Result<Option<TaskConfig>, ExitCode> {
    let Some(path) = path else { return Ok(None) };
    let text = read_file(path)?;
    TaskConfig::from_json_str(&text).map(Some).map_err(|e| {
        eprintln!("expressway: {}: {e}", path.display());
        ExitCode::from(EX_DATAERR)
    })
}

fn run_and_print(
    args: &RunArgs,
    machine: &expressway_asl::StateMachine,
    input: Value,
    tasks: Option<TaskConfig>,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(async {
        let clock = Arc::new(TokioClock::new());
        let entropy = Arc::new(OsEntropy);
        let registry = match &tasks {
            Some(config) => config.build_registry(clock.clone(), None)?,
            None => Registry::new(clock.clone()),
        };
        let runtime = Runtime {
            map_children: None,
            clock: clock.clone(),
            entropy: entropy.clone(),
            tasks: Arc::new(registry),
            callbacks: None,
        };
        let mut uuid = [0u8; 16];
        uuid[..8].copy_from_slice(&entropy.next_u64().to_be_bytes());
        uuid[8..].copy_from_slice(&entropy.next_u64().to_be_bytes());
        let name = args
            .name
            .clone()
            .unwrap_or_else(|| expressway_engine::runtime::uuid_v4(entropy.as_ref()));
        let identity = Identity {
            machine: machine_name_from_path(&args.definition),
            name,
            uuid,
        };
        let log = LogConfig {
            level: args.log_level,
            include_execution_data: args.include_execution_data,
        };
        anyhow::Ok(run_definition(machine, &identity, input, log, &runtime).await)
    });
    let (req, outcome) = result.context("building the task registry")?;
    if let Some(dest) = &args.logs {
        let record = outcome.log_record(&req).to_string();
        if dest == "-" {
            eprintln!("{record}");
        } else {
            std::fs::write(dest, format!("{record}\n"))
                .with_context(|| format!("writing logs to {dest}"))?;
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", outcome.result_object(&req)).context("writing the result")?;
    Ok(())
}
