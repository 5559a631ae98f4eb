//! The administration commands, as typed on the console; the web page's
//! forms turn into the same commands.

/// One administration command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Status,
    ConfigShow,
    ConfigGet {
        key: String,
    },
    ConfigSet {
        key: String,
        value: String,
    },
    Users,
    /// The password is asked for separately (not echoed on the console).
    UserAdd {
        user: String,
        password: String,
    },
    UserPasswd {
        user: String,
        password: String,
    },
    UserDel {
        user: String,
    },
    Links,
    Rooms,
    UpstreamAdd {
        muc: String,
        connect: String,
        fingerprint: String,
    },
    UpstreamDel {
        muc: String,
    },
    PeerAdd {
        domain: String,
        fingerprint: String,
    },
    PeerDel {
        domain: String,
    },
    /// Change the admin password.
    AdminPasswd {
        password: String,
    },
    Restart,
    Logout,
}

impl Command {
    /// A command that still needs a password typed (twice, hidden) before it runs.
    pub fn wants_password(&self) -> bool {
        match self {
            Command::UserAdd { password, .. }
            | Command::UserPasswd { password, .. }
            | Command::AdminPasswd { password } => password.is_empty(),
            _ => false,
        }
    }

    pub fn with_password(mut self, pw: String) -> Command {
        match &mut self {
            Command::UserAdd { password, .. }
            | Command::UserPasswd { password, .. }
            | Command::AdminPasswd { password } => *password = pw,
            _ => {}
        }
        self
    }
}

pub const HELP: &str = "\
status                               node, links, rooms
config show                          the configuration file
config get KEY                       one setting (e.g. c2s.listen)
config set KEY VALUE                 change a setting (validated, saved)
users                                local accounts
user add|passwd NAME                 create an account or set its password
user del NAME                        delete an account
links                                links, traffic and fingerprints
rooms                                rooms and occupants
upstream add MUC HOST:PORT FPR       mirror the rooms of MUC, pinning FPR
upstream del MUC
peer add DOMAIN FPR                  accept a site's link, pinning FPR
peer del DOMAIN
passwd                               change the admin password
restart                              restart the node (applies saved settings)
logout
help";

/// Parse one console line (already known to be printable text).
pub fn parse(line: &str) -> Result<Command, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let one = |w: &str| w.to_string();
    Ok(match words.as_slice() {
        ["help"] | ["?"] => Command::Help,
        ["status"] => Command::Status,
        ["config", "show"] => Command::ConfigShow,
        ["config", "get", key] => Command::ConfigGet { key: one(key) },
        ["config", "set", key, value @ ..] if !value.is_empty() => Command::ConfigSet {
            key: one(key),
            // A value may hold spaces (a quoted string); keep it as typed.
            value: line
                .split_once(key)
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default(),
        },
        ["users"] | ["user", "list"] => Command::Users,
        ["user", "add", user] => Command::UserAdd {
            user: one(user),
            password: String::new(),
        },
        ["user", "passwd", user] => Command::UserPasswd {
            user: one(user),
            password: String::new(),
        },
        ["user", "del", user] => Command::UserDel { user: one(user) },
        ["links"] => Command::Links,
        ["rooms"] => Command::Rooms,
        ["upstream", "add", muc, connect, fpr] => Command::UpstreamAdd {
            muc: one(muc),
            connect: one(connect),
            fingerprint: one(fpr),
        },
        ["upstream", "del", muc] => Command::UpstreamDel { muc: one(muc) },
        ["peer", "add", domain, fpr] => Command::PeerAdd {
            domain: one(domain),
            fingerprint: one(fpr),
        },
        ["peer", "del", domain] => Command::PeerDel {
            domain: one(domain),
        },
        ["passwd"] => Command::AdminPasswd {
            password: String::new(),
        },
        ["restart"] => Command::Restart,
        ["logout"] | ["exit"] | ["quit"] => Command::Logout,
        [first, ..] if is_known(first) => {
            return Err(format!("wrong arguments for {first}; type help"))
        }
        [first, ..] => return Err(format!("unknown command {first:?}; type help")),
        [] => return Err("empty line".into()),
    })
}

fn is_known(word: &str) -> bool {
    [
        "config", "user", "users", "upstream", "peer", "status", "links", "rooms", "passwd",
        "restart", "help", "logout",
    ]
    .contains(&word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_mistakes_are_named() {
        assert_eq!(parse("status").unwrap(), Command::Status);
        assert_eq!(
            parse("config set muc.service \"conf.site.example\"").unwrap(),
            Command::ConfigSet {
                key: "muc.service".into(),
                value: "\"conf.site.example\"".into()
            }
        );
        assert!(parse("user add alice").unwrap().wants_password());
        assert_eq!(
            parse("peer add site.example abc=").unwrap(),
            Command::PeerAdd {
                domain: "site.example".into(),
                fingerprint: "abc=".into()
            }
        );
        assert!(parse("frobnicate").unwrap_err().contains("unknown command"));
        assert!(parse("config set x")
            .unwrap_err()
            .contains("wrong arguments"));
    }
}
