//! The serial console's line discipline and session (sans-IO): bytes in,
//! bytes out (echo, prompts, answers) and requests for the shell to carry
//! out. A terminal program sends CR (or LF, or CR LF), DEL or BS for
//! backspace, and escape sequences for arrow keys; a line noise burst sends
//! anything. Every line gets one answer ending in `OK` or `ERR …`.

use super::command::{self, Command};

/// Longest line accepted; the rest of a longer line is dropped and the line refused.
pub const MAX_LINE: usize = 256;
pub const PROMPT: &[u8] = b"outpost> ";

/// What the shell must do for the console before it feeds more bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Check this admin password; answer with `login_result`.
    Login(String),
    /// First run: no admin password exists yet; store this one (answer with `finish`).
    SetupPassword(String),
    /// Run a command; answer with `finish`.
    Run(Command),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    /// Asking for the admin password (hidden input).
    Login,
    /// No admin password is set: choose one, then repeat it.
    Setup {
        first: Option<String>,
    },
    Ready,
    /// A command waits for a password, typed twice.
    Secret {
        cmd: Command,
        first: Option<String>,
    },
    /// A request is with the shell.
    Busy,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Escape {
    #[default]
    None,
    /// After ESC.
    Start,
    /// Inside `ESC [` … final byte.
    Csi,
}

pub struct Console {
    trusted: bool,
    mode: Mode,
    line: heapless::Vec<u8, MAX_LINE>,
    too_long: bool,
    garbage: bool,
    after_cr: bool,
    escape: Escape,
    out: Vec<u8>,
}

impl Console {
    /// `trusted`: the board profile says whoever reaches the port may administer.
    /// `password_set`: an admin password exists (else the first run sets one).
    pub fn new(trusted: bool, password_set: bool) -> Console {
        let mode = match (trusted, password_set) {
            (true, _) => Mode::Ready,
            (false, true) => Mode::Login,
            (false, false) => Mode::Setup { first: None },
        };
        let mut c = Console {
            trusted,
            mode,
            line: heapless::Vec::new(),
            too_long: false,
            garbage: false,
            after_cr: false,
            escape: Escape::None,
            out: Vec::new(),
        };
        c.say(&format!(
            "Outpost {} console. Type help for the commands.",
            env!("CARGO_PKG_VERSION")
        ));
        if matches!(c.mode, Mode::Setup { .. }) {
            c.say("No admin password is set yet; choose one now.");
        }
        c.prompt();
        c
    }

    /// Bytes to write to the port.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Feed one received byte. A request stops the console until answered;
    /// bytes fed meanwhile are ignored, so the shell holds them back.
    pub fn push(&mut self, b: u8) -> Option<Request> {
        if self.mode == Mode::Busy {
            return None;
        }
        if b < 0x20 {
            // A control byte ends an escape sequence and acts (ECMA-48).
            self.escape = Escape::None;
        }
        match self.escape {
            Escape::Start => {
                self.escape = if b == b'[' { Escape::Csi } else { Escape::None };
                return None;
            }
            Escape::Csi => {
                if (0x40..=0x7e).contains(&b) {
                    self.escape = Escape::None;
                }
                return None;
            }
            Escape::None => {}
        }
        let after_cr = std::mem::take(&mut self.after_cr);
        match b {
            b'\r' => {
                self.after_cr = true;
                self.end_line()
            }
            b'\n' if after_cr => None,
            b'\n' => self.end_line(),
            0x08 | 0x7f => {
                self.backspace();
                None
            }
            0x03 | 0x15 => {
                // Ctrl-C, Ctrl-U: drop the line, and a password prompt with it.
                self.clear_line();
                self.mode = match std::mem::replace(&mut self.mode, Mode::Busy) {
                    Mode::Secret { .. } => Mode::Ready,
                    Mode::Setup { .. } => Mode::Setup { first: None },
                    other => other,
                };
                self.out.extend_from_slice(b"^C\r\n");
                self.prompt();
                None
            }
            0x1b => {
                self.escape = Escape::Start;
                None
            }
            0x09 => self.add(b' '),
            b if b < 0x20 => {
                self.garbage = true;
                None
            }
            b => self.add(b),
        }
    }

    fn add(&mut self, b: u8) -> Option<Request> {
        if self.line.push(b).is_err() {
            if !self.too_long {
                self.out.push(0x07); // Bell: the line is full.
            }
            self.too_long = true;
        } else if self.echoes() {
            self.out.push(b);
        }
        None
    }

    fn backspace(&mut self) {
        if self.too_long {
            return;
        }
        // One character: a UTF-8 lead byte and its continuation bytes.
        while let Some(b) = self.line.pop() {
            if b & 0xc0 != 0x80 {
                break;
            }
        }
        if self.echoes() {
            self.out.extend_from_slice(b"\x08 \x08");
        }
    }

    fn echoes(&self) -> bool {
        matches!(self.mode, Mode::Ready)
    }

    fn clear_line(&mut self) {
        self.line.clear();
        self.too_long = false;
        self.garbage = false;
    }

    fn end_line(&mut self) -> Option<Request> {
        self.out.extend_from_slice(b"\r\n");
        let text = std::str::from_utf8(&self.line).map(str::to_string);
        let (too_long, garbage) = (self.too_long, self.garbage);
        self.clear_line();
        let text = match text {
            _ if too_long => {
                return self.refuse(&format!(
                    "line too long (at most {MAX_LINE} bytes); ignored"
                ))
            }
            Ok(t) if !garbage => t,
            _ => return self.refuse("the line held control characters or invalid UTF-8; ignored"),
        };
        match std::mem::replace(&mut self.mode, Mode::Busy) {
            Mode::Login => Some(Request::Login(text)),
            Mode::Setup { first: None } => self.second_entry(Mode::Setup { first: Some(text) }),
            Mode::Setup { first: Some(first) } if first == text && !text.is_empty() => {
                Some(Request::SetupPassword(text))
            }
            Mode::Setup { .. } => {
                self.mode = Mode::Setup { first: None };
                self.refuse("the passwords differ or are empty; choose one again")
            }
            Mode::Secret { cmd, first: None } => self.second_entry(Mode::Secret {
                cmd,
                first: Some(text),
            }),
            Mode::Secret {
                cmd,
                first: Some(first),
            } => {
                if first == text && !text.is_empty() {
                    Some(Request::Run(cmd.with_password(text)))
                } else {
                    self.mode = Mode::Ready;
                    self.refuse("the passwords differ or are empty; nothing changed")
                }
            }
            Mode::Ready if text.trim().is_empty() => {
                self.mode = Mode::Ready;
                self.prompt();
                None
            }
            Mode::Ready => match command::parse(&text) {
                Err(e) => {
                    self.mode = Mode::Ready;
                    self.refuse(&e)
                }
                Ok(cmd) if cmd.wants_password() => {
                    self.out.extend_from_slice(b"New password: ");
                    self.mode = Mode::Secret { cmd, first: None };
                    None
                }
                Ok(Command::Logout) if self.trusted => {
                    self.mode = Mode::Ready;
                    self.finish(Ok("this console is trusted: there is no login".into()));
                    None
                }
                Ok(Command::Logout) => {
                    self.mode = Mode::Login;
                    self.say("OK logged out");
                    self.prompt();
                    None
                }
                Ok(cmd) => Some(Request::Run(cmd)),
            },
            Mode::Busy => unreachable!("input is ignored while busy"),
        }
    }

    fn second_entry(&mut self, next: Mode) -> Option<Request> {
        self.mode = next;
        self.out.extend_from_slice(b"Repeat: ");
        None
    }

    /// The shell's answer to `Login`.
    pub fn login_result(&mut self, ok: bool) {
        if ok {
            self.mode = Mode::Ready;
            self.say("OK");
        } else {
            self.mode = Mode::Login;
            self.say("ERR wrong password");
        }
        self.prompt();
    }

    /// The shell's answer to `Run` or `SetupPassword`: text then `OK`, or `ERR why`.
    pub fn finish(&mut self, result: Result<String, String>) {
        if self.mode == Mode::Busy {
            self.mode = Mode::Ready;
        }
        match result {
            Ok(text) => {
                for line in text.lines() {
                    self.say(line);
                }
                self.say("OK");
            }
            Err(e) => self.say(&format!("ERR {}", one_line(&e))),
        }
        self.prompt();
    }

    fn refuse(&mut self, why: &str) -> Option<Request> {
        if self.mode == Mode::Busy {
            self.mode = Mode::Ready;
        }
        self.say(&format!("ERR {why}"));
        self.prompt();
        None
    }

    fn say(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn prompt(&mut self) {
        match self.mode {
            Mode::Login => self.out.extend_from_slice(b"Password: "),
            Mode::Setup { first: None } => self.out.extend_from_slice(b"New admin password: "),
            Mode::Setup { first: Some(_) } | Mode::Secret { .. } => {
                self.out.extend_from_slice(b"Repeat: ")
            }
            Mode::Ready => self.out.extend_from_slice(PROMPT),
            Mode::Busy => {}
        }
    }
}

/// Errors are one console line: a multi-line message (a config error) is joined.
fn one_line(s: &str) -> String {
    s.lines().map(str::trim).collect::<Vec<_>>().join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(c: &mut Console, bytes: &[u8]) -> (String, Vec<Request>) {
        let mut reqs = Vec::new();
        for &b in bytes {
            reqs.extend(c.push(b));
        }
        (String::from_utf8_lossy(&c.take_output()).into_owned(), reqs)
    }

    #[test]
    fn a_trusted_console_echoes_edits_and_runs_commands() {
        let mut c = Console::new(true, false);
        assert!(String::from_utf8(c.take_output())
            .unwrap()
            .ends_with("outpost> "));
        let (out, reqs) = feed(&mut c, b"statux\x7fs\r\n");
        assert_eq!(out, "statux\x08 \x08s\r\n");
        assert_eq!(reqs, vec![Request::Run(Command::Status)]);
        c.finish(Ok("all well".into()));
        assert_eq!(
            String::from_utf8(c.take_output()).unwrap(),
            "all well\r\nOK\r\noutpost> "
        );
        // LF alone ends a line too; arrow keys are swallowed.
        let (_, reqs) = feed(&mut c, b"\x1b[Arooms\n");
        assert_eq!(reqs, vec![Request::Run(Command::Rooms)]);
    }

    #[test]
    fn bad_lines_get_err_and_the_console_carries_on() {
        let mut c = Console::new(true, true);
        c.take_output();
        let (out, reqs) = feed(&mut c, b"frob\r");
        assert!(out.contains("ERR unknown command"), "{out}");
        assert!(reqs.is_empty());
        let long = vec![b'a'; MAX_LINE + 50];
        let (out, _) = feed(&mut c, &long);
        assert_eq!(out.matches('\x07').count(), 1);
        let (out, reqs) = feed(&mut c, b"\r");
        assert!(out.contains("ERR line too long"), "{out}");
        assert!(reqs.is_empty());
        let (out, reqs) = feed(&mut c, b"st\x00\xffatus\r");
        assert!(
            out.contains("ERR the line held control characters"),
            "{out}"
        );
        assert!(reqs.is_empty());
        let (_, reqs) = feed(&mut c, b"status\r");
        assert_eq!(reqs, vec![Request::Run(Command::Status)]);
    }

    #[test]
    fn login_is_hidden_and_passwords_are_asked_twice() {
        let mut c = Console::new(false, true);
        assert!(String::from_utf8(c.take_output())
            .unwrap()
            .ends_with("Password: "));
        let (out, reqs) = feed(&mut c, b"secret\r");
        assert_eq!(out, "\r\n", "the password is not echoed");
        assert_eq!(reqs, vec![Request::Login("secret".into())]);
        c.login_result(false);
        assert!(String::from_utf8(c.take_output())
            .unwrap()
            .contains("ERR wrong password"));
        let (_, reqs) = feed(&mut c, b"right\r");
        assert_eq!(reqs, vec![Request::Login("right".into())]);
        c.login_result(true);
        c.take_output();
        let (out, reqs) = feed(&mut c, b"user add alice\rpw1\rpw1\r");
        assert!(
            out.contains("New password: ") && out.contains("Repeat: "),
            "{out}"
        );
        assert!(!out.contains("pw1"));
        assert_eq!(
            reqs,
            vec![Request::Run(Command::UserAdd {
                user: "alice".into(),
                password: "pw1".into()
            })]
        );
        c.finish(Ok(String::new()));
        let (out, _) = feed(&mut c, b"passwd\ra\rb\r");
        assert!(out.contains("ERR the passwords differ"), "{out}");
        let (out, _) = feed(&mut c, b"logout\r");
        assert!(out.ends_with("Password: "), "{out}");
    }

    #[test]
    fn the_first_run_sets_the_admin_password() {
        let mut c = Console::new(false, false);
        assert!(String::from_utf8(c.take_output())
            .unwrap()
            .contains("No admin password"));
        let (_, reqs) = feed(&mut c, b"one\rtwo\r");
        assert!(reqs.is_empty());
        let (_, reqs) = feed(&mut c, b"good\rgood\r");
        assert_eq!(reqs, vec![Request::SetupPassword("good".into())]);
        c.finish(Ok("admin password set".into()));
        let (_, reqs) = feed(&mut c, b"links\r");
        assert_eq!(reqs, vec![Request::Run(Command::Links)]);
    }
}
