//! The tokio shell: everything that touches the world (sockets, files, GPIO, signals, systemd)
//! lives here and only here.
pub mod certstore;
pub mod control;
pub mod driver;
pub mod firmware;
pub mod ftp;
pub mod gpio;
pub mod hardware;
pub mod http;
pub mod journal;
pub mod journal_backend;
pub mod logging;
pub mod logs;
pub mod pilot;
pub mod process;
pub mod signals;
pub mod station_task;
pub mod store;
pub mod systemd;
pub mod tls;
pub mod watch;
pub mod ws;
