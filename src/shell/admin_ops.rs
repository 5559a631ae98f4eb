//! Runs administration commands for the serial console, the web page and
//! the admin socket: node commands go through the core's event channel;
//! configuration edits are validated (`admin::config_edit`), checked
//! against the machine (a listen port must be free) and written to the
//! config file.

use super::AdminWaiters;
use crate::admin::config_edit::{self, Edit, Effect};
use crate::admin::report::{self, Facts};
use crate::admin::Command;
use crate::config::Config;
use crate::node::{AdminCommand, AdminReply, Event, NodeStatus};
use crate::scram::{Credentials, DEFAULT_ITERATIONS};
use smol::channel::{self, Sender};
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};

/// Derive stored credentials for a new password, with a fresh salt.
pub fn new_credentials(password: &str) -> Credentials {
    let salt = super::random_seed();
    Credentials::derive(password, &salt[..16], DEFAULT_ITERATIONS)
}

pub struct AdminOps {
    events: Sender<Event>,
    waiters: AdminWaiters,
    next_req: Cell<u64>,
    /// The configuration the node runs with.
    running: Config,
    /// The saved file as it applies now: parsed like edits are (so the two
    /// compare), changed by edits applied live.
    in_force: RefCell<Config>,
    /// Where edits are saved, and the text saved there now.
    config_file: PathBuf,
    saved: RefCell<String>,
    /// A saved edit needs a restart to take effect.
    restart_pending: Cell<bool>,
    fingerprint: String,
    /// Set by `restart`: the shell re-executes the node once it has stopped.
    pub restart_requested: Cell<bool>,
}

impl AdminOps {
    pub fn new(
        events: Sender<Event>,
        waiters: AdminWaiters,
        running: Config,
        config_file: PathBuf,
        fingerprint: String,
    ) -> AdminOps {
        // Without a file yet (embedded default), edits start from the default's text.
        let saved = std::fs::read_to_string(&config_file)
            .unwrap_or_else(|_| crate::config::EMBEDDED_DEFAULT.to_string());
        let in_force = Config::parse(&saved, &config_file.display().to_string())
            .unwrap_or_else(|_| running.clone());
        AdminOps {
            events,
            waiters,
            next_req: Cell::new(1),
            running,
            in_force: RefCell::new(in_force),
            config_file,
            saved: RefCell::new(saved),
            restart_pending: Cell::new(false),
            fingerprint,
            restart_requested: Cell::new(false),
        }
    }

    /// Ask the core; `Err` if the node is stopping.
    pub async fn ask(&self, cmd: AdminCommand) -> Result<AdminReply, String> {
        let req = self.next_req.get();
        self.next_req.set(req + 1);
        let (tx, rx) = channel::bounded(1);
        self.waiters.borrow_mut().insert(req, tx);
        let stopping = || "the node is stopping".to_string();
        self.events
            .send(Event::Admin { req, cmd })
            .await
            .map_err(|_| stopping())?;
        rx.recv().await.map_err(|_| stopping())
    }

    async fn done(&self, cmd: AdminCommand, what: String) -> Result<String, String> {
        match self.ask(cmd).await? {
            AdminReply::Done => Ok(what),
            AdminReply::Error(e) => Err(e),
            other => Err(format!("unexpected answer: {other:?}")),
        }
    }

    pub async fn password_set(&self) -> bool {
        matches!(
            self.ask(AdminCommand::AdminPasswordGet).await,
            Ok(AdminReply::AdminPassword(Some(_)))
        )
    }

    pub async fn check_password(&self, password: &str) -> bool {
        match self.ask(AdminCommand::AdminPasswordGet).await {
            Ok(AdminReply::AdminPassword(Some(creds))) => creds.verify_password(password),
            _ => false,
        }
    }

    pub async fn set_password(&self, password: &str) -> Result<String, String> {
        crate::scram::check_new_password(password)?;
        let creds = new_credentials(password);
        self.done(
            AdminCommand::AdminPasswordSet { creds },
            "admin password set".into(),
        )
        .await
    }

    pub async fn status(&self) -> Result<NodeStatus, String> {
        match self.ask(AdminCommand::Status).await? {
            AdminReply::Status(s) => Ok(s),
            other => Err(format!("unexpected answer: {other:?}")),
        }
    }

    pub async fn users(&self) -> Result<Vec<String>, String> {
        match self.ask(AdminCommand::UserList).await? {
            AdminReply::Users(u) => Ok(u),
            other => Err(format!("unexpected answer: {other:?}")),
        }
    }

    pub fn facts(&self) -> Facts {
        Facts {
            fingerprint: self.fingerprint.clone(),
            log_bytes: dir_bytes(&super::datadir::log_dir(&self.running.data_dir)),
            config_file: self.config_file.display().to_string(),
            restart_pending: self.restart_pending.get(),
        }
    }

    /// The saved configuration, parsed (what a restart would run).
    pub fn saved_config(&self) -> Config {
        Config::parse(&self.saved.borrow(), &self.config_name())
            .unwrap_or_else(|_| self.running.clone())
    }

    fn config_name(&self) -> String {
        self.config_file.display().to_string()
    }

    /// Run one command; the text is what the console prints before `OK`.
    pub async fn run(&self, cmd: Command) -> Result<String, String> {
        let user =
            |u: &str| crate::jid::normalize_local(u).map_err(|e| format!("invalid user name: {e}"));
        match cmd {
            Command::Help => Ok(crate::admin::command::HELP.into()),
            Command::Status => Ok(report::status(
                &self.status().await?,
                &self.facts(),
                &self.saved_config(),
            )),
            Command::Links => Ok(report::links(
                &self.status().await?.links,
                &self.facts(),
                &self.saved_config(),
            )),
            Command::Rooms => Ok(report::rooms(&self.status().await?.rooms)),
            Command::Users => Ok(self.users().await?.join("\n")),
            Command::ConfigShow => Ok(self.saved.borrow().trim_end().to_string()),
            Command::ConfigGet { key } => config_edit::get(&self.saved_config(), &key),
            Command::ConfigSet { key, value } => {
                self.edit(
                    |text, file| config_edit::set(text, file, &key, &value),
                    &format!("{key} set"),
                )
                .await
            }
            Command::UpstreamAdd {
                muc,
                connect,
                fingerprint,
            } => {
                self.edit(
                    |text, file| {
                        config_edit::add_upstream(text, file, &muc, &connect, &fingerprint)
                    },
                    &format!("upstream {muc} added"),
                )
                .await
            }
            Command::UpstreamDel { muc } => {
                self.edit(
                    |text, file| config_edit::del_upstream(text, file, &muc),
                    &format!("upstream {muc} removed"),
                )
                .await
            }
            Command::PeerAdd {
                domain,
                fingerprint,
            } => {
                self.edit(
                    |text, file| config_edit::add_peer(text, file, &domain, &fingerprint),
                    &format!("peer {domain} added"),
                )
                .await
            }
            Command::PeerDel { domain } => {
                self.edit(
                    |text, file| config_edit::del_peer(text, file, &domain),
                    &format!("peer {domain} removed"),
                )
                .await
            }
            Command::UserAdd { user: u, password } => {
                let u = user(&u)?;
                crate::scram::check_new_password(&password)?;
                let creds = new_credentials(&password);
                self.done(
                    AdminCommand::UserAdd {
                        user: u.clone(),
                        creds,
                    },
                    format!("user {u} added"),
                )
                .await
            }
            Command::UserPasswd { user: u, password } => {
                let u = user(&u)?;
                crate::scram::check_new_password(&password)?;
                let creds = new_credentials(&password);
                self.done(
                    AdminCommand::UserPasswd {
                        user: u.clone(),
                        creds,
                    },
                    format!("password of {u} changed"),
                )
                .await
            }
            Command::UserDel { user: u } => {
                let u = user(&u)?;
                self.done(
                    AdminCommand::UserDel { user: u.clone() },
                    format!("user {u} deleted"),
                )
                .await
            }
            Command::AdminPasswd { password } => self.set_password(&password).await,
            Command::Restart => {
                self.restart_requested.set(true);
                Ok("restarting".into())
            }
            Command::Logout => Ok(String::new()),
        }
    }

    /// After the answer to `restart` is written: stop the node, which then
    /// starts again.
    pub async fn restart_if_requested(&self) {
        if self.restart_requested.get() {
            let _ = self.events.send(Event::Shutdown).await;
        }
    }

    /// Make an edit to the saved text (the file's name goes into errors) and save it.
    async fn edit(
        &self,
        change: impl FnOnce(&str, &str) -> Result<Edit, String>,
        what: &str,
    ) -> Result<String, String> {
        let edit = change(&self.saved.borrow(), &self.config_name())?;
        self.save(edit, what).await
    }

    /// Check what only the machine can tell (a port in use), then write the
    /// file and apply what can be applied live.
    async fn save(&self, edit: Edit, what: &str) -> Result<String, String> {
        let new = &edit.config;
        let old = &self.running;
        let listens = [
            ("c2s.listen", Some(new.c2s.listen), Some(old.c2s.listen)),
            ("link.listen", new.link.listen, old.link.listen),
            ("admin.http", new.admin.http, old.admin.http),
        ];
        for (key, addr, running) in listens {
            if let Some(addr) = addr.filter(|a| Some(*a) != running) {
                std::net::TcpListener::bind(addr)
                    .map_err(|e| format!("{key} {addr} cannot be used: {e}; nothing changed"))?;
            }
        }
        write_atomically(&self.config_file, &edit.text).map_err(|e| {
            format!(
                "cannot save {}: {e}; nothing changed",
                self.config_file.display()
            )
        })?;
        *self.saved.borrow_mut() = edit.text;
        let effect = config_edit::effect(&self.in_force.borrow(), new);
        match effect {
            Effect::Live => {
                log::set_max_level(new.log_level.filter());
                let config = Box::new(new.node_config());
                let _ = self.events.send(Event::Reconfigure { config }).await;
                *self.in_force.borrow_mut() = edit.config;
                Ok(format!("{what}; applied now"))
            }
            Effect::Restart => {
                self.restart_pending.set(true);
                Ok(format!("{what}; saved, takes effect after a restart"))
            }
        }
    }
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("toml.new");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
