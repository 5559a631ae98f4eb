//! The `outpost` command line (DESIGN §2).

// The command line is the shell's: it reads arguments, the terminal and files.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use outpost::config::Config;
use outpost::node::{AdminCommand, AdminReply};
use outpost::scram::Credentials;
use outpost::shell;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: outpost [run] [-c FILE]            run the node (embedded defaults without -c)
       outpost check [-c FILE]            validate a config and print the effective settings
       outpost user add USER [-c FILE]    create an account (password from the terminal or stdin)
       outpost user passwd USER [-c FILE] change a password
       outpost user del USER [-c FILE]    delete an account
       outpost user list [-c FILE]        list accounts
       outpost links [-c FILE]            links to other nodes: state, bytes, queue
       outpost data check [DIR] [-c FILE] read the log of DIR (default: the data_dir) and say
                                          what start-up would do with it; changes nothing
       outpost data salvage NEW_DIR [--from DIR] [-c FILE]
                                          copy what is readable of a damaged data_dir into
                                          NEW_DIR; the original is not changed
       outpost demo                       HQ and two sites on loopback with a shaped link
       outpost --version";

fn main() -> ExitCode {
    shell::allocator::configure();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outpost: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Split `-c FILE` / `--config FILE` out of the arguments.
fn take_config(args: &mut Vec<String>) -> Result<Option<PathBuf>, String> {
    let mut found = None;
    let mut i = 0;
    while i < args.len() {
        if args[i] == "-c" || args[i] == "--config" {
            if i + 1 >= args.len() {
                return Err(format!("{} needs a file name", args[i]));
            }
            found = Some(PathBuf::from(args.remove(i + 1)));
            args.remove(i);
        } else {
            i += 1;
        }
    }
    Ok(found)
}

fn load_config(path: Option<PathBuf>) -> Result<Config, String> {
    match path {
        Some(p) => shell::config_file::load(&p).map_err(|e| e.to_string()),
        None => shell::config_file::load_default().map_err(|e| e.to_string()),
    }
}

fn dispatch(mut args: Vec<String>) -> Result<(), String> {
    let config_path = take_config(&mut args)?;
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["--help"] | ["-h"] | ["help"] => {
            outpost::out!("{USAGE}");
            Ok(())
        }
        ["--version"] | ["-V"] => {
            outpost::out!("outpost {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        [] | ["run"] => {
            let cfg = load_config(config_path.clone())?;
            shell::logger::init(cfg.log_level.filter());
            let file = config_path.unwrap_or_else(Config::saved_default_path);
            match shell::run(cfg, file)? {
                shell::Stopped::Exit => Ok(()),
                shell::Stopped::Restart => restart(),
            }
        }
        ["check"] => {
            let cfg = load_config(config_path)?;
            outpost::out!("# configuration is valid; effective settings:");
            outpost::shell::stdout::write(format_args!("{}", cfg.effective()));
            // Creating the key here lets a site and HQ be paired before either starts.
            shell::datadir::create_private(&cfg.data_dir)?;
            let id = shell::link::identity(&cfg)?;
            outpost::out!("# this node's link key fingerprint: {}", id.fingerprint);
            Ok(())
        }
        ["user", rest @ ..] => {
            let cfg = load_config(config_path)?;
            shell::logger::init(log::LevelFilter::Warn);
            user_command(&cfg, rest)
        }
        ["links"] => {
            let cfg = load_config(config_path)?;
            shell::logger::init(log::LevelFilter::Warn);
            match shell::admin::execute(&cfg, AdminCommand::Links)? {
                AdminReply::Links(links) => {
                    outpost::out!(
                        "{:40} {:9} {:>12} {:>12} {:>8} {:>8} {:>8} {:>12}",
                        "peer",
                        "state",
                        "bytes in",
                        "bytes out",
                        "unacked",
                        "last in",
                        "rtt ms",
                        "saved"
                    );
                    for l in links {
                        let state = if l.connected { "up" } else { "down" };
                        let rtt = l.rtt_ms.map_or("-".to_string(), |r| r.to_string());
                        outpost::out!(
                            "{:40} {:9} {:>12} {:>12} {:>8} {:>8} {:>8} {:>12}",
                            l.peer,
                            state,
                            l.bytes_in,
                            l.bytes_out,
                            l.unacked,
                            l.last_in,
                            rtt,
                            l.saved_bytes
                        );
                    }
                    Ok(())
                }
                other => Err(format!("unexpected answer: {other:?}")),
            }
        }
        ["data", "check", rest @ ..] => {
            shell::logger::init(log::LevelFilter::Warn);
            let dir = match rest {
                [] => load_config(config_path)?.data_dir,
                [dir] => PathBuf::from(dir),
                _ => return Err(format!("bad data command\n{USAGE}")),
            };
            match shell::data::check(&dir)? {
                true => Ok(()),
                false => Err(format!("the log in {} needs salvaging", dir.display())),
            }
        }
        ["data", "salvage", to, rest @ ..] => {
            shell::logger::init(log::LevelFilter::Warn);
            let from = match rest {
                [] => load_config(config_path)?.data_dir,
                ["--from", dir] => PathBuf::from(dir),
                _ => return Err(format!("bad data command\n{USAGE}")),
            };
            shell::data::salvage(&from, &PathBuf::from(to))
        }
        ["demo"] => {
            shell::logger::init(log::LevelFilter::Warn);
            shell::demo::run(std::path::PathBuf::from("outpost-demo"))
        }
        _ => Err(format!("unknown command\n{USAGE}")),
    }
}

/// Start again in place, with the same arguments (the console's and the
/// web page's `restart`): the new process reads the saved configuration.
fn restart() -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(|e| format!("cannot restart: {e}"))?;
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .exec();
    Err(format!("cannot restart: {err}"))
}

/// Accept `alice` or `alice@<our domain>`.
fn local_name(cfg: &Config, user: &str) -> Result<String, String> {
    let local = match user.rsplit_once('@') {
        Some((l, d)) if d.eq_ignore_ascii_case(&cfg.domain.0) => l,
        Some((_, d)) => {
            return Err(format!(
                "{user}: this node serves {}, not {d}",
                cfg.domain.0
            ))
        }
        None => user,
    };
    outpost::jid::normalize_local(local).map_err(|e| format!("{user}: invalid user name: {e}"))
}

fn user_command(cfg: &Config, args: &[&str]) -> Result<(), String> {
    let cmd = match args {
        ["add", user] => AdminCommand::UserAdd {
            user: local_name(cfg, user)?,
            creds: credentials()?,
        },
        ["passwd", user] => AdminCommand::UserPasswd {
            user: local_name(cfg, user)?,
            creds: credentials()?,
        },
        ["del", user] => AdminCommand::UserDel {
            user: local_name(cfg, user)?,
        },
        ["list"] => AdminCommand::UserList,
        _ => return Err(format!("bad user command\n{USAGE}")),
    };
    let done = match &cmd {
        AdminCommand::UserAdd { user, .. } => Some(format!("user {user}@{} added", cfg.domain.0)),
        AdminCommand::UserPasswd { user, .. } => {
            Some(format!("password of {user}@{} changed", cfg.domain.0))
        }
        AdminCommand::UserDel { user } => Some(format!("user {user}@{} deleted", cfg.domain.0)),
        _ => None,
    };
    match shell::admin::execute(cfg, cmd)? {
        AdminReply::Done => {
            if let Some(done) = done {
                outpost::out!("{done}");
            }
            Ok(())
        }
        AdminReply::Users(users) => {
            for u in users {
                outpost::out!("{u}@{}", cfg.domain.0);
            }
            Ok(())
        }
        AdminReply::Error(e) => Err(e),
        other => Err(format!("unexpected answer: {other:?}")),
    }
}

/// Read a password (twice on a terminal, one line from a pipe) and derive
/// the SCRAM credentials here, so the password never reaches the node.
fn credentials() -> Result<Credentials, String> {
    let password = if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password("password: ").map_err(|e| e.to_string())?;
        let again = rpassword::prompt_password("again: ").map_err(|e| e.to_string())?;
        if p != again {
            return Err("the passwords differ".into());
        }
        p
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    outpost::scram::check_new_password(&password)?;
    Ok(shell::admin_ops::new_credentials(&password))
}
