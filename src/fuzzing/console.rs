//! The serial console's line discipline: line noise in any amount gives
//! bounded output per byte, and a password typed at a hidden prompt is
//! never echoed.

use crate::admin::console::{Console, Request, MAX_LINE};

/// Most output one input byte may cause: one refusal naming the line
/// (at most `MAX_LINE` bytes, escaped) plus a prompt.
const MAX_OUTPUT_PER_BYTE: usize = 8 * MAX_LINE;

/// Input: a mode byte (bit 0: trusted port, bit 1: a password is set,
/// bits 2-7: whether the shell's successive answers succeed), then bytes
/// as they arrive on the port.
pub fn console(data: &[u8]) {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let mut console = Console::new(mode & 1 == 1, mode & 2 == 2);
    console.take_output();
    let answers = mode >> 2;
    let mut answered = 0u32;
    // Output since the current line began, to check hidden input stays hidden.
    let mut line_output = Vec::new();
    for &b in input {
        let request = console.push(b);
        let out = console.take_output();
        assert!(
            out.len() <= MAX_OUTPUT_PER_BYTE,
            "{} bytes for one",
            out.len()
        );
        line_output.extend_from_slice(&out);
        if let Some(request) = request {
            let ok = answers >> (answered % 6) & 1 == 1;
            answered += 1;
            match request {
                Request::Login(password) => {
                    assert_hidden(&line_output, &password);
                    console.login_result(ok);
                }
                Request::SetupPassword(password) => {
                    assert_hidden(&line_output, &password);
                    console.finish(if ok {
                        Ok(String::new())
                    } else {
                        Err("disk full".into())
                    });
                }
                Request::Run(_) if ok => console.finish(Ok("done".into())),
                Request::Run(_) => console.finish(Err("failed\nsecond line".into())),
            }
            let out = console.take_output();
            assert!(out.len() <= MAX_OUTPUT_PER_BYTE);
        }
        if matches!(b, b'\r' | b'\n' | 0x03 | 0x15) {
            line_output.clear();
        }
    }
}

fn assert_hidden(output: &[u8], password: &str) {
    if password.len() < 4 {
        return; // Too short to tell an echo from the console's own words.
    }
    let echoed = output
        .windows(password.len())
        .any(|w| w == password.as_bytes());
    assert!(!echoed, "the password {password:?} was echoed");
}
