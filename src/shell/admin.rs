//! The local admin socket (`data_dir/admin.sock`): how `outpost user …`
//! reaches a running node. Frames are a u32 length and a postcard body.
//! When no node runs, the command is applied to the log directly.

use super::datadir::{admin_socket, open_state, DataLock, LockError};
use crate::config::Config;
use crate::node::{Action, AdminCommand, AdminReply, Event, Node, Now};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

pub const MAX_FRAME: usize = 64 * 1024;

pub fn encode_frame<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let body = postcard::to_allocvec(v).expect("admin messages serialise");
    let mut out = (body.len() as u32).to_le_bytes().to_vec();
    out.extend(body);
    out
}

/// Parse a length prefix; None if it exceeds the bound.
pub fn frame_len(prefix: [u8; 4]) -> Option<usize> {
    let n = u32::from_le_bytes(prefix) as usize;
    (n <= MAX_FRAME).then_some(n)
}

/// Run an admin command against the node that owns `cfg.data_dir`, live if
/// it is running, otherwise directly on its log.
pub fn execute(cfg: &Config, cmd: AdminCommand) -> Result<AdminReply, String> {
    let sock = admin_socket(&cfg.data_dir);
    match UnixStream::connect(&sock) {
        Ok(stream) => return request(stream, &cmd),
        Err(e) => log::debug!(
            "admin socket {}: {e}; trying the log directly",
            sock.display()
        ),
    }
    let _lock = match DataLock::acquire(&cfg.data_dir) {
        Ok(l) => l,
        Err(LockError::Busy) => {
            return Err(format!(
                "a node is running on {} but its admin socket {} does not answer",
                cfg.data_dir.display(),
                sock.display()
            ))
        }
        Err(LockError::Io(e)) => return Err(e),
    };
    let opened = open_state(&cfg.data_dir, super::random_u64())?;
    let (mut log, state) = (opened.log, opened.state);
    let mut node = Node::new(cfg.node_config(), state, super::random_seed());
    node.handle(Now::default(), Event::Admin { req: 0, cmd });
    let mut reply = None;
    for action in node.drain_actions() {
        match action {
            Action::Persist(r) => {
                log.append(r.kind(), &r.encode())
                    .map_err(|e| format!("cannot write the log: {e}"))?;
            }
            Action::AdminReply { reply: r, .. } => reply = Some(r),
            _ => {}
        }
    }
    log.commit()
        .map_err(|e| format!("cannot write the log: {e}"))?;
    reply.ok_or_else(|| "the node gave no answer".to_string())
}

fn request(mut stream: UnixStream, cmd: &AdminCommand) -> Result<AdminReply, String> {
    let io = |e: std::io::Error| format!("admin socket: {e}");
    stream.write_all(&encode_frame(cmd)).map_err(io)?;
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).map_err(io)?;
    let len = frame_len(prefix).ok_or("admin socket: oversized reply")?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).map_err(io)?;
    postcard::from_bytes(&body).map_err(|e| format!("admin socket: bad reply: {e}"))
}
