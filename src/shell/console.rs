//! The serial console on `[admin] serial`: opens the port (115200 8N1, raw),
//! feeds its bytes to `admin::console::Console` and carries out what it
//! asks for. A port that goes away (a USB adapter unplugged) is reopened.

use super::admin_ops::AdminOps;
use crate::admin::console::{Console, Request};
use crate::admin::login::Throttle;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::{Async, Timer};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

const BAUD: u32 = 115_200;

pub async fn serve(path: PathBuf, trusted: bool, ops: Rc<AdminOps>) {
    let mut reported = false;
    loop {
        match open(&path) {
            Ok(port) => {
                log::info!("console: serving {} at {BAUD} 8N1", path.display());
                reported = false;
                if let Err(e) = session(port, trusted, &ops).await {
                    log::info!("console {}: {e}; reopening", path.display());
                }
            }
            Err(e) if !reported => {
                log::warn!(
                    "console: cannot open {}: {e}; retrying every second",
                    path.display()
                );
                reported = true;
            }
            Err(_) => {}
        }
        Timer::after(Duration::from_secs(1)).await;
    }
}

/// Open the port without making it our controlling terminal, raw, 115200 8N1.
fn open(path: &Path) -> io::Result<Async<File>> {
    use rustix::termios::{self, ControlModes, OptionalActions};
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
        .open(path)?;
    if termios::isatty(&file) {
        let mut t = termios::tcgetattr(&file)?;
        t.make_raw();
        t.control_modes -= ControlModes::CSTOPB | ControlModes::PARENB | ControlModes::CRTSCTS;
        t.control_modes |= ControlModes::CS8 | ControlModes::CLOCAL | ControlModes::CREAD;
        t.set_speed(BAUD)?;
        termios::tcsetattr(&file, OptionalActions::Now, &t)?;
    }
    Async::new(file)
}

async fn session(mut port: Async<File>, trusted: bool, ops: &AdminOps) -> io::Result<()> {
    let mut console = Console::new(trusted, ops.password_set().await);
    let mut throttle = Throttle::default();
    let start = Instant::now();
    let now = || start.elapsed().as_millis() as u64;
    port.write_all(&console.take_output()).await?;
    let mut buf = [0u8; 256];
    loop {
        let n = port.read(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        for &b in &buf[..n] {
            let Some(req) = console.push(b) else { continue };
            port.write_all(&console.take_output()).await?;
            match req {
                Request::Login(password) => {
                    if let Err(wait) = throttle.check(now()) {
                        Timer::after(Duration::from_millis(wait)).await;
                    }
                    let ok = ops.check_password(&password).await;
                    if ok {
                        throttle.succeeded();
                    } else {
                        throttle.failed(now());
                    }
                    console.login_result(ok);
                }
                Request::SetupPassword(password) => {
                    console.finish(ops.set_password(&password).await)
                }
                Request::Run(cmd) => console.finish(ops.run(cmd).await),
            }
        }
        port.write_all(&console.take_output()).await?;
        ops.restart_if_requested().await;
    }
}
