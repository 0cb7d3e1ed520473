//! `ocpp-agent`: run the agent, check its configuration, or talk to a running agent.

use ocpp_agent::config::{Config, ConfigError, DEFAULT_CONFIG_PATH};
use ocpp_agent::shell::control::{self, PlugState, Request};
use ocpp_agent::shell::driver::{self, RunError};
use ocpp_agent::shell::{logging, signals, systemd};
use std::path::PathBuf;
use std::process::ExitCode;

// sysexits(3)
const EX_USAGE: u8 = 64;
const EX_UNAVAILABLE: u8 = 69;
const EX_SOFTWARE: u8 = 70;
const EX_CANTCREAT: u8 = 73;
const EX_TEMPFAIL: u8 = 75;
const EX_CONFIG: u8 = 78;

const USAGE: &str = "\
ocpp-agent: OCPP 2.0.1 charge-point agent

USAGE:
    ocpp-agent run [--config FILE]
    ocpp-agent check-config [--config FILE]
    ocpp-agent ctl [--socket PATH | --config FILE] status
    ocpp-agent ctl [--socket PATH | --config FILE] plug EVSE in|out [--connector N]
    ocpp-agent ctl [--socket PATH | --config FILE] token EVSE IDTOKEN [--type TYPE]
    ocpp-agent ctl [--socket PATH | --config FILE] variables [COMPONENT]
    ocpp-agent ctl [--socket PATH | --config FILE] limit station|EVSE AMPS|clear [--for SECONDS]
    ocpp-agent --version

The configuration defaults to /etc/ocpp-agent/agent.toml; OCPP_AGENT_<SECTION>__<KEY>
environment variables override it (e.g. OCPP_AGENT_CSMS__URL).

EXIT CODES: 0 ok, 64 usage, 69 agent not reachable, 75 restart requested (OCPP Reset), 73 control socket or hardware line failed,
78 bad configuration.

TOKEN TYPES: Central, eMAID, ISO14443 (default), ISO15693, KeyCode, Local, MacAddress,
NoAuthorization.";

fn main() -> ExitCode {
    match parse_args() {
        Ok(command) => command.execute(),
        Err(message) => {
            eprintln!("ocpp-agent: {message}\n\n{USAGE}");
            ExitCode::from(EX_USAGE)
        }
    }
}

enum Command {
    Help,
    Version,
    Run { config: PathBuf },
    CheckConfig { config: PathBuf },
    Ctl { target: CtlTarget, request: Request },
}

enum CtlTarget {
    Socket(PathBuf),
    Config(PathBuf),
}

fn parse_args() -> Result<Command, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
    let err = |e: lexopt::Error| e.to_string();
    let Some(arg) = parser.next().map_err(err)? else {
        return Ok(Command::Help);
    };
    let sub = match arg {
        Long("help") | Short('h') => return Ok(Command::Help),
        Long("version") | Short('V') => return Ok(Command::Version),
        Value(v) => v.string().map_err(err)?,
        other => return Err(other.unexpected().to_string()),
    };
    let mut config: Option<PathBuf> = None;
    let mut socket: Option<PathBuf> = None;
    let mut connector: Option<u32> = None;
    let mut token_type: Option<String> = None;
    let mut for_s: Option<u64> = None;
    let mut words: Vec<String> = Vec::new();
    while let Some(arg) = parser.next().map_err(err)? {
        match arg {
            Long("config") | Short('c') => config = Some(parser.value().map_err(err)?.into()),
            Long("socket") if sub == "ctl" => socket = Some(parser.value().map_err(err)?.into()),
            Long("connector") if sub == "ctl" => {
                connector = Some(parser.value().map_err(err)?.parse().map_err(err)?)
            }
            Long("for") if sub == "ctl" => {
                for_s = Some(parser.value().map_err(err)?.parse().map_err(err)?)
            }
            Long("type") if sub == "ctl" => {
                token_type = Some(parser.value().map_err(err)?.string().map_err(err)?)
            }
            Long("help") | Short('h') => return Ok(Command::Help),
            Value(v) if sub == "ctl" => words.push(v.string().map_err(err)?),
            other => return Err(other.unexpected().to_string()),
        }
    }
    let config_path = || {
        config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
    };
    match sub.as_str() {
        "run" => Ok(Command::Run {
            config: config_path(),
        }),
        "check-config" => Ok(Command::CheckConfig {
            config: config_path(),
        }),
        "ctl" => {
            let target = match (socket, config.clone()) {
                (Some(_), Some(_)) => return Err("give --socket or --config, not both".into()),
                (Some(s), None) => CtlTarget::Socket(s),
                (None, c) => {
                    CtlTarget::Config(c.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH)))
                }
            };
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            let request = match words.as_slice() {
                ["status"] => Request::Status,
                ["plug", evse, state] => Request::Plug {
                    evse: evse
                        .parse()
                        .map_err(|_| format!("EVSE must be a number, not {evse:?}"))?,
                    connector: connector.unwrap_or(1),
                    state: match *state {
                        "in" => PlugState::In,
                        "out" => PlugState::Out,
                        other => {
                            return Err(format!("plug state must be in or out, not {other:?}"));
                        }
                    },
                },
                ["token", evse, id_token] => Request::Token {
                    evse: evse
                        .parse()
                        .map_err(|_| format!("EVSE must be a number, not {evse:?}"))?,
                    id_token: id_token.to_string(),
                    token_type: token_type.unwrap_or_else(|| "ISO14443".into()),
                },
                ["limit", target, amps] => Request::Limit {
                    evse: match *target {
                        "station" => 0,
                        evse => evse.parse().map_err(|_| {
                            format!("limit takes `station` or an EVSE number, not {evse:?}")
                        })?,
                    },
                    amps: match *amps {
                        "clear" => None,
                        amps => Some(
                            amps.parse::<f64>()
                                .ok()
                                .filter(|a| a.is_finite())
                                .ok_or_else(|| {
                                    format!(
                                        "the limit is a number of amps or `clear`, not {amps:?}"
                                    )
                                })?,
                        ),
                    },
                    for_s,
                },
                ["variables"] => Request::Variables { component: None },
                ["variables", component] => Request::Variables {
                    component: Some(component.to_string()),
                },
                [] => return Err("ctl needs a command".into()),
                other => return Err(format!("unknown ctl command {:?}", other.join(" "))),
            };
            Ok(Command::Ctl { target, request })
        }
        other => Err(format!("unknown command {other:?}")),
    }
}

impl Command {
    fn execute(self) -> ExitCode {
        match self {
            Command::Help => {
                println!("{USAGE}");
                ExitCode::SUCCESS
            }
            Command::Version => {
                println!("ocpp-agent {}", env!("CARGO_PKG_VERSION"));
                ExitCode::SUCCESS
            }
            Command::CheckConfig { config } => match Config::load(&config) {
                Ok(_) => {
                    println!("{}: OK", config.display());
                    ExitCode::SUCCESS
                }
                Err(e) => config_failure(&config, &e),
            },
            Command::Run { config } => run(config),
            Command::Ctl { target, request } => ctl(target, request),
        }
    }
}

fn config_failure(path: &std::path::Path, e: &ConfigError) -> ExitCode {
    eprintln!("{}: configuration is not valid:", path.display());
    for line in e.to_string().lines() {
        eprintln!("  {line}");
    }
    ExitCode::from(EX_CONFIG)
}

/// One glibc malloc arena for the process. The agent has two threads (the runtime's and the
/// journal's); by default glibc gives the second its own arena, and each arena keeps freed
/// memory of its own (up to the 128 KiB trim threshold at its top). One arena shares it:
/// idle private memory 788 -> 744 kB (BENCHMARKS.md, issue 13). The journal thread takes the
/// arena's lock once per batch, so contention is nil. Called before any thread exists.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt(3) only sets a tunable; no other thread is running yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    // One thread: the agent is I/O bound and small; this keeps memory and wake-ups down.
    // I/O and timers, not tokio's signal driver: signals come from a signalfd
    // (`shell::signals`, issue 13).
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        // The epoll event buffer (12 B per event, 1024 by default, written when allocated):
        // the agent waits on a handful of descriptors, and events beyond 64 are taken on the
        // next turn of the loop.
        .max_io_events_per_tick(64)
        .build()
}

fn run(config_path: PathBuf) -> ExitCode {
    one_malloc_arena();
    // Before any thread exists (see shell::signals); driver::run reports a failure.
    let _ = signals::block_stop_signals();
    let config = match Config::load(&config_path) {
        Ok(c) => c,
        Err(e) => {
            logging::init("info");
            tracing::error!(config = %config_path.display(), "configuration is not valid: {e}");
            return config_failure(&config_path, &e);
        }
    };
    logging::init(&config.log.filter);
    // The process's lines carry the station id too (OCPP_STATION in the journal).
    let _span = logging::process_span(&[config.station.id.as_str()]).entered();
    let notifier = systemd::Notifier::from_env();
    let result = match runtime() {
        Ok(rt) => rt.block_on(driver::run(config, notifier)),
        Err(e) => Err(RunError::Io(e.to_string())),
    };
    match result {
        Ok(driver::Exit::Stopped) => ExitCode::SUCCESS,
        // OCPP Reset: systemd restarts us (Restart=on-failure, RestartForceExitStatus=75).
        Ok(driver::Exit::Reboot) => ExitCode::from(EX_TEMPFAIL),
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("ocpp-agent: {e}");
            ExitCode::from(match e {
                RunError::Config(_) => EX_CONFIG,
                RunError::CantCreate(_) => EX_CANTCREAT,
                RunError::Io(_) => EX_SOFTWARE,
            })
        }
    }
}

fn ctl(target: CtlTarget, request: Request) -> ExitCode {
    let socket = match target {
        CtlTarget::Socket(s) => s,
        CtlTarget::Config(path) => match Config::load_control_socket(&path) {
            Ok(socket) => socket,
            Err(e) => return config_failure(&path, &e),
        },
    };
    let response = match runtime() {
        Ok(rt) => rt.block_on(control::call(&socket, &request)),
        Err(e) => Err(e),
    };
    match response {
        Ok(r) if r.ok => {
            let result = r.result.unwrap_or(serde_json::Value::Null);
            println!(
                "{}",
                serde_json::to_string_pretty(&result).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok(r) => {
            eprintln!("ocpp-agent: {}", r.error.unwrap_or_default());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!(
                "ocpp-agent: cannot reach the agent at {}: {e}",
                socket.display()
            );
            ExitCode::from(EX_UNAVAILABLE)
        }
    }
}
