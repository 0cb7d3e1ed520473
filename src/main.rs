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
    ocpp-agent ctl [--socket PATH | --config FILE] display [--json]
    ocpp-agent ctl [--socket PATH | --config FILE] watch
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
    Run {
        config: PathBuf,
    },
    CheckConfig {
        config: PathBuf,
    },
    Ctl {
        target: CtlTarget,
        request: Request,
        /// `ctl display`: the JSON rather than text for a person.
        json: bool,
    },
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
    let mut json = false;
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
            Long("json") if sub == "ctl" => json = true,
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
                ["display"] => Request::Display,
                ["watch"] => Request::Watch,
                ["variables"] => Request::Variables { component: None },
                ["variables", component] => Request::Variables {
                    component: Some(component.to_string()),
                },
                [] => return Err("ctl needs a command".into()),
                other => return Err(format!("unknown ctl command {:?}", other.join(" "))),
            };
            if json && request != Request::Display {
                return Err("--json is for `ctl display` (the other commands print JSON)".into());
            }
            Ok(Command::Ctl {
                target,
                request,
                json,
            })
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
            Command::Ctl {
                target,
                request,
                json,
            } => ctl(target, request, json),
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

/// The glibc tunable that sizes malloc's per-thread cache of freed blocks.
const TCACHE_TUNABLE: &str = "glibc.malloc.tcache_count";

/// Starts `run` again, once, with glibc's per-thread cache of freed blocks (tcache) turned
/// off, unless the environment already sizes it. Each thread's tcache keeps up to 7 freed
/// blocks of each of 64 sizes for reuse; `malloc_trim` cannot give them back, and at idle
/// the runtime's and the journal thread's caches held about 90 KB of the agent's 236 kB
/// heap (issue 13: idle private memory 576 -> 492 kB). The agent allocates a few blocks a
/// second and does not need the speed. The cache can only be sized by a tunable glibc reads
/// when the process starts (`GLIBC_TUNABLES`), hence the exec; the systemd unit sets it, so
/// no exec happens there, and a value of the user's own is left alone. Returns only if the
/// exec failed (e.g. a foreign-architecture binary under qemu-user without binfmt_misc; the
/// scripts that run the ARMv7 binary under qemu-arm set the tunable themselves): the agent
/// then runs with the cache.
fn without_malloc_thread_cache() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        let mut tunables = std::env::var_os("GLIBC_TUNABLES").unwrap_or_default();
        if tunables.to_string_lossy().contains(TCACHE_TUNABLE) {
            return;
        }
        if !tunables.is_empty() {
            tunables.push(":");
        }
        tunables.push(format!("{TCACHE_TUNABLE}=0"));
        // The path, not /proc/self/exe: under qemu-user the latter is the emulator, which
        // would take `run` for the program to load; the path it reports is the guest binary's.
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let mut args = std::env::args_os();
        let mut command = std::process::Command::new(exe);
        if let Some(arg0) = args.next() {
            command.arg0(arg0);
        }
        let error = command.args(args).env("GLIBC_TUNABLES", tunables).exec();
        // Nothing is logged yet (the configuration sets the log filter): stderr it is.
        eprintln!("ocpp-agent: running with malloc's thread cache (restarting without: {error})");
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
    without_malloc_thread_cache();
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

fn ctl(target: CtlTarget, request: Request, json: bool) -> ExitCode {
    let socket = match target {
        CtlTarget::Socket(s) => s,
        CtlTarget::Config(path) => match Config::load_control_socket(&path) {
            Ok(socket) => socket,
            Err(e) => return config_failure(&path, &e),
        },
    };
    // What the agent answered: a result to print (none for a watch, whose lines went out as
    // they came), or its refusal.
    let outcome = runtime().and_then(|rt| {
        rt.block_on(async {
            if request == Request::Watch {
                return control::watch(&socket, &request, print_line)
                    .await
                    .map(|r| r.map(|()| None));
            }
            control::call(&socket, &request).await.map(|r| match r.ok {
                true => Ok(Some(r.result.unwrap_or(serde_json::Value::Null))),
                false => Err(r.error.unwrap_or_default()),
            })
        })
    });
    match outcome {
        Ok(Ok(result)) => {
            match result {
                Some(result) if request == Request::Display && !json => {
                    print!("{}", display_text(&result))
                }
                Some(result) => println!(
                    "{}",
                    serde_json::to_string_pretty(&result).unwrap_or_default()
                ),
                None => {}
            }
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("ocpp-agent: {e}");
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

/// A `ctl watch` line on stdout, flushed at once (an HMI reads it through a pipe).
fn print_line(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `ctl display` for a person: each screen, its state, its items in order.
fn display_text(display: &serde_json::Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for screen in display["screens"].as_array().into_iter().flatten() {
        let name = match screen["evse"].as_u64() {
            Some(0) | None => "Station (main display)".to_owned(),
            Some(n) => format!("EVSE {n}"),
        };
        let _ = writeln!(out, "{name}: {}", screen["state"].as_str().unwrap_or("?"));
        let items = screen["items"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if items.is_empty() {
            let _ = writeln!(out, "  (no message)");
        }
        for (n, item) in items.iter().enumerate() {
            let mut about = vec![
                item["source"].as_str().unwrap_or("?").to_owned(),
                item["format"].as_str().unwrap_or("?").to_owned(),
            ];
            if let Some(id) = item["id"].as_i64() {
                about.insert(1, format!("id {id}"));
            }
            if let Some(l) = item["language"].as_str() {
                about.push(l.to_owned());
            }
            if let Some(tx) = item["transaction_id"].as_str() {
                about.push(format!("transaction {tx}"));
            }
            if let Some(until) = item["until"].as_str() {
                about.push(format!("until {until}"));
            }
            let _ = writeln!(
                out,
                "  {}. [{}] {} ({})",
                n + 1,
                item["priority"].as_str().unwrap_or("?"),
                item["content"].as_str().unwrap_or(""),
                about.join(", ")
            );
        }
    }
    out
}
